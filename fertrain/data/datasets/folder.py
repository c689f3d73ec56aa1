"""Your own data as class folders (``data=folder``): videos, frame folders or images, one folder per class.

Layout (``root`` = ``data.root``)::

    <root>/<class>/<item>                    # no split level: a seeded split is made (below)
    <root>/{train,val,test}/<class>/<item>   # with a split level (any case); missing splits are carved from train

An *item* is a video file (:data:`VIDEO_SUFFIXES`), a frame folder (a folder holding ``*.jpg``/``*.jpeg``/``*.png``
frames, read in natural order of their names) or an image file (any format PIL reads: a clip of length 1).
Hidden files and folders (``.*``, macOS ``._*``) are never items or frames. Classes are the class folder names in
sorted order (as ``torchvision.datasets.ImageFolder`` orders them) unless ``classes`` gives the order; a folder
not in ``classes`` is an error naming it.

Splits without a split level (or for the missing ones): seeded, stratified by class, with ``fractions`` (default
0.7 / 0.15 / 0.15 for train / val / test) and, with ``subject_regex``, grouped by subject so that one person never
sits in two splits (:func:`fertrain.data.datasets.common.assign_splits`). ``subject_regex`` is searched in each
item's path relative to its class folder (e.g. ``r"^(S\\d+)_"`` for ``S012_happy_3.mp4``); its group ``subject``
(or first group, or whole match) is the subject id; an item it does not match is an error naming the item. The
split used is written to ``<run_dir>/splits.csv`` (``split,class,path,subject``), a file to publish or to pass
back as ``data=csv`` to repeat it exactly.

Frame counts: frame folders count their images; videos the count in the container header (nothing is decoded;
the readers and the unusable-sample policy handle an over-reported count); images 1.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from fertrain.data.datasets.common import assign_splits, natural_key, synthetic_frames
from fertrain.data.records import SPLITS, ClipRecord, DatasetError, LazySplitRecords

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


def _image_suffixes() -> tuple[str, ...]:
    from fertrain.data.images import IMAGE_FILE_SUFFIXES

    return IMAGE_FILE_SUFFIXES


def media_kind(path: Path) -> str | None:
    """``"video"``, ``"frames"`` (a folder with frame images), ``"image"`` or None (not a media item)."""
    if path.name.startswith("."):
        return None
    if path.is_dir():
        from fertrain.data.readers import count_frame_files

        return "frames" if count_frame_files(path) > 0 else None
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in _image_suffixes():
        return "image"
    return None


def media_frames(path: Path, kind: str) -> tuple[int, float | None]:
    """``(frames, fps)`` of an item without decoding: folder images, container header, or 1 for an image."""
    if kind == "image":
        return 1, None
    if kind == "frames":
        from fertrain.data.readers import count_frame_files

        return count_frame_files(path), None
    from fertrain.data.readers import probe_video

    return probe_video(path)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-6 or fr[0] <= 0:
        raise ValueError(f"split fractions must be 3 numbers >= 0 (train > 0) summing to 1, got {list(fractions)}")
    return fr  # type: ignore[return-value]


class UserSplits(LazySplitRecords):
    """What :class:`FolderDataset` and :class:`~fertrain.data.datasets.csvlist.CSVDataset` share: the seeded,
    stratified, optionally subject-grouped split of records without a given split, and ``splits.csv``."""

    class_names: tuple[str, ...] = ()
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    seed: int = 0

    def _split_missing(self, given: dict[str, list[ClipRecord]], pool: list[ClipRecord],
                       grouped: bool) -> dict[str, list[ClipRecord]]:
        """Fill the splits absent from ``given`` from ``pool`` (records without a split; plus ``given['train']``
        when only some splits were given) by :func:`assign_splits`."""
        missing = [s for s in SPLITS if s not in given]
        groups = [r.subject or "" for r in pool] if grouped else None
        if not missing:  # every split given: rows without one are split over all three, seeded
            where = assign_splits([r.label for r in pool], self.fractions, self.seed, groups) if pool else []
            return {s: given[s] + [r for r, w in zip(pool, where) if w == k] for k, s in enumerate(SPLITS)}
        if given:  # some splits given: carve the missing ones out of train
            pool = given.pop("train", []) + pool
            missing = ["train"] + [s for s in missing if s != "train"]
        fr = np.array([self.fractions[SPLITS.index(s)] for s in missing], dtype=np.float64)
        if fr.sum() <= 0:
            raise DatasetError(f"{type(self).__name__}: splits {missing} are missing and their fractions are 0")
        fr = fr / fr.sum()
        groups = [r.subject or "" for r in pool] if grouped else None
        where = assign_splits([r.label for r in pool], fr, self.seed, groups)
        out = dict(given)
        for k, split in enumerate(missing):
            out[split] = [r for r, w in zip(pool, where) if w == k]
        return out

    def _finish(self, out: dict[str, list[ClipRecord]], where: str) -> dict[str, list[ClipRecord]]:
        for split in SPLITS:
            if not out.get(split):
                raise DatasetError(f"{where}: split '{split}' is empty ({ {s: len(v) for s, v in out.items()} }); "
                                   "add samples, or change the split fractions / the split column")
        subjects = {s: {r.subject for r in out[s] if r.subject} for s in SPLITS}
        shared = (subjects["train"] & (subjects["val"] | subjects["test"])) - set()
        if shared and any(r.subject for r in out["train"]):
            log.warning("%s: %d subjects are in train and in val/test (a split given by you): %s", where,
                        len(shared), sorted(shared, key=natural_key)[:5])
        for split in SPLITS:
            counts = Counter(r.label for r in out[split])
            log.info("%s %s: %d samples (%s)", type(self).__name__, split, len(out[split]),
                     ", ".join(f"{n}={counts.get(i, 0)}" for i, n in enumerate(self.class_names)))
        return out

    def save_protocol(self, out_dir: Path) -> list[Path]:
        """Write the split used: ``<out_dir>/splits.csv`` with ``split,label,path,subject,start_frame,end_frame``
        (``path`` relative to the data root where possible; the file reads back with ``data=csv``)."""
        recs = {s: self.records(s) for s in SPLITS}
        path = Path(out_dir) / "splits.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        root = Path(getattr(self, "root", "."))
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label", "split", "subject", "start_frame", "end_frame"])
            for split in SPLITS:
                if split == "val" and recs["val"] is recs["test"]:
                    continue
                for r in recs[split]:
                    rel = os.path.relpath(r.path, root) if Path(r.path).is_absolute() else str(r.path)
                    end = r.start_frame + r.num_frames - 1 if r.num_frames >= 1 else ""
                    writer.writerow([rel, self.class_names[r.label], split, r.subject or "", r.start_frame, end])
        return [path]


class FolderDataset(UserSplits):
    """Class-per-folder data as :class:`ClipRecord` lists (layout and split rules in the module docstring).

    Records: ``path`` = the item, ``video_id`` = its path relative to the class folder (without a video's or
    image's suffix), ``label`` = the class index, ``subject`` from ``subject_regex``, ``origin`` = the path relative
    to ``root``. Parsing happens on the first :meth:`records` call, except the class names (:meth:`class_names_of`,
    read by the config at compose time).

    Args:
        root: the data root.
        classes: the class order (None: sorted class folder names).
        fractions: train / val / test fractions for the seeded split (default 0.7 / 0.15 / 0.15).
        seed: seed of the split.
        subject_regex: regex giving the subject id from an item's path relative to its class folder; None: no
            grouping.

    Raises:
        ValueError: bad fractions or an invalid regex.
        DatasetError: root missing or without class folders; a class folder outside ``classes``; a class or split
            without items; an item the subject regex does not match (names it).
    """

    def __init__(self, root: str | Path, classes: Sequence[str] | None = None,
                 fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0,
                 subject_regex: str | None = None) -> None:
        self.root = Path(root)
        self.fractions = _check_fractions(fractions)
        self.seed = seed
        try:
            self.subject_regex = re.compile(subject_regex) if subject_regex else None
        except re.error as err:
            raise ValueError(f"subject_regex {subject_regex!r} is not a valid regular expression: {err}") from None
        self.class_names = tuple(classes) if classes else self.class_names_of(self.root)
        self._records = None

    @staticmethod
    def split_level(root: Path) -> dict[str, Path]:
        """The split folders of ``root`` (``train``/``val``/``test`` in any case; ``valid``/``validation`` = val)."""
        names = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
        found: dict[str, Path] = {}
        if root.is_dir():
            for d in sorted(root.iterdir()):
                if d.is_dir() and d.name.lower() in names and names[d.name.lower()] not in found:
                    found[names[d.name.lower()]] = d
        return found

    @classmethod
    def class_names_of(cls, root: str | Path, classes: Sequence[str] | None = None) -> tuple[str, ...]:
        """The class names of a class-folder tree: ``classes`` when given, else the sorted class folder names
        (over all split folders). Used by the config (``${fertrain.discover_classes:...}``).

        Raises:
            DatasetError: ``root`` missing or without class folders (names it and the expected layout).
        """
        if classes:
            return tuple(str(c) for c in classes)
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"data.root {root} does not exist or is not a folder (data=folder expects "
                               "<root>/<class>/<item> or <root>/{train,val,test}/<class>/<item>)")
        tops = list(cls.split_level(root).values()) or [root]
        names = sorted({d.name for top in tops for d in top.iterdir() if d.is_dir() and not d.name.startswith(".")})
        if not names:
            raise DatasetError(f"data.root {root} holds no class folder (data=folder expects <root>/<class>/<item> "
                               "or <root>/{train,val,test}/<class>/<item>)")
        return tuple(names)

    def _items(self, top: Path, split: str | None) -> list[ClipRecord]:
        records = []
        known = set(self.class_names)
        for class_dir in sorted(d for d in top.iterdir() if d.is_dir() and not d.name.startswith(".")):
            if class_dir.name not in known:
                raise DatasetError(f"class folder {class_dir} is not one of the classes {list(self.class_names)} "
                                   "(data.classes)")
            label = self.class_names.index(class_dir.name)
            for item in sorted(class_dir.iterdir(), key=lambda p: natural_key(p.name)):
                kind = media_kind(item)
                if kind is None:
                    continue
                rel = item.relative_to(class_dir)
                subject = self._subject(rel, item)
                frames, fps = media_frames(item, kind)
                vid = str(rel.with_suffix("")) if kind != "frames" else str(rel)
                records.append(ClipRecord(path=item, label=label, video_id=f"{class_dir.name}/{vid}",
                                          num_frames=frames, fps=fps, subject=subject,
                                          origin=str(item.relative_to(self.root))))
        return records

    def _subject(self, rel: Path, item: Path) -> str | None:
        if self.subject_regex is None:
            return None
        m = self.subject_regex.search(rel.as_posix())
        if m is None:
            raise DatasetError(f"subject_regex {self.subject_regex.pattern!r} does not match {item} (searched in "
                               f"{rel.as_posix()!r}); expected every item to name its subject")
        if "subject" in m.groupdict():
            return m.group("subject")
        return m.group(1) if m.groups() else m.group(0)

    def _load(self) -> dict[str, list[ClipRecord]]:
        levels = self.split_level(self.root)
        given = {split: self._items(top, split) for split, top in levels.items()}
        pool = [] if levels else self._items(self.root, None)
        if not levels and not pool:
            raise DatasetError(f"data.root {self.root}: no video, frame folder or image in its class folders")
        out = self._split_missing(given, pool, grouped=self.subject_regex is not None)
        return self._finish(out, f"data=folder {self.root}")


# ---------------------------------------------------------------------------------------------------------------
def make_class_folders(
    root: str | Path,
    classes: Sequence[str] = ("Happy", "Sad"),
    subjects: int = 6,
    per_subject: int = 2,
    kind: str = "frames",
    num_frames: int = 6,
    size: int = 40,
    split_level: bool = False,
    seed: int = 0,
) -> Path:
    """Write a tiny class-folder tree for tests and trying ``data=folder``: per class ``subjects`` x
    ``per_subject`` items named ``S<ss>_<class>_<k>`` (frame folders of JPEGs, ``.avi`` videos, or ``.png`` images
    by ``kind``), synthetic frames (:func:`fertrain.data.datasets.common.synthetic_frames`). ``split_level`` puts
    subjects 1..n-2 under ``train/``, n-1 under ``val/``, n under ``test/``.

    Raises:
        ValueError: unknown ``kind`` or counts < 1.
    """
    from PIL import Image

    from fertrain.data.datasets.common import write_frame_folder, write_video

    if kind not in ("frames", "video", "image") or subjects < 1 or per_subject < 1 or num_frames < 1:
        raise ValueError(f"make_class_folders: kind must be frames|video|image and counts >= 1; got {kind}, "
                         f"{subjects}, {per_subject}, {num_frames}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    for s in range(1, subjects + 1):
        split = ("train" if s <= subjects - 2 else "val" if s == subjects - 1 else "test") if split_level else ""
        for name in classes:
            for k in range(per_subject):
                clip = synthetic_frames(name, num_frames, size, rng)
                base = (root / split / name) if split else root / name
                stem = f"S{s:02d}_{name.lower()}_{k}"
                if kind == "frames":
                    write_frame_folder(base / stem, clip)
                elif kind == "video":
                    write_video(base / f"{stem}.avi", clip)
                else:
                    base.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(clip[0]).save(base / f"{stem}.png")
    return root
