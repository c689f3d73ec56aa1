"""What the dataset modules share: the canonical class order, mapping labels by class name, subject folds.

Canonical class order (ours; the common FER2013 order, also used by many FER codebases)::

    0 Angry  1 Disgust  2 Fear  3 Happy  4 Sad  5 Surprise  6 Neutral

:data:`CANONICAL_7` is used by AFEW; :data:`CANONICAL_6` (the same order without Neutral, so the 6-class indices
equal the 7-class ones) by MMI and BU-3DFE. DFEW keeps its official order (``fertrain.data.datasets.dfew``).
Labels move between datasets by *name*, never by index: :func:`map_by_name` (e.g. a model trained on AFEW tested
on MMI: AFEW index -> name -> MMI index; Neutral has no MMI index). Spellings the datasets use (``Anger``,
``Happiness``, ``sadness``, BU-3DFE's two-letter codes ``AN`` ... ``SU``, ``NE``) are normalised by
:func:`canonical_name`.

Subject-independent k-fold cross-validation (MMI, BU-3DFE): :class:`SubjectFoldDataset` reads a user-supplied
fold list (``subject,fold`` csv) or builds one deterministically with :func:`subject_folds` (sorted subjects
dealt round-robin), and writes it as ``folds.csv`` into the run directory (:meth:`SubjectFoldDataset.save_protocol`,
called by the datamodule).
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fertrain.data.records import SPLITS, ClipRecord, DatasetError

log = logging.getLogger(__name__)

CANONICAL_7: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
CANONICAL_6: tuple[str, ...] = CANONICAL_7[:6]

# lower-case spelling -> canonical name (datasets' own spellings and BU-3DFE file-name codes)
_SYNONYMS: dict[str, str] = {
    **{n.lower(): n for n in CANONICAL_7},
    "anger": "Angry", "an": "Angry",
    "disgusted": "Disgust", "di": "Disgust",
    "fearful": "Fear", "afraid": "Fear", "fe": "Fear",
    "happiness": "Happy", "joy": "Happy", "ha": "Happy",
    "sadness": "Sad", "sa": "Sad",
    "surprised": "Surprise", "su": "Surprise",
    "ne": "Neutral",
    "contempt": "Contempt",
}
MAX_LISTED = 5  # problems quoted in full in one error message


def canonical_name(name: str) -> str | None:
    """The canonical spelling of a class name (case-insensitive, synonyms above), or None when unknown.

    ``"happiness" -> "Happy"``, ``"AN" -> "Angry"``, ``"Bored" -> None``.
    """
    return _SYNONYMS.get(str(name).strip().lower())


def class_index(name: str, class_names: Sequence[str], where: str) -> int:
    """Index of class ``name`` in ``class_names``, matched by canonical name.

    Args:
        name: the label as the dataset writes it.
        class_names: the dataset's classes in canonical order.
        where: file/row/folder for the message.

    Raises:
        DatasetError: ``name`` is not one of ``class_names`` (message names ``where`` and the expected set).
    """
    canon = canonical_name(name)
    if canon is not None and canon in class_names:
        return class_names.index(canon)
    raise DatasetError(f"{where}: label {name!r} is outside the class set; expected one of "
                       f"{', '.join(class_names)} (case-insensitive; synonyms such as Anger/Happiness accepted)")


def map_by_name(labels: Sequence[int] | np.ndarray, from_names: Sequence[str], to_names: Sequence[str],
                missing: int | None = None) -> np.ndarray:
    """Map class indices between two label maps by class name (for cross-dataset train/test).

    Args:
        labels: int class indices into ``from_names``, any shape.
        from_names: class names of the source label map (index -> name).
        to_names: class names of the target label map.
        missing: index given to classes absent from ``to_names`` (e.g. -1 to drop them later); None raises.

    Returns:
        int64 array of the same shape: indices into ``to_names``.

    Raises:
        ValueError: an index is outside ``from_names``, or a class present in ``labels`` is absent from
            ``to_names`` and ``missing`` is None (the message names the class).
    """
    to_canon = {canonical_name(n) or n: i for i, n in enumerate(to_names)}
    table = np.array([to_canon.get(canonical_name(n) or n, -1) for n in from_names], dtype=np.int64)
    absent = [n for n, j in zip(from_names, table) if j < 0]
    arr = np.asarray(labels, dtype=np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= len(from_names)):
        raise ValueError(f"labels must be in 0..{len(from_names) - 1} (indices into {list(from_names)}), "
                         f"found {int(arr.min())}..{int(arr.max())}")
    used_absent = sorted({from_names[i] for i in np.unique(arr) if table[i] < 0}) if arr.size else []
    if used_absent and missing is None:
        raise ValueError(f"class(es) {used_absent} have no counterpart in {list(to_names)}; pass missing=-1 to map "
                         "them to -1")
    if absent:
        table[table < 0] = -1 if missing is None else missing
    return table[arr]


def natural_key(text: str) -> tuple:
    """Sort key with numbers compared as numbers: ``S2 < S10``."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text))


