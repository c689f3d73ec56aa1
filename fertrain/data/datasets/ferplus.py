"""FERPlus: FER2013 images re-labelled by 10 crowd taggers each; 8 classes; official train/valid/test split.

Source: E. Barsoum, C. Zhang, C. Canton Ferrer, Z. Zhang, "Training Deep Networks for Facial Expression
Recognition with Crowd-Sourced Label Distribution", ICMI 2016 (arXiv:1608.01041), and its repository
https://github.com/microsoft/FERPlus (``fer2013new.csv``; ``src/ferplus.py``, whose label processing
``_process_data`` / ``load_folders`` this module follows; re-implemented, not copied). Images: FER2013 (Goodfellow
et al., ICONIP 2013; Kaggle "Challenges in Representation Learning: Facial Expression Recognition Challenge"),
48x48 grey; fertrain ships none of it.

Expected layout (``images="auto"`` takes the PNG folders when present, else ``fer2013.csv``)::

    <root>/
      data/FER2013Train/label.csv    # label_source="label_csv" (default): what the official training code reads
      data/FER2013Valid/label.csv    #   (no header: name,"(0, 0, 48, 48)",<10 vote counts>)
      data/FER2013Test/label.csv
      fer2013new.csv                 # label_source="fer2013new": Usage,Image name,neutral,happiness,surprise,
                                     #   sadness,anger,disgust,fear,contempt,unknown,NF (10 taggers' votes)
      fer2013.csv                    # images="pixels": emotion,pixels,Usage (row i <-> row i of fer2013new.csv)
      data/FER2013Train/fer0000000.png ... data/FER2013Valid/ data/FER2013Test/
                                     # images="png": written by the repo's src/generate_training_data.py;
                                     # png_dir=None finds them under <root>/data or <root>

Label source (``label_source``). Microsoft's training code (``src/train.py`` ``main``: ``FERPlusReader.create(
base_folder, train_folders, "label.csv", ...)`` for ``FER2013Train``/``FER2013Valid``/``FER2013Test``) reads the
per-folder ``label.csv`` files; ``src/ferplus.py`` ``FERPlusReader.load_folders`` parses each row as the image name,
the face box ``"(x, y, w, h)"`` (``row[1]``) and the 10 votes (``row[2:]``). Those files are the default. The root
``fer2013new.csv`` is the published table; its votes differ from label.csv on 1,073 / 246 / 282 images of
train / val / test, so the two sources give different sets. Sizes from the public files (``../shared/data/ferplus``,
pinned in ``tests/data/test_provider_layouts.py``), train / val / test:

==================  ==========================  ==================================
mode                label.csv                   fer2013new.csv (one record per image)
==================  ==========================  ==================================
majority            25,045 / 3,191 / 3,137      25,057 / 3,199 / 3,153 (25,060 rows)
probability, ce     27,947 train                27,953 train (27,956 rows)
multi_target        27,667 train                27,668 train (27,671 rows)
==================  ==========================  ==================================

``fer2013new.csv`` names four images twice: ``fer0006953``, ``fer0008403`` and ``fer0011785.png`` in Training
(identical votes) and ``fer0033120.png`` in PrivateTest with conflicting votes (5 neutral + 3 unknown vs 10 NF).
fertrain keeps one record per image, the first row (for ``fer0033120.png`` the votes that label.csv holds), lists
the duplicates in a warning and in :attr:`FERPlus.duplicates`, and counts the rows the vote rule kept separately
(:attr:`FERPlus.rows_kept`, the "rows" figures above, what a row-per-record reader gives). The image pixels of a
twice-named image are those of its *last* row: ``generate_training_data.py`` writes one PNG per row and the later
row overwrites the earlier, so PNG and pixel modes read the same image (for ``fer0033120.png`` the NF-voted one:
the official pipeline pairs the neutral votes with it; reported, not changed).

Usage -> split: Training -> ``"train"`` (28,709 rows), PublicTest -> ``"val"`` (3,589), PrivateTest -> ``"test"``
(3,589), before dropping. In ``images="pixels"`` mode all images are decoded once into a uint8 ``.npy`` cache
``(N, 48, 48, 3)`` under ``cache_dir`` (grey replicated to 3 channels); records address it by row
(``start_frame``).

Classes (official column order of fer2013new.csv): neutral, happiness, surprise, sadness, anger, disgust, fear,
contempt. Label modes (``label_mode`` for train, ``eval_label_mode`` for val/test; the official code evaluates
with "majority"), per image, from the 10 vote counts (unknown and NF included):

1. Votes of 1 are zeroed (outlier removal); S = the sum of the rest.
2. ``majority``: the top emotion if its votes > S/2, else no agreement. ``probability`` / ``crossentropy``: take the
   top vote value (all ties) repeatedly while the taken votes < 0.75 S and fewer than 3 entries are taken; an
   unknown/NF entry among them ends the loop (and is dropped again if others were taken before it); no agreement
   if the taken votes <= S/2 or more than 3 entries were taken. ``multi_target``: every entry with >= 0.3 S votes;
   no agreement if they sum to <= S/2.
3. The kept votes, normalised, are the distribution over the 10 columns; no agreement gives all mass to unknown.
4. The image is dropped if the distribution's first maximum is unknown or NF (counted per reason:
   ``no_agreement``, ``unknown``, ``not_face``); rows with an empty Image name (FER2013 images that FERPlus left
   out) are dropped and counted as ``no_image``. Otherwise ``target`` = the distribution over the 8 emotions,
   renormalised, and ``label`` = its argmax (for UAR/WAR).

The mode-specific step of the official ``_process_target`` (probability: draw one label per step; multi_target:
every kept emotion counts as a target) is the loss's job: :class:`fertrain.losses.soft_target.SoftTargetLoss`.

Parsing happens on the first :meth:`FERPlus.records` call (composing or instantiating a config needs no data).
"""

