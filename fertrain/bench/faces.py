"""Face pipeline benchmark: detectors side by side, then the whole extraction of the reference videos.

    python -m fertrain.bench.faces [--videos DIR] [--frames 40] [--detectors dlib haar]

(``fertrain-bench-faces``, or ``scripts/bench_faces.py`` in a checkout). ``--videos`` is a folder of real videos with
a ``no_face.csv`` of labelled no-face spans (``video,start_frame,end_frame``); default: ``data/real`` of the
project's reference data (:func:`fertrain.bench.common.shared_dir`), which a pip install does not have.

1. **Detection** (one process, one thread): every installed detector (``fertrain.preprocess.detect``) on the same
   frames (``--frames`` evenly spread frames of each video), each at its default detection side: frames/s of the
   detection stage alone (resize + detect) and with dlib's 5-point landmarks where the pipeline adds them, and
   per-frame errors against ``no_face.csv`` (a labelled no-face frame with a detection; a face frame without).
2. **End to end** (``--layout mirror`` extraction, one process): decode, detect, track, align/crop, JPEG write of
   every frame of every video, for the default pipeline (dlib HOG + 5-point similarity alignment) and for the Haar
   path of fertrain 0.1 (Haar, square crops) where OpenCV provides it. Prints frames/s and checks:

   - default end-to-end throughput >= 0.8x the Haar path's (issue 17);
   - every no-face span within 1 frame of ``no_face.csv``; no face on ``no_face.mp4``; no span on the Pexels video;
   - eye line of the aligned crops of Pexels frames 456-471 (landmarks re-detected on the crops) <= 3 degrees
     median.

A benchmark, not a test: figures depend on the machine and its load (printed); ``met``/``NOT met`` lines say
whether the targets hold on this run.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from fertrain.bench.common import cpu_model, load_line, markdown_table, shared_dir
from fertrain.cli import UsageError, guarded
from fertrain.preprocess import FaceOptions, FacePipeline
from fertrain.preprocess.align import eye_line_angle
from fertrain.preprocess.decode import find_videos, iter_frames
from fertrain.preprocess.detect import DETECTORS, available_detectors
from fertrain.preprocess.write import frames_dir_for, write_video

PROG = "python -m fertrain.bench.faces"


def _labels(folder: Path) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    path = folder / "no_face.csv"
    if path.is_file():
        for r in csv.DictReader(path.open()):
            out.setdefault(r["video"], []).append((int(r["start_frame"]), int(r["end_frame"])))
    return out


def _sample(videos: list[Path], per_video: int) -> list[tuple[str, int, np.ndarray]]:
    """``(video name, frame index, BGR frame)``: ``per_video`` evenly spread decoded frames of each video."""
    out = []
    for v in videos:
        frames = list(iter_frames(v))
        for t in np.unique(np.linspace(0, len(frames) - 1, per_video).round().astype(int)):
            out.append((v.name, int(t), frames[t]))
    return out


def bench_detectors(names: list[str], sample, labels) -> list[list[str]]:
    rows = []
    for name in names:
        pipe = FacePipeline(FaceOptions(detector=name))  # with the landmarks alignment needs
        side, det = pipe.side, pipe.detector
        small = []
        t0 = time.perf_counter()
        for _, _, bgr in sample:
            h, w = bgr.shape[:2]
            s = min(1.0, side / min(h, w))
            small.append(bgr if s >= 1 else cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA))
        t_resize = time.perf_counter() - t0
        t0 = time.perf_counter()
        found = [len(det.detect(img).boxes) for img in small]
        t_detect = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _, _, bgr in sample:
            pipe.detect(bgr)
        t_full = time.perf_counter() - t0
        misses = false = 0
        for (video, t, _), k in zip(sample, found):
            no_face = any(s <= t <= e for s, e in labels.get(video, []))
            false += int(no_face and k > 0)
            misses += int(not no_face and k == 0)
        n = len(sample)
        rows.append([name, str(side), str(n), f"{n / (t_resize + t_detect):.1f}",
                     f"{n / t_full:.1f}", str(misses), str(false), det.description])
    return rows


def end_to_end(options: FaceOptions, videos: list[Path], root: Path, out: Path) -> tuple[float, int, dict]:
    pipe = FacePipeline(options, decode_threads=1)
    records, frames = {}, 0
    t0 = time.perf_counter()
    for v in videos:
        rel = v.relative_to(root)
        rec = write_video(pipe, v, rel, frames_dir_for("mirror", rel, out, options.size),
                          out / "face_tracks" / rel.with_suffix(".json"))
        records[v.name] = rec
        frames += rec["frames"]
    return time.perf_counter() - t0, frames, records


def check_spans(records: dict, labels: dict) -> list[str]:
    bad = []
    for name, rec in records.items():
        n = rec["frames"]
        want = [(s, min(e, n - 1)) for s, e in labels.get(name, [])]
        got = [tuple(s) for s in rec["no_face_spans"]]
        if len(got) != len(want) or any(abs(a - c) > 1 or abs(b - d) > 1 for (a, b), (c, d) in zip(got, want)):
            bad.append(f"{name}: got {got}, labelled {want}")
    return bad


def eye_angles(frames_dir: Path, first: int, last: int) -> list[float]:
    pipe = FacePipeline(FaceOptions())
    out = []
    for t in range(first, last + 1):
        file = frames_dir / f"{t:05d}.jpg"
        if not file.is_file():
            continue
        det = pipe.detect(cv2.imread(str(file)))
        if len(det.boxes):
            out.append(eye_line_angle(det.landmarks[int(np.argmax(det.scores))], pipe.scheme))
    return out


@guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print its tables and met/NOT met lines. Returns 0.

    Raises:
        UsageError: no ``--videos`` given and no reference data here, or the folder holds no video.
    """
    shared = shared_dir()
    default_videos = None if shared is None or not (shared / "data" / "real").is_dir() else shared / "data" / "real"
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=Path, default=default_videos,
                   help="folder of videos (+ no_face.csv); default: the reference data's data/real "
                        f"({default_videos or 'not found here'})")
    p.add_argument("--frames", type=int, default=40, help="frames per video for the detector comparison")
    p.add_argument("--detectors", nargs="*", default=None,
                   help=f"detectors to compare (default: every installed one of {', '.join(DETECTORS)})")
    p.add_argument("--skip-end-to-end", action="store_true", help="only the detector comparison")
    args = p.parse_args(argv)
    if args.videos is None:
        raise UsageError("no videos to benchmark: pass --videos DIR (a folder of videos, optionally with a "
                         "no_face.csv); the default, data/real of the project's reference data (../shared beside a "
                         "checkout, or $FERTRAIN_SHARED), is not here")
    root = args.videos
    if not root.is_dir():
        raise UsageError(f"--videos {root}: no such folder")
    videos, labels = find_videos(root), _labels(root)  # DatasetError (exit 2) for a folder without videos
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # tables appear as they are measured
    cv2.setNumThreads(1)
    avail = available_detectors()
    names = args.detectors or [n for n, why in avail.items() if why is None]
    print(f"# Face pipeline benchmark\n\n{cpu_model()}; {load_line()}; OpenCV 1 thread\n")
    for n, why in avail.items():
        if why is not None:
            print(f"- {n}: not installed here ({why})")
    sample = _sample(videos, args.frames)
    print(f"\n## Detection: {len(sample)} frames ({args.frames} per video of {len(videos)})\n")
    print(markdown_table(["detector", "side", "frames", "detect fps", "+ landmarks fps", "misses", "false",
                          "what"], bench_detectors(names, sample, labels)))
    if args.skip_end_to_end:
        return 0
    print(f"\n## End to end: every frame of {len(videos)} videos, decode -> detect -> track -> crop -> JPEG\n")
    runs = {"default (dlib + 5-point similarity)": FaceOptions()}
    if avail.get("haar") is None:
        runs["Haar path of fertrain 0.1 (square crops)"] = FaceOptions(detector="haar", align="none")
    results, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, opts) in enumerate(runs.items()):
            secs, frames, records = end_to_end(opts, videos, root, Path(tmp) / str(i))
            results[label] = (frames / secs, records, Path(tmp) / str(i))
            rows.append([label, str(frames), f"{secs:.1f}", f"{frames / secs:.1f}",
                         str(sum(r["no_face_frames"] for r in records.values()))])
        print(markdown_table(["pipeline", "frames", "seconds", "frames/s", "no-face frames"], rows))
        print()
        fps_default, records, out = results["default (dlib + 5-point similarity)"]
        verdicts = []
        if len(results) > 1:
            fps_haar = results["Haar path of fertrain 0.1 (square crops)"][0]
            ratio = fps_default / fps_haar
            verdicts.append((ratio >= 0.8, f"default throughput {ratio:.2f}x the Haar path's (target >= 0.8x)"))
        else:
            print("Haar path not available here (no cv2.CascadeClassifier): throughput ratio not measured")
        if labels:
            bad = check_spans(records, labels)
            verdicts.append((not bad, "every no-face span within 1 frame of no_face.csv" + (f": {bad}" if bad else "")))
        if "no_face.mp4" in records:
            verdicts.append((records["no_face.mp4"]["face_frames"] == 0, "no face on no_face.mp4"))
        pexels = "WolfgangLanger_Pexels.mp4"
        if pexels in records:
            verdicts.append((records[pexels]["no_face_spans"] == [],
                             f"no no-face span on {pexels} (got {records[pexels]['no_face_spans']})"))
            angles = eye_angles(out / "WolfgangLanger_Pexels", 456, 471)
            med = float(np.median(np.abs(angles))) if angles else float("nan")
            verdicts.append((len(angles) >= 15 and med <= 3.0,
                             f"eye line of aligned crops 456-471: median {med:.2f} deg, max "
                             f"{max(map(abs, angles), default=float('nan')):.2f} deg, re-detected {len(angles)}/16 "
                             f"(target median <= 3)"))
    for ok, text in verdicts:
        print(f"- {'met' if ok else 'NOT met'}: {text}")
    print("\nper-video JSON of the default run: counts", json.dumps(
        {k: {f: v[f] for f in ("frames", "detected", "filled", "no_face_spans")} for k, v in records.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