# ------------------------------------------------------------------------------------------------- subject folds
def subject_folds(subjects: Iterable[str], num_folds: int) -> dict[str, int]:
    """Deterministic subject-independent folds: sorted subjects dealt round-robin.

    Rule (ours): the distinct subject ids are sorted in natural order (``S2 < S10``); the ``i``-th (0-based) goes
    to fold ``i % num_folds + 1``. Stable across runs and machines (no RNG); fold sizes differ by at most one
    subject. Adding or removing a subject can move later subjects to other folds: keep the run's ``folds.csv``.

    Returns:
        ``{subject: fold}`` with folds 1-based.

    Raises:
        DatasetError: fewer distinct subjects than folds (a fold would be empty).
    """
    ordered = sorted(set(subjects), key=natural_key)
    if len(ordered) < num_folds:
        raise DatasetError(f"{num_folds}-fold subject-independent cross-validation needs at least {num_folds} "
                           f"subjects, found {len(ordered)}: {ordered}")
    return {s: i % num_folds + 1 for i, s in enumerate(ordered)}


def read_folds_csv(path: Path, num_folds: int) -> dict[str, int]:
    """Parse a user fold list: csv with header ``subject,fold`` (fold 1-based), one row per subject.

    Raises:
        DatasetError: the file is missing, has another header, a fold outside ``1..num_folds``, or a subject twice
            (names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"fold list {path} does not exist (expected a csv with header subject,fold)")
    folds: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [c.strip() for c in header] != ["subject", "fold"]:
            raise DatasetError(f"{path}: line 1: expected the header 'subject,fold', found {header!r}")
        for row in reader:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) != 2:
                raise DatasetError(f"{path}: line {line}: expected 2 columns (subject,fold), found {row!r}")
            subject, fold = row[0].strip(), row[1].strip()
            if not fold.isdigit() or not 1 <= int(fold) <= num_folds:
                raise DatasetError(f"{path}: line {line}: fold {fold!r} of subject {subject!r} is not an integer in "
                                   f"1..{num_folds}")
            if subject in folds:
                raise DatasetError(f"{path}: line {line}: subject {subject!r} is listed twice")
            folds[subject] = int(fold)
    return folds


def write_folds_csv(path: Path, folds: dict[str, int]) -> Path:
    """Write ``{subject: fold}`` as a ``subject,fold`` csv (readable by :func:`read_folds_csv`), sorted by fold then
    subject; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(folds.items(), key=lambda kv: (kv[1], natural_key(kv[0])))
    path.write_text("subject,fold\n" + "".join(f"{s},{k}\n" for s, k in rows))
    return path