from __future__ import annotations

import csv
import logging
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from fertrain.data.images import FER2013_SIZE, LazySplitRecords, parse_fer2013_pixels
from fertrain.data.records import SPLITS, ClipRecord, DatasetError

log = logging.getLogger(__name__)

FERPLUS_CLASS_NAMES: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                                        "contempt")
VOTE_COLUMNS: tuple[str, ...] = FERPLUS_CLASS_NAMES + ("unknown", "NF")
LABEL_HEADER = ["Usage", "Image name", *VOTE_COLUMNS]
FER2013_HEADER = ["emotion", "pixels", "Usage"]
USAGE_SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
PNG_FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}
LABEL_MODES = ("majority", "probability", "crossentropy", "multi_target")
LABEL_SOURCES = ("label_csv", "fer2013new")
DROP_REASONS = ("no_image", "no_agreement", "unknown", "not_face")
_UNKNOWN, _NF = 8, 9
_SINGLE_VOTE = 1.0 + sys.float_info.epsilon
_MAX_LISTED = 5

LAYOUT = """\
<root>/
  data/FER2013Train/label.csv          (label_source=label_csv: name,"(0, 0, 48, 48)",10 votes; no header)
  fer2013new.csv                       (label_source=fer2013new: Usage,Image name,neutral,...,contempt,unknown,NF)
  fer2013.csv                          (images="pixels": emotion,pixels,Usage)
  data/FER2013Train/<Image name> ...   (images="png"; also FER2013Valid, FER2013Test)"""


def _distribution(votes, mode: str) -> tuple[list[float], bool]:
    """:func:`process_votes` on plain Python floats (the same operations in the same order; about 10x faster than
    numpy on 10 numbers, which matters for 35k rows)."""
    if mode not in LABEL_MODES:
        raise ValueError(f"FERPlus label mode must be one of {LABEL_MODES}, got {mode!r}")
    raw = [float(v) for v in votes]
    if len(raw) != len(VOTE_COLUMNS):
        raise ValueError(f"expected {len(VOTE_COLUMNS)} vote counts, got shape ({len(raw)},)")
    raw = [0.0 if v < _SINGLE_VOTE else v for v in raw]  # a single vote is an outlier
    total = sum(raw)
    emotion = [0.0] * len(raw)
    agreed = True
    if mode == "majority":
        top = max(raw)
        if top > 0.5 * total:
            emotion[raw.index(top)] = top  # the first maximum, as np.argmax in the official code
        else:
            agreed = False
    elif mode in ("probability", "crossentropy"):
        taken, count, valid = 0.0, 0, True
        while taken < 0.75 * total and count < 3 and valid:
            top = max(raw)
            for i in range(len(raw)):
                if raw[i] != top:
                    continue
                emotion[i], raw[i] = top, 0.0
                taken += top
                count += 1
                if i >= _UNKNOWN:  # unknown or NF ties with the current top: stop here
                    valid = False
                    if sum(emotion) > top:  # emotions were taken before it: leave unknown/NF out
                        emotion[i] = 0.0
                        count -= 1
                    break
        if sum(emotion) <= 0.5 * total or count > 3:
            agreed = False
    else:  # multi_target
        emotion = [v if v >= 0.3 * total else 0.0 for v in raw]
        if sum(emotion) <= 0.5 * total:
            agreed = False
    if not agreed:
        emotion = [0.0] * len(raw)
        emotion[_UNKNOWN] = 1.0
    norm = sum(emotion)
    return [v / norm for v in emotion], agreed


