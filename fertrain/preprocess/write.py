"""Stage 5 of face extraction: where the crops of many videos go, the per-video JSON, the summary table, resume.

Layouts (``LAYOUTS``; ``<rel>`` = the video's path relative to the input folder, without its suffix):

- ``mirror`` (default): ``<output>/<rel>/<frame>.jpg``, the input tree mirrored (AFEW's
  ``train_afew/<Class>/<clip>.avi`` -> ``faces/train_afew/<Class>/<clip>/``, as ``data=afew`` reads them).
- ``dfew``: ``<output>/Clip/clip_<S>x<S>/<id>/<frame>.jpg``, the DFEW release layout (``data=dfew``, whose
  ``frames_dir`` default is ``Clip/clip_224x224``); ``<id>`` is the video's file name as a 5-digit clip number
  (``1.mp4`` and ``00001.mp4`` -> ``00001``), so the names must be DFEW clip numbers.
- ``folder``: a class-per-folder tree for ``data=folder``: the input must be ``<Class>/<video>`` or
  ``<split>/<Class>/<video>`` with split ``train``, ``val`` or ``test``; written as
  ``<output>/[<split>/]<Class>/<video stem>/<frame>.jpg``.

``<frame>`` is the source frame index, 5 digits (``00000.jpg``): frames without a face get no file, so a
frame folder's files say which frames they are. Per video, ``<output>/face_tracks/<rel>.json`` holds the options,
versions, counts, spans and (under ``per_frame``) boxes, landmarks and scores of every frame;
``<output>/face_report.csv`` has one row per video (``REPORT_FIELDS``), rewritten after every run.

Resume: a video whose JSON exists with the same options and the same source file (size, modification time) is
finished and is not redone (``--redo`` redoes it). Frames are written into ``.<name>.partial`` and renamed into
place before the JSON is written, so an interrupted video leaves no JSON and is redone; a video with no face at
all gets no frame folder (its JSON and report row say so).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from fertrain.cli import UsageError
from fertrain.preprocess.pipeline import FaceOptions, FacePipeline

__all__ = ["LAYOUTS", "REPORT_FIELDS", "TRACKS_DIR", "frames_dir_for", "is_done", "plan", "write_report",
           "write_video"]

LAYOUTS = ("mirror", "dfew", "folder")
SPLIT_NAMES = ("train", "val", "test")
TRACKS_DIR = "face_tracks"
REPORT = "face_report.csv"
REPORT_FIELDS = ("video", "status", "frames", "fps", "width", "height", "detected", "filled", "face_frames",
                 "no_face_frames", "no_face_spans", "filled_spans", "multi_face_frames", "rejected", "written",
                 "seconds", "frames_dir", "error")


def frames_dir_for(layout: str, rel: Path, output: Path, size: int) -> Path:
    """The frame folder of the video at ``rel`` (relative to the input root, with suffix) under ``layout``.

    Raises:
        UsageError: unknown layout; a ``dfew`` name that is not a clip number; a ``folder`` path that is not
            ``<Class>/<video>`` or ``<split>/<Class>/<video>``.
    """
    if layout == "mirror":
        return output / rel.with_suffix("")
    if layout == "dfew":
        if not rel.stem.isdigit():
            raise UsageError(f"--layout dfew: video {rel} is not named by a DFEW clip number (expected e.g. "
                             f"00001.mp4, written to Clip/clip_{size}x{size}/00001/)")
        return output / "Clip" / f"clip_{size}x{size}" / f"{int(rel.stem):05d}"
    if layout == "folder":
        parts = rel.parts
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[0] not in SPLIT_NAMES):
            raise UsageError(f"--layout folder: video {rel} is not at <Class>/<video> or <split>/<Class>/<video> "
                             f"(split one of {', '.join(SPLIT_NAMES)}) under the input folder")
        return output / rel.with_suffix("")
    raise UsageError(f"--layout {layout!r} is not one of {', '.join(LAYOUTS)}")


def plan(videos: list[Path], root: Path, output: Path, layout: str, size: int) -> list[tuple[Path, Path, Path, Path]]:
    """``(video, rel, frames_dir, track_json)`` for every video, checked before any work.

    Raises:
        UsageError: a layout rule is broken, or two videos would write the same folder (both named).
    """
    out, seen = [], {}
    for video in videos:
        rel = Path(video.name) if root.is_file() else video.relative_to(root)
        frames = frames_dir_for(layout, rel, output, size)
        if frames in seen:
            raise UsageError(f"videos {seen[frames]} and {rel} would both be written to {frames}; rename one")
        seen[frames] = rel
        out.append((video, rel, frames, output / TRACKS_DIR / rel.with_suffix(".json")))
    return out


def _source(video: Path) -> dict[str, int]:
    st = video.stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_done(track_json: Path, video: Path, options: FaceOptions) -> dict | None:
    """The JSON record of a finished video when it matches this video and these options, else None."""
    if not track_json.is_file():
        return None
    try:
        record = json.loads(track_json.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("options") != options.to_dict() or record.get("source") != _source(video):
        return None
    return record


def _versions() -> dict[str, str]:
    import fertrain

    out = {"fertrain": getattr(fertrain, "__version__", "?"), "opencv": cv2.__version__, "numpy": np.__version__,
           "python": sys.version.split()[0]}
    try:
        import dlib

        out["dlib"] = dlib.__version__
    except ImportError:
        pass
    return out


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_video(pipeline: FacePipeline, video: Path, rel: Path, frames_dir: Path, track_json: Path,
                quality: int = 95, on_frame: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Extract one video into ``frames_dir`` and write its JSON record (module docstring).

    Returns:
        The record (without per-frame arrays): ``video``, ``status`` "done", the ``FaceTrack.summary`` counts and
        spans, ``written`` (JPEG files), ``seconds``, ``frames_dir`` (None when no frame has a face).

    Raises:
        DatasetError: the video cannot be read. OSError: a file cannot be written.
    """
    start = time.perf_counter()
    partial = frames_dir.with_name(f".{frames_dir.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    written = 0

    def sink(t: int, crop: np.ndarray | None) -> None:
        nonlocal written
        if crop is None:
            return
        file = partial / f"{t:05d}.jpg"
        if not cv2.imwrite(str(file), crop, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
            raise OSError(f"could not write {file}")
        written += 1

    try:
        track = pipeline.process(video, sink, on_frame)
        if frames_dir.exists():  # an older result with other options
            shutil.rmtree(frames_dir)
        if written:
            partial.rename(frames_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    summary = track.summary()
    record = {"video": str(rel), "status": "done", **summary, "written": written,
              "seconds": round(time.perf_counter() - start, 2),
              "frames_dir": str(frames_dir) if written else None, "error": None}
    full = {**record, "path": str(video.resolve()), "source": _source(video), "options": pipeline.options.to_dict(),
            "versions": _versions(), "per_frame": track.per_frame()}
    _atomic_write(track_json, json.dumps(full) + "\n")
    return record


def write_report(output: Path, rows: list[dict[str, Any]]) -> Path:
    """``<output>/face_report.csv``: one row per video (``REPORT_FIELDS``; spans as JSON lists)."""
    path = output / REPORT
    output.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{REPORT}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=REPORT_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "no_face_spans": json.dumps(row.get("no_face_spans")),
                             "filled_spans": json.dumps(row.get("filled_spans"))})
    tmp.replace(path)
    return path
