"""AffectNet, manually annotated part: categorical expressions, 7 or 8 classes; the validation set is the test set.

Source: A. Mollahosseini, B. Hasani, M. H. Mahoor, "AffectNet: A Database for Facial Expression, Valence, and
Arousal Computing in the Wild", IEEE Transactions on Affective Computing 10(1), 2019; site
http://mohammadmahoor.com/affectnet/ (licensed: request access there; fertrain ships none of it).

Two distributions are read (``layout="auto"`` takes the first whose files exist):

1. ``layout="npy"``: what the provider ships now, per split a folder of images and one ``.npy`` per annotation::

       <root>/
         train_set/images/<n>.jpg               # face crops
         train_set/annotations/<n>_exp.npy      # expression code 0..7 (a 0-d array; string or number)
         train_set/annotations/<n>_val.npy      # valence, [-1, 1]
         train_set/annotations/<n>_aro.npy      # arousal, [-1, 1]
         train_set/annotations/<n>_lnd.npy      # 68 facial landmarks, 136 values (x1, y1, x2, ...), pixels
         val_set/images/ ... val_set/annotations/ ...

   Documented by users of the current release (sb-ai-lab/EmotiEffLib issue #14 "How to prepare the AffectNet
   dataset?": ``images/0.jpg``, ``annotations/0_exp.npy, 0_aro.npy, 0_val.npy, 0_lnd.npy``, no face box) and read
   this way by public code, e.g. ClaudiaShu/EMO_AffectNet ``AffectNet_prep.py`` ``create_Aff_csv``
   (``train_set``/``val_set``, ``int(np.load(<n>_exp.npy).item())``, ``float(np.load(<n>_val.npy).item())``).
   The images are face crops: nothing is cropped.
2. ``layout="csv"``: the older release::

       <root>/
         Manually_Annotated_file_lists/training.csv     # lists_dir; also found directly under <root>
         Manually_Annotated_file_lists/validation.csv
         Manually_Annotated_Images/<subDirectory_filePath>   # e.g. 689/737db2...ca.jpg (full images)

   Both csvs have the header ``subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,
   expression,valence,arousal``; ``facial_landmarks`` is one ``;``-separated field. ``face_*`` is the face box in
   pixels of the image; with ``crop=True`` (default: these images are not cropped) every image is cropped to it
   before the transform (clamped to the image). A row whose box is not a number (``NULL``: one row of
   training.csv, noted by ZBigFish/AffectNet-Dataset-Preprocessing-Tool ``affectnet_preprocess.py``) is dropped
   and counted (``no_face_box``) when cropping.

Images: any format PIL reads (the release has ``.jpg``, ``.png``, ``.tif``...). A missing, empty or unreadable
image is a sample of the unusable-sample policy (:mod:`fertrain.data.integrity`): the run stops naming it, or
with ``data.skip_corrupt=true`` it is skipped, counted and reported.

Expression codes (official; canonical ``class_names`` keep the official order)::

    0 Neutral  1 Happy  2 Sad  3 Surprise  4 Fear  5 Disgust  6 Anger  7 Contempt  8 None  9 Uncertain  10 No-Face

8..10 are not expressions and are dropped; with ``num_classes=7`` Contempt is dropped too (the AffectNet-7
protocol). Every dropped row is counted per split and code (:attr:`AffectNet.dropped`, logged at INFO). Commonly
reported sizes: validation 3,500 (7 classes) / 4,000 (8 classes) images, 500 per class; training ~280k, heavily
imbalanced (use ``data.datamodule.class_balanced=true``).

Valence, arousal and landmarks: ``extras=["valence", "arousal", "landmarks"]`` (any subset) puts them on the
records (``ClipRecord.extra``) and into the samples as float32 ``valence``, ``arousal`` (scalars) and
``landmarks`` ``(68, 2)`` for tasks that want them; off by default (the npy layout then reads one file per image).

Splits: ``"train"`` = training.csv / ``train_set``, ``"test"`` = validation.csv / ``val_set`` (the test labels are
not public; papers report on the validation set), ``"val"`` = the same validation set by default, or a stratified
fraction of the training set with ``val_from_train > 0`` (our choice, for honest model selection).

Parsing happens on the first :meth:`AffectNet.records` call (composing or instantiating a config needs no data).
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

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
NPY_SPLITS = {"train": "train_set", "test": "val_set"}
EXTRAS = ("valence", "arousal", "landmarks")
LAYOUTS = ("auto", "npy", "csv")
_MAX_LISTED = 5

LAYOUT = """\
<root>/                                          (layout=npy: the current release)
  train_set/images/<n>.jpg   train_set/annotations/<n>_exp.npy (+ _val, _aro, _lnd)
  val_set/images/<n>.jpg     val_set/annotations/<n>_exp.npy