def process_votes(votes, mode: str) -> tuple[np.ndarray, bool]:
    """Label distribution of one image from its 10 vote counts (steps 1-3 of the module docstring).

    Args:
        votes: 10 non-negative vote counts in :data:`VOTE_COLUMNS` order.
        mode: one of :data:`LABEL_MODES`.

    Returns:
        ``(distribution, agreed)``: float64 ``(10,)`` summing to 1; ``agreed`` False when the rule found no
        agreement (the distribution is then all on unknown).

    Raises:
        ValueError: unknown mode or not 10 counts.
    """
    dist, agreed = _distribution(votes, mode)
    return np.array(dist, dtype=np.float64), agreed


def ferplus_label(votes, mode: str) -> tuple[int, tuple[float, ...]] | str:
    """Label and 8-class target of one image, or the reason it is dropped (step 4 of the module docstring).

    Returns:
        ``(label, target)`` with ``label`` in 0..7 and ``target`` 8 floats summing to 1; or one of
        ``"no_agreement"``, ``"unknown"``, ``"not_face"``.

    Raises:
        ValueError: as :func:`process_votes`.
    """
    dist, agreed = _distribution(votes, mode)
    if not agreed:
        return "no_agreement"
    winner = dist.index(max(dist))  # first maximum, as np.argmax in the official code
    if winner == _UNKNOWN:
        return "unknown"
    if winner == _NF:
        return "not_face"
    emotions = dist[:_UNKNOWN]
    norm = sum(emotions)
    return winner, tuple(v / norm for v in emotions)


def read_label_csv(path: Path) -> list[tuple[str, str, list[float], int]]:
    """Rows ``(usage, image_name, votes, line)`` of ``fer2013new.csv`` in file order (line 1 = header).

    Raises:
        DatasetError: wrong header or column count, a Usage outside Training/PublicTest/PrivateTest, a vote that is
            not a non-negative number (names the file and line).
    """
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != LABEL_HEADER:
            raise DatasetError(f"{path}: line 1: expected the header {','.join(LABEL_HEADER)!r}, found {header!r}")
        for row in reader:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(LABEL_HEADER):
                raise DatasetError(f"{path}: line {line}: expected {len(LABEL_HEADER)} columns, found {len(row)}: "
                                   f"{row!r}")
            usage, name = row[0].strip(), row[1].strip()
            if usage not in USAGE_SPLITS:
                raise DatasetError(f"{path}: line {line}: Usage {usage!r} is not one of {sorted(USAGE_SPLITS)}")
            try:
                votes = [float(v) for v in row[2:]]
            except ValueError:
                raise DatasetError(f"{path}: line {line}: expected vote counts in {','.join(VOTE_COLUMNS)}, found "
                                   f"{row[2:]!r}") from None
            if min(votes) < 0 or not all(np.isfinite(votes)):
                raise DatasetError(f"{path}: line {line}: vote counts must be finite and >= 0, found {row[2:]!r}")
            rows.append((usage, name, votes, line))
    return rows


