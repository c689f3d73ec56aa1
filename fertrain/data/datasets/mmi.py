"""MMI Facial Expression Database, posed basic-expression sequences, subject-independent 10-fold protocol.

Source: M. Pantic, M. Valstar, R. Rademaker, L. Maat, "Web-based database for facial expression analysis",
ICME 2005; M. Valstar, M. Pantic, "Induced disgust, happiness and surprise: an addition to the MMI facial expression
database", LREC workshop 2010. Database site https://mmifacedb.eu/ (licensed; fertrain ships none of it).

The release is a folder per session holding the video and per-session XML metadata (subject, emotion, AUs).
fertrain does not parse that XML; the user writes a label csv from it (our layout, documented here)::

    <root>/
      labels.csv                            # header session,subject,label  (label: a class name, e.g. Happy)
      faces/<subject>/<session>/00000.jpg   # source="frames" (default): extracted face frames (frames_dir)
      <subject>/<session>.avi               # source="videos" (videos_dir "." = root; video_ext .avi)

The frame folders are what the face extractor writes given the video tree as input
(``python -m fertrain.preprocess --input <root> --output <root>/faces``).
Usual selection (not enforced): the sequences with a frontal face and one of the six
basic emotions (205 sequences of 30 subjects in many papers), each onset -> apex -> offset, read whole.

Label map: 6 classes, no neutral, canonical order of :mod:`fertrain.data.datasets.common`:
Angry, Disgust, Fear, Happy, Sad, Surprise. ``label`` is matched by name (case-insensitive; Anger, Happiness,
Sadness, ... accepted).

Protocol: subject-independent 10-fold cross-validation (the usual MMI protocol): ``fold=k`` tests on the subjects
of fold ``k`` and trains on the others; ``"val"`` = ``"test"`` (no validation set in published results). Folds
come from ``folds`` (a ``subject,fold`` csv) or, by default, sorted subjects dealt round-robin
(:func:`fertrain.data.datasets.common.subject_folds`); the datamodule writes the folds used to
``<run_dir>/folds.csv``.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from fertrain.data.datasets.common import (CANONICAL_6, SubjectFoldDataset, class_index, synthetic_frames,
                                           write_frame_folder, write_video)
from fertrain.data.records import ClipRecord, DatasetError

log = logging.getLogger(__name__)

MMI_CLASS_NAMES: tuple[str, ...] = CANONICAL_6
LABELS_HEADER = ["session", "subject", "label"]
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")

LAYOUT = """\
<root>/
  labels.csv                           (header session,subject,label; label a class name)
  faces/<subject>/<session>/00000.jpg  (source="frames"; faces = frames_dir)
  <subject>/<session>.avi              (source="videos")
