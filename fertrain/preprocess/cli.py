"""``python -m fertrain.preprocess``: extract aligned faces from every video under a folder.

Example::

    python -m fertrain.preprocess --input /data/DFEW/Clip/original --output /data/DFEW --layout dfew --workers 4

Videos run in parallel (``--workers``; each worker: one video at a time, one OpenCV/FFmpeg and one torch thread),
a progress bar counts them, finished videos are not redone (``fertrain.preprocess.write``), and a summary table of
every video is printed and written to ``<output>/face_report.csv``. Exit status (``fertrain.cli``): 0 every video
done (videos without any face included: they are listed); 1 some video failed (the others are finished; the
failures are in the table); 2 bad usage (options, input, layout).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

from fertrain.cli import EXIT_FAILURE, EXIT_OK, UsageError, guarded
from fertrain.data.records import DatasetError
from fertrain.preprocess.decode import find_videos
from fertrain.preprocess.detect import DETECTORS, available_detectors
from fertrain.preprocess.pipeline import ALIGN_MODES, FaceOptions, FacePipeline
from fertrain.preprocess.write import LAYOUTS, REPORT_FIELDS, is_done, plan, write_report, write_video

PROG = "python -m fertrain.preprocess"
log = logging.getLogger("fertrain.preprocess")

_worker: FacePipeline | None = None


def _init_worker(options: dict[str, Any]) -> None:
    """Worker process: one thread for OpenCV, FFmpeg and torch (videos are the parallel unit), then the models."""
    global _worker
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2

    cv2.setNumThreads(1)
    if "torch" in sys.modules or options.get("detector") == "mtcnn":
        import torch

        torch.set_num_threads(1)
    _worker = FacePipeline(FaceOptions.from_dict(options), decode_threads=1)


def _one(job: tuple[Path, Path, Path, Path], quality: int, pipeline: FacePipeline | None = None,
         on_frame=None) -> dict[str, Any]:
    video, rel, frames_dir, track_json = job
    try:
        return write_video(pipeline or _worker, video, rel, frames_dir, track_json, quality, on_frame)
    except (DatasetError, OSError) as err:  # this video failed; the others go on
        return {"video": str(rel), "status": "error", "error": str(err)}


def _parser() -> argparse.ArgumentParser:
    d = FaceOptions()
    p = argparse.ArgumentParser(
        prog=PROG, usage=f"{PROG} --input VIDEO_OR_DIR --output DIR [--layout {{{','.join(LAYOUTS)}}}] [options]",
        description="Detect, track and align the face in every frame of every video under --input; write face "
                    "crops (JPEG), a JSON track per video and a summary table (face_report.csv).")
    p.add_argument("--input", help="a video file, or a folder searched recursively for videos (required)")
    p.add_argument("--output", help="output folder: frame folders, face_tracks/, face_report.csv (required)")
    p.add_argument("--layout", choices=LAYOUTS, default="mirror",
                   help="mirror: <output>/<relative path>/; dfew: <output>/Clip/clip_<S>x<S>/<5-digit id>/; "
                        "folder: <output>/[<split>/]<Class>/<video>/ (default: mirror)")
    p.add_argument("--detector", choices=sorted(DETECTORS), default=d.detector,
                   help="face detector (default: dlib = dlib HOG; see --list-detectors)")
    p.add_argument("--align", choices=ALIGN_MODES, default=d.align,
                   help="similarity: 5-point least-squares alignment; none: square crop around the box "
                        "(default: similarity)")
    p.add_argument("--size", type=int, default=d.size, help=f"output side in pixels (default: {d.size})")
    p.add_argument("--margin", type=float, default=d.margin,
                   help="similarity: face-square fraction added on each side; none: square side = "
                        f"max(w, h) * (1 + margin) (default: {d.margin})")
    p.add_argument("--detect-side", type=int, default=None,
                   help="shorter side in pixels frames are reduced to before detecting (default: the detector's, "
                        "dlib 360, haar 180)")
    p.add_argument("--upsample", type=int, default=d.upsample,
                   help="dlib detectors: double the detection image N times to find smaller faces (4x slower "
                        f"each; default: {d.upsample})")
    p.add_argument("--max-gap", type=int, default=d.max_gap,
                   help=f"longest gap in frames bridged and filled inside a face run (default: {d.max_gap})")
    p.add_argument("--min-iou", type=float, default=d.min_iou,
                   help=f"IoU with the run's last box needed to continue a run (default: {d.min_iou})")
    p.add_argument("--min-run", type=int, default=d.min_run,
                   help=f"detections a run needs to be kept, shorter runs are rejected (default: {d.min_run})")
    p.add_argument("--smooth-window", type=int, default=d.smooth_window,
                   help="centred window in detected frames for smoothing boxes and landmarks "
                        f"(default: {d.smooth_window})")
    p.add_argument("--landmarks-model", default=None,
                   help="path of dlib's shape_predictor_5_face_landmarks.dat (default: the installed "
                        "face_recognition_models package, or $FERTRAIN_DLIB_MODELS)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality 1-100 (default: 95)")
    p.add_argument("--workers", type=int, default=1,
                   help="videos processed in parallel, one process each (default: 1)")
    p.add_argument("--redo", action="store_true", help="redo videos already finished with the same options")
    p.add_argument("--list-detectors", action="store_true",
                   help="print which detectors this installation can run, and exit")
    return p


def _table(rows: list[dict[str, Any]]) -> str:
    cols = ("video", "status", "frames", "detected", "filled", "no_face_frames", "written", "seconds",
            "no_face_spans")
    cells = [[json.dumps(r.get(c)) if c == "no_face_spans" else ("" if r.get(c) is None else str(r.get(c)))
              for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


@guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """The CLI (module docstring). Returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list_detectors:
        for name, why in available_detectors().items():
            print(f"{name:9s} {'available' if why is None else 'not available: ' + why}")
        return EXIT_OK
    if not args.input or not args.output:
        parser.error("the following arguments are required: " + ", ".join(
            f"--{k}" for k in ("input", "output") if not getattr(args, k)))
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if not 1 <= args.quality <= 100:
        raise UsageError(f"--quality must be in 1..100, got {args.quality}")
    try:
        options = FaceOptions(detector=args.detector, detect_side=args.detect_side, upsample=args.upsample,
                              align=args.align, size=args.size, margin=args.margin, max_gap=args.max_gap,
                              min_iou=args.min_iou, min_run=args.min_run, smooth_window=args.smooth_window,
                              landmarks_model=args.landmarks_model)
        pipeline = FacePipeline(options)  # loads the models: a missing one fails here, once
    except (ValueError, ImportError) as err:
        raise UsageError(str(err)) from None
    root, output = Path(args.input), Path(args.output)
    jobs = plan(find_videos(root), root, output, args.layout, options.size)
    rows: dict[Path, dict[str, Any]] = {}
    todo = []
    for job in jobs:
        done = None if args.redo else is_done(job[3], job[0], options)
        if done is not None:
            rows[job[0]] = {**{k: done.get(k) for k in REPORT_FIELDS}, "status": "done (earlier run)"}
        else:
            todo.append(job)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("%d videos: %d to do, %d already done (%s)", len(jobs), len(todo), len(jobs) - len(todo),
             pipeline.description)
    _run(todo, rows, pipeline if args.workers == 1 else None, options, args)
    ordered = [rows[job[0]] for job in jobs]
    report = write_report(output, ordered)
    print(_table(ordered))
    print(f"report: {report}")
    no_face = [r["video"] for r in ordered if r.get("status") != "error" and not r.get("face_frames")]
    if no_face:
        print(f"{len(no_face)} video(s) have no face in any frame (no frame folder): {', '.join(no_face[:10])}"
              f"{' ...' if len(no_face) > 10 else ''}")
    failed = [r for r in ordered if r.get("status") == "error"]
    if failed:
        print(f"{PROG}: error: {len(failed)} of {len(jobs)} videos failed (see {report}): "
              + "; ".join(f"{r['video']}: {r['error']}" for r in failed[:3]), file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _run(todo: list, rows: dict, pipeline: FacePipeline | None, options: FaceOptions,
         args: argparse.Namespace) -> None:
    """Process ``todo`` in this process (``pipeline``) or in ``args.workers`` processes, with a progress bar."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=not console.is_terminal) as bar:
        videos = bar.add_task("videos", total=len(todo))
        if pipeline is not None:
            frames = bar.add_task("frames", total=None)
            for job in todo:
                bar.reset(frames, description=f"frames of {job[1]}")
                rows[job[0]] = _one(job, args.quality, pipeline, lambda t: bar.update(frames, completed=t + 1))
                bar.advance(videos)
            return
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                 initargs=(options.to_dict(),)) as pool:
            futures = {pool.submit(_one, job, args.quality): job for job in todo}
            for fut in as_completed(futures):
                rows[futures[fut][0]] = fut.result()
                bar.advance(videos)


if __name__ == "__main__":
    sys.exit(main())