def read_folder_label_csv(path: Path, usage: str) -> list[tuple[str, str, list[float], int, tuple[int, ...]]]:
    """Rows ``(usage, image_name, votes, line, box)`` of one per-folder ``label.csv`` (no header; ``name,
    "(x, y, w, h)",`` then 10 vote counts), as ``src/ferplus.py`` ``FERPlusReader.load_folders`` reads it.

    Raises:
        DatasetError: the file is missing; a row with another column count, a box that is not 4 integers in
            parentheses, a vote that is not a non-negative number (names the file and line).
    """
    if not path.is_file():
        raise DatasetError(f"FERPlus label file {path} does not exist (label_source=label_csv reads the per-folder "
                           f"label.csv of github.com/microsoft/FERPlus). Expected:\n{LAYOUT}")
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for row in reader:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) != 2 + len(VOTE_COLUMNS):
                hint = " (a header? label.csv has none: the header is fer2013new.csv's)" if line == 1 else ""
                raise DatasetError(f"{path}: line {line}: expected 12 columns (name,\"(x, y, w, h)\",10 votes), "
                                   f"found {len(row)}: {row!r}{hint}")
            name, box_text = row[0].strip(), row[1].strip()
            try:
                box = tuple(int(v) for v in box_text.strip("()").split(","))
                votes = [float(v) for v in row[2:]]
            except ValueError:
                hint = " (a header? label.csv has none: the header is fer2013new.csv's)" if line == 1 else ""
                raise DatasetError(f"{path}: line {line}: expected a box \"(x, y, w, h)\" and 10 vote counts, found "
                                   f"{row[1:]!r}{hint}") from None
            if len(box) != 4 or min(votes) < 0 or not all(np.isfinite(votes)):
                raise DatasetError(f"{path}: line {line}: expected a 4-integer box and finite votes >= 0, found "
                                   f"{row[1:]!r}")
            rows.append((usage, name, votes, line, box))
    return rows


_ROWS_CACHE: dict[tuple, list] = {}  # the last label source parsed (one entry)


def _stat(path: Path) -> tuple:
    try:
        st = path.stat()
        return str(path), st.st_size, st.st_mtime_ns
    except OSError:
        return str(path), None, None


