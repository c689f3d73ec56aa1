"""DFEW (Dynamic Facial Expression in the Wild): the official single-label 5-fold protocol.

Source: X. Jiang, Y. Zong, W. Zheng, C. Tang, W. Xia, C. Lu, J. Liu, "DFEW: A Large-Scale Database for
Recognizing Dynamic Facial Expressions in the Wild", ACM Multimedia 2020; database site
https://dfew-dataset.github.io/ (the data are licensed: request access there; fertrain ships none of it).

Expected layout (official release; only the files of the chosen ``fold`` are read)::

    <root>/
      EmoLabel_DataSplit/
        train(single-labeled)/set_1.csv ... set_5.csv   # header video_name,label
        test(single-labeled)/set_1.csv  ... set_5.csv
      Clip/
        clip_224x224/00001/*.jpg ...                     # source="frames" (default): one folder per clip
        original/00001.mp4 ...                           # source="videos" (folder and extension configurable)

``video_name`` is the clip number as an integer; folders and files are zero-padded to 5 digits.
``conf/data/dfew_video.yaml`` (``data=dfew_video``) reads the video files instead of the frame folders.

Layouts found as users unpack the release (each handled, and said in the log):

- the frame zips ``clip_224x224_part_<k>.zip`` unpack for some users into a doubled
  ``Clip/clip_224x224/clip_224x224/<id>/`` (public DFEW loaders hard-code that path); the doubled folder is found
  and used automatically. ``frames_dir="Clip/clip_224x224_16f"`` (``data.frames=clip_224x224_16f``) selects the
  release's 16-frame time-interpolated version (same rule for its nesting);
- the original videos come as ``data_part_1-2-3.zip`` ... and unpack as ``Clip/original/part_1 ... part_11/
  <n>.mp4`` with the clip number *not* zero-padded (the release README; public loaders index ``part_*`` folders);
  a flat ``Clip/original/<00001>.mp4`` folder is read too.

Release facts used by the dataset check (``python -m fertrain.data.check``; the release README): 16,372 clips
(``video_name`` 1..16372) of which 11,697 are single-labelled and in the 5-fold protocol (:data:`OFFICIAL_FOLD_SIZES`,
:data:`OFFICIAL_CLASS_TOTALS`); ``clip_224x224`` holds 15,906 clips (466 without a detected face dropped), so a
frame tree holds clips outside the single-label protocol: those are expected, not extra.

Label map (official 1-based index -> name; canonical ``class_names`` keep the official order, 0-based)::

    1 Happy  2 Sad  3 Neutral  4 Angry  5 Surprise  6 Disgust  7 Fear

Labels are mapped by class name (official index -> name -> canonical index), so a cross-dataset mapping can be
made by name.

Protocol: 5-fold cross-validation (paper Sec. 4); fold ``k`` trains on ``train(single-labeled)/set_k.csv`` and
tests on ``test(single-labeled)/set_k.csv``; results are reported per fold and averaged over the 5 folds.
DFEW has no validation set and published results select checkpoints on the test fold; by default ``"val"``
therefore returns the test fold as well (say so when reporting). ``val_from_train > 0`` instead carves a
deterministic, class-stratified fraction of the train clips as ``"val"`` (our choice, for honest model
selection).
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from fertrain.data.records import SPLITS, ClipRecord, DatasetError

log = logging.getLogger(__name__)

DFEW_CLASS_NAMES: tuple[str, ...] = ("Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear")
# Official 1-based label index -> class name (DFEW release, EmoLabel_DataSplit csvs).
OFFICIAL_LABEL_NAMES: dict[int, str] = {
    1: "Happy",
    2: "Sad",
    3: "Neutral",
    4: "Angry",
    5: "Surprise",
    6: "Disgust",
    7: "Fear",
}
NUM_FOLDS = 5
# Release facts (DFEW README of the release; checked against the real split files in tests/data/test_datasets.py)
OFFICIAL_FOLD_SIZES: dict[int, tuple[int, int]] = {1: (9356, 2341), 2: (9356, 2341), 3: (9357, 2340),
                                                   4: (9358, 2339), 5: (9361, 2336)}
OFFICIAL_CLASS_TOTALS: dict[str, int] = {"Happy": 2445, "Sad": 1894, "Neutral": 2669, "Angry": 2173, "Surprise": 1469,
                                         "Disgust": 145, "Fear": 902}
OFFICIAL_SINGLE_LABELLED = 11697
RELEASE_CLIPS = 16372  # video_name 1..16372 in the release (Clip/original)
SPLIT_DIR = "EmoLabel_DataSplit"
TRAIN_DIR = "train(single-labeled)"
TEST_DIR = "test(single-labeled)"
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")

_SPLIT_HEADER = ["video_name", "label"]
_COUNTS_HEADER = ["video_name", "num_frames"]
_MAX_LISTED = 5  # problems quoted in full in one error message

LAYOUT = """\
<root>/
  EmoLabel_DataSplit/
    train(single-labeled)/set_1.csv ... set_5.csv   (header: video_name,label)
    test(single-labeled)/set_1.csv  ... set_5.csv
  Clip/
    clip_224x224/<5-digit video_name>/*.jpg         (source="frames")
    original/<5-digit video_name>.mp4               (source="videos")"""


def clip_id(video_name: int) -> str:
    """DFEW clip id: the ``video_name`` integer zero-padded to 5 digits (``7 -> "00007"``)."""
    return f"{video_name:05d}"


def split_csv_path(root: Path, split_dir: str, fold: int) -> Path:
    """Path of an official split file: ``<root>/EmoLabel_DataSplit/<split_dir>/set_<fold>.csv``."""
    return root / SPLIT_DIR / split_dir / f"set_{fold}.csv"


def _read_int_csv(path: Path, header: list[str]) -> list[tuple[int, int, int]]:
    """Rows ``(first, second, line)`` of a two-column integer csv with the exact ``header``.

    ``line`` is the 1-based line number in the file (the header is line 1). Entirely blank lines are not data
    rows and are passed over (a trailing newline is common); anything else malformed raises.

    Raises:
        DatasetError: wrong header, wrong number of columns or a non-integer cell (names file and line).
    """
    rows: list[tuple[int, int, int]] = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        found_header = next(reader, None)
        if found_header is None or [c.strip() for c in found_header] != header:
            raise DatasetError(f"{path}: line 1: expected the header {','.join(header)!r}, found {found_header!r}")
        for row in reader:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DatasetError(f"{path}: line {line}: expected {len(header)} columns ({','.join(header)}), "
                                   f"found {len(row)}: {row!r}")
            try:
                first, second = (int(c.strip()) for c in row)
            except ValueError:
                raise DatasetError(f"{path}: line {line}: expected integers in {','.join(header)}, "
                                   f"found {row!r}") from None
            rows.append((first, second, line))
    return rows


def read_split_csv(path: Path) -> list[tuple[int, int, int]]:
    """Parse one official split file into ``(video_name, label, line)`` rows, label 0-based canonical.

    The official 1-based label is mapped by name (:data:`OFFICIAL_LABEL_NAMES`) to its index in
    :data:`DFEW_CLASS_NAMES`.

    Raises:
        DatasetError: wrong header, non-integer cell, label outside 1..7, non-positive or duplicated
            ``video_name`` (the message names the file and line).
    """
    name_to_index = {name: i for i, name in enumerate(DFEW_CLASS_NAMES)}
    rows = []
    first_line: dict[int, int] = {}
    for video_name, official, line in _read_int_csv(path, _SPLIT_HEADER):
        if official not in OFFICIAL_LABEL_NAMES:
            raise DatasetError(f"{path}: line {line}: label {official} for video_name {video_name} is outside "
                               f"the official 1..7 ({', '.join(f'{k} {v}' for k, v in OFFICIAL_LABEL_NAMES.items())})")
        if video_name <= 0:
            raise DatasetError(f"{path}: line {line}: expected a positive clip number as video_name, "
                               f"found {video_name}")
        if video_name in first_line:
            raise DatasetError(f"{path}: line {line}: video_name {video_name} is listed twice "
                               f"(first at line {first_line[video_name]})")
        first_line[video_name] = line
        rows.append((video_name, name_to_index[OFFICIAL_LABEL_NAMES[official]], line))
    return rows


def read_frame_counts(path: Path) -> dict[int, int]:
    """Parse a ``video_name,num_frames`` csv (frames per clip) into ``{video_name: num_frames}``.

    Raises:
        DatasetError: the file is missing, malformed, or lists a clip twice or with fewer than 1 frame.
    """
    if not path.is_file():
        raise DatasetError(f"DFEW frame_counts file {path} does not exist (expected a csv with header "
                           f"{','.join(_COUNTS_HEADER)})")
    counts: dict[int, int] = {}
    for video_name, num_frames, line in _read_int_csv(path, _COUNTS_HEADER):
        if num_frames < 1:
            raise DatasetError(f"{path}: line {line}: expected num_frames >= 1 for video_name {video_name}, "
                               f"found {num_frames}")
        if video_name in counts:
            raise DatasetError(f"{path}: line {line}: video_name {video_name} is listed twice")
        counts[video_name] = num_frames
    return counts


def count_frame_files(folder: Path) -> int:
    """Frames of a frame folder as the readers count them (``.jpg``/``.jpeg``/``.png``, hidden ``._*`` files
    excluded); 0 when the folder is missing or holds none."""
    from fertrain.data.readers import count_frame_files as _count

    return _count(folder)


def resolve_nested(folder: Path) -> tuple[Path, bool]:
    """``folder``, or ``folder/<same name>`` when the zip unpacked into a doubled folder (``clip_224x224/
    clip_224x224/``): ``(folder to use, nested)``. Doubled = ``folder`` holds a subfolder of its own name and no
    clip folder (5-digit name) of its own."""
    inner = folder / folder.name
    if not inner.is_dir():
        return folder, False
    with os.scandir(folder) as it:
        own_clips = any(e.name.isdigit() and e.is_dir() for e in it)
    return (folder, False) if own_clips else (inner, True)


def index_videos(folder: Path, ext: str) -> tuple[dict[int, Path], list[str]]:
    """``{video_name: file}`` of the DFEW videos under ``folder``: ``<n><ext>`` directly in it (zero-padded or
    not) and in its ``part_<k>`` / ``part<k>`` subfolders (any case), as the release unpacks; and the duplicates
    (the same ``video_name`` in two places, listed, the first in name order kept)."""
    found: dict[int, Path] = {}
    duplicates: list[str] = []
    folders = [folder] + sorted((d for d in folder.iterdir() if d.is_dir() and
                                 d.name.lower().replace("_", "").startswith("part")), key=lambda d: natural(d.name))
    for sub in folders:
        with os.scandir(sub) as it:
            for e in sorted(it, key=lambda e: e.name):
                stem, dot, suffix = e.name.rpartition(".")
                if not dot or "." + suffix.lower() != ext.lower() or not stem.isdigit() or e.name.startswith("."):
                    continue
                v = int(stem)
                if v in found:
                    duplicates.append(f"video_name {v}: {found[v]} and {sub / e.name}")
                    continue
                found[v] = sub / e.name
    return found, duplicates


def natural(text: str) -> tuple:
    import re

    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text))


class DFEW:
    """DFEW single-label clips of one official fold, as :class:`ClipRecord` lists.

    Records point at a frame folder (``source="frames"``) or a video file (``source="videos"``); nothing is
    decoded. ``ClipRecord.video_id`` is the 5-digit clip id, ``start_frame`` is 0, ``fps`` and ``subject`` are
    None (DFEW lists neither). All parsing happens in the constructor; a listed clip whose media is missing or
    empty becomes a record with 0 frames, which the datamodule reports under the unusable-sample policy
    (:mod:`fertrain.data.integrity`), so ``data.skip_corrupt=true`` covers it too.

    Args:
        root: DFEW root folder (layout in the module docstring).
        fold: official fold, 1..5.
        source: ``"frames"`` (``<root>/<frames_dir>/<id>/``) or ``"videos"`` (``<root>/<videos_dir>/<id><ext>``).
        frames_dir: frame-folder root relative to ``root``; default the official ``Clip/clip_224x224``.
        videos_dir: video-file root relative to ``root``; default ``Clip/original``.
        video_ext: video file extension including the dot; default ``.mp4``.
        frame_counts: optional ``video_name,num_frames`` csv (absolute, or relative to the working directory).
            When given, ``num_frames`` comes from it (no folder listing, no container probing); readers clamp
            over-reported counts. Required when ``check_media`` is False. Without it, ``source="videos"``
            counts frames with :func:`fertrain.data.readers.count_frames` (a full decode pass per video: slow
            for all of DFEW).
        check_media: look for every listed clip's folder/file (and, without ``frame_counts``, count its frames);
            when none is found the layout is wrong and the constructor raises. False parses the split files only,
            e.g. without the licensed media.
        val_from_train: fraction in ``[0, 1)``; 0 makes ``"val"`` the test fold (papers' practice), > 0 carves
            ``round(fraction * n_c)`` train clips of each class ``c`` as ``"val"`` (removed from ``"train"``).
        seed: seed of the ``val_from_train`` draw (numpy ``default_rng``).

    Raises:
        ValueError: an argument is out of range (fold not in 1..5, unknown source, bad fraction, ...).
        DatasetError: root, split file or frame_counts row missing or malformed; no listed clip has media (wrong
            folder); a clip listed in both train and test of the fold. The message names the file (and line) and
            what was expected.
    """

    class_names: tuple[str, ...] = DFEW_CLASS_NAMES

    def __init__(
        self,
        root: str | Path,
        fold: int = 1,
        source: str = "frames",
        frames_dir: str = "Clip/clip_224x224",
        videos_dir: str = "Clip/original",
        video_ext: str = ".mp4",
        frame_counts: str | Path | None = None,
        check_media: bool = True,
        val_from_train: float = 0.0,
        seed: int = 0,
    ) -> None:
        if isinstance(fold, bool) or not isinstance(fold, int) or not 1 <= fold <= NUM_FOLDS:
            raise ValueError(f"DFEW fold must be an integer in 1..{NUM_FOLDS} (official 5-fold protocol), "
                             f"got {fold!r}")
        if source not in ("frames", "videos"):
            raise ValueError(f"DFEW source must be 'frames' or 'videos', got {source!r}")
        if not 0.0 <= val_from_train < 1.0:
            raise ValueError(f"DFEW val_from_train must be in [0, 1), got {val_from_train!r}")
        if not check_media and frame_counts is None:
            raise ValueError("DFEW with check_media=False needs frame_counts (a video_name,num_frames csv): "
                             "without the media the number of frames of a clip is unknown")
        if source == "videos" and not video_ext.startswith("."):
            raise ValueError(f"DFEW video_ext must start with a dot (e.g. '.mp4'), got {video_ext!r}")
        self.root = Path(root)
        self.fold = fold
        self.source = source
        self.media_root = self.root / (frames_dir if source == "frames" else videos_dir)
        self.nested = False
        if source == "frames" and self.media_root.is_dir():
            self.media_root, self.nested = resolve_nested(self.media_root)
            if self.nested:
                log.info("DFEW: frames found in the doubled folder %s (as some unzip tools unpack the release)",
                         self.media_root)
        self.video_ext = video_ext
        self.video_index: dict[int, Path] = {}
        self.duplicates: list[str] = []
        if source == "videos" and self.media_root.is_dir():
            self.video_index, self.duplicates = index_videos(self.media_root, video_ext)
            if self.duplicates:
                log.warning("DFEW: %d clips found twice under %s (the first is used): %s", len(self.duplicates),
                            self.media_root, self.duplicates[:_MAX_LISTED])
        self.frame_counts_path = Path(frame_counts) if frame_counts is not None else None
        self.val_from_train = val_from_train
        self.seed = seed

        train_csv = split_csv_path(self.root, TRAIN_DIR, fold)
        test_csv = split_csv_path(self.root, TEST_DIR, fold)
        self._check_layout([train_csv, test_csv])
        train_rows = read_split_csv(train_csv)
        test_rows = read_split_csv(test_csv)
        overlap = sorted({v for v, _, _ in train_rows} & {v for v, _, _ in test_rows})
        if overlap:
            raise DatasetError(f"DFEW fold {fold}: {len(overlap)} clips are listed in both {train_csv} and "
                               f"{test_csv} (expected disjoint train/test), e.g. video_name {overlap[:_MAX_LISTED]}")

        counts = read_frame_counts(Path(frame_counts)) if frame_counts is not None else None
        listed = [(train_csv, r) for r in train_rows] + [(test_csv, r) for r in test_rows]
        num_frames = self._frame_counts(listed, counts, Path(frame_counts) if frame_counts else None, check_media)

        def to_records(rows: list[tuple[int, int, int]]) -> list[ClipRecord]:
            return [ClipRecord(path=self._media_path(v), label=label, video_id=clip_id(v), num_frames=num_frames[v])
                    for v, label, _ in rows]

        train = to_records(train_rows)
        self._records: dict[str, list[ClipRecord]] = {"test": to_records(test_rows)}
        if val_from_train > 0:
            self._records["train"], self._records["val"] = self._carve_val(train)
        else:
            self._records["train"], self._records["val"] = train, self._records["test"]

    def records(self, split: str) -> list[ClipRecord]:
        """Records of ``split``: ``"train"``/``"test"`` = train/test set of the fold; ``"val"`` see class doc.

        Raises:
            ValueError: ``split`` is not one of ``"train"``, ``"val"``, ``"test"``.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return list(self._records[split])

    def _media_path(self, video_name: int) -> Path:
        if self.source == "videos":
            return self.video_index.get(video_name, self.media_root / f"{clip_id(video_name)}{self.video_ext}")
        return self.media_root / clip_id(video_name)

    def _check_layout(self, csvs: list[Path]) -> None:
        """Raise one DatasetError naming every expected-but-missing item, with the expected layout."""
        if not self.root.is_dir():
            problem = f"DFEW root {self.root} does not exist or is not a folder"
        elif not (self.root / SPLIT_DIR).is_dir():
            problem = f"DFEW split folder {self.root / SPLIT_DIR} does not exist"
        else:
            missing = [p for p in csvs if not p.is_file()]
            if not missing:
                return
            problem = f"DFEW fold {self.fold}: split file(s) missing: " + ", ".join(str(p) for p in missing)
        raise DatasetError(f"{problem}. Fold {self.fold} needs {csvs[0]} and {csvs[1]}. "
                           f"Expected the official DFEW layout:\n{LAYOUT}")

    def _frame_counts(
        self,
        listed: list[tuple[Path, tuple[int, int, int]]],
        counts: dict[int, int] | None,
        counts_path: Path | None,
        check_media: bool,
    ) -> dict[int, int]:
        """``{video_name: num_frames}`` for every listed clip.

        A listed clip whose folder/file is missing or empty gets 0 frames: the datamodule reports it with the
        unusable-sample policy (error naming the file, or skip and count). When *no* listed clip has media, the
        layout is wrong and this raises, naming the folder looked in (and a doubled or differently named folder
        found beside it). A clip missing from ``frame_counts`` is an error (the list is the user's).
        """
        result: dict[int, int] = {}
        missing: list[str] = []
        uncounted: list[str] = []
        for csv_path, (video_name, _, line) in listed:
            where = f"{csv_path.parent.name}/{csv_path.name} line {line}: video_name {video_name}"
            path = self._media_path(video_name)
            exists = path.is_dir() if self.source == "frames" else path.is_file()
            if check_media and not exists:
                missing.append(f"{where} -> expected {path}")
            if counts is not None:
                if video_name not in counts:
                    uncounted.append(where)
                    continue
                result[video_name] = counts[video_name]
            elif not exists:
                result[video_name] = 0
            elif self.source == "frames":
                result[video_name] = count_frame_files(path)
            else:
                from fertrain.data.readers import count_frames  # lazy: only this path opens containers

                try:
                    result[video_name] = int(count_frames(path))  # decodable frames (one pass, cached)
                except DatasetError:
                    result[video_name] = 0  # cannot be opened / no frame: reported by the datamodule's check
        if uncounted:
            raise DatasetError(f"DFEW fold {self.fold}: {len(uncounted)} listed clips are missing from frame_counts "
                               f"{counts_path}; first {min(len(uncounted), _MAX_LISTED)}:\n  "
                               + "\n  ".join(uncounted[:_MAX_LISTED]))
        if check_media and missing and len(missing) == len(listed):
            raise DatasetError(f"DFEW fold {self.fold} under {self.root}: none of the {len(listed)} listed clips has a "
                               f"{self._kind()} under {self.media_root}{self._layout_hint()}; first "
                               f"{min(len(missing), _MAX_LISTED)}:\n  " + "\n  ".join(missing[:_MAX_LISTED])
                               + f"\nExpected the official DFEW layout:\n{LAYOUT}")
        if missing:
            log.warning("DFEW fold %d: %d of %d listed clips have no %s under %s%s (reported when the split is set "
                        "up), e.g. %s", self.fold, len(missing), len(listed), self._kind(), self.media_root,
                        self._layout_hint(), missing[:2])
        return result

    def _kind(self) -> str:
        return "frame folder" if self.source == "frames" else f"video file (*{self.video_ext})"

    def _layout_hint(self) -> str:
        """Why the media folder may be the wrong one: it is missing, or a doubled/other folder is beside it."""
        folder = self.media_root
        if not folder.is_dir():
            parent = folder.parent
            beside = sorted(d.name for d in parent.iterdir() if d.is_dir()) if parent.is_dir() else []
            return (f" (that folder does not exist; {parent} holds {beside})" if beside
                    else " (that folder does not exist)")
        return ""

    def layout_hint(self) -> str:
        """One line for error messages about missing clips (the media folder used, doubled or not)."""
        return (f"DFEW media folder: {self.media_root}" + (" (doubled folder found automatically)" if self.nested
                                                             else "") + self._layout_hint())

    def audit(self) -> dict:
        """Facts of the tree against the release, for the dataset check (nothing decoded).

        Reads the split files of all 5 folds (those present): per fold the train/test sizes against
        :data:`OFFICIAL_FOLD_SIZES`, class totals over the test folds against :data:`OFFICIAL_CLASS_TOTALS`, every
        single-labelled clip in exactly one test fold; and the media folder's items that no split file lists:
        within the release's numbering (1..16372: clips outside the single-label protocol) or *extra* (any other
        name). Returns ``{"checks": [{"name", "expected", "found", "ok"}], "extra": [paths], "outside_protocol": n,
        "duplicates": [...], "notes": [...]}``.
        """
        checks: list[dict] = []
        folds: dict[int, tuple[list, list]] = {}
        for k in range(1, NUM_FOLDS + 1):
            tr, te = split_csv_path(self.root, TRAIN_DIR, k), split_csv_path(self.root, TEST_DIR, k)
            if tr.is_file() and te.is_file():
                folds[k] = (read_split_csv(tr), read_split_csv(te))
        for k in range(1, NUM_FOLDS + 1):
            exp = OFFICIAL_FOLD_SIZES[k]
            found = (len(folds[k][0]), len(folds[k][1])) if k in folds else None
            checks.append({"name": f"fold {k} train/test clips", "expected": list(exp),
                           "found": list(found) if found else "split files missing", "ok": found == exp})
        if len(folds) == NUM_FOLDS:
            test_ids = [v for k in folds for v, _, _ in folds[k][1]]
            once = len(test_ids) == len(set(test_ids)) == OFFICIAL_SINGLE_LABELLED
            checks.append({"name": "test folds cover every single-labelled clip once", "expected":
                           OFFICIAL_SINGLE_LABELLED, "found": f"{len(set(test_ids))} distinct of {len(test_ids)}",
                           "ok": once})
            totals = Counter(DFEW_CLASS_NAMES[lab] for k in folds for _, lab, _ in folds[k][1])
            checks.append({"name": "class totals over the test folds", "expected": OFFICIAL_CLASS_TOTALS,
                           "found": {n: totals.get(n, 0) for n in OFFICIAL_CLASS_TOTALS},
                           "ok": all(totals.get(n, 0) == v for n, v in OFFICIAL_CLASS_TOTALS.items())})
        listed = {v for k in folds for part in folds[k] for v, _, _ in part}
        extra: list[str] = []
        outside = 0
        if self.media_root.is_dir():
            if self.source == "frames":
                items = [(e.name, Path(e.path)) for e in os.scandir(self.media_root) if e.is_dir()]
                names = [(int(n) if n.isdigit() else None, p) for n, p in items]
            else:
                names = [(v, p) for v, p in self.video_index.items()]
                names += [(None, Path(e.path)) for e in os.scandir(self.media_root)
                          if e.is_file() and not e.name.startswith(".")
                          and e.name.rpartition(".")[2].lower() == self.video_ext.lower().lstrip(".")
                          and not e.name.rpartition(".")[0].isdigit()]
            for v, path in sorted(names, key=lambda t: str(t[1])):
                if v is not None and v in listed:
                    continue
                if v is not None and 1 <= v <= RELEASE_CLIPS:
                    outside += 1
                else:
                    extra.append(str(path))
        notes = []
        if self.nested:
            notes.append(f"frames read from the doubled folder {self.media_root}")
        if outside:
            notes.append(f"{outside} clips of the release (video_name 1..{RELEASE_CLIPS}) are in the media folder but "
                         "in no single-label split file (multi-label clips; expected, not used)")
        return {"checks": checks, "extra": extra, "outside_protocol": outside, "duplicates": list(self.duplicates),
                "notes": notes}

    def _carve_val(self, train: list[ClipRecord]) -> tuple[list[ClipRecord], list[ClipRecord]]:
        """Split train into (train, val), ``round(val_from_train * n_c)`` val clips per class, csv order kept."""
        rng = np.random.default_rng(self.seed)
        labels = np.array([r.label for r in train])
        val_idx: set[int] = set()
        for c in range(len(self.class_names)):
            idx = np.flatnonzero(labels == c)
            n_val = int(np.floor(self.val_from_train * len(idx) + 0.5))
            val_idx.update(rng.permutation(idx)[:n_val].tolist())
        return ([r for i, r in enumerate(train) if i not in val_idx],
                [r for i, r in enumerate(train) if i in val_idx])


# ---------------------------------------------------------------------------------------------------------------
# Miniature tree: for tests and for trying the pipeline without the licensed data.

_CLASS_COLOURS = np.array([  # RGB, one per canonical class (our choice: far apart in colour and brightness)
    [230, 200, 40], [40, 60, 200], [128, 128, 128], [210, 30, 30], [40, 200, 200], [60, 160, 40], [140, 40, 160],
], dtype=np.float32)


def make_miniature_dfew(
    root: str | Path,
    clips_per_class: int = 3,
    num_frames: int = 8,
    size: int = 64,
    folds: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
    videos: bool = False,
) -> Path:
    """Write a tiny but valid DFEW tree (official layout) of synthetic JPEG frame folders.

    A tool for tests and for trying the pipeline without the licensed data. Clip ``j`` (``video_name = j + 1``,
    ``j`` over classes in canonical order, ``clips_per_class`` each) is in the test set of fold ``j % 5 + 1``
    and in the train set of every other fold, as in the official protocol. Each clip is a folder of
    ``num_frames`` RGB JPEGs ``00001.jpg ...`` of ``size`` x ``size`` pixels: a class colour (distinct hue and
    brightness per class) with horizontal stripes of class-dependent period that drift 1 pixel per frame, plus
    per-clip random offset and per-frame noise, so a model can learn the classes (our choice). Also writes
    ``<root>/frame_counts.csv`` (``video_name,num_frames``). With ``videos`` it also writes the same frames as
    ``Clip/original/<id>.mp4`` (MPEG-4 Part 2, ``mp4v``, 25 fps, via OpenCV) for ``source="videos"``. decord2 3.4
    cannot read some small widths (16, 32, 48, 96 pixels; the reader then falls back to OpenCV): use e.g. 40 or 64.

    Args:
        root: folder to write into (created; existing files of the same names are overwritten).
        clips_per_class: clips per class (>= 1).
        num_frames: frames per clip (>= 1).
        size: frame height and width in pixels (>= 8).
        folds: folds whose ``set_<k>.csv`` files are written (a subset of 1..5; clips are always assigned to
            all 5 test folds, so leaving a fold out makes a tree with missing split files).
        seed: seed of the offsets and noise (numpy ``default_rng``).
        videos: also write ``Clip/original/<id>.mp4`` files.

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: an argument is out of range.
    """
    from PIL import Image  # local: only the miniature tree writes images

    if clips_per_class < 1 or num_frames < 1 or size < 8:
        raise ValueError(f"make_miniature_dfew needs clips_per_class >= 1, num_frames >= 1, size >= 8; got "
                         f"{clips_per_class}, {num_frames}, {size}")
    if not set(folds) <= set(range(1, NUM_FOLDS + 1)):
        raise ValueError(f"make_miniature_dfew folds must be a subset of 1..{NUM_FOLDS}, got {tuple(folds)}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    official_index = {name: k for k, name in OFFICIAL_LABEL_NAMES.items()}
    frames_root = root / "Clip" / "clip_224x224"
    rows: list[tuple[int, int, int]] = []  # (video_name, official label, test fold)
    y = np.arange(size, dtype=np.float32)[:, None, None]  # (H, 1, 1) row coordinate
    for c, name in enumerate(DFEW_CLASS_NAMES):
        period = 4.0 + 2.0 * c  # pixels
        for _ in range(clips_per_class):
            j = len(rows)
            video_name = j + 1
            rows.append((video_name, official_index[name], j % NUM_FOLDS + 1))
            folder = frames_root / clip_id(video_name)
            folder.mkdir(parents=True, exist_ok=True)
            phase = rng.uniform(0, period)
            clip = []
            for t in range(num_frames):
                stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (y + t + phase) / period)  # (H, 1, 1) in [0, 1]
                img = _CLASS_COLOURS[c] * (0.6 + 0.4 * stripes)  # (H, 1, 3)
                img = np.broadcast_to(img, (size, size, 3)) + rng.normal(0, 6, (size, size, 3))
                clip.append(np.clip(img + 0.5, 0, 255).astype(np.uint8))
                Image.fromarray(clip[-1]).save(folder / f"{t + 1:05d}.jpg", quality=95)
            if videos:
                from fertrain.data.datasets.common import write_video

                write_video(root / "Clip" / "original" / f"{clip_id(video_name)}.mp4", np.stack(clip))

    for k in folds:
        for split_dir, in_split in ((TRAIN_DIR, lambda f: f != k), (TEST_DIR, lambda f: f == k)):
            path = split_csv_path(root, split_dir, k)
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = ["video_name,label"] + [f"{v},{lab}" for v, lab, f in rows if in_split(f)]
            path.write_text("\n".join(lines) + "\n")
    (root / "frame_counts.csv").write_text(
        "\n".join(["video_name,num_frames"] + [f"{v},{num_frames}" for v, _, _ in rows]) + "\n")
    return root
