"""AFEW 7.0 (Acted Facial Expressions in the Wild), the EmotiW video-based emotion recognition sub-challenge set.

Source: A. Dhall, R. Goecke, S. Lucey, T. Gedeon, "Collecting Large, Richly Annotated Facial-Expression Databases
from Movies", IEEE MultiMedia 19(3), 2012; AFEW 7.0 is the data of the EmotiW 2017 video sub-challenge (Dhall et
al., ICMI 2017). The data are licensed by the EmotiW organisers (fertrain ships none of it).

Layout as the organisers ship it (split and class folder names matched case-insensitively)::

    <root>/
      Train_AFEW/<Class>/<clip>.avi                                  # 773 clips
      Train_AFEW/AlignedFaces_LBPTOP_Points/Faces/<clip>/*.png        # the organisers' aligned faces
      Val_AFEW/<Class>/<clip>.avi                                    # 383 clips
      Val_AFEW/AlignedFaces_LBPTOP_Points_Val/Faces/<clip>/*.png
      faces/Train_AFEW/<Class>/<clip>/00000.jpg ...                  # source="frames": fertrain's face extraction

``<Class>`` is one of Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise. The aligned-face folder is found under
the split folder by its name prefix ``AlignedFaces`` (any case; also when the zip unpacked it twice, or with class
sub-folders); a clip's faces are the first folder named like the clip inside it. Public readers of the aligned
faces (found by code search) use ``Train_AFEW/AlignedFaces_LBPTOP_Points/Faces/<clip>/`` and
``Val_AFEW/AlignedFaces_LBPTOP_Points_Val/Faces/<clip>/``, labels from the ``.avi`` class folders.

Sources (``source``): ``"videos"`` reads the ``.avi`` files; ``"aligned_faces"`` the organisers' aligned face frames;
``"frames"`` (default) fertrain's extracted faces (``python -m fertrain.preprocess --input <root> --output
<root>/faces``: one folder per video at its relative path without extension; ``frames_dir`` may name another
folder, relative to ``root`` or absolute). In every source the clips are those of the class folders' ``.avi``
files (the labels); without a video tree, the class folders of the frames tree. A clip whose frames are missing
is a record with 0 frames, reported by the datamodule's unusable-sample policy, never dropped silently.

Other folders in a split folder (``AlignedFaces_LBPTOP_Points``, ``LBPTOP``, a stray ``.DS_Store`` folder...) are
not classes: they are listed in :attr:`AFEW.extra_folders` and the log, and ignored. A clip id in both splits is
listed in :attr:`AFEW.in_both_splits` and the log (two ids do so in the union of the public lists, see below).

Counts (:data:`OFFICIAL_COUNTS`, :data:`OFFICIAL_CLASS_COUNTS`): 773 train / 383 val (EmotiW 2017). Public lists
disagree: Former-DFER (``zengqunzhao/Former-DFER``, ``annotation/AFEW_train.txt``, ``AFEW_validation.txt``) lists
773 / 381 clips, Emotion-FAN (``Open-Debin/Emotion-FAN``, ``data/txt/afew_train.txt``, ``afew_eval.txt``) 771 / 381;
their union gives 773 / 383 with the per-class counts below (Emotion-FAN's label where the two differ: three clips,
Anger vs Neutral twice and Neutral vs Happy once), and clips ``001703120`` and ``005153760`` appear in both Train
and Val. Computed by us from the two repositories' files; the per-class table is *ours* (no official table found).

Label map: class folders are mapped by name to the canonical 7-class order of
:mod:`fertrain.data.datasets.common` (Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral).

Protocol: the test labels of AFEW 7.0 are private (EmotiW server), so published results are on the validation
set: ``"train"`` = ``Train_AFEW``, ``"val"`` = ``"test"`` = ``Val_AFEW`` (say so when reporting).

Frame counts: frame folders count their images (hidden ``._*`` files are not frames); videos use the frame count
in the container header (no decode pass; the readers and the unusable-sample policy handle an over-reported count).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from fertrain.data.datasets.common import CANONICAL_7, MAX_LISTED, canonical_name, natural_key, synthetic_frames
from fertrain.data.records import ClipRecord, DatasetError, LazySplitRecords

log = logging.getLogger(__name__)

AFEW_CLASS_NAMES: tuple[str, ...] = CANONICAL_7
OFFICIAL_COUNTS = {"train": 773, "val": 383}  # AFEW 7.0 (EmotiW 2017) clips per split
# Per class (module docstring: the union of the Former-DFER and Emotion-FAN lists).
OFFICIAL_CLASS_COUNTS: dict[str, dict[str, int]] = {
    "train": {"Angry": 133, "Disgust": 74, "Fear": 81, "Happy": 150, "Neutral": 144, "Sad": 117, "Surprise": 74},
    "val": {"Angry": 64, "Disgust": 40, "Fear": 46, "Happy": 63, "Neutral": 63, "Sad": 61, "Surprise": 46},
}
SOURCES = ("frames", "videos", "aligned_faces")

LAYOUT = """\
<root>/
  Train_AFEW/<Class>/<clip>.avi                             (773 clips; split folder: source.train_dir)
  Train_AFEW/AlignedFaces_LBPTOP_Points/Faces/<clip>/*.png   (source=aligned_faces)
  Val_AFEW/<Class>/<clip>.avi                               (383 clips; source.val_dir)
  Val_AFEW/AlignedFaces_LBPTOP_Points_Val/Faces/<clip>/*.png
  faces/Train_AFEW/<Class>/<clip>/00000.jpg ...             (source=frames: python -m fertrain.preprocess)
<Class>: Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise (any case)"""


def _count_images(folder: Path) -> int:
    """Frames of a frame folder (hidden files excluded); 0 when the folder is missing."""
    from fertrain.data.readers import count_frame_files

    return count_frame_files(folder)


def find_child(parent: Path, name: str) -> Path | None:
    """The child folder of ``parent`` named ``name`` in any case (exact match first); None when there is none."""
    exact = parent / name
    if exact.is_dir():
        return exact
    if not parent.is_dir():
        return None
    matches = sorted(d for d in parent.iterdir() if d.is_dir() and d.name.lower() == name.lower())
    return matches[0] if matches else None


def index_clip_folders(top: Path, max_depth: int = 4) -> dict[str, Path]:
    """``{folder name: folder}`` of every folder holding frame images under ``top`` (first in sorted order wins)."""
    found: dict[str, Path] = {}

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        if any(e.is_file() and not e.name.startswith(".") for e in entries):
            found.setdefault(folder.name, folder)
        if depth < max_depth:
            for e in entries:
                if e.is_dir() and not e.name.startswith("."):
                    walk(Path(e.path), depth + 1)

    walk(top, 0)
    return found


class AFEW(LazySplitRecords):
    """AFEW 7.0 clips as :class:`ClipRecord` lists (train = ``Train_AFEW``, val = test = ``Val_AFEW``).

    ``video_id`` is the clip file stem (AFEW names are unique within a split), ``subject`` is None (AFEW lists no
    identities), ``origin`` the clip's path relative to ``root``. Parsing happens on the first :meth:`records`
    call (the datamodule's ``setup``), so instantiating a config needs no data; nothing is decoded.

    Args:
        root: AFEW root (layout in the module docstring).
        source: ``"frames"`` (fertrain's extracted faces), ``"videos"`` (the ``.avi`` files) or
            ``"aligned_faces"`` (the organisers' aligned faces).
        frames_dir: fertrain's frame-folder root, relative to ``root`` or absolute (default ``faces``).
        train_dir, val_dir: split folder names, matched in any case (default ``Train_AFEW``, ``Val_AFEW``).
        video_ext: video file extension including the dot (default ``.avi``, any case).

    Attributes (after the first :meth:`records`):
        extra_folders: folders in a split folder that are not classes (ignored), relative to ``root``.
        in_both_splits: clip ids found in both Train and Val.
        class_counts: ``{split: {class: clips}}`` found, to compare with :data:`OFFICIAL_CLASS_COUNTS`.

    Raises:
        ValueError: unknown ``source`` or a ``video_ext`` without a dot.
        DatasetError (from :meth:`records`): root or split folder missing (names the setting to change); a clip
            listed in two class folders of one split; an empty split. Messages name the folder and the layout.
    """

    class_names: tuple[str, ...] = AFEW_CLASS_NAMES

    def __init__(self, root: str | Path, source: str = "frames", frames_dir: str = "faces",
                 train_dir: str = "Train_AFEW", val_dir: str = "Val_AFEW", video_ext: str = ".avi") -> None:
        if source not in SOURCES:
            raise ValueError(f"AFEW source must be one of {SOURCES}, got {source!r}")
        if not video_ext.startswith("."):
            raise ValueError(f"AFEW video_ext must start with a dot (e.g. '.avi'), got {video_ext!r}")
        self.root = Path(root)
        self.source = source
        self.frames_root = self.root / frames_dir  # an absolute frames_dir replaces root
        self.split_dirs = {"train": train_dir, "val": val_dir}
        self.video_ext = video_ext.lower()
        self.extra_folders: list[str] = []
        self.in_both_splits: list[str] = []
        self.class_counts: dict[str, dict[str, int]] = {}
        self._records: dict[str, list[ClipRecord]] | None = None

    def _load(self) -> dict[str, list[ClipRecord]]:
        """``"train"`` = ``Train_AFEW``; ``"val"`` and ``"test"`` = ``Val_AFEW`` (test labels are private)."""
        if not self.root.is_dir():
            raise DatasetError(f"AFEW root {self.root} does not exist or is not a folder (data.root). Expected the "
                               f"AFEW 7.0 layout:\n{LAYOUT}")
        parsed = {s: self._parse_split(s) for s in ("train", "val")}
        both = sorted({r.video_id for r in parsed["train"]} & {r.video_id for r in parsed["val"]}, key=natural_key)
        self.in_both_splits = both
        if both:
            log.warning("AFEW: %d clip ids are in both Train and Val: %s (AFEW 7.0 has two such ids in the public "
                        "lists: 001703120, 005153760)", len(both), both[:MAX_LISTED])
        return {"train": parsed["train"], "val": parsed["val"], "test": parsed["val"]}

    # ------------------------------------------------------------------------------------------------ parsing
    def _split_folder(self, split: str, base: Path) -> Path | None:
        return find_child(base, self.split_dirs[split])

    def _parse_split(self, split: str) -> list[ClipRecord]:
        setting = f"data.datamodule.source.{split}_dir={self.split_dirs[split]!r}"
        video_dir = self._split_folder(split, self.root)
        frames_split = self._split_folder(split, self.frames_root) if self.source == "frames" else None
        if video_dir is not None:
            listing_dir, kind = video_dir, "videos"
        elif self.source == "frames" and frames_split is not None:
            listing_dir, kind = frames_split, "frames"
        else:
            here = sorted(d.name for d in self.root.iterdir() if d.is_dir())
            raise DatasetError(f"AFEW {split} split: no folder {self.split_dirs[split]!r} (any case) in {self.root} "
                               f"({setting}; the root holds {here}). Expected the AFEW 7.0 layout:\n{LAYOUT}")
        aligned = self._aligned_index(video_dir) if self.source == "aligned_faces" and video_dir else {}
        records: list[ClipRecord] = []
        seen: dict[str, str] = {}
        counts: dict[str, int] = {}
        for class_dir in sorted((d for d in listing_dir.iterdir() if d.is_dir()), key=lambda d: d.name):
            canon = canonical_name(class_dir.name)
            if canon not in self.class_names:
                rel = class_dir.relative_to(self.root) if class_dir.is_relative_to(self.root) else class_dir
                self.extra_folders.append(str(rel))
                log.info("AFEW %s: folder %s is not a class folder (%s); ignored", split, rel,
                         ", ".join(sorted(self.class_names)))
                continue
            label = self.class_names.index(canon)
            if kind == "videos":
                clips = [p for p in class_dir.iterdir() if p.suffix.lower() == self.video_ext and p.is_file()
                         and not p.name.startswith(".")]
            else:
                clips = [p for p in class_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
            for clip in sorted(clips, key=lambda p: natural_key(p.name)):
                stem = clip.stem if kind == "videos" else clip.name
                rel = f"{listing_dir.name}/{class_dir.name}/{clip.name}"
                if stem in seen:
                    raise DatasetError(f"AFEW {split} split: clip {stem!r} is listed twice ({seen[stem]} and {rel}); "
                                       "expected each clip in exactly one class folder")
                seen[stem] = rel
                counts[canon] = counts.get(canon, 0) + 1
                records.append(self._record(clip, listing_dir.name, class_dir.name, label, stem, rel, aligned))
        if not records:
            what = f"*{self.video_ext} files" if kind == "videos" else "clip frame folders"
            raise DatasetError(f"AFEW {split} split: no {what} under {listing_dir}/<Class>/ (empty split; {setting}). "
                               f"Expected the AFEW 7.0 layout:\n{LAYOUT}")
        self.class_counts[split] = dict(sorted(counts.items()))
        official = OFFICIAL_COUNTS[split]
        if len(records) != official:
            log.warning("AFEW %s: %d clips under %s (AFEW 7.0 has %d)", split, len(records), listing_dir, official)
        empty = [r.origin for r in records if r.num_frames == 0]
        if empty:
            log.warning("AFEW %s: %d clips have no frames for source=%s (reported when the split is set up), e.g. %s",
                        split, len(empty), self.source, empty[:MAX_LISTED])
        return records

    def _aligned_index(self, split_dir: Path) -> dict[str, Path]:
        """The organisers' aligned-face folders of a split: ``{clip id: folder}``."""
        tops = sorted(d for d in split_dir.iterdir() if d.is_dir() and d.name.lower().startswith("alignedfaces"))
        if not tops:
            raise DatasetError(f"AFEW source=aligned_faces: no AlignedFaces_LBPTOP_Points* folder in {split_dir}. "
                               f"Expected the AFEW 7.0 layout:\n{LAYOUT}")
        found: dict[str, Path] = {}
        for top in tops:
            faces = find_child(top, "Faces")
            for name, folder in index_clip_folders(faces or top).items():
                found.setdefault(name, folder)
        return found

    def _record(self, clip: Path, split_name: str, class_name: str, label: int, stem: str, rel: str,
                aligned: dict[str, Path]) -> ClipRecord:
        """One record; ``clip`` is the listed video file or frame folder."""
        if self.source == "frames":
            folder = self.frames_root / split_name / class_name / stem
            if not folder.is_dir():  # the faces tree may spell the split folder differently
                base = find_child(self.frames_root, split_name)
                cls = find_child(base, class_name) if base else None
                folder = (cls / stem) if cls else folder
            return ClipRecord(path=folder, label=label, video_id=stem, num_frames=_count_images(folder), origin=rel)
        if self.source == "aligned_faces":
            folder = aligned.get(stem, clip.parent.parent / "AlignedFaces_LBPTOP_Points" / "Faces" / stem)
            return ClipRecord(path=folder, label=label, video_id=stem, num_frames=_count_images(folder), origin=rel)
        from fertrain.data.readers import count_frames, probe_video  # lazy: only videos need OpenCV probing

        num_frames, fps = probe_video(clip)
        if num_frames == 0 and fps is not None:  # opened, but no count in the header: count by decoding
            try:
                num_frames = count_frames(clip)
            except DatasetError:
                num_frames = 0
        return ClipRecord(path=clip, label=label, video_id=stem, num_frames=num_frames, fps=fps, origin=rel)

    def audit(self) -> dict:
        """Facts of the tree against AFEW 7.0, for the dataset check: clips and clips per class per split against
        :data:`OFFICIAL_COUNTS` / :data:`OFFICIAL_CLASS_COUNTS`; extra folders; clip ids in both splits."""
        self.records("train")
        checks = []
        for split in ("train", "val"):
            found = self.class_counts.get(split, {})
            checks.append({"name": f"{split} clips", "expected": OFFICIAL_COUNTS[split],
                           "found": sum(found.values()), "ok": sum(found.values()) == OFFICIAL_COUNTS[split]})
            checks.append({"name": f"{split} clips per class", "expected": OFFICIAL_CLASS_COUNTS[split],
                           "found": {c: found.get(c, 0) for c in OFFICIAL_CLASS_COUNTS[split]},
                           "ok": all(found.get(c, 0) == n for c, n in OFFICIAL_CLASS_COUNTS[split].items())})
        notes = [f"folder {f} is not a class folder (ignored)" for f in self.extra_folders]
        if self.in_both_splits:
            notes.append(f"clip ids in both Train and Val: {self.in_both_splits}")
        return {"checks": checks, "extra": [], "duplicates": [f"{c} (Train and Val)" for c in self.in_both_splits],
                "notes": notes}


# ---------------------------------------------------------------------------------------------------------------
def make_miniature_afew(
    root: str | Path,
    clips_per_class: int = 2,
    val_clips_per_class: int = 1,
    num_frames: int = 6,
    size: int = 40,
    videos: bool = True,
    frames: bool = True,
    aligned: bool = False,
    split_dirs: tuple[str, str] = ("Train_AFEW", "Val_AFEW"),
    seed: int = 0,
) -> Path:
    """Write a tiny AFEW 7.0 tree in the shipped layout, for tests and trying the pipeline.

    For each class folder (``Angry`` ... ``Surprise``) ``clips_per_class`` train and ``val_clips_per_class`` val
    clips, named ``<9-digit number>`` like AFEW's. ``videos`` writes ``<split>/<Class>/<id>.avi`` (Motion-JPEG,
    25 fps); ``frames`` writes fertrain's face folders ``faces/<split>/<Class>/<id>/00000.jpg ...``; ``aligned``
    writes the organisers' aligned faces ``Train_AFEW/AlignedFaces_LBPTOP_Points/Faces/<id>/<id>-001.png ...``
    (``Val_AFEW/AlignedFaces_LBPTOP_Points_Val/...``). Frames are ``size`` x ``size`` RGB from
    :func:`fertrain.data.datasets.common.synthetic_frames`.

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: an argument is out of range, or no media kind chosen.
    """
    from PIL import Image

    from fertrain.data.datasets.common import write_frame_folder, write_video

    if clips_per_class < 1 or val_clips_per_class < 1 or num_frames < 1 or size < 8 or not (videos or frames
                                                                                                or aligned):
        raise ValueError("make_miniature_afew needs clips_per_class, val_clips_per_class, num_frames >= 1, size >= 8 "
                         f"and videos, frames or aligned; got {clips_per_class}, {val_clips_per_class}, {num_frames}, "
                         f"{size}, {videos}, {frames}, {aligned}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    number = 0
    for split_dir, per_class, suffix in ((split_dirs[0], clips_per_class, ""),
                                         (split_dirs[1], val_clips_per_class, "_Val")):
        for name in sorted(AFEW_CLASS_NAMES):  # the release's folder order
            for _ in range(per_class):
                number += 1
                clip_id = f"{number:09d}"
                clip = synthetic_frames(name, num_frames, size, rng)
                if videos:
                    write_video(root / split_dir / name / f"{clip_id}.avi", clip)
                if frames:
                    write_frame_folder(root / "faces" / split_dir / name / clip_id, clip)
                if aligned:
                    folder = root / split_dir / f"AlignedFaces_LBPTOP_Points{suffix}" / "Faces" / clip_id
                    folder.mkdir(parents=True, exist_ok=True)
                    for t, frame in enumerate(clip):
                        Image.fromarray(frame).save(folder / f"{clip_id}-{t + 1:03d}.png", compress_level=1)
    return root
