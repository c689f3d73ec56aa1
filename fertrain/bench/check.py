"""Benchmark: the dataset check (``python -m fertrain.data.check``) against plain JPEG decoding of the same files.

Builds a miniature DFEW tree of JPEG frame folders (``--clips`` clips x ``--frames`` frames of ``--size`` pixels,
official layout) in a temporary folder, then times on the same files:

- plain decoding: every frame read and decoded with OpenCV (``cv2.imdecode``), nothing else (1 thread and
  ``--workers`` threads): the floor a full check cannot beat;
- ``fertrain.data.check`` full (every frame decoded, plus listing, marker checks, the cache and the report), cold
  cache and warm cache (a re-run: nothing changed, nothing re-checked);
- ``fertrain.data.check --quick`` (headers only).

Prints a Markdown table of seconds, frames/s and the check's time relative to plain decoding. A benchmark, not a
test: the figures depend on the machine and its load (run it on idle cores). One command
(``fertrain-bench-check``, or ``scripts/bench_check.py`` in a checkout)::

    python -m fertrain.bench.check --clips 300 --frames 16 --size 224 --workers 2
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch  # noqa: F401  (before decord, as everywhere in fertrain)
import cv2
import numpy as np

from fertrain.cli import RunFailure, UsageError, guarded

PROG = "python -m fertrain.bench.check"


def build_tree(root: Path, clips: int, frames: int, size: int) -> Path:
    from fertrain.data.datasets.dfew import make_miniature_dfew

    per_class = max(1, clips // 7)
    return make_miniature_dfew(root, clips_per_class=per_class, num_frames=frames, size=size)


def plain_decode(files: list[Path], workers: int) -> float:
    def one(path: Path) -> int:
        img = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
        return int(img.shape[0])

    start = time.perf_counter()
    if workers == 1:
        for f in files:
            one(f)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, files, chunksize=64))
    return time.perf_counter() - start


@guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """Build the tree, time the decoders and the check, print the table. Returns 0.

    Raises:
        UsageError: a count below 1.
        RunFailure: the check reports a problem on the generated (valid) tree.
    """
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=140, help="clips of the miniature DFEW tree (default 140)")
    parser.add_argument("--frames", type=int, default=16, help="JPEG frames per clip (default 16)")
    parser.add_argument("--size", type=int, default=224, help="frame side in pixels (default 224)")
    parser.add_argument("--workers", type=int, default=2, help="decoding threads / check workers (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary tree")
    args = parser.parse_args(argv)
    if min(args.clips, args.frames, args.size, args.workers) < 1:
        raise UsageError("--clips, --frames, --size and --workers must be >= 1")

    from fertrain.data.check import run_check

    tmp = Path(tempfile.mkdtemp(prefix="bench_check_"))
    try:
        root = build_tree(tmp / "DFEW", args.clips, args.frames, args.size)
        files = sorted((root / "Clip" / "clip_224x224").rglob("*.jpg"))
        n = len(files)
        overrides = ["data=dfew", f"data.root={root}", f"data.frame_counts={root / 'frame_counts.csv'}",
                     f"paths.log_dir={tmp / 'logs'}"]
        plain_decode(files[:64], 1)  # warm the page cache and OpenCV
        rows = [("plain cv2.imdecode, 1 thread", plain_decode(files, 1))]
        if args.workers > 1:
            rows.append((f"plain cv2.imdecode, {args.workers} threads", plain_decode(files, args.workers)))
        for label, quick in (("check full, cold cache", False), ("check full, warm cache (re-run)", False),
                             ("check --quick (headers), cold cache", True)):
            out = tmp / ("out_quick" if quick else "out_full")
            start = time.perf_counter()
            report, _ = run_check(overrides, quick=quick, workers=args.workers, out=out, progress=False)
            rows.append((label, time.perf_counter() - start))
            if report["problems"]:
                raise RunFailure(f"{label}: the check found problems in the generated tree: {report['problems'][:2]}")
        base = rows[1][1] if args.workers > 1 else rows[0][1]
        samples = len({p.parent for p in files})
        print(f"\n{samples} clips, {n} JPEG frames of {args.size}x{args.size} px, {args.workers} workers\n")
        print("| what | seconds | frames/s | vs plain decoding |")
        print("| --- | --- | --- | --- |")
        for label, sec in rows:
            print(f"| {label} | {sec:.2f} | {n / sec:,.0f} | {sec / base:.2f}x |")
        print("\n(the check's times include composing the config, listing, the protocol audit and writing the report)")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
