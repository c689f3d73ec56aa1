"""AffectNet, manually annotated part: categorical expressions, 7 or 8 classes; the validation set is the test set.

Source: A. Mollahosseini, B. Hasani, M. H. Mahoor, "AffectNet: A Database for Facial Expression, Valence, and
Arousal Computing in the Wild", IEEE Transactions on Affective Computing 10(1), 2019; site
http://mohammadmahoor.com/affectnet/ (licensed: request access there; fertrain ships none of it).

Expected layout (official release)::

    <root>/
      Manually_Annotated_file_lists/training.csv     # lists_dir; also found directly under <root>
      Manually_Annotated_file_lists/validation.csv
      Manually_Annotated_Images/<subDirectory_filePath>   # e.g. 689/737db2...ca.jpg (full images)

Both csvs have the header ``subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,
expression,valence,arousal``; ``facial_landmarks`` is one ``;``-separated field. ``face_*`` is the face box in
pixels of the image; with ``crop=True`` (default: the official images are not cropped) every image is cropped to
it before the transform (clamped to the image). Set ``crop=False`` for pre-cropped face images.

Expression codes (official; canonical ``class_names`` keep the official order)::

    0 Neutral  1 Happy  2 Sad  3 Surprise  4 Fear  5 Disgust  6 Anger  7 Contempt  8 None  9 Uncertain  10 No-Face

8..10 are not expressions and are dropped; with ``num_classes=7`` Contempt is dropped too (the AffectNet-7
protocol). Every dropped row is counted per split and code (:attr:`AffectNet.dropped`, logged at INFO). Commonly
reported sizes: validation 3,500 (7 classes) / 4,000 (8 classes) images, 500 per class; training ~280k, heavily
imbalanced (use ``data.datamodule.class_balanced=true``).

Splits: ``"train"`` = training.csv, ``"test"`` = validation.csv (the test labels are not public; papers report
on the validation set), ``"val"`` = the same validation set by default, or a stratified fraction of training.csv
with ``val_from_train > 0`` (our choice, for honest model selection).

Parsing happens on the first :meth:`AffectNet.records` call (composing or instantiating a config needs no data).
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from fertrain.data.images import LazySplitRecords, carve_stratified_val
from fertrain.data.records import ClipRecord, DatasetError

log = logging.getLogger(__name__)

AFFECTNET_CODES: dict[int, str] = {0: "Neutral", 1: "Happy", 2: "Sad", 3: "Surprise", 4: "Fear", 5: "Disgust",
                                   6: "Anger", 7: "Contempt", 8: "None", 9: "Uncertain", 10: "No-Face"}
AFFECTNET8_CLASS_NAMES: tuple[str, ...] = tuple(AFFECTNET_CODES[i] for i in range(8))
AFFECTNET7_CLASS_NAMES: tuple[str, ...] = AFFECTNET8_CLASS_NAMES[:7]
HEADER = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
          "expression", "valence", "arousal"]
LISTS_DIR = "Manually_Annotated_file_lists"
IMAGES_DIR = "Manually_Annotated_Images"
SPLIT_FILES = {"train": "training.csv", "test": "validation.csv"}
_MAX_LISTED = 5

LAYOUT = """\
<root>/
  Manually_Annotated_file_lists/training.csv     (or <root>/training.csv)
  Manually_Annotated_file_lists/validation.csv
  Manually_Annotated_Images/<subDirectory_filePath>"""


def read_affectnet_csv(
    path: Path, num_classes: int
) -> tuple[list[tuple[str, int, tuple[int, int, int, int], int]], Counter]:
    """Parse one AffectNet list into ``(subDirectory_filePath, label, box, line)`` rows and the dropped counts.

    Args:
        path: ``training.csv`` or ``validation.csv``.
        num_classes: 8 keeps codes 0..7, 7 keeps 0..6.

    Returns:
        ``(rows, dropped)``: label is the canonical index (= the official code); box ``(x, y, w, h)`` pixels;
        ``line`` 1-based (header = line 1). ``dropped`` counts the rows left out by name of their code
        (``"Contempt"``, ``"None"``, ``"Uncertain"``, ``"No-Face"``).

    Raises:
        DatasetError: wrong header or column count, a non-integer box or code, a code outside 0..10, a box with
            width or height < 1, an empty or duplicated file path (names the file and line).
    """
    rows = []
    dropped: Counter = Counter()
    first: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != HEADER:
            raise DatasetError(f"{path}: line 1: expected the header {','.join(HEADER)!r}, found {header!r}")
        for row in reader:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(HEADER):
                raise DatasetError(f"{path}: line {line}: expected {len(HEADER)} columns ({','.join(HEADER)}), "
                                   f"found {len(row)}")
            name = row[0].strip()
            try:
                box = tuple(int(float(v)) for v in row[1:5])
                code = int(row[6])
            except ValueError:
                raise DatasetError(f"{path}: line {line}: expected integers in face_x, face_y, face_width, "
                                   f"face_height and expression, found {row[1:5] + [row[6]]!r}") from None
            if code not in AFFECTNET_CODES:
                raise DatasetError(f"{path}: line {line}: expression {code} is outside the official 0..10 "
                                   f"({', '.join(f'{k} {v}' for k, v in AFFECTNET_CODES.items())})")
            if code >= num_classes:
                dropped[AFFECTNET_CODES[code]] += 1
                continue
            if not name:
                raise DatasetError(f"{path}: line {line}: empty subDirectory_filePath")
            if box[2] < 1 or box[3] < 1:
                raise DatasetError(f"{path}: line {line}: face box of {name} has face_width={box[2]}, "
                                   f"face_height={box[3]}; expected >= 1 pixel")
            if name in first:
                raise DatasetError(f"{path}: line {line}: {name} is listed twice (first at line {first[name]})")
            first[name] = line
            rows.append((name, code, box, line))
    return rows, dropped


class AffectNet(LazySplitRecords):
    """AffectNet manually annotated images as :class:`ClipRecord` lists (clips of length 1).

    Splits (:meth:`records`): ``"train"`` = training.csv, ``"test"`` = validation.csv, ``"val"`` see
    ``val_from_train``.

    Records: ``path`` = ``<root>/<images_dir>/<subDirectory_filePath>``, ``num_frames = 1``, ``video_id`` = the
    ``subDirectory_filePath``, ``box`` = the face box when ``crop`` (the dataset crops it before the transform).

    Args:
        root: AffectNet root (layout in the module docstring).
        num_classes: 8 (with Contempt) or 7 (without).
        images_dir: image folder relative to ``root``.
        lists_dir: folder of training.csv/validation.csv relative to ``root``; when it lacks them, ``root`` itself
            is tried.
        crop: crop every image to its listed face box (False: images are already face crops).
        check_media: check that every kept image exists (one ``stat`` each; ~290k for the full training set).
        val_from_train: fraction in ``[0, 1)``; 0 makes ``"val"`` the validation set, > 0 carves from training.
        seed: seed of the ``val_from_train`` draw.

    Attributes:
        class_names: the ``num_classes`` names in official code order.
        dropped: ``{split: Counter(code name -> rows)}`` of the rows left out (after the first :meth:`records`).

    Raises:
        ValueError: bad argument (from the constructor).
        DatasetError: from :meth:`records`: root, list or image missing or malformed, empty split (names the
            file and line).
    """

    class_names: tuple[str, ...] = AFFECTNET8_CLASS_NAMES

    def __init__(
        self,
        root: str | Path,
        num_classes: int = 8,
        images_dir: str = IMAGES_DIR,
        lists_dir: str = LISTS_DIR,
        crop: bool = True,
        check_media: bool = True,
        val_from_train: float = 0.0,
        seed: int = 0,
    ) -> None:
        if num_classes not in (7, 8):
            raise ValueError(f"AffectNet num_classes must be 7 (without Contempt) or 8, got {num_classes!r}")
        if not 0.0 <= val_from_train < 1.0:
            raise ValueError(f"AffectNet val_from_train must be in [0, 1), got {val_from_train!r}")
        self.root = Path(root)
        self.num_classes = num_classes
        self.class_names = AFFECTNET8_CLASS_NAMES[:num_classes]
        self.image_root = self.root / images_dir
        self.lists_dir = lists_dir
        self.crop = crop
        self.check_media = check_media
        self.val_from_train = val_from_train
        self.seed = seed
        self.dropped: dict[str, Counter] = {}
        self._records: dict[str, list[ClipRecord]] | None = None

    def _list_file(self, split: str) -> Path:
        name = SPLIT_FILES[split]
        if not self.root.is_dir():
            raise DatasetError(f"AffectNet root {self.root} does not exist or is not a folder. Expected the "
                               f"official layout:\n{LAYOUT}")
        candidates = [self.root / self.lists_dir / name, self.root / name]
        for path in candidates:
            if path.is_file():
                return path
        raise DatasetError(f"AffectNet list {name} not found (looked for {candidates[0]} and {candidates[1]}). "
                           f"Expected the official layout:\n{LAYOUT}")

    def _load(self) -> dict[str, list[ClipRecord]]:
        out: dict[str, list[ClipRecord]] = {}
        for split in ("train", "test"):
            path = self._list_file(split)
            rows, dropped = read_affectnet_csv(path, self.num_classes)
            self.dropped[split] = dropped
            log.info("AffectNet %s (%s): kept %d rows, dropped %d (%s)", split, path.name, len(rows),
                     sum(dropped.values()), ", ".join(f"{k}={v}" for k, v in sorted(dropped.items())) or "none")
            if self.check_media:
                missing = [f"line {ln}: {name} -> expected {self.image_root / name}"
                           for name, _, _, ln in rows if not (self.image_root / name).is_file()]
                if missing:
                    absent = "" if self.image_root.is_dir() else " (that folder itself does not exist)"
                    raise DatasetError(
                        f"AffectNet: {len(missing)} images listed in {path} are missing under {self.image_root}"
                        f"{absent}; first {min(len(missing), _MAX_LISTED)}:\n  " + "\n  ".join(missing[:_MAX_LISTED]))
            if not rows:
                raise DatasetError(f"AffectNet: {path} lists no image of the {self.num_classes} classes "
                                   f"({', '.join(self.class_names)}); dropped rows: {dict(dropped)}")
            out[split] = [ClipRecord(path=self.image_root / name, label=label, video_id=name, num_frames=1,
                                     box=box if self.crop else None, origin=f"{path} line {line}")
                          for name, label, box, line in rows]
        if self.val_from_train > 0:
            out["train"], out["val"] = carve_stratified_val(out["train"], self.val_from_train, self.seed,
                                                            self.num_classes)
        else:
            out["val"] = out["test"]
        return out


class AffectNet8(AffectNet):
    """:class:`AffectNet` with ``num_classes=8`` (for configs: ``${fertrain.classes:...AffectNet8}``)."""

    class_names = AFFECTNET8_CLASS_NAMES

    def __init__(self, root: str | Path, **kwargs) -> None:
        super().__init__(root, num_classes=8, **kwargs)


class AffectNet7(AffectNet):
    """:class:`AffectNet` with ``num_classes=7``, Contempt dropped (configs: ``${fertrain.classes:...AffectNet7}``)."""

    class_names = AFFECTNET7_CLASS_NAMES

    def __init__(self, root: str | Path, **kwargs) -> None:
        super().__init__(root, num_classes=7, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Miniature tree: for tests and for trying the pipeline without the licensed data.

def make_miniature_affectnet(
    root: str | Path,
    train_per_class: int = 2,
    test_per_class: int = 1,
    size: int = 48,
    dropped_per_code: int = 1,
    seed: int = 0,
) -> Path:
    """Write a tiny but valid AffectNet tree (official layout) of synthetic full images with face boxes.

    Each image is ``size`` x ``size`` pixels of uniform dark background with a class image (see
    :func:`fertrain.data.datasets.rafdb.class_image`) in the face box ``(size/8, size/8, 3size/4, 3size/4)``.
    Both lists hold ``*_per_class`` rows of each code 0..7 and ``dropped_per_code`` rows of each of the codes
    8, 9, 10 (non-expressions, whose images are written too). Files are ``<code>/<split>_<k>.jpg``.

    Raises:
        ValueError: an argument is out of range.
    """
    from PIL import Image

    from fertrain.data.datasets.rafdb import class_image

    if train_per_class < 1 or test_per_class < 1 or size < 16 or dropped_per_code < 0:
        raise ValueError(f"make_miniature_affectnet needs *_per_class >= 1, size >= 16, dropped_per_code >= 0; got "
                         f"{train_per_class}, {test_per_class}, {size}, {dropped_per_code}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / LISTS_DIR).mkdir(parents=True, exist_ok=True)
    x0, w = size // 8, (3 * size) // 4
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        lines = [",".join(HEADER)]
        k = 0
        for code in AFFECTNET_CODES:
            for _ in range(per_class if code < 8 else dropped_per_code):
                k += 1
                name = f"{code}/{split}_{k:04d}.jpg"
                img = np.full((size, size, 3), 20, np.uint8)
                img[x0:x0 + w, x0:x0 + w] = class_image(code, w, rng)
                (root / IMAGES_DIR / name).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(root / IMAGES_DIR / name, quality=95)
                landmarks = ";".join(f"{v:.2f}" for v in rng.uniform(x0, x0 + w, 136))
                valence, arousal = (-2, -2) if code >= 8 else rng.uniform(-1, 1, 2).round(3)
                lines.append(f"{name},{x0},{x0},{w},{w},{landmarks},{code},{valence},{arousal}")
        (root / LISTS_DIR / SPLIT_FILES[split]).write_text("\n".join(lines) + "\n")
    return root