class FERPlus(LazySplitRecords):
    """FERPlus images of the official split with crowd-vote labels, as :class:`ClipRecord` lists (clips of length 1).

    Splits (:meth:`records`): ``"train"``/``"val"``/``"test"`` = the FER2013Train / FER2013Valid / FER2013Test
    images (Usage Training / PublicTest / PrivateTest) that survive the label rule, one record per image.

    Records: ``num_frames = 1``; ``video_id`` = the Image name; ``label`` = argmax of the target; ``target`` = the
    8-class distribution of the split's label mode; ``origin`` = the label file and line. ``images="png"``:
    ``path`` = the PNG file. ``images="pixels"``: ``path`` = the ``.npy`` cache, ``start_frame`` = the row in
    fer2013.csv.

    Args:
        root: FERPlus root (layout in the module docstring).
        label_mode: label mode of ``"train"`` (:data:`LABEL_MODES`).
        eval_label_mode: label mode of ``"val"``/``"test"`` (official code: majority).
        images: ``"auto"``, ``"png"`` or ``"pixels"``.
        png_dir: folder holding FER2013Train/Valid/Test relative to ``root``; None tries ``data`` then ``.``.
        fer2013_csv: FER2013 pixel csv relative to ``root`` (or absolute).
        label_csv: the ``fer2013new.csv`` file relative to ``root`` (or absolute); read for
            ``label_source="fer2013new"``, and for ``images="pixels"`` (its rows map names to fer2013.csv rows).
        cache_dir: where ``images="pixels"`` writes its ``.npy`` cache; None = ``<root>/.cache``.
        check_media: ``images="png"``: look for every kept image and log how many are missing (the datamodule
            reports them under the unusable-sample policy).
        label_source: ``"label_csv"`` (default; the per-folder ``label.csv`` the official ``src/train.py`` reads,
            found beside the PNGs under ``png_dir``/``data``/``root``) or ``"fer2013new"``.

    Attributes (after the first :meth:`records`):
        dropped: ``{split: Counter(reason -> rows)}`` with reasons :data:`DROP_REASONS`.
        rows_kept: ``{split: rows}`` the vote rule kept, counting a twice-named image twice.
        duplicates: one dict per twice-named image: ``name``, ``split``, ``lines``, ``conflict`` (votes differ),
            ``kept`` (the line whose votes are used).

    Raises:
        ValueError: bad argument (from the constructor).
        DatasetError: from :meth:`records`: root, label file, pixel csv missing or malformed; the two csvs disagree
            (row count or Usage); a split left empty (names the file and line).
    """

    class_names: tuple[str, ...] = FERPLUS_CLASS_NAMES

    def __init__(
        self,
        root: str | Path,
        label_mode: str = "majority",
        eval_label_mode: str = "majority",
        images: str = "auto",
        png_dir: str | None = None,
        fer2013_csv: str = "fer2013.csv",
        label_csv: str = "fer2013new.csv",
        cache_dir: str | Path | None = None,
        check_media: bool = True,
        label_source: str = "label_csv",
    ) -> None:
        for name, mode in (("label_mode", label_mode), ("eval_label_mode", eval_label_mode)):
            if mode not in LABEL_MODES:
                raise ValueError(f"FERPlus {name} must be one of {LABEL_MODES}, got {mode!r}")
        if images not in ("auto", "png", "pixels"):
            raise ValueError(f"FERPlus images must be 'auto', 'png' or 'pixels', got {images!r}")
        if label_source not in LABEL_SOURCES:
            raise ValueError(f"FERPlus label_source must be one of {LABEL_SOURCES}, got {label_source!r}")
        self.root = Path(root)
        self.label_mode = label_mode
        self.eval_label_mode = eval_label_mode
        self.images = images
        self.png_dir = png_dir
        self.fer2013_csv = self.root / fer2013_csv
        self.label_csv = self.root / label_csv
        self.label_source = label_source
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.root / ".cache"
        self.check_media = check_media
        self.dropped: dict[str, Counter] = {}
        self.rows_kept: dict[str, int] = {}
        self.duplicates: list[dict] = []
        self._records: dict[str, list[ClipRecord]] | None = None

    # ------------------------------------------------------------------------------------------ loading
    def _png_root(self) -> Path | None:
        candidates = [self.root / self.png_dir] if self.png_dir is not None else [self.root / "data", self.root]
        for c in candidates:
            folder = c / PNG_FOLDERS["train"]
            if folder.is_dir():  # a folder holding only label.csv has no images
                with os.scandir(folder) as it:
                    if any(e.name.lower().endswith(".png") for e in it):
                        return c
        return None

    def _label_rows(self) -> list[tuple[str, str, list[float], str]]:
        """``(split, name, votes, where)`` of the chosen label source, in file order (parsed once per process and
        file version: several label modes of one tree share it)."""
        files = [self.label_csv] if self.label_source == "fer2013new" else []
        key = (self.label_source, str(self.root), self.png_dir, tuple(_stat(f) for f in files))
        if self.label_source == "label_csv":
            key += tuple(_stat(f) for f in self._label_csv_files())
        if key not in _ROWS_CACHE:
            _ROWS_CACHE.clear()
            _ROWS_CACHE[key] = self._parse_label_rows()
        return _ROWS_CACHE[key]

    def _label_csv_files(self) -> list[Path]:
        base = self._png_root() or next((c for c in ([self.root / self.png_dir] if self.png_dir else
                                                      [self.root / "data", self.root])
                                         if (c / PNG_FOLDERS["train"] / "label.csv").is_file()),
                                        self.root / (self.png_dir or "data"))
        return [base / folder / "label.csv" for folder in PNG_FOLDERS.values()]

    def split_sizes(self, mode: str | None = None, rows: bool = False) -> dict[str, int]:
        """Images per split under a label mode (default: the configured ``label_mode`` for train and
        ``eval_label_mode`` for val/test), one per image as :meth:`records` counts them, without building records;
        with ``rows`` the label rows the rule keeps instead (a twice-named image counted twice, as a row-per-record
        reader does: :attr:`rows_kept`).

        Raises:
            ValueError: unknown mode. DatasetError: as :meth:`records`.
        """
        seen: set[tuple[str, str]] = set()
        sizes = {s: 0 for s in SPLITS}
        for split, name, votes, _ in self._label_rows():
            if not name or ((split, name) in seen and not rows):
                continue
            seen.add((split, name))
            use = mode or (self.label_mode if split == "train" else self.eval_label_mode)
            if not isinstance(ferplus_label(votes, use), str):
                sizes[split] += 1
        return sizes

    def audit(self) -> dict:
        """Facts of the label files against the public FERPlus release, for the dataset check: the rows per split
        of the chosen source (label.csv: 28,558 / 3,579 / 3,573 named images; fer2013new.csv: 28,709 / 3,589 /
        3,589 rows, the FER2013 split, counted from the public files) and the twice-named images."""
        self.records("train")
        expected = ({"train": 28558, "val": 3579, "test": 3573} if self.label_source == "label_csv"
                    else {"train": 28709, "val": 3589, "test": 3589})
        found = Counter(split for split, _, _, _ in self._label_rows())
        checks = [{"name": f"{self.label_source} rows per split", "expected": expected,
                   "found": {s: found.get(s, 0) for s in SPLITS}, "ok": all(found.get(s, 0) == n
                                                                           for s, n in expected.items())}]
        notes = [f"{d['name']} ({d['split']}) is named twice{' with conflicting votes' if d['conflict'] else ''}; "
                 f"kept {d['kept']}" for d in self.duplicates]
        return {"checks": checks, "extra": [], "duplicates": [d["name"] for d in self.duplicates], "notes": notes}

    def _parse_label_rows(self) -> list[tuple[str, str, list[float], str]]:
        if self.label_source == "fer2013new":
            if not self.label_csv.is_file():
                raise DatasetError(f"FERPlus label file {self.label_csv} does not exist (label_source=fer2013new; "
                                   f"from github.com/microsoft/FERPlus). Expected:\n{LAYOUT}")
            return [(USAGE_SPLITS[u], n, v, f"{self.label_csv} line {ln}") for u, n, v, ln in
                    read_label_csv(self.label_csv)]
        out = []
        for split, path in zip(PNG_FOLDERS, self._label_csv_files()):
            out += [(split, n, v, f"{path} line {ln}") for _, n, v, ln, _ in read_folder_label_csv(path, split)]
        return out

    def _load(self) -> dict[str, list[ClipRecord]]:
        if not self.root.is_dir():
            raise DatasetError(f"FERPlus root {self.root} does not exist or is not a folder. Expected:\n{LAYOUT}")
        rows = self._label_rows()
        png_root = self._png_root() if self.images in ("auto", "png") else None
        mode = "png" if png_root is not None else "pixels"
        if self.images == "png" and png_root is None:
            raise DatasetError(f"FERPlus images='png': no {PNG_FOLDERS['train']} folder under "
                               f"{self.root / (self.png_dir or 'data')} or {self.root}. Expected:\n{LAYOUT}")
        pixel_row: dict[tuple[str, str], int] = {}
        cache = None
        if mode == "pixels":
            if not self.fer2013_csv.is_file():
                raise DatasetError(f"FERPlus needs its images: neither FER2013Train/Valid/Test PNG folders (under "
                                   f"{self.root / (self.png_dir or 'data')} or {self.root}) nor the FER2013 pixel "
                                   f"file {self.fer2013_csv} exist. Expected:\n{LAYOUT}")
            if not self.label_csv.is_file():
                raise DatasetError(f"FERPlus images='pixels' needs {self.label_csv} (fer2013new.csv): its rows say "
                                   f"which fer2013.csv row holds which image. Expected:\n{LAYOUT}")
            new_rows = read_label_csv(self.label_csv)
            cache = self._pixel_cache(new_rows)
            for index, (usage, name, _, _) in enumerate(new_rows):
                if name:
                    pixel_row[(USAGE_SPLITS[usage], name)] = index  # the last row of a name: the PNG on disk

        out: dict[str, list[ClipRecord]] = {s: [] for s in SPLITS}
        folders = {s: png_root / PNG_FOLDERS[s] for s in SPLITS} if png_root is not None else {}
        missing: list[str] = []
        first: dict[tuple[str, str], tuple[list[float], str]] = {}
        dup_lines: dict[tuple[str, str], list[str]] = {}
        for split in SPLITS:
            self.dropped[split] = Counter({r: 0 for r in DROP_REASONS})
            self.rows_kept[split] = 0
        for split, name, votes, where in rows:
            if not name:
                self.dropped[split]["no_image"] += 1
                continue
            result = ferplus_label(votes, self.label_mode if split == "train" else self.eval_label_mode)
            if not isinstance(result, str):
                self.rows_kept[split] += 1
            key = (split, name)
            if key in first:  # one record per image: the first row's votes (module docstring)
                dup_lines.setdefault(key, [first[key][1]]).append(where)
                if list(votes) != list(first[key][0]):
                    dup_lines[key].append("conflict")
                continue
            first[key] = (list(votes), where)
            if isinstance(result, str):
                self.dropped[split][result] += 1
                continue
            label, target = result
            if cache is not None:
                if key not in pixel_row:
                    missing.append(f"{where}: {name} -> not named in {self.label_csv.name}, so no fer2013.csv row")
                    continue
                rec = ClipRecord(path=cache, label=label, video_id=name, num_frames=1, start_frame=pixel_row[key],
                                 target=target, origin=where)
            else:
                path = folders[split] / name
                if self.check_media and not path.is_file():
                    missing.append(f"{where}: {name} -> expected {path}")
                rec = ClipRecord(path=path, label=label, video_id=name, num_frames=1, target=target, origin=where)
            out[split].append(rec)
        self.duplicates = [{"name": n, "split": sp, "lines": [w for w in lines if w != "conflict"],
                            "conflict": "conflict" in lines, "kept": lines[0]}
                           for (sp, n), lines in dup_lines.items()]
        if self.duplicates:
            log.warning("FERPlus (%s): %d images are named twice; one record each, from the first row: %s",
                        self.label_source, len(self.duplicates),
                        "; ".join(f"{d['name']} ({d['split']}, {'conflicting votes, ' if d['conflict'] else ''}"
                                  f"kept {d['kept']})" for d in self.duplicates[:_MAX_LISTED]))
        if missing:
            if cache is not None:
                raise DatasetError(f"FERPlus: {len(missing)} labelled images have no pixels; first "
                                   f"{min(len(missing), _MAX_LISTED)}:\n  " + "\n  ".join(missing[:_MAX_LISTED]))
            log.warning("FERPlus: %d labelled images are missing (reported when the split is set up); first %s",
                        len(missing), missing[:2])
        for split in SPLITS:
            d = self.dropped[split]
            mode_used = self.label_mode if split == "train" else self.eval_label_mode
            log.info("FERPlus %s (%s, %s labels, %s images): kept %d, dropped %d (%s)", split, self.label_source,
                     mode_used, mode, len(out[split]), sum(d.values()), ", ".join(f"{k}={d[k]}" for k in DROP_REASONS))
            if not out[split]:
                raise DatasetError(f"FERPlus: no {PNG_FOLDERS[split]} image of the {self.label_source} labels is left "
                                   f"for '{split}' (dropped: {dict(d)})")
        return out

    def _pixel_cache(self, rows: list[tuple[str, str, list[float], int]]) -> Path:
        """Decode fer2013.csv once into ``<cache_dir>/fer2013_<size>_<mtime>.npy``: uint8 ``(N, 48, 48, 3)``.

        Checks that fer2013.csv has as many rows as fer2013new.csv and the same Usage in every row.
        """
        stat = self.fer2013_csv.stat()
        cache = self.cache_dir / f"fer2013_{stat.st_size}_{stat.st_mtime_ns}.npy"
        usages = []
        with open(self.fer2013_csv, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != FER2013_HEADER:
                raise DatasetError(f"{self.fer2013_csv}: line 1: expected the header {','.join(FER2013_HEADER)!r}, "
                                   f"found {header!r}")
            build = not cache.is_file()
            images = []
            for row in reader:
                if not any(c.strip() for c in row):
                    continue
                line = reader.line_num
                if len(row) != len(FER2013_HEADER):
                    raise DatasetError(f"{self.fer2013_csv}: line {line}: expected 3 columns (emotion,pixels,Usage), "
                                       f"found {len(row)}")
                usages.append((row[2].strip(), line))
                if build:
                    images.append(parse_fer2013_pixels(row[1], f"{self.fer2013_csv}: line {line}"))
        if len(usages) != len(rows):
            raise DatasetError(f"{self.fer2013_csv} has {len(usages)} image rows but {self.label_csv} has "
                               f"{len(rows)}; expected the same rows in the same order")
        for (usage, line), (label_usage, name, _, label_line) in zip(usages, rows):
            if usage != label_usage:
                raise DatasetError(f"{self.fer2013_csv}: line {line}: Usage {usage!r} differs from {label_usage!r} "
                                   f"at {self.label_csv.name} line {label_line} ({name or 'no image name'}); "
                                   f"expected the same rows in the same order")
        if build:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            grey = np.stack(images)  # (N, 48, 48)
            tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, np.repeat(grey[..., None], 3, axis=3))  # (N, 48, 48, 3)
            tmp.replace(cache)
            log.info("FERPlus: decoded %d FER2013 images into %s", len(images), cache)
        return cache


