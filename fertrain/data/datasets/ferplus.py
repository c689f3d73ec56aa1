"""FERPlus: FER2013 images re-labelled by 10 crowd taggers each; 8 classes; official train/valid/test split.

Source: E. Barsoum, C. Zhang, C. Canton Ferrer, Z. Zhang, "Training Deep Networks for Facial Expression
Recognition with Crowd-Sourced Label Distribution", ICMI 2016 (arXiv:1608.01041), and its repository
https://github.com/microsoft/FERPlus (``fer2013new.csv``; ``src/ferplus.py``, whose label processing
``_process_data`` / ``load_folders`` this module follows; re-implemented, not copied). Images: FER2013 (Goodfellow
et al., ICONIP 2013; Kaggle "Challenges in Representation Learning: Facial Expression Recognition Challenge"),
48x48 grey; fertrain ships none of it.

Expected layout (``images="auto"`` takes the PNG folders when present, else ``fer2013.csv``)::

    <root>/
      fer2013new.csv                 # Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,
                                     #   contempt,unknown,NF   (vote counts of 10 taggers per image)
      fer2013.csv                    # images="pixels": emotion,pixels,Usage (row i <-> row i of fer2013new.csv)
      data/FER2013Train/fer0000000.png ... data/FER2013Valid/ data/FER2013Test/
                                     # images="png": written by the repo's src/generate_training_data.py;
                                     # png_dir=None finds them under <root>/data or <root>

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
DROP_REASONS = ("no_image", "no_agreement", "unknown", "not_face")
_UNKNOWN, _NF = 8, 9
_MAX_LISTED = 5

LAYOUT = """\
<root>/
  fer2013new.csv                       (Usage,Image name,neutral,...,contempt,unknown,NF)
  fer2013.csv                          (images="pixels": emotion,pixels,Usage)
  data/FER2013Train/<Image name> ...   (images="png"; also FER2013Valid, FER2013Test)"""


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
    if mode not in LABEL_MODES:
        raise ValueError(f"FERPlus label mode must be one of {LABEL_MODES}, got {mode!r}")
    raw = np.array(votes, dtype=np.float64)
    if raw.shape != (len(VOTE_COLUMNS),):
        raise ValueError(f"expected {len(VOTE_COLUMNS)} vote counts, got shape {raw.shape}")
    raw[raw < 1.0 + sys.float_info.epsilon] = 0.0  # a single vote is an outlier
    total = raw.sum()
    emotion = np.zeros_like(raw)
    agreed = True
    if mode == "majority":
        top = raw.max()
        if top > 0.5 * total:
            emotion[int(np.argmax(raw))] = top
        else:
            agreed = False
    elif mode in ("probability", "crossentropy"):
        taken, count, valid = 0.0, 0, True
        while taken < 0.75 * total and count < 3 and valid:
            top = raw.max()
            for i in range(len(raw)):
                if raw[i] != top:
                    continue
                emotion[i], raw[i] = top, 0.0
                taken += top
                count += 1
                if i >= _UNKNOWN:  # unknown or NF ties with the current top: stop here
                    valid = False
                    if emotion.sum() > top:  # emotions were taken before it: leave unknown/NF out
                        emotion[i] = 0.0
                        count -= 1
                    break
        if emotion.sum() <= 0.5 * total or count > 3:
            agreed = False
    else:  # multi_target
        keep = raw >= 0.3 * total
        emotion[keep] = raw[keep]
        if emotion.sum() <= 0.5 * total:
            agreed = False
    if not agreed:
        emotion = np.zeros_like(raw)
        emotion[_UNKNOWN] = 1.0
    return emotion / emotion.sum(), agreed


def ferplus_label(votes, mode: str) -> tuple[int, tuple[float, ...]] | str:
    """Label and 8-class target of one image, or the reason it is dropped (step 4 of the module docstring).

    Returns:
        ``(label, target)`` with ``label`` in 0..7 and ``target`` 8 floats summing to 1; or one of
        ``"no_agreement"``, ``"unknown"``, ``"not_face"``.

    Raises:
        ValueError: as :func:`process_votes`.
    """
    dist, agreed = process_votes(votes, mode)
    winner = int(np.argmax(dist))  # first maximum, as np.argmax in the official code
    if not agreed:
        return "no_agreement"
    if winner == _UNKNOWN:
        return "unknown"
    if winner == _NF:
        return "not_face"
    emotions = dist[:_UNKNOWN]
    return winner, tuple(float(v) for v in emotions / emotions.sum())


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


class FERPlus(LazySplitRecords):
    """FERPlus images of the official split with crowd-vote labels, as :class:`ClipRecord` lists (clips of length 1).

    Splits (:meth:`records`): ``"train"``/``"val"``/``"test"`` = the Training / PublicTest / PrivateTest rows that
    survive the label rule.

    Records: ``num_frames = 1``; ``video_id`` = the Image name; ``label`` = argmax of the target; ``target`` = the
    8-class distribution of the split's label mode. ``images="png"``: ``path`` = the PNG file. ``images="pixels"``:
    ``path`` = the ``.npy`` cache, ``start_frame`` = the row in fer2013.csv.

    Args:
        root: folder of ``fer2013new.csv`` (layout in the module docstring).
        label_mode: label mode of ``"train"`` (:data:`LABEL_MODES`).
        eval_label_mode: label mode of ``"val"``/``"test"`` (official code: majority).
        images: ``"auto"``, ``"png"`` or ``"pixels"``.
        png_dir: folder holding FER2013Train/Valid/Test relative to ``root``; None tries ``data`` then ``.``.
        fer2013_csv: FER2013 pixel csv relative to ``root`` (or absolute).
        label_csv: the FERPlus label file relative to ``root`` (or absolute).
        cache_dir: where ``images="pixels"`` writes its ``.npy`` cache; None = ``<root>/.cache``.
        check_media: ``images="png"``: check that every kept image exists.

    Attributes:
        dropped: ``{split: Counter(reason -> rows)}`` with reasons :data:`DROP_REASONS` (after :meth:`records`).

    Raises:
        ValueError: bad argument (from the constructor).
        DatasetError: from :meth:`records`: root, label csv, pixel csv or an image missing or malformed; the two
            csvs disagree (row count or Usage); a split left empty (names the file and line).
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
    ) -> None:
        for name, mode in (("label_mode", label_mode), ("eval_label_mode", eval_label_mode)):
            if mode not in LABEL_MODES:
                raise ValueError(f"FERPlus {name} must be one of {LABEL_MODES}, got {mode!r}")
        if images not in ("auto", "png", "pixels"):
            raise ValueError(f"FERPlus images must be 'auto', 'png' or 'pixels', got {images!r}")
        self.root = Path(root)
        self.label_mode = label_mode
        self.eval_label_mode = eval_label_mode
        self.images = images
        self.png_dir = png_dir
        self.fer2013_csv = self.root / fer2013_csv
        self.label_csv = self.root / label_csv
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.root / ".cache"
        self.check_media = check_media
        self.dropped: dict[str, Counter] = {}
        self._records: dict[str, list[ClipRecord]] | None = None

    # ------------------------------------------------------------------------------------------ loading
    def _png_root(self) -> Path | None:
        candidates = [self.root / self.png_dir] if self.png_dir is not None else [self.root / "data", self.root]
        for c in candidates:
            if (c / PNG_FOLDERS["train"]).is_dir():
                return c
        return None

    def _load(self) -> dict[str, list[ClipRecord]]:
        if not self.root.is_dir():
            raise DatasetError(f"FERPlus root {self.root} does not exist or is not a folder. Expected:\n{LAYOUT}")
        if not self.label_csv.is_file():
            raise DatasetError(f"FERPlus label file {self.label_csv} does not exist (from github.com/microsoft/"
                               f"FERPlus). Expected:\n{LAYOUT}")
        rows = read_label_csv(self.label_csv)
        png_root = self._png_root() if self.images in ("auto", "png") else None
        mode = "png" if png_root is not None else "pixels"
        if self.images == "png" and png_root is None:
            raise DatasetError(f"FERPlus images='png': no {PNG_FOLDERS['train']} folder under "
                               f"{self.root / (self.png_dir or 'data')} or {self.root}. Expected:\n{LAYOUT}")
        if mode == "pixels" and not self.fer2013_csv.is_file():
            raise DatasetError(f"FERPlus needs its images: neither FER2013Train/Valid/Test PNG folders (under "
                               f"{self.root / (self.png_dir or 'data')} or {self.root}) nor the FER2013 pixel file "
                               f"{self.fer2013_csv} exist. Expected:\n{LAYOUT}")
        cache = self._pixel_cache(rows) if mode == "pixels" else None

        out: dict[str, list[ClipRecord]] = {s: [] for s in SPLITS}
        missing: list[str] = []
        for split in SPLITS:
            self.dropped[split] = Counter({r: 0 for r in DROP_REASONS})
        for index, (usage, name, votes, line) in enumerate(rows):
            split = USAGE_SPLITS[usage]
            if not name:
                self.dropped[split]["no_image"] += 1
                continue
            result = ferplus_label(votes, self.label_mode if split == "train" else self.eval_label_mode)
            if isinstance(result, str):
                self.dropped[split][result] += 1
                continue
            label, target = result
            if cache is not None:
                rec = ClipRecord(path=cache, label=label, video_id=name, num_frames=1, start_frame=index,
                                 target=target, origin=f"{self.label_csv} line {line}")
            else:
                path = png_root / PNG_FOLDERS[split] / name
                if self.check_media and not path.is_file():
                    missing.append(f"line {line}: {name} -> expected {path}")
                    continue
                rec = ClipRecord(path=path, label=label, video_id=name, num_frames=1, target=target,
                                 origin=f"{self.label_csv} line {line}")
            out[split].append(rec)
        if missing:
            raise DatasetError(f"FERPlus: {len(missing)} images listed in {self.label_csv} are missing; first "
                               f"{min(len(missing), _MAX_LISTED)}:\n  " + "\n  ".join(missing[:_MAX_LISTED]))
        for split in SPLITS:
            d = self.dropped[split]
            mode_used = self.label_mode if split == "train" else self.eval_label_mode
            log.info("FERPlus %s (%s labels, %s images): kept %d, dropped %d (%s)", split, mode_used, mode,
                     len(out[split]), sum(d.values()), ", ".join(f"{k}={d[k]}" for k in DROP_REASONS))
            if not out[split]:
                usage = next(u for u, s in USAGE_SPLITS.items() if s == split)
                raise DatasetError(f"FERPlus: no {usage} image of {self.label_csv} is left for '{split}' "
                                   f"(dropped: {dict(d)})")
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
    seed: int = 0,
) -> Path:
    """Write a tiny but valid FERPlus tree: ``fer2013new.csv``, ``fer2013.csv`` and/or ``data/FER2013*/`` PNGs.

    For every split (Usage) and class, ``per_class`` images (48x48 grey, see
    :func:`fertrain.data.datasets.rafdb.class_image`) whose 10 votes give the class 7 votes, a second emotion 2
    and a third 1 (a majority under every label mode). With ``dropped_rows``, each split also gets one row with an
    unknown winner, one with an NF winner, one without agreement and one without Image name (the official file
    has such rows); with majority labels :class:`FERPlus` drops them (``dropped`` counts 1 per reason and
    split; multi_target keeps the no-agreement row: two emotions of 3 votes each hold > half of the votes).

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
        for c, v in votes_rows:
            grey = class_image(max(c, 0), FER2013_SIZE, rng, grey=True)  # (48, 48)
            name = "" if c < 0 else f"fer{k:07d}.png"
            k += 1
            labels.append(",".join([usage, name, *map(str, v)]))
            fer.append(f"{max(c, 0)},{' '.join(map(str, grey.reshape(-1)))},{usage}")
            if png and name:
                folder = root / "data" / PNG_FOLDERS[split]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(grey).save(folder / name, compress_level=0)
    (root / "fer2013new.csv").write_text("\n".join(labels) + "\n")
    if pixels:
        (root / "fer2013.csv").write_text("\n".join(fer) + "\n")
    return root