<root>/                                          (layout=csv: the older release)
  Manually_Annotated_file_lists/training.csv     (or <root>/training.csv)
  Manually_Annotated_file_lists/validation.csv
  Manually_Annotated_Images/<subDirectory_filePath>"""


def read_affectnet_csv(
    path: Path, num_classes: int, crop: bool = True, extras: Sequence[str] = ()
) -> tuple[list[tuple[str, int, tuple[int, int, int, int] | None, int, dict | None]], Counter]:
    """Parse one AffectNet list (csv layout) into ``(subDirectory_filePath, label, box, line, extra)`` rows and the
    dropped counts.

    Args:
        path: ``training.csv`` or ``validation.csv``.
        num_classes: 8 keeps codes 0..7, 7 keeps 0..6.
        crop: a row without a numeric face box is dropped (``no_face_box``) when the images are to be cropped.
        extras: annotations to keep per row (subset of :data:`EXTRAS`).

    Returns:
        ``(rows, dropped)``: label is the canonical index (= the official code); box ``(x, y, w, h)`` pixels (None
        when not numeric); ``line`` 1-based (header = line 1); ``extra`` the requested annotations or None.
        ``dropped`` counts the rows left out by name of their code (``"Contempt"``, ``"None"``, ``"Uncertain"``,
        ``"No-Face"``) or ``"no_face_box"``.

    Raises:
        DatasetError: wrong header or column count, a non-integer code, a code outside 0..10, a box with width or
            height < 1, an empty or duplicated file path, a requested annotation that is not a number (names the
            file and line).
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
                code = int(row[6])
            except ValueError:
                raise DatasetError(f"{path}: line {line}: expected an integer expression code, found "
                                   f"{row[6]!r}") from None
            if code not in AFFECTNET_CODES:
                raise DatasetError(f"{path}: line {line}: expression {code} is outside the official 0..10 "
                                   f"({', '.join(f'{k} {v}' for k, v in AFFECTNET_CODES.items())})")
            if code >= num_classes:
                dropped[AFFECTNET_CODES[code]] += 1
                continue
            if not name:
                raise DatasetError(f"{path}: line {line}: empty subDirectory_filePath")
            try:
                box: tuple[int, int, int, int] | None = tuple(int(float(v)) for v in row[1:5])  # type: ignore
            except ValueError:
                box = None  # e.g. NULL
            if box is None and crop:
                dropped["no_face_box"] += 1
                continue
            if box is not None and (box[2] < 1 or box[3] < 1):
                raise DatasetError(f"{path}: line {line}: face box of {name} has face_width={box[2]}, "
                                   f"face_height={box[3]}; expected >= 1 pixel")
            if name in first:
                raise DatasetError(f"{path}: line {line}: {name} is listed twice (first at line {first[name]})")
            first[name] = line
            extra = None
            if extras:
                try:
                    values = {"valence": float(row[7]), "arousal": float(row[8]),
                              "landmarks": tuple(map(float, row[5].split(";")))}
                except ValueError:
                    raise DatasetError(f"{path}: line {line}: valence/arousal/facial_landmarks of {name} are not "
                                       f"numbers: {row[7]!r}, {row[8]!r}, {row[5][:30]!r}") from None
                extra = _extra(values, list(extras), f"{path}: line {line}")
            rows.append((name, code, box, line, extra))
    return rows, dropped