classes: Angry, Disgust, Fear, Happy, Sad, Surprise"""


class MMI(SubjectFoldDataset):
    """MMI sequences as :class:`ClipRecord` lists, one fold of subject-independent k-fold cross-validation.

    ``video_id`` is the session, ``subject`` the subject id, ``origin`` ``labels.csv line N``. Parsing happens on
    the first :meth:`records` call; nothing is decoded (videos: the container's frame count).

    Args:
        root: MMI root (layout in the module docstring).
        fold: held-out fold, ``1..num_folds``.
        num_folds: folds of the cross-validation (10).
        folds: optional ``subject,fold`` csv; None builds folds by the round-robin rule.
        source: ``"frames"`` or ``"videos"``.
        labels: label csv, relative to ``root`` or absolute (default ``labels.csv``).
        frames_dir: frame-folder root relative to ``root`` or absolute (default ``faces``).
        videos_dir: video root relative to ``root`` or absolute (default ``.``, the root itself).
        video_ext: video extension including the dot (default ``.avi``).

    Raises:
        ValueError: bad ``fold``/``num_folds``/``source``/``video_ext``.
        DatasetError (from :meth:`records`): root or label csv missing; a malformed row, a label outside the six
            classes, a session listed twice (names file and line); a subject missing from the fold list; an empty
            fold.
    """

    class_names: tuple[str, ...] = MMI_CLASS_NAMES
    name = "MMI"

    def __init__(self, root: str | Path, fold: int = 1, num_folds: int = 10, folds: str | Path | None = None,
                 source: str = "frames", labels: str = "labels.csv", frames_dir: str = "faces",
                 videos_dir: str = ".", video_ext: str = ".avi") -> None:
        super().__init__(fold=fold, num_folds=num_folds, folds=folds)
        if source not in ("frames", "videos"):
            raise ValueError(f"MMI source must be 'frames' or 'videos', got {source!r}")
        if not video_ext.startswith("."):
            raise ValueError(f"MMI video_ext must start with a dot (e.g. '.avi'), got {video_ext!r}")
        self.root = Path(root)
        self.source = source
        self.labels_path = self.root / labels
        self.media_root = self.root / (frames_dir if source == "frames" else videos_dir)
        self.video_ext = video_ext

    def _parse(self) -> list[ClipRecord]:
        if not self.root.is_dir():
            raise DatasetError(f"MMI root {self.root} does not exist or is not a folder. Expected (fertrain's MMI "
                               f"layout):\n{LAYOUT}")
        if not self.labels_path.is_file():
            raise DatasetError(f"MMI label file {self.labels_path} does not exist. Expected a csv with header "
                               f"{','.join(LABELS_HEADER)} written from the sessions' XML metadata:\n{LAYOUT}")
        records = []
        for session, subject, label, line in self._read_labels():
            path = self.media_root / subject / (session if self.source == "frames" else session + self.video_ext)
            num_frames, fps = _probe(path)
            records.append(ClipRecord(path=path, label=label, video_id=session, num_frames=num_frames, fps=fps,
                                      subject=subject, origin=f"{self.labels_path.name} line {line}"))
        if not records:
            raise DatasetError(f"MMI label file {self.labels_path} lists no sequence (empty); expected rows "
                               f"{','.join(LABELS_HEADER)}")
        return records

    def _read_labels(self) -> list[tuple[str, str, int, int]]:
        """Rows ``(session, subject, label index, line)`` of the label csv, checked."""
        path = self.labels_path
        rows: list[tuple[str, str, int, int]] = []
        first: dict[str, int] = {}
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [c.strip() for c in header] != LABELS_HEADER:
                raise DatasetError(f"{path}: line 1: expected the header {','.join(LABELS_HEADER)!r}, found {header!r}")
            for row in reader:
                line = reader.line_num
                if not any(c.strip() for c in row):
                    continue
                cells = [c.strip() for c in row]
                if len(cells) != 3 or not all(cells):
                    raise DatasetError(f"{path}: line {line}: expected 3 non-empty columns "
                                       f"({','.join(LABELS_HEADER)}), found {row!r}")
                session, subject, label = cells
                if session in first:
                    raise DatasetError(f"{path}: line {line}: session {session!r} is listed twice (first at line "
                                       f"{first[session]})")
                first[session] = line
                rows.append((session, subject, class_index(label, self.class_names, f"{path}: line {line}"), line))
        return rows


def _probe(path: Path) -> tuple[int, float | None]:
    """``(frames, fps)`` of a frame folder (image files; fps unknown) or video (container header); 0 frames when
    missing or unreadable (reported by the datamodule)."""
    if path.is_dir():
        with os.scandir(path) as it:
            return sum(1 for e in it if e.name.lower().endswith(FRAME_EXTENSIONS) and e.is_file()), None
    if not path.is_file():
        return 0, None
    from fertrain.data.readers import probe_video

    return probe_video(path)


def make_miniature_mmi(
    root: str | Path,
    subjects: int = 10,
    classes: Sequence[str] = MMI_CLASS_NAMES,
    num_frames: int = 6,
    size: int = 40,
    videos: bool = False,
    frames: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny MMI tree (fertrain's layout) of synthetic sequences, for tests and trying the pipeline.

    Subjects ``S001 ...`` each record one session per class in ``classes``; sessions are numbered ``1, 2, ...``
    as in MMI. Writes ``labels.csv``; ``frames`` writes ``faces/<subject>/<session>/00000.jpg ...``, ``videos``
    writes ``<subject>/<session>.avi`` (Motion-JPEG). Frames: ``size`` x ``size`` synthetic (see
    :func:`fertrain.data.datasets.common.synthetic_frames`).

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: an argument is out of range.
    """
    if subjects < 1 or num_frames < 1 or size < 8 or not (videos or frames):
        raise ValueError(f"make_miniature_mmi needs subjects, num_frames >= 1, size >= 8 and videos or frames; got "
                         f"{subjects}, {num_frames}, {size}, {videos}, {frames}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = [",".join(LABELS_HEADER)]
    session = 0
    for s in range(1, subjects + 1):
        subject = f"S{s:03d}"
        for name in classes:
            session += 1
            clip = synthetic_frames(name, num_frames, size, rng)
            if frames:
                write_frame_folder(root / "faces" / subject / str(session), clip)
            if videos:
                write_video(root / subject / f"{session}.avi", clip)
            lines.append(f"{session},{subject},{name}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root