# ---------------------------------------------------------------------------------------------------------------
# Miniature tree: for tests and for trying the pipeline without the licensed data.

def make_miniature_ferplus(
    root: str | Path,
    per_class: int = 2,
    dropped_rows: bool = True,
    png: bool = True,
    pixels: bool = True,
    label_csv: bool = True,
    duplicate: bool = False,
    seed: int = 0,
) -> Path:
    """Write a tiny but valid FERPlus tree: ``fer2013new.csv``, ``fer2013.csv`` and/or ``data/FER2013*/`` PNGs.

    For every split (Usage) and class, ``per_class`` images (48x48 grey, see
    :func:`fertrain.data.datasets.rafdb.class_image`) whose 10 votes give the class 7 votes, a second emotion 2
    and a third 1 (a majority under every label mode). With ``dropped_rows``, each split also gets one row with an
    unknown winner, one with an NF winner, one without agreement and one without Image name (the official file
    has such rows); with majority labels :class:`FERPlus` drops them (``dropped`` counts 1 per reason and
    split; multi_target keeps the no-agreement row: two emotions of 3 votes each hold > half of the votes).
    ``label_csv`` also writes the per-folder ``data/FER2013*/label.csv`` files (no header, box, the same votes) that
    ``label_source="label_csv"`` reads. ``duplicate`` names the first PrivateTest image a second time in
    ``fer2013new.csv`` with conflicting votes (all NF), as the public file does for ``fer0033120.png``.

    Raises:
        ValueError: ``per_class < 1`` or neither ``png`` nor ``pixels``.
    """
    from PIL import Image

    from fertrain.data.datasets.rafdb import class_image

    if per_class < 1 or not (png or pixels):
        raise ValueError(f"make_miniature_ferplus needs per_class >= 1 and png or pixels; got {per_class}, {png}, "
                         f"{pixels}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels, fer = [",".join(LABEL_HEADER)], [",".join(FER2013_HEADER)]
    k = 0
    for usage, split in USAGE_SPLITS.items():
        votes_rows: list[tuple[int, list[int]]] = []
        for c in range(len(FERPLUS_CLASS_NAMES)):
            for _ in range(per_class):
                v = [0] * 10
                v[c], v[(c + 1) % 8], v[(c + 2) % 8] = 7, 2, 1
                votes_rows.append((c, v))
        if dropped_rows:
            votes_rows += [(0, [1, 0, 0, 0, 0, 0, 0, 0, 8, 1]), (0, [2, 0, 0, 0, 0, 0, 0, 0, 0, 8]),
                           (0, [3, 3, 2, 2, 0, 0, 0, 0, 0, 0]), (-1, [10, 0, 0, 0, 0, 0, 0, 0, 0, 0])]
        folder_rows = []
        first_name = None
        for c, v in votes_rows:
            grey = class_image(max(c, 0), FER2013_SIZE, rng, grey=True)  # (48, 48)
            name = "" if c < 0 else f"fer{k:07d}.png"
            first_name = first_name or name
            k += 1
            labels.append(",".join([usage, name, *map(str, v)]))
            fer.append(f"{max(c, 0)},{' '.join(map(str, grey.reshape(-1)))},{usage}")
            if name:
                folder_rows.append(f'{name},"(0, 0, 48, 48)",' + ",".join(map(str, v)))
            if png and name:
                folder = root / "data" / PNG_FOLDERS[split]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(grey).save(folder / name, compress_level=0)
        if duplicate and split == "test":
            labels.append(",".join([usage, first_name, *map(str, [0] * 9 + [10])]))
            fer.append(f"0,{' '.join(['0'] * FER2013_SIZE * FER2013_SIZE)},{usage}")
        if label_csv:
            (root / "data" / PNG_FOLDERS[split]).mkdir(parents=True, exist_ok=True)
            (root / "data" / PNG_FOLDERS[split] / "label.csv").write_text("\n".join(folder_rows) + "\n")
    (root / "fer2013new.csv").write_text("\n".join(labels) + "\n")
    if pixels:
        (root / "fer2013.csv").write_text("\n".join(fer) + "\n")
    return root
