"""AFEW 7.0 (Acted Facial Expressions in the Wild), the EmotiW video-based emotion recognition sub-challenge set.

Source: A. Dhall, R. Goecke, S. Lucey, T. Gedeon, "Collecting Large, Richly Annotated Facial-Expression Databases
from Movies", IEEE MultiMedia 19(3), 2012; AFEW 7.0 is the data of the EmotiW 2017 video sub-challenge (Dhall et
al., ICMI 2017). The data are licensed by the EmotiW organisers (fertrain ships none of it).

Expected layout (as distributed: one folder per class; folder names configurable)::

    <root>/
      train_afew/<Class>/<clip>.avi          # 773 clips
      val_afew/<Class>/<clip>.avi            # 383 clips
      faces/train_afew/<Class>/<clip>/00000.jpg ...   # source="frames" (default): extracted faces
      faces/val_afew/<Class>/<clip>/00000.jpg ...

``<Class>`` is one of Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise (case-insensitive). The face frame
folders are what the face extractor writes (``python -m fertrain.preprocess --input <root> --output <root>/faces``,
see :mod:`fertrain.preprocess.faces`): one folder per video at the video's relative path without its extension,
holding only the frames where a face was found (numbered by source frame; read in that order, gaps closed).
``frames_dir`` may name another folder, relative to ``root`` or absolute.

Which clips: ``source="videos"`` lists the ``*.avi`` files of the split folder. ``source="frames"`` lists the
same videos when the video folder exists (a video without its frame folder is then reported as missing media,
never dropped silently), and otherwise every ``<Class>/<clip>/`` folder of the frames tree.

Label map: class folders are mapped by name to the canonical 7-class order of
:mod:`fertrain.data.datasets.common` (Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral).

Protocol: the test labels of AFEW 7.0 are private (EmotiW server), so published results are on the validation
set: ``"train"`` = ``train_afew``, ``"val"`` = ``"test"`` = ``val_afew`` (say so when reporting).

Frame counts: frame folders count their images; videos use the frame count in the container header (no decode
pass; readers clamp an over-reported count to what really decodes, and ``skip_corrupt`` validation corrects it).
A count of 0 (empty folder, or a video that cannot be opened) is kept as 0 and reported by the datamodule.
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
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")

LAYOUT = """\
<root>/
  train_afew/<Class>/<clip>.avi                  (773 clips; source="videos", and the clip list for "frames")
  val_afew/<Class>/<clip>.avi                    (383 clips)
  faces/train_afew/<Class>/<clip>/00000.jpg ...  (source="frames"; faces = frames_dir)
  faces/val_afew/<Class>/<clip>/00000.jpg ...
