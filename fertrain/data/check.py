"""The dataset check ("doctor"): walk a dataset tree the way training will and compare it with the protocol.

Usage (the same overrides as training; ``--`` options are the check's own)::

    python -m fertrain.data.check +experiment=dfew_mscm data.root=/data/DFEW data.frame_counts=/data/frame_counts.csv
    python -m fertrain.data.check data=afew data.root=/data/AFEW data.source=aligned_faces --quick
    python -m fertrain.data.check data=csv data.csv=/data/mine/labels.csv --workers 8 --out reports/mine

What it does:

1. composes the config and instantiates ``data.datamodule.source`` exactly as training does, and takes the records of
   ``train``, ``val`` and ``test`` (a sample listed in two splits is checked once);
2. checks every sample (:func:`fertrain.data.integrity.check_sample`): without ``--quick`` every frame is decoded
   (level ``decode``); with ``--quick`` only headers are read: image files' start/end markers and a video's
   container header (frame count), no pixel is decoded. Missing, empty, zero-byte, unreadable, corrupt frames,
   truncated items and frame-count mismatches (a frame folder with fewer images than the record indexes, e.g. from
   DFEW's ``frame_counts.csv``) are listed with their paths. Threads (``--workers``), a progress bar on a terminal,
   and a resumable cache of results (``<out>/.check_cache.jsonl``, keyed by each file's size and modification
   time: a re-run after a kill, or after fixing a few files, re-checks only what changed);
3. compares the tree with the protocol's facts kept in the dataset module (``source.audit()``: DFEW fold sizes and
   class totals, clips outside the protocol and extra items; AFEW clips per split and class, extra folders, clips in
   both splits; ...);
4. prints the data fingerprint (:func:`fertrain.data.fingerprint.data_fingerprint` of the records as listed, over
   the dataset root: the value training records in ``run.json`` on this tree with the default policy), writes
   ``data_report.json`` and ``data_report.md`` to ``--out`` (default ``<paths.log_dir>/data_check/<data.name>``).

Exit status (``fertrain.cli``): 0 the tree matches the protocol and every sample is usable; 1 it differs (any
problem listed); 2 a usage or configuration error (unknown override, missing root or split files).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Sequence

from fertrain.cli import EXIT_FAILURE, EXIT_OK, UsageError, guarded
from fertrain.data.fingerprint import data_fingerprint
from fertrain.data.integrity import REASONS, SampleCheck, check_sample, frames_result
from fertrain.data.records import SPLITS, ClipRecord

log = logging.getLogger("fertrain.data.check")

PROG = "fertrain.data.check"
CACHE_NAME = ".check_cache.jsonl"
CACHE_VERSION = 1
_MAX_PRINTED = 40


# ------------------------------------------------------------------------------------------------ one sample
def _media(rec: ClipRecord) -> list[Path]:
    return [Path(p) for p in rec.frame_files] if rec.frame_files is not None else [Path(rec.path)]


def signature(rec: ClipRecord) -> str:
    """What a sample's check result depends on: its media files' names, sizes and modification times (a frame
    folder's listing), and the record's segment. Changes when a file is replaced, truncated, added or removed."""
    h = hashlib.sha1()
    h.update(f"{rec.start_frame}:{rec.num_frames}".encode())
    for path in _media(rec):
        try:
            if path.is_dir():
                for e in sorted(os.scandir(path), key=lambda e: e.name):
                    st = e.stat()
                    h.update(f"{e.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
            else:
                st = path.stat()
                h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{path}:missing\n".encode())
    return h.hexdigest()


def _is_video(rec: ClipRecord) -> bool:
    from fertrain.data.images import IMAGE_FILE_SUFFIXES

    path = Path(rec.path)
    return (rec.frame_files is None and path.is_file() and path.suffix.lower() != ".npy"
            and path.suffix.lower() not in IMAGE_FILE_SUFFIXES)


def check_one(rec: ClipRecord, quick: bool, min_frames: int = 1) -> SampleCheck:
    """Check one sample: ``decode`` level, or with ``quick`` the ``structure`` level for frames and images and the
    container header (frame count) for videos."""
    if quick and _is_video(rec):
        from fertrain.data.readers import probe_video

        result = check_sample(rec, "exists", min_frames)
        if not result.usable:
            return result
        frames, _ = probe_video(Path(rec.path))
        if frames < 1:
            return SampleCheck("unreadable", f"{rec.path} cannot be opened or its header states no frame count",
                               str(rec.path), 0, rec.num_frames)
        return frames_result(frames, rec, Path(rec.path), min_frames)
    return check_sample(rec, "structure" if quick else "decode", min_frames)


# ------------------------------------------------------------------------------------------------ the cache
class ResultCache:
    """Append-only JSON-lines cache of sample results: ``{"key", "sig", "level", "result"}`` per line; the last line of
    a key wins. Flushed every 256 results or 2 s, so a killed check resumes about where it stopped."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[tuple[str, str, str], dict] = {}
        self._lock = threading.Lock()
        self._file = None
        self._pending = 0
        self._flushed = time.monotonic()
        if path is not None and path.is_file():
            for line in path.read_text().splitlines():
                try:
                    e = json.loads(line)
                    if e.get("v") == CACHE_VERSION:
                        self.entries[(e["key"], e["sig"], e["level"])] = e["result"]
                except (json.JSONDecodeError, KeyError):
                    continue  # a line cut by a kill: ignored
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a")

    def get(self, key: str, sig: str, level: str) -> SampleCheck | None:
        r = self.entries.get((key, sig, level))
        return SampleCheck(**r) if r is not None else None

    def put(self, key: str, sig: str, level: str, result: SampleCheck) -> None:
        if self._file is None:
            return
        line = json.dumps({"v": CACHE_VERSION, "key": key, "sig": sig, "level": level,
                           "result": result.__dict__})
        with self._lock:
            self._file.write(line + "\n")
            self._pending += 1
            now = time.monotonic()
            if self._pending >= 256 or now - self._flushed > 2.0:  # a kill loses at most ~2 s of work
                self._file.flush()
                self._pending, self._flushed = 0, now

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _key(rec: ClipRecord) -> str:
    media = [str(p) for p in _media(rec)]
    return json.dumps([media, rec.start_frame, rec.num_frames])


def scan(records: Sequence[ClipRecord], quick: bool, workers: int, cache: ResultCache, progress: bool = True,
         min_frames: int = 1) -> tuple[list[SampleCheck], dict[str, int]]:
    """Check ``records`` (unique) in ``workers`` threads; results in order and ``{"checked", "cached"}`` counts."""
    level = "quick" if quick else "decode"
    results: list[SampleCheck | None] = [None] * len(records)
    todo = []
    for i, rec in enumerate(records):
        sig = signature(rec)
        hit = cache.get(_key(rec), sig, level)
        if hit is not None:
            results[i] = hit
        else:
            todo.append((i, rec, sig))
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="checking samples", unit="sample", file=sys.stderr, disable=None)

    def work(chunk):
        done = []
        for i, rec, sig in chunk:
            result = check_one(rec, quick, min_frames)
            cache.put(_key(rec), sig, level, result)
            done.append((i, result))
        return done

    size = max(1, min(64, len(todo) // (4 * max(1, workers)) or 1))  # chunks: thread hand-off per chunk, not per sample
    chunks = [todo[k:k + size] for k in range(0, len(todo), size)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for fut in as_completed([pool.submit(work, c) for c in chunks]):
            for i, result in fut.result():
                results[i] = result
            if bar is not None:
                bar.update(len(fut.result()))
    if bar is not None:
        bar.close()
    return results, {"checked": len(todo), "cached": len(records) - len(todo)}  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------ the report
def build_report(source: Any, records: dict[str, list[ClipRecord]], results: dict[str, SampleCheck],
                 audit: dict | None, root: str | None, quick: bool, stats: dict[str, int],
                 config_overrides: Sequence[str]) -> dict[str, Any]:
    """The report as a dict (what ``data_report.json`` holds)."""
    problems = []
    seen: dict[str, dict] = {}
    for split in SPLITS:
        for i, rec in enumerate(records.get(split, [])):
            key = _key(rec)
            res = results[key]
            if res.usable and not res.truncated:
                continue
            if key in seen:
                seen[key]["splits"].append(split)
                continue
            entry = {"splits": [split], "index": i, "video_id": rec.video_id, "origin": rec.origin,
                     "path": res.path, "reason": res.reason or "truncated", "detail": res.detail}
            seen[key] = entry
            problems.append(entry)
    per_split = {}
    names = tuple(getattr(source, "class_names", ()))
    for split in SPLITS:
        recs = records.get(split, [])
        counts = Counter(r.label for r in recs)
        per_split[split] = {"samples": len(recs),
                            "per_class": {names[c] if c < len(names) else str(c): counts.get(c, 0)
                                          for c in range(len(names))},
                            "frames": int(sum(r.num_frames for r in recs))}
    failed_checks = [c for c in (audit or {}).get("checks", []) if not c["ok"]]
    extra = list((audit or {}).get("extra", []))
    report = {
        "dataset": type(source).__name__,
        "root": root,
        "mode": "quick (headers)" if quick else "full (every frame decoded)",
        "overrides": list(config_overrides),
        "fingerprint": data_fingerprint(records, root),
        "splits": per_split,
        "samples_checked": stats,
        "problems": problems,
        "problem_counts": dict(sorted(Counter(p["reason"] for p in problems).items())),
        "protocol": audit or {"checks": [], "extra": [], "notes": ["this dataset module states no protocol facts"]},
        "extra": extra,
        "ok": not problems and not failed_checks and not extra,
    }
    return report


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown (``data_report.md``)."""
    lines = [f"# Dataset check: {report['dataset']}", "",
             f"- root: `{report['root']}`", f"- mode: {report['mode']}",
             f"- data fingerprint: `{report['fingerprint']['fingerprint']}`",
             f"- verdict: **{'matches the protocol' if report['ok'] else 'DIFFERS from the protocol'}**", "",
             "## Splits", "", "| split | samples | frames | per class |", "| --- | --- | --- | --- |"]
    for split, s in report["splits"].items():
        per = ", ".join(f"{k} {v}" for k, v in s["per_class"].items())
        lines.append(f"| {split} | {s['samples']} | {s['frames']} | {per} |")
    lines += ["", "## Protocol", "", "| check | expected | found | ok |", "| --- | --- | --- | --- |"]
    for c in report["protocol"].get("checks", []):
        lines.append(f"| {c['name']} | {c['expected']} | {c['found']} | {'yes' if c['ok'] else '**no**'} |")
    for note in report["protocol"].get("notes", []):
        lines.append(f"\n- note: {note}")
    if report["extra"]:
        lines += ["", f"## Extra items ({len(report['extra'])}: not in the protocol)", ""]
        lines += [f"- `{p}`" for p in report["extra"]]
    lines += ["", f"## Problems ({len(report['problems'])})", ""]
    if report["problem_counts"]:
        lines.append(", ".join(f"{k}: {v}" for k, v in report["problem_counts"].items()))
        lines += ["", "| reason | split | video_id | path | detail |", "| --- | --- | --- | --- | --- |"]
        for p in report["problems"]:
            lines.append(f"| {p['reason']} | {'/'.join(p['splits'])} | {p['video_id']} | `{p['path']}` | "
                         f"{p['detail'].replace('|', '/')} |")
    else:
        lines.append("none")
    lines += ["", "Reasons: " + "; ".join(f"`{k}` {v}" for k, v in REASONS.items()), ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ entry point
def _compose(overrides: Sequence[str]):
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from fertrain.config import config_dir

    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose("train", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise UsageError(f"cannot compose the config from {list(overrides)}: {err}") from None


def _source(cfg):
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from fertrain.data.records import DatasetError

    try:
        return instantiate(cfg.data.datamodule.source)
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, (DatasetError, ValueError, FileNotFoundError)):
            cause = cause.__cause__
        if isinstance(cause, DatasetError):
            raise cause from None
        if cause is not None:
            raise UsageError(str(cause)) from None
        raise


def run_check(overrides: Sequence[str], quick: bool = False, workers: int | None = None, out: str | Path | None = None,
              cache: bool = True, progress: bool = True) -> tuple[dict[str, Any], Path]:
    """Check the dataset the config ``overrides`` name; returns the report and the folder it was written to.

    Raises:
        UsageError: the overrides do not compose, or an argument is invalid.
        DatasetError: the root, split files or label files are missing or malformed (the dataset's own message).
    """
    from omegaconf import OmegaConf

    cfg = _compose(overrides)
    source = _source(cfg)
    out_dir = Path(out) if out else Path(cfg.paths.log_dir) / "data_check" / str(cfg.data.get("name", "data"))
    records = {split: list(source.records(split)) for split in SPLITS}
    unique: dict[str, ClipRecord] = {}
    for split in SPLITS:
        for rec in records[split]:
            unique.setdefault(_key(rec), rec)
    min_frames = int(OmegaConf.select(cfg, "data.min_frames", default=1) or 1)
    started = time.perf_counter()
    result_cache = ResultCache(out_dir / CACHE_NAME if cache else None)
    try:
        results_list, stats = scan(list(unique.values()), quick, workers or min(8, os.cpu_count() or 1),
                                   result_cache, progress, min_frames)
    finally:
        result_cache.close()
    stats["seconds"] = round(time.perf_counter() - started, 3)
    results = dict(zip(unique, results_list))
    audit = source.audit() if callable(getattr(source, "audit", None)) else None
    root = getattr(source, "root", None)
    report = build_report(source, records, results, audit, str(root) if root is not None else None, quick, stats,
                          overrides)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "data_report.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "data_report.md").write_text(to_markdown(report))
    return report, out_dir


def _print(report: dict[str, Any], out_dir: Path) -> None:
    fp = report["fingerprint"]
    print(f"{report['dataset']} at {report['root']} ({report['mode']})")
    for split, s in report["splits"].items():
        print(f"  {split}: {s['samples']} samples, {s['frames']} frames")
    for c in report["protocol"].get("checks", []):
        print(f"  protocol: {c['name']}: {'ok' if c['ok'] else 'DIFFERS'} (expected {c['expected']}, found "
              f"{c['found']})")
    for note in report["protocol"].get("notes", []):
        print(f"  note: {note}")
    for path in report["extra"][:_MAX_PRINTED]:
        print(f"  extra: {path} (not in the protocol)")
    for p in report["problems"][:_MAX_PRINTED]:
        print(f"  {p['reason']}: {p['path']} ({'/'.join(p['splits'])} video_id {p['video_id']}): {p['detail']}")
    more = len(report["problems"]) - _MAX_PRINTED
    if more > 0:
        print(f"  ... {more} more problems in {out_dir / 'data_report.md'}")
    st = report["samples_checked"]
    print(f"checked {st['checked']} samples ({st['cached']} from the cache) in {st['seconds']} s")
    print(f"data fingerprint: {fp['fingerprint']}")
    print(f"report: {out_dir / 'data_report.json'}, {out_dir / 'data_report.md'}")
    print("verdict: " + ("the tree matches the protocol" if report["ok"] else
                         f"the tree DIFFERS from the protocol ({len(report['problems'])} problems, "
                         f"{sum(not c['ok'] for c in report['protocol'].get('checks', []))} protocol checks failed, "
                         f"{len(report['extra'])} extra items)"))


@guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0],
                                     epilog="Other arguments are config overrides, as for python -m fertrain.")
    parser.add_argument("--quick", action="store_true", help="read headers only (no pixel decoded)")
    parser.add_argument("--workers", type=int, default=None, help="threads (default: min(8, CPUs))")
    parser.add_argument("--out", default=None, help="report folder (default <paths.log_dir>/data_check/<data.name>)")
    parser.add_argument("--no-cache", action="store_true", help="ignore and do not write the result cache")
    args, overrides = parser.parse_known_args(argv)
    unknown = [o for o in overrides if o.startswith("--")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report, out_dir = run_check(overrides, quick=args.quick, workers=args.workers, out=args.out,
                                cache=not args.no_cache, progress=True)
    _print(report, out_dir)
    return EXIT_OK if report["ok"] else EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
