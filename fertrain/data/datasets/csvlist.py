"""Your own data as a CSV list (``data=csv``): one row per sample, video segments, frame folders or images.

File (``data.csv``; header required, columns in any order, names case-insensitive)::

    path,label[,split][,fold][,subject][,start_frame][,end_frame]
    clips/s01_a.mp4,happy,train,1,S01,0,119
    faces/s02_b/,sad,test,2,S02,,
    images/s03.png,neutral,,,S03,,

- ``path``: a video file, a frame folder or an image, relative to the CSV's folder (or absolute).
- ``label``: a class name; classes are the sorted distinct labels unless ``classes`` gives the order (a label
  outside ``classes`` is an error naming the row). Integer labels are kept as their text (``"0"``, ``"1"``...)
  and sorted numerically.
- ``split`` (optional): ``train``, ``val`` (or ``valid``/``validation``), ``test``; an empty cell or no column:
  the row takes part in the seeded split below.
- ``fold`` (optional): with ``fold=k`` the rows of fold ``k`` are the test set and ``val`` (unless ``val`` rows
  are given), all other rows train; this takes precedence over ``split``.
- ``subject`` (optional): with ``group_by_subject`` (default true when the column exists) the seeded split keeps
  each subject in one split only.
- ``start_frame``, ``end_frame`` (optional, videos and frame folders): the segment, 0-based and inclusive (as the
  shipped demo's ``annotations.csv``); an empty ``end_frame`` means to the last frame.

Rows without a split are split seeded and stratified by label, grouped by subject when asked
(:func:`fertrain.data.datasets.common.assign_splits`, ``fractions`` default 0.7 / 0.15 / 0.15). Errors name the
CSV file, the line and the column. The split used is written to ``<run_dir>/splits.csv`` (same columns, so it
reads back with ``data=csv``).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Sequence

from fertrain.data.datasets.common import natural_key
from fertrain.data.datasets.folder import DEFAULT_FRACTIONS, UserSplits, _check_fractions, media_frames, media_kind
from fertrain.data.records import ClipRecord, DatasetError

log = logging.getLogger(__name__)

COLUMNS = ("path", "label", "split", "fold", "subject", "start_frame", "end_frame")
_SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def _read_rows(path: Path) -> tuple[list[dict[str, str]], list[int]]:
    """Rows as ``{column: text}`` (lower-case column names) and their line numbers.

    Raises:
        DatasetError: missing file, no header, unknown or missing required columns, a row with another cell count.
    """
    if not path.is_file():
        raise DatasetError(f"data.csv {path} does not exist (expected a CSV with header path,label[,split,fold,"
                           "subject,start_frame,end_frame])")
    rows, lines = [], []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        unknown = [h for h in header if h not in COLUMNS]
        if not header or "path" not in header or "label" not in header or unknown:
            raise DatasetError(f"{path}: line 1: expected a header with path,label and optionally "
                               f"{','.join(COLUMNS[2:])}; found {header!r}"
                               + (f" (unknown: {unknown})" if unknown else ""))
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DatasetError(f"{path}: line {reader.line_num}: expected {len(header)} cells ({','.join(header)}),"
                                   f" found {len(row)}: {row!r}")
            rows.append({h: c.strip() for h, c in zip(header, row)})
            lines.append(reader.line_num)
    return rows, lines


class CSVDataset(UserSplits):
    """Samples listed in a CSV as :class:`ClipRecord` lists (file format and split rules in the module docstring).

    Records: ``path`` = the listed media, ``video_id`` = the path as written (plus ``@start-end`` for a segment),
    ``label``, ``subject``, ``start_frame`` and ``num_frames`` (the segment), ``origin`` = ``<csv> line N``.

    Args:
        csv_path: the CSV file (``data.csv``).
        classes: the class order (None: sorted distinct labels).
        fold: use the ``fold`` column: fold ``fold`` is the test set; None: the ``split`` column / seeded split.
        fractions: train / val / test fractions of the seeded split.
        seed: seed of the seeded split.
        group_by_subject: keep each subject in one split (None: when the ``subject`` column exists).
        check_media: look for every listed file (one ``stat``/listing each; frame counts need it).

    Raises:
        ValueError: bad fractions.
        DatasetError: the CSV is missing or malformed; a row with an unknown label, split or fold, a bad segment,
            or an unreadable media type (names the file, line and column).
    """

    def __init__(self, csv_path: str | Path, classes: Sequence[str] | None = None, fold: int | None = None,
                 fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0,
                 group_by_subject: bool | None = None, check_media: bool = True) -> None:
        self.csv_path = Path(csv_path)
        self.root = self.csv_path.parent
        self.fractions = _check_fractions(fractions)
        self.seed = seed
        self.fold = fold
        self.group_by_subject = group_by_subject
        self.check_media = check_media
        self.class_names = self.class_names_of(self.csv_path, classes)
        self._records = None

    @staticmethod
    def class_names_of(csv_path: str | Path, classes: Sequence[str] | None = None) -> tuple[str, ...]:
        """``classes`` when given, else the sorted distinct labels of the CSV (numbers numerically). Used by the
        config (``${fertrain.discover_classes:...}``).

        Raises:
            DatasetError: as :func:`_read_rows`, or no label at all.
        """
        if classes:
            return tuple(str(c) for c in classes)
        rows, _ = _read_rows(Path(csv_path))
        labels = {r["label"] for r in rows if r["label"]}
        if not labels:
            raise DatasetError(f"{csv_path}: no row has a label")
        return tuple(sorted(labels, key=natural_key))

    def _int(self, row: dict[str, str], column: str, line: int) -> int | None:
        text = row.get(column, "")
        if not text:
            return None
        try:
            value = int(text)
        except ValueError:
            raise DatasetError(f"{self.csv_path}: line {line}: column {column}: expected an integer, found "
                               f"{text!r}") from None
        if value < 0:
            raise DatasetError(f"{self.csv_path}: line {line}: column {column}: expected >= 0, found {value}")
        return value

    def _record(self, row: dict[str, str], line: int) -> ClipRecord:
        where = f"{self.csv_path}: line {line}"
        if not row["path"]:
            raise DatasetError(f"{where}: column path is empty")
        if row["label"] not in self.class_names:
            raise DatasetError(f"{where}: column label: {row['label']!r} is not one of the classes "
                               f"{list(self.class_names)}")
        path = Path(row["path"])
        path = path if path.is_absolute() else self.root / path
        start = self._int(row, "start_frame", line) or 0
        end = self._int(row, "end_frame", line)
        if end is not None and end < start:
            raise DatasetError(f"{where}: end_frame {end} < start_frame {start}; expected an inclusive, 0-based "
                               "segment")
        kind = media_kind(path) if self.check_media and path.exists() else None
        if kind is None and self.check_media and path.exists():
            raise DatasetError(f"{where}: column path: {path} is not a video, a frame folder or an image")
        if kind == "image" and (start or end):
            raise DatasetError(f"{where}: {path} is an image; start_frame/end_frame apply to videos and frame "
                               "folders only")
        if end is not None:
            num_frames = end - start + 1
        elif kind is not None:
            total, _ = media_frames(path, kind)
            num_frames = max(total - start, 0)
        else:
            num_frames = 0  # missing media: reported by the datamodule's unusable-sample policy
        fps = media_frames(path, kind)[1] if kind == "video" else None
        vid = row["path"] + (f"@{start}-{end if end is not None else ''}" if (start or end is not None) else "")
        return ClipRecord(path=path, label=self.class_names.index(row["label"]), video_id=vid,
                          num_frames=num_frames, start_frame=start, fps=fps, subject=row.get("subject") or None,
                          origin=f"{self.csv_path.name} line {line}")

    def _load(self) -> dict[str, list[ClipRecord]]:
        rows, lines = _read_rows(self.csv_path)
        given: dict[str, list[ClipRecord]] = {}
        pool: list[ClipRecord] = []
        if self.fold is not None:
            if "fold" not in rows[0] if rows else True:
                raise DatasetError(f"{self.csv_path}: data.fold={self.fold} needs a fold column")
            folds = set()
            for row, line in zip(rows, lines):
                k = self._int(row, "fold", line)
                if k is None:
                    raise DatasetError(f"{self.csv_path}: line {line}: column fold is empty (data.fold is set)")
                folds.add(k)
                rec = self._record(row, line)
                split = "val" if _SPLIT_NAMES.get(row.get("split", "").lower()) == "val" else (
                    "test" if k == self.fold else "train")
                given.setdefault(split, []).append(rec)
            if self.fold not in folds:
                raise DatasetError(f"{self.csv_path}: data.fold={self.fold} is not in the fold column "
                                   f"({sorted(folds)})")
            if "val" not in given:
                given["val"] = given.get("test", [])
            out = given
        else:
            for row, line in zip(rows, lines):
                rec = self._record(row, line)
                text = row.get("split", "").lower()
                if text and text not in _SPLIT_NAMES:
                    raise DatasetError(f"{self.csv_path}: line {line}: column split: {text!r} is not train, val or "
                                       "test")
                if text:
                    given.setdefault(_SPLIT_NAMES[text], []).append(rec)
                else:
                    pool.append(rec)
            if pool and given:
                log.info("data=csv: %d rows without a split join the seeded split of the missing splits",
                         len(pool))
            grouped = (self.group_by_subject if self.group_by_subject is not None
                       else bool(rows and "subject" in rows[0]))
            if grouped and any(r.subject is None for r in pool):
                first = next(r for r in pool if r.subject is None)
                raise DatasetError(f"{self.csv_path}: {first.origin}: column subject is empty but the split is grouped "
                                   "by subject (data.group_by_subject)")
            out = self._split_missing(given, pool, grouped)
        return self._finish(out, f"data=csv {self.csv_path}")