def _extra(values: dict, extras: list[str], where: str) -> dict:
    """The requested annotations; landmarks as ``(68, 2)`` pairs."""
    out = {}
    for key in extras:
        v = values[key]
        if key == "landmarks":
            flat = np.asarray(v, dtype=np.float64).reshape(-1)
            if flat.size != 136:
                raise DatasetError(f"{where}: expected 136 landmark values (68 x, y pairs), found {flat.size}")
            v = tuple(map(tuple, flat.reshape(68, 2).tolist()))
        out[key] = v
    return out


def _npy_scalar(path: Path, kind: type) -> float | int:
    """The value of a 0-d (or 1-element) annotation ``.npy``: a number or a numeric string (both occur)."""
    try:
        value = np.load(path, allow_pickle=False)
        return kind(float(np.asarray(value).reshape(-1)[0]))
    except FileNotFoundError:
        raise DatasetError(f"annotation {path} does not exist (every image needs its <n>_exp.npy)") from None
    except (OSError, ValueError, IndexError, TypeError) as err:
        raise DatasetError(f"annotation {path} cannot be read as a number ({type(err).__name__}: {err})") from err


def read_affectnet_npy_split(
    folder: Path, num_classes: int, extras: Sequence[str] = ()
) -> tuple[list[tuple[str, int, None, int, dict | None]], Counter, list[str]]:
    """Parse one split folder of the npy layout (``<folder>/images``, ``<folder>/annotations``).

    Returns:
        ``(rows, dropped, missing)``: rows ``(image file name, label, None, 0, extra)`` in natural order of the
        image names; ``dropped`` counts the codes left out (as :func:`read_affectnet_csv`); ``missing`` the images
        without an ``_exp.npy`` (an error for the caller).

    Raises:
        DatasetError: an annotation file is unreadable or holds a code outside 0..10 (names the file).
    """
    from fertrain.data.datasets.common import natural_key
    from fertrain.data.images import IMAGE_FILE_SUFFIXES

    images, annotations = folder / "images", folder / "annotations"
    names = sorted((e.name for e in os.scandir(images) if not e.name.startswith(".") and e.is_file()
                    and Path(e.name).suffix.lower() in IMAGE_FILE_SUFFIXES), key=natural_key)
    rows, dropped, missing = [], Counter(), []
    for name in names:
        stem = Path(name).stem
        exp = annotations / f"{stem}_exp.npy"
        if not exp.is_file():
            missing.append(f"{images / name} -> expected {exp}")
            continue
        code = int(_npy_scalar(exp, float))
        if code not in AFFECTNET_CODES:
            raise DatasetError(f"annotation {exp}: expression {code} is outside the official 0..10 "
                               f"({', '.join(f'{k} {v}' for k, v in AFFECTNET_CODES.items())})")
        if code >= num_classes:
            dropped[AFFECTNET_CODES[code]] += 1
            continue
        extra = None
        if extras:
            values = {}
            for key, suffix in (("valence", "val"), ("arousal", "aro")):
                if key in extras:
                    values[key] = _npy_scalar(annotations / f"{stem}_{suffix}.npy", float)
            if "landmarks" in extras:
                lnd = annotations / f"{stem}_lnd.npy"
                try:
                    values["landmarks"] = np.asarray(np.load(lnd, allow_pickle=False), dtype=np.float64)
                except (OSError, ValueError) as err:
                    raise DatasetError(f"annotation {lnd} cannot be read ({type(err).__name__}: {err})") from err
            extra = _extra(values, [k for k in EXTRAS if k in extras], f"annotation {annotations / stem}_*.npy")
        rows.append((name, code, None, 0, extra))
    return rows, dropped, missing