<Class>: Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise"""


def _count_images(folder: Path) -> int:
    """Image files directly in ``folder`` (frames); 0 when the folder is missing."""
    try:
        with os.scandir(folder) as it:
            return sum(1 for e in it if e.name.lower().endswith(FRAME_EXTENSIONS) and e.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return 0


class AFEW(LazySplitRecords):
    """AFEW 7.0 clips as :class:`ClipRecord` lists (train = ``train_afew``, val = test = ``val_afew``).

    ``video_id`` is the clip file stem (AFEW names are unique), ``subject`` is None (AFEW lists no identities),
    ``origin`` the clip's path relative to ``root``. Parsing happens on the first :meth:`records` call (the
    datamodule's ``setup``), so instantiating a config needs no data; nothing is decoded.

    Args:
        root: AFEW root (layout in the module docstring).
        source: ``"frames"`` (extracted face frame folders) or ``"videos"`` (the ``.avi`` files).
        frames_dir: frame-folder root, relative to ``root`` or absolute (default ``faces``).
        train_dir, val_dir: split folder names (default ``train_afew``, ``val_afew``; e.g. ``Train_AFEW``).
        video_ext: video file extension including the dot (default ``.avi``, case-insensitive).

    Raises:
        ValueError: unknown ``source`` or a ``video_ext`` without a dot.
        DatasetError (from :meth:`records`): root or split folder missing; a class folder outside the 7 classes;
            a clip listed in two class folders; an empty split. Messages name the folder and the expected layout.
    """

    class_names: tuple[str, ...] = AFEW_CLASS_NAMES

    def __init__(self, root: str | Path, source: str = "frames", frames_dir: str = "faces",
                 train_dir: str = "train_afew", val_dir: str = "val_afew", video_ext: str = ".avi") -> None:
        if source not in ("frames", "videos"):
            raise ValueError(f"AFEW source must be 'frames' or 'videos', got {source!r}")
        if not video_ext.startswith("."):
            raise ValueError(f"AFEW video_ext must start with a dot (e.g. '.avi'), got {video_ext!r}")
        self.root = Path(root)
        self.source = source
        self.frames_root = self.root / frames_dir  # an absolute frames_dir replaces root
        self.split_dirs = {"train": train_dir, "val": val_dir}
        self.video_ext = video_ext.lower()
        self._records: dict[str, list[ClipRecord]] | None = None

    def _load(self) -> dict[str, list[ClipRecord]]:
        """``"train"`` = ``train_afew``; ``"val"`` and ``"test"`` = ``val_afew`` (test labels are private)."""
        if not self.root.is_dir():
            raise DatasetError(f"AFEW root {self.root} does not exist or is not a folder. Expected the AFEW 7.0 "
                               f"layout:\n{LAYOUT}")
        parsed = {s: self._parse_split(s) for s in ("train", "val")}
        return {"train": parsed["train"], "val": parsed["val"], "test": parsed["val"]}

    # ------------------------------------------------------------------------------------------------ parsing
    def _parse_split(self, split: str) -> list[ClipRecord]:
        sub = self.split_dirs[split]
        video_dir = self.root / sub
        frames_dir = self.frames_root / sub
        if self.source == "videos" or video_dir.is_dir():
            listing_dir, kind = video_dir, "videos"
        else:
            listing_dir, kind = frames_dir, "frames"
        if not listing_dir.is_dir():
            expected = str(video_dir) if self.source == "videos" else f"{video_dir} or {frames_dir}"
            raise DatasetError(f"AFEW {split} split: folder {expected} does not exist. Expected the AFEW 7.0 "
                               f"layout:\n{LAYOUT}")
        records: list[ClipRecord] = []
        seen: dict[str, str] = {}
        class_dirs = sorted((d for d in listing_dir.iterdir() if d.is_dir()), key=lambda d: d.name)
        for class_dir in class_dirs:
            canon = canonical_name(class_dir.name)
            if canon not in self.class_names:
                raise DatasetError(f"AFEW {split} split: class folder {class_dir} is outside the class set; expected "
                                   f"one of {', '.join(sorted(self.class_names))} (case-insensitive)")
            label = self.class_names.index(canon)
            if kind == "videos":
                clips = [p for p in class_dir.iterdir() if p.suffix.lower() == self.video_ext and p.is_file()]
            else:
                clips = [p for p in class_dir.iterdir() if p.is_dir()]
            for clip in sorted(clips, key=lambda p: natural_key(p.name)):
                stem = clip.stem if kind == "videos" else clip.name
                rel = f"{sub}/{class_dir.name}/{clip.name}"
                if stem in seen:
                    raise DatasetError(f"AFEW {split} split: clip {stem!r} is listed twice ({seen[stem]} and {rel}); "
                                       "expected each clip in exactly one class folder")
                seen[stem] = rel
                records.append(self._record(clip, frames_dir / class_dir.name / stem, label, stem, rel))
        if not records:
            what = f"*{self.video_ext} files" if kind == "videos" else "clip frame folders"
            raise DatasetError(f"AFEW {split} split: no {what} under {listing_dir}/<Class>/ (empty split). Expected "
                               f"the AFEW 7.0 layout:\n{LAYOUT}")
        official = OFFICIAL_COUNTS[split]
        if len(records) != official:
            log.warning("AFEW %s: %d clips under %s (AFEW 7.0 has %d)", split, len(records), listing_dir, official)
        empty = [r.origin for r in records if r.num_frames == 0]
        if empty:
            log.warning("AFEW %s: %d clips have no countable frames (reported when the split is set up), e.g. %s",
                        split, len(empty), empty[:MAX_LISTED])
        return records

    def _record(self, clip: Path, frame_folder: Path, label: int, stem: str, rel: str) -> ClipRecord:
        """One record; ``clip`` is the listed video file or frame folder."""
        if self.source == "frames":
            return ClipRecord(path=frame_folder, label=label, video_id=stem, num_frames=_count_images(frame_folder),
                              origin=rel)
        from fertrain.data.readers import count_frames, probe_video  # lazy: only videos need OpenCV probing

        num_frames, fps = probe_video(clip)
        if num_frames == 0 and fps is not None:  # opened, but no count in the header: count by decoding
            try:
                num_frames = count_frames(clip)
            except DatasetError:
                num_frames = 0
        return ClipRecord(path=clip, label=label, video_id=stem, num_frames=num_frames, fps=fps, origin=rel)


# ---------------------------------------------------------------------------------------------------------------
def make_miniature_afew(
    root: str | Path,
    clips_per_class: int = 2,
    val_clips_per_class: int = 1,
    num_frames: int = 6,
    size: int = 40,
    videos: bool = True,
    frames: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny AFEW 7.0 tree (official layout) of synthetic clips, for tests and trying the pipeline.

    For each class folder (Angry ... Surprise) ``clips_per_class`` train and ``val_clips_per_class`` val clips,
    named ``<9-digit number>`` like AFEW's. ``videos`` writes ``<split>/<Class>/<id>.avi`` (Motion-JPEG, 25 fps);
    ``frames`` writes the face frame folders ``faces/<split>/<Class>/<id>/00000.jpg ...`` with the same frames.
    Frames are ``size`` x ``size`` RGB from :func:`fertrain.data.datasets.common.synthetic_frames`.

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: an argument is out of range, or neither ``videos`` nor ``frames``.
    """
    from fertrain.data.datasets.common import write_frame_folder, write_video

    if clips_per_class < 1 or val_clips_per_class < 1 or num_frames < 1 or size < 8 or not (videos or frames):
        raise ValueError("make_miniature_afew needs clips_per_class, val_clips_per_class, num_frames >= 1, size >= 8 "
                         f"and videos or frames; got {clips_per_class}, {val_clips_per_class}, {num_frames}, {size}, "
                         f"{videos}, {frames}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    number = 0
    for split_dir, per_class in (("train_afew", clips_per_class), ("val_afew", val_clips_per_class)):
        for name in sorted(AFEW_CLASS_NAMES):  # the release's folder order
            for _ in range(per_class):
                number += 1
                clip_id = f"{number:09d}"
                clip = synthetic_frames(name, num_frames, size, rng)
                if videos:
                    write_video(root / split_dir / name / f"{clip_id}.avi", clip)
                if frames:
                    write_frame_folder(root / "faces" / split_dir / name / clip_id, clip)
    return root