class SubjectFoldDataset:
    """Base of the subject-independent k-fold protocols (MMI, BU-3DFE): lazy parsing, folds, splits.

    Subclasses set ``class_names`` and ``name`` and implement :meth:`_parse` (every labelled sequence of the
    dataset, each with a ``subject``). Parsing happens on the first :meth:`records` call (the datamodule's
    ``setup``), so instantiating a config needs no data.

    Splits of fold ``k``: ``"test"`` = sequences of the subjects in fold ``k``, ``"train"`` = all others.
    ``"val"`` = ``"test"`` (ours, as the published k-fold results on these datasets have no validation set; say so
    when reporting; results are averaged over the ``num_folds`` folds).

    Args:
        fold: the held-out fold, ``1..num_folds``.
        num_folds: folds of the cross-validation (10 in the usual protocol).
        folds: optional ``subject,fold`` csv (see :func:`read_folds_csv`); every subject of the dataset must be in
            it. None: :func:`subject_folds` (sorted subjects dealt round-robin).

    Raises:
        ValueError: ``fold`` not in ``1..num_folds`` or ``num_folds < 2``.
    """

    class_names: tuple[str, ...] = ()
    name = "dataset"

    def __init__(self, fold: int = 1, num_folds: int = 10, folds: str | Path | None = None) -> None:
        if isinstance(num_folds, bool) or not isinstance(num_folds, int) or num_folds < 2:
            raise ValueError(f"{self.name} num_folds must be an integer >= 2, got {num_folds!r}")
        if isinstance(fold, bool) or not isinstance(fold, int) or not 1 <= fold <= num_folds:
            raise ValueError(f"{self.name} fold must be an integer in 1..{num_folds}, got {fold!r}")
        self.fold = fold
        self.num_folds = num_folds
        self.folds_path = Path(folds) if folds else None
        self._records: dict[str, list[ClipRecord]] | None = None
        self.subject_fold: dict[str, int] = {}

    def _parse(self) -> list[ClipRecord]:  # pragma: no cover - abstract
        raise NotImplementedError

    def records(self, split: str) -> list[ClipRecord]:
        """Records of ``split`` of the chosen fold (see class doc).

        Raises:
            ValueError: ``split`` is not one of ``"train"``, ``"val"``, ``"test"``.
            DatasetError: the dataset or fold list is missing or malformed (raised by the first call).
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if self._records is None:
            self._records = self._split(self._parse())
        return list(self._records[split])

    def save_protocol(self, out_dir: Path) -> list[Path]:
        """Write the fold assignment used (``<out_dir>/folds.csv``, ``subject,fold``); returns the files written.

        Pass the file back as ``folds=`` to repeat the exact split.
        """
        if self._records is None:
            self.records("train")
        return [write_folds_csv(Path(out_dir) / "folds.csv", self.subject_fold)]

    def _split(self, records: list[ClipRecord]) -> dict[str, list[ClipRecord]]:
        subjects = {r.subject for r in records}
        if self.folds_path is not None:
            given = read_folds_csv(self.folds_path, self.num_folds)
            absent = sorted(subjects - set(given), key=natural_key)
            if absent:
                raise DatasetError(f"fold list {self.folds_path}: {len(absent)} subjects of {self.name} have no fold, "
                                   f"e.g. {absent[:MAX_LISTED]}; expected a row subject,fold for every subject")
            self.subject_fold = {s: given[s] for s in subjects}
        else:
            self.subject_fold = subject_folds(subjects, self.num_folds)
        test = [r for r in records if self.subject_fold[r.subject] == self.fold]
        train = [r for r in records if self.subject_fold[r.subject] != self.fold]
        if not test or not train:
            how = f"fold list {self.folds_path}" if self.folds_path else "the round-robin fold rule"
            raise DatasetError(f"{self.name} fold {self.fold}/{self.num_folds}: {how} leaves the "
                               f"{'test' if not test else 'train'} split empty ({len(subjects)} subjects); expected "
                               "subjects in every fold")
        sizes = Counter(self.subject_fold.values())
        log.info("%s fold %d/%d: %d train / %d test sequences; subjects per fold %s", self.name, self.fold,
                 self.num_folds, len(train), len(test), [sizes.get(k, 0) for k in range(1, self.num_folds + 1)])
        return {"train": train, "val": test, "test": test}


# ------------------------------------------------------------------------------------------- seeded splits
def assign_splits(
    labels: Sequence[int],
    fractions: Sequence[float],
    seed: int,
    groups: Sequence[str] | None = None,
) -> list[int]:
    """Assign samples to splits (index into ``fractions``): seeded, stratified by label, optionally grouped.

    Rule (ours). Without ``groups``: per class, a seeded permutation (numpy ``default_rng(seed)``) is cut into
    consecutive parts of ``round(f_k * n_c)`` samples (the last split takes the rest), so every split holds every
    class in proportion. With ``groups`` (e.g. subject ids): whole groups are assigned, never split: groups are
    taken in a seeded random order, larger first, and each goes to the split where it least increases the squared
    deviation of the per-class counts from their targets ``f_k * N_c`` (a greedy stratified group split, as
    scikit-learn's ``StratifiedGroupKFold`` does for folds); a split left empty while there are groups to spare
    takes the smallest group of the fullest split. Deterministic for a seed; one group never sits in two splits.

    Args:
        labels: class index per sample.
        fractions: target fraction per split (non-negative, summing to 1; a 0 split stays empty).
        seed: seed of the permutations.
        groups: group id per sample, or None.

    Returns:
        Split index per sample.

    Raises:
        ValueError: fractions negative or not summing to 1, or ``groups`` of another length.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or (fr < 0).any() or abs(fr.sum() - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {list(fractions)}")
    labels = np.asarray(labels, dtype=np.int64)
    out = np.zeros(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    if groups is None:
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            bounds = np.floor(np.cumsum(fr)[:-1] * len(idx) + 0.5).astype(int)
            for k, part in enumerate(np.split(idx, bounds)):
                out[part] = k
        return out.tolist()
    if len(groups) != len(labels):
        raise ValueError(f"groups has {len(groups)} entries for {len(labels)} samples")
    names = sorted(set(groups), key=natural_key)
    members = {g: [] for g in names}
    for i, g in enumerate(groups):
        members[g].append(i)
    classes = np.unique(labels)
    col = {c: j for j, c in enumerate(classes)}
    totals = np.bincount([col[c] for c in labels], minlength=len(classes)).astype(np.float64)
    target = fr[:, None] * totals[None, :]  # (S, C)
    counts = np.zeros_like(target)
    order = [names[i] for i in rng.permutation(len(names))]
    order.sort(key=lambda g: -len(members[g]))  # stable: ties keep the seeded order
    where: dict[str, int] = {}
    for g in order:
        vec = np.bincount([col[labels[i]] for i in members[g]], minlength=len(classes)).astype(np.float64)
        cost = ((counts + vec - target) ** 2).sum(1) - ((counts - target) ** 2).sum(1)
        cost[fr == 0] = np.inf
        k = int(np.argmin(cost))
        counts[k] += vec
        where[g] = k
    for k in np.flatnonzero(fr > 0):  # no wanted split left empty while groups can be moved
        if not any(v == k for v in where.values()):
            donors = [g for g in order if sum(1 for v in where.values() if v == where[g]) > 1]
            if donors:
                g = min(donors, key=lambda g: len(members[g]))
                where[g] = int(k)
    for g, k in where.items():
        out[members[g]] = k
    return out.tolist()


# ------------------------------------------------------------------------------------------- miniature media
_COLOURS = {  # RGB per canonical class (ours: far apart in colour and brightness)
    "Angry": (210, 30, 30), "Disgust": (60, 160, 40), "Fear": (140, 40, 160), "Happy": (230, 200, 40),
    "Sad": (40, 60, 200), "Surprise": (40, 200, 200), "Neutral": (128, 128, 128),
}


def synthetic_frames(class_name: str, num_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A learnable synthetic clip for miniature trees: uint8 ``(T, H, W, 3)`` RGB, ``H = W = size`` pixels.

    A class colour (per canonical name) with horizontal stripes of class-dependent period (pixels) drifting one
    pixel per frame, a random phase and per-frame Gaussian noise (ours, like ``make_miniature_dfew``).
    """
    canon = canonical_name(class_name) or class_name
    c = CANONICAL_7.index(canon) if canon in CANONICAL_7 else 0
    colour = np.array(_COLOURS.get(canon, (128, 128, 128)), dtype=np.float32)
    period = 4.0 + 2.0 * c
    phase = rng.uniform(0, period)
    y = np.arange(size, dtype=np.float32)[:, None, None]  # (H, 1, 1)
    out = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (y + t + phase) / period)
        img = np.broadcast_to(colour * (0.6 + 0.4 * stripes), (size, size, 3)) + rng.normal(0, 6, (size, size, 3))
        out[t] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return out


def write_video(path: Path, frames: np.ndarray, fps: float = 25.0) -> Path:
    """Write uint8 RGB ``(T, H, W, 3)`` frames as a video with OpenCV: ``.mp4`` as MPEG-4 Part 2 (``mp4v``), any
    other suffix (``.avi``) as Motion-JPEG (``MJPG``). For miniature trees and tests.

    Note: decord2 3.4 cannot read some small widths (16, 32, 48, 96 pixels; the reader then falls back to
    OpenCV); miniature trees use 40 or 56 pixels.

    Raises:
        RuntimeError: OpenCV could not open a writer for ``path``.
    """
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix.lower() == ".mp4" else "MJPG"))
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def write_frame_folder(folder: Path, frames: np.ndarray, first: int = 0) -> Path:
    """Write uint8 RGB ``(T, H, W, 3)`` frames as ``folder/00000.jpg ...`` (numbered from ``first``)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{first + t:05d}.jpg", quality=95)
    return folder