class AffectNet(LazySplitRecords):
    """AffectNet manually annotated images as :class:`ClipRecord` lists (clips of length 1).

    Splits (:meth:`records`): ``"train"`` = training.csv / ``train_set``, ``"test"`` = validation.csv /
    ``val_set``, ``"val"`` see ``val_from_train``.

    Records: ``path`` = the image file, ``num_frames = 1``, ``video_id`` = the ``subDirectory_filePath`` (csv) or
    the image file name (npy), ``box`` = the face box when ``crop`` (csv layout; the dataset crops it before the
    transform), ``extra`` = the requested ``extras``; ``origin`` the list file and line, or the annotation file.

    Args:
        root: AffectNet root (layouts in the module docstring).
        num_classes: 8 (with Contempt) or 7 (without).
        layout: ``"auto"`` (npy when ``train_set/`` exists, else csv), ``"npy"`` or ``"csv"``.
        images_dir: csv layout: image folder relative to ``root``.
        lists_dir: csv layout: folder of training.csv/validation.csv relative to ``root``; when it lacks them,
            ``root`` itself is tried.
        crop: csv layout: crop every image to its listed face box (False: images are already face crops).
        check_media: look for every kept image (one ``stat`` each; ~290k for the full training set) and log how many
            are missing (the datamodule reports them under the unusable-sample policy).
        val_from_train: fraction in ``[0, 1)``; 0 makes ``"val"`` the validation set, > 0 carves from training.
        seed: seed of the ``val_from_train`` draw.
        extras: annotations to load per image (subset of ``valence``, ``arousal``, ``landmarks``).

    Attributes:
        class_names: the ``num_classes`` names in official code order.
        dropped: ``{split: Counter(code name -> rows)}`` of the rows left out (after the first :meth:`records`).
        layout_used: ``"npy"`` or ``"csv"`` (after the first :meth:`records`).

    Raises:
        ValueError: bad argument (from the constructor).
        DatasetError: from :meth:`records`: root or list missing or malformed, an image without annotation, empty
            split (names the file and line).
    """

    class_names: tuple[str, ...] = AFFECTNET8_CLASS_NAMES

    def __init__(
        self,
        root: str | Path,
        num_classes: int = 8,
        layout: str = "auto",
        images_dir: str = IMAGES_DIR,
        lists_dir: str = LISTS_DIR,
        crop: bool = True,
        check_media: bool = True,
        val_from_train: float = 0.0,
        seed: int = 0,
        extras: Sequence[str] = (),
    ) -> None:
        if num_classes not in (7, 8):
            raise ValueError(f"AffectNet num_classes must be 7 (without Contempt) or 8, got {num_classes!r}")
        if not 0.0 <= val_from_train < 1.0:
            raise ValueError(f"AffectNet val_from_train must be in [0, 1), got {val_from_train!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"AffectNet layout must be one of {LAYOUTS}, got {layout!r}")
        unknown = sorted(set(extras or ()) - set(EXTRAS))
        if unknown:
            raise ValueError(f"AffectNet extras must be a subset of {EXTRAS}, got unknown {unknown}")
        self.root = Path(root)
        self.num_classes = num_classes
        self.class_names = AFFECTNET8_CLASS_NAMES[:num_classes]
        self.layout = layout
        self.layout_used: str | None = None
        self.image_root = self.root / images_dir
        self.lists_dir = lists_dir
        self.crop = crop
        self.check_media = check_media
        self.val_from_train = val_from_train
        self.seed = seed
        self.extras = tuple(k for k in EXTRAS if k in (extras or ()))
        self.dropped: dict[str, Counter] = {}
        self._records: dict[str, list[ClipRecord]] | None = None

    def _list_file(self, split: str) -> Path:
        name = SPLIT_FILES[split]
        candidates = [self.root / self.lists_dir / name, self.root / name]
        for path in candidates:
            if path.is_file():
                return path
        raise DatasetError(f"AffectNet list {name} not found (looked for {candidates[0]} and {candidates[1]}). "
                           f"Expected the official layout:\n{LAYOUT}")

    def _resolve_layout(self) -> str:
        if not self.root.is_dir():
            raise DatasetError(f"AffectNet root {self.root} does not exist or is not a folder. Expected the "
                               f"official layout:\n{LAYOUT}")
        if self.layout != "auto":
            return self.layout
        return "npy" if (self.root / NPY_SPLITS["train"]).is_dir() else "csv"

    def _load(self) -> dict[str, list[ClipRecord]]:
        layout = self.layout_used = self._resolve_layout()
        out: dict[str, list[ClipRecord]] = {}
        for split in ("train", "test"):
            if layout == "npy":
                folder = self.root / NPY_SPLITS[split]
                if not (folder / "images").is_dir() or not (folder / "annotations").is_dir():
                    raise DatasetError(f"AffectNet (layout=npy): {folder}/images and {folder}/annotations must exist. "
                                       f"Expected the official layout:\n{LAYOUT}")
                rows, dropped, missing = read_affectnet_npy_split(folder, self.num_classes, self.extras)
                if missing:
                    raise DatasetError(f"AffectNet: {len(missing)} images of {folder / 'images'} have no expression "
                                       f"annotation; first {min(len(missing), _MAX_LISTED)}:\n  "
                                       + "\n  ".join(missing[:_MAX_LISTED]))
                image_root, source_name = folder / "images", str(folder)
                origin = lambda name, line: f"{folder / 'annotations' / Path(name).stem}_exp.npy"  # noqa: E731
            else:
                path = self._list_file(split)
                rows, dropped = read_affectnet_csv(path, self.num_classes, self.crop, self.extras)
                image_root, source_name = self.image_root, str(path)
                origin = lambda name, line, path=path: f"{path} line {line}"  # noqa: E731
            self.dropped[split] = dropped
            log.info("AffectNet %s (%s, layout=%s): kept %d rows, dropped %d (%s)", split, source_name, layout,
                     len(rows), sum(dropped.values()),
                     ", ".join(f"{k}={v}" for k, v in sorted(dropped.items())) or "none")
            if not rows:
                raise DatasetError(f"AffectNet: {source_name} lists no image of the {self.num_classes} classes "
                                   f"({', '.join(self.class_names)}); dropped rows: {dict(dropped)}")
            if self.check_media:
                missing = [name for name, *_ in rows if not (image_root / name).is_file()]
                if missing:
                    log.warning("AffectNet %s: %d listed images are missing under %s (reported when the split is set "
                                "up), e.g. %s", split, len(missing), image_root, missing[:_MAX_LISTED])
            out[split] = [ClipRecord(path=image_root / name, label=label, video_id=name, num_frames=1,
                                     box=box if (self.crop and layout == "csv") else None,
                                     origin=origin(name, line), extra=extra)
                          for name, label, box, line, extra in rows]
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


def make_miniature_affectnet_npy(
    root: str | Path,
    train_per_class: int = 2,
    test_per_class: int = 1,
    size: int = 32,
    dropped_per_code: int = 1,
    string_codes: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny AffectNet tree in the current (npy) layout: ``train_set``/``val_set`` with ``images/<n>.jpg``
    (face crops, see :func:`fertrain.data.datasets.rafdb.class_image`) and ``annotations/<n>_{exp,val,aro,lnd}.npy``.

    Each split holds ``*_per_class`` images of each code 0..7 and ``dropped_per_code`` of each of 8, 9, 10; images are
    numbered from 0 per split in code order. ``string_codes`` stores the annotations as 0-d numpy strings (as some
    copies of the release hold them), else as numbers.

    Raises:
        ValueError: an argument is out of range.
    """
    from PIL import Image

    from fertrain.data.datasets.rafdb import class_image

    if train_per_class < 1 or test_per_class < 1 or size < 8 or dropped_per_code < 0:
        raise ValueError(f"make_miniature_affectnet_npy needs *_per_class >= 1, size >= 8, dropped_per_code >= 0; got "
                         f"{train_per_class}, {test_per_class}, {size}, {dropped_per_code}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        folder = root / NPY_SPLITS[split]
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "annotations").mkdir(parents=True, exist_ok=True)
        n = 0
        for code in AFFECTNET_CODES:
            for _ in range(per_class if code < 8 else dropped_per_code):
                Image.fromarray(class_image(code, size, rng)).save(folder / "images" / f"{n}.jpg", quality=95)
                valence, arousal = (-2.0, -2.0) if code >= 9 else tuple(rng.uniform(-1, 1, 2).round(3))
                values = {"exp": code, "val": valence, "aro": arousal}
                for key, value in values.items():
                    arr = np.array(str(value)) if string_codes else np.array(value)
                    np.save(folder / "annotations" / f"{n}_{key}.npy", arr)
                np.save(folder / "annotations" / f"{n}_lnd.npy", rng.uniform(0, size, 136).round(2))
                n += 1
    return root
