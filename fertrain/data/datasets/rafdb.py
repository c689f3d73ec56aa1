"""RAF-DB (Real-world Affective Faces Database), basic emotion subset: the official train/test partition.

Source: S. Li, W. Deng, J. Du, "Reliable Crowdsourcing and Deep Locality-Preserving Learning for Expression
Recognition in the Wild", CVPR 2017; database site http://www.whdeng.cn/raf/model1.html (licensed: request access
there; fertrain ships none of it). Numbers of the basic subset: 12,271 train / 3,068 test images.

Expected layout (official release, ``basic/``)::

    <root>/
      EmoLabel/list_patition_label.txt        # one line per image: "train_00001.jpg 5", "test_0001.jpg 1"
      Image/aligned/train_00001_aligned.jpg   # images="aligned" (default): 100x100 aligned faces
      Image/original/train_00001.jpg          # images="original"

The split is the name prefix (``train_`` / ``test_``); the file name ``list_patition_label.txt`` is spelled so in
the release.

Label map (official 1-based index -> name; canonical ``class_names`` keep the official order, 0-based)::

    1 Surprise  2 Fear  3 Disgust  4 Happiness  5 Sadness  6 Anger  7 Neutral

RAF-DB has no validation set; published results select on the test set, so by default ``"val"`` returns the test
set (say so when reporting). ``val_from_train > 0`` carves a class-stratified, seeded fraction of the train images
as ``"val"`` instead (our choice, for honest model selection).

Occlusion and pose test subsets (Wang et al., "Region Attention Networks for Pose and Occlusion Robust Facial
Expression Recognition", IEEE TIP 2020: Occlusion-RAF-DB, Pose-RAF-DB > 30 and > 45 degrees) are not part of the
release; pass the list you have as ``test_subset``: a text file whose lines start with a test image name
(``test_0001.jpg``, ``test_0001_aligned.jpg`` or ``test_0001``; further tokens, blank lines and ``#`` comments
are ignored). ``"test"`` is then restricted to those images (``"val"`` is not). The public subset lists repeat
some lines: every image counts once, and the repeats (of any list, the label file included) are counted and
reported (:attr:`RAFDB.duplicates`, a warning), never dropped silently.

Parsing happens on the first :meth:`RAFDB.records` call (composing or instantiating a config needs no data).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from fertrain.data.images import LazySplitRecords, carve_stratified_val
from fertrain.data.records import ClipRecord, DatasetError

log = logging.getLogger(__name__)

RAFDB_CLASS_NAMES: tuple[str, ...] = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
OFFICIAL_LABEL_NAMES: dict[int, str] = dict(enumerate(RAFDB_CLASS_NAMES, start=1))
LABEL_FILE = "EmoLabel/list_patition_label.txt"
IMAGE_DIRS = {"aligned": "Image/aligned", "original": "Image/original"}
OFFICIAL_SIZES = {"train": 12271, "test": 3068}

_NAME = re.compile(r"^(train|test)_(\d+)\.jpg$")
_MAX_LISTED = 5

LAYOUT = """\
<root>/
  EmoLabel/list_patition_label.txt        (lines: "train_00001.jpg 5", labels 1..7)
  Image/aligned/train_00001_aligned.jpg   (images="aligned")
  Image/original/train_00001.jpg          (images="original")"""


def read_label_list(path: Path, duplicates: list[str] | None = None) -> list[tuple[str, str, int, int]]:
    """Parse ``list_patition_label.txt`` into ``(split, name, label, line)`` rows, label 0-based canonical.

    A name listed twice with the same label is kept once; the repeat is appended to ``duplicates`` (``"<file>:
    line N: <name> (first at line M)"``) for the caller to count and report.

    Raises:
        DatasetError: a line is not ``<train|test>_<digits>.jpg <label>``, a label is outside 1..7, or a name is
            listed twice with different labels (the message names the file and lines).
    """
    rows: list[tuple[str, str, int, int]] = []
    first: dict[str, int] = {}
    label_of: dict[str, int] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 2:
            raise DatasetError(f"{path}: line {line_no}: expected '<image name> <label>' (e.g. 'train_00001.jpg 5'), "
                               f"found {line!r}")
        name, label_text = tokens
        match = _NAME.match(name)
        if match is None:
            raise DatasetError(f"{path}: line {line_no}: image name {name!r} is not 'train_<digits>.jpg' or "
                               f"'test_<digits>.jpg'")
        try:
            official = int(label_text)
        except ValueError:
            raise DatasetError(f"{path}: line {line_no}: label {label_text!r} of {name} is not an integer") from None
        if official not in OFFICIAL_LABEL_NAMES:
            raise DatasetError(f"{path}: line {line_no}: label {official} of {name} is outside the official 1..7 "
                               f"({', '.join(f'{k} {v}' for k, v in OFFICIAL_LABEL_NAMES.items())})")
        if name in first:
            if label_of[name] != official:
                raise DatasetError(f"{path}: line {line_no}: {name} is listed twice with different labels ({official} "
                                   f"here, {label_of[name]} at line {first[name]})")
            if duplicates is not None:
                duplicates.append(f"{path}: line {line_no}: {name} (first at line {first[name]})")
            continue
        first[name] = line_no
        label_of[name] = official
        rows.append((match.group(1), name, official - 1, line_no))
    return rows


def read_subset_list(path: Path, duplicates: list[str] | None = None) -> list[tuple[str, int]]:
    """Parse a test-subset list into ``(stem, line)`` pairs, ``stem`` like ``"test_0001"``, each image once.

    The public occlusion/pose lists repeat some lines; a repeated image is kept once and the repeat appended to
    ``duplicates`` (``"<file>: line N: <stem> (first at line M)"``) for the caller to count and report.

    Raises:
        DatasetError: the file is missing, or a line does not start with a ``test_<digits>`` image name.
    """
    if not path.is_file():
        raise DatasetError(f"RAF-DB test_subset list {path} does not exist (expected a text file of test image "
                           f"names, one per line)")
    out = []
    first: dict[str, int] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        stem = re.sub(r"(_aligned)?(\.jpg)?$", "", Path(tokens[0]).name)
        if not re.fullmatch(r"test_\d+", stem):
            raise DatasetError(f"{path}: line {line_no}: expected a RAF-DB test image name such as test_0001.jpg, "
                               f"found {tokens[0]!r}")
        if stem in first:
            if duplicates is not None:
                duplicates.append(f"{path}: line {line_no}: {stem} (first at line {first[stem]})")
            continue
        first[stem] = line_no
        out.append((stem, line_no))
    if not out:
        raise DatasetError(f"RAF-DB test_subset list {path} lists no image")
    return out


class RAFDB(LazySplitRecords):
    """RAF-DB basic-emotion images of the official partition, as :class:`ClipRecord` lists (clips of length 1).

    Splits (:meth:`records`): ``"train"``/``"test"`` = the official partition; ``"val"`` see ``val_from_train``.

    Records: ``path`` = the image file, ``num_frames = 1``, ``video_id`` = the listed name without ``.jpg``
    (``"train_00001"``), ``label`` = canonical index. Nothing is decoded here.

    Args:
        root: RAF-DB ``basic`` folder (layout in the module docstring).
        images: ``"aligned"`` (``Image/aligned/<stem>_aligned.jpg``) or ``"original"`` (``Image/original/<name>``).
        images_dir: image folder relative to ``root``, overriding the default of ``images`` (file names unchanged).
        check_media: look for every listed image (one ``stat`` each): none found is a layout error; some missing
            are logged and reported by the datamodule (unusable-sample policy).
        val_from_train: fraction in ``[0, 1)``; 0 makes ``"val"`` the test set, > 0 carves a stratified val set.
        seed: seed of the ``val_from_train`` draw.
        test_subset: optional list of test images (occlusion / pose subsets); see the module docstring.

    Attributes:
        duplicates: the repeated lines of the label file and the subset list (after the first :meth:`records`).

    Raises:
        ValueError: bad argument (from the constructor).
        DatasetError: from :meth:`records`: root, label file, subset list or an image missing or malformed; a split
            with no image (the message names the file and line).
    """

    class_names: tuple[str, ...] = RAFDB_CLASS_NAMES

    def __init__(
        self,
        root: str | Path,
        images: str = "aligned",
        images_dir: str | None = None,
        check_media: bool = True,
        val_from_train: float = 0.0,
        seed: int = 0,
        test_subset: str | Path | None = None,
    ) -> None:
        if images not in IMAGE_DIRS:
            raise ValueError(f"RAF-DB images must be one of {sorted(IMAGE_DIRS)}, got {images!r}")
        if not 0.0 <= val_from_train < 1.0:
            raise ValueError(f"RAF-DB val_from_train must be in [0, 1), got {val_from_train!r}")
        self.root = Path(root)
        self.images = images
        self.image_root = self.root / (images_dir if images_dir is not None else IMAGE_DIRS[images])
        self.check_media = check_media
        self.val_from_train = val_from_train
        self.seed = seed
        self.test_subset = Path(test_subset) if test_subset else None
        self.duplicates: list[str] = []
        self._records: dict[str, list[ClipRecord]] | None = None

    def image_path(self, name: str) -> Path:
        """File of listed image ``name`` (``train_00001.jpg``) under the chosen image folder."""
        return self.image_root / (f"{name[:-4]}_aligned.jpg" if self.images == "aligned" else name)

    def _load(self) -> dict[str, list[ClipRecord]]:
        label_file = self.root / LABEL_FILE
        if not self.root.is_dir():
            raise DatasetError(f"RAF-DB root {self.root} does not exist or is not a folder. Expected the official "
                               f"layout:\n{LAYOUT}")
        if not label_file.is_file():
            raise DatasetError(f"RAF-DB label file {label_file} does not exist. Expected the official layout:\n"
                               f"{LAYOUT}")
        self.duplicates = []
        rows = read_label_list(label_file, self.duplicates)
        if self.check_media:
            missing = [f"line {ln}: {name} -> expected {self.image_path(name)}"
                       for _, name, _, ln in rows if not self.image_path(name).is_file()]
            if missing and len(missing) == len(rows):  # nothing there: the image folder is the wrong one
                absent = "" if self.image_root.is_dir() else " (that folder itself does not exist)"
                raise DatasetError(
                    f"RAF-DB: none of the {len(missing)} images listed in {label_file} is under {self.image_root}"
                    f"{absent}; first {min(len(missing), _MAX_LISTED)}:\n  " + "\n  ".join(missing[:_MAX_LISTED])
                    + f"\nExpected the official layout:\n{LAYOUT}")
            if missing:  # single missing images are samples of the unusable-sample policy (datamodule)
                log.warning("RAF-DB: %d images listed in %s are missing under %s (reported when the split is set up), "
                            "e.g. %s", len(missing), label_file, self.image_root, missing[:2])
        out: dict[str, list[ClipRecord]] = {"train": [], "test": []}
        for split, name, label, line in rows:
            out[split].append(ClipRecord(path=self.image_path(name), label=label, video_id=name[:-4], num_frames=1,
                                         origin=f"{label_file} line {line}"))
        for split, recs in out.items():
            if not recs:
                raise DatasetError(f"RAF-DB: {label_file} lists no {split}_* image (expected "
                                   f"{OFFICIAL_SIZES[split]} in the official release)")
        if self.test_subset is not None:
            out["test_full"] = out["test"]
            by_stem = {r.video_id: r for r in out["test"]}
            subset = read_subset_list(self.test_subset, self.duplicates)
            unknown = [f"line {ln}: {stem}" for stem, ln in subset if stem not in by_stem]
            if unknown:
                raise DatasetError(f"{self.test_subset}: {len(unknown)} listed images are not test images of "
                                   f"{label_file}; first {min(len(unknown), _MAX_LISTED)}: "
                                   + ", ".join(unknown[:_MAX_LISTED]))
            keep = {stem for stem, _ in subset}
            out["test"] = [r for r in out["test"] if r.video_id in keep]
            log.info("RAF-DB test restricted to %d of %d images listed in %s", len(out["test"]),
                     len(out["test_full"]), self.test_subset)
        if self.duplicates:
            log.warning("RAF-DB: %d duplicate lines (each image kept once): %s", len(self.duplicates),
                        "; ".join(self.duplicates[:_MAX_LISTED]))
        val_pool = out.get("test_full", out["test"])
        if self.val_from_train > 0:
            out["train"], out["val"] = carve_stratified_val(out["train"], self.val_from_train, self.seed,
                                                            len(self.class_names))
        else:
            out["val"] = val_pool
        return out


    def audit(self) -> dict:
        """Facts of the label file against the release, for the dataset check: 12,271 train / 3,068 test images
        (:data:`OFFICIAL_SIZES`); repeated lines listed."""
        recs = {s: self.records(s) for s in ("train", "test")}
        found = {"train": len(recs["train"]),
                 "test": len(self._records["test_full"]) if self.test_subset else len(recs["test"])}
        checks = [{"name": f"{s} images", "expected": n, "found": found[s], "ok": found[s] == n}
                  for s, n in OFFICIAL_SIZES.items()]
        return {"checks": checks, "extra": [], "duplicates": list(self.duplicates),
                "notes": [f"repeated line: {d}" for d in self.duplicates]}


# ---------------------------------------------------------------------------------------------------------------
# Miniature tree: for tests and for trying the pipeline without the licensed data.

def class_image(c: int, size: int, rng: np.random.Generator, grey: bool = False) -> np.ndarray:
    """A synthetic face-sized image for class ``c``: uint8 ``(size, size, 3)``, or ``(size, size)`` if ``grey``.

    Class colour/brightness plus horizontal stripes of period ``4 + 2c`` pixels with a random phase and noise, so
    a model can learn the classes (our choice; shared by the image miniature trees).
    """
    colours = np.array([[230, 200, 40], [40, 60, 200], [128, 128, 128], [210, 30, 30], [40, 200, 200],
                        [60, 160, 40], [140, 40, 160], [240, 240, 240]], dtype=np.float32)
    period = 4.0 + 2.0 * c
    y = np.arange(size, dtype=np.float32)[:, None, None]  # (H, 1, 1)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (y + rng.uniform(0, period)) / period)
    img = colours[c % len(colours)] * (0.6 + 0.4 * stripes)  # (H, 1, 3)
    img = np.broadcast_to(img, (size, size, 3)) + rng.normal(0, 6, (size, size, 3))
    img = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return img.mean(axis=2).astype(np.uint8) if grey else img


def make_miniature_rafdb(
    root: str | Path,
    train_per_class: int = 2,
    test_per_class: int = 1,
    size: int = 40,
    seed: int = 0,
) -> Path:
    """Write a tiny but valid RAF-DB ``basic`` tree (official layout) of synthetic aligned JPEGs.

    Writes ``EmoLabel/list_patition_label.txt`` (train names ``train_%05d.jpg``, test ``test_%04d.jpg``, classes
    in canonical order, official 1-based labels) and ``Image/aligned/<stem>_aligned.jpg`` of ``size`` x ``size``
    pixels (see :func:`class_image`).

    Raises:
        ValueError: an argument is out of range.
    """
    from PIL import Image

    if train_per_class < 1 or test_per_class < 1 or size < 8:
        raise ValueError(f"make_miniature_rafdb needs train_per_class, test_per_class >= 1 and size >= 8; got "
                         f"{train_per_class}, {test_per_class}, {size}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    folder = root / IMAGE_DIRS["aligned"]
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for split, per_class, digits in (("train", train_per_class, 5), ("test", test_per_class, 4)):
        k = 0
        for c in range(len(RAFDB_CLASS_NAMES)):
            for _ in range(per_class):
                k += 1
                stem = f"{split}_{k:0{digits}d}"
                Image.fromarray(class_image(c, size, rng)).save(folder / f"{stem}_aligned.jpg", quality=95)
                lines.append(f"{stem}.jpg {c + 1}")
    (root / LABEL_FILE).parent.mkdir(parents=True, exist_ok=True)
    (root / LABEL_FILE).write_text("\n".join(lines) + "\n")
    return root
