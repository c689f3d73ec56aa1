"""Unusable samples: one policy, one list of reasons, shared by training and the dataset check.

A sample is *unusable* when its media cannot give the frames its record indexes. The reasons (:data:`REASONS`):

- ``missing``: the file or frame folder the record points at does not exist (also a missing file of an explicit
  frame list, e.g. BU-3DFE);
- ``empty``: a frame folder without a frame image (hidden files such as macOS ``._*`` are never frames);
- ``zero_byte``: a media file of 0 bytes (a frame image, a still image or the video);
- ``unreadable``: the file exists but cannot be opened or decoded as what it should be (not an image/video,
  garbage bytes, a video container that does not open, a malformed ``.npy``);
- ``corrupt_frame``: one frame image of the clip, anywhere in it, is truncated or corrupt (a JPEG without its
  end-of-image marker, a PNG without its ``IEND`` chunk, garbage after a valid header, a decode error);
- ``truncated``: fewer frames exist or decode than the record indexes (a video whose index or container says more
  frames than decode; a frame folder with fewer images than ``frame_counts.csv`` lists);
- ``too_short``: fewer usable frames than ``min_frames`` (samplers pad short clips by their documented rule;
  ``min_frames`` > 1 says a clip needs more).

The policy (``fertrain.data.datamodule.ClipDataModule``): by default the run stops with one error naming the file
and the problem; with ``data.skip_corrupt=true`` unusable samples are skipped, counted per reason, reported at the
end of every epoch and in the datamodule's :meth:`~fertrain.data.datamodule.ClipDataModule.corrupt_report`, and
the run stops when more than ``data.max_corrupt_frac`` of a split is unusable. A ``truncated`` video is kept under
``skip_corrupt`` (the sampler draws only from the frames that decode) and counted; below ``min_frames`` it is
``too_short``. The rule set is *ours*; no public FER codebase defines one.

Check levels (:func:`check_sample`), cheapest first:

- ``"exists"``: the file/folder exists and holds frames; frame folders are listed and compared with the record's
  count. No file is opened. (Training's default at setup.)
- ``"structure"``: additionally every frame image is opened and its first and last bytes checked (0 bytes; JPEG
  start ``FFD8`` and end ``FFD9`` markers; PNG signature and ``IEND`` chunk), a still image the same way, a video
  decoded once to count its decodable frames (:func:`fertrain.data.readers.count_frames`). Catches zero-byte,
  garbage and truncated files without decoding images. (Training's default with ``skip_corrupt=true``.)
- ``"decode"``: additionally every frame image is decoded (OpenCV/PIL, as the readers do; JPEGs at reduced DCT
  scale, which still decodes every coefficient of the file, so a corrupt stream fails as it would at full size).
  What the dataset check (``python -m fertrain.data.check``) does without ``--quick``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from fertrain.data.records import ClipRecord, DatasetError

__all__ = ["LEVELS", "REASONS", "SampleCheck", "UnusableSampleError", "check_file", "check_sample", "classify_error",
           "frames_result"]

REASONS: dict[str, str] = {
    "missing": "the file or frame folder does not exist",
    "empty": "a frame folder without a frame image",
    "zero_byte": "a media file of 0 bytes",
    "unreadable": "the file cannot be opened or decoded as an image/video",
    "corrupt_frame": "a frame image of the clip is truncated or corrupt",
    "truncated": "fewer frames exist or decode than the record indexes",
    "too_short": "fewer usable frames than min_frames",
}
LEVELS = ("exists", "structure", "decode")

_JPEG = (".jpg", ".jpeg")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"
_TAIL = 64  # bytes read from the end of a file (JPEG writers may pad after the EOI marker)
_DECODE_CHECK_SIZE = 8  # pixels: the "decode" check decodes JPEGs at the smallest DCT scale keeping >= 8 px (ours)


class UnusableSampleError(DatasetError):
    """A sample's media is unusable (default policy: the run stops). The message names the file and the problem;
    ``reason`` is one of :data:`REASONS` and ``path`` the file (both None after crossing a DataLoader worker
    boundary, where PyTorch rebuilds the exception from its message alone)."""

    def __init__(self, message: str, reason: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.path = path

    def __reduce__(self):  # picklable with its attributes (spawned workers, multiprocessing pools)
        return type(self), (str(self), self.reason, self.path)


@dataclass(frozen=True)
class SampleCheck:
    """Result of :func:`check_sample`.

    Attributes:
        reason: None when usable, else one of :data:`REASONS`.
        detail: what was found and what was expected, naming the file (empty when usable and complete).
        path: the file the problem is about (a frame image, the video, the folder), or the record's media.
        frames: frames of the segment that can be used (frames); 0 when unusable.
        indexed: frames the record indexes (``ClipRecord.num_frames``; 0 = unknown).
        truncated: usable, but fewer frames than indexed (``frames < indexed``): the sampler must draw from
            ``frames`` only.
    """

    reason: str | None
    detail: str
    path: str
    frames: int
    indexed: int
    truncated: bool = False

    @property
    def usable(self) -> bool:
        return self.reason is None


def _media(rec: ClipRecord) -> Path | Sequence[Path]:
    return rec.frame_files if rec.frame_files is not None else Path(rec.path)


def _is_image_file(path: Path) -> bool:
    from fertrain.data.images import IMAGE_FILE_SUFFIXES

    return path.suffix.lower() in IMAGE_FILE_SUFFIXES


def check_file(path: Path, decode: bool = False) -> tuple[str | None, str]:
    """Check one image file: ``(None, "")`` when fine, else ``(reason, detail)``.

    ``reason`` is ``"missing"``, ``"zero_byte"`` or ``"corrupt_frame"`` (truncated/garbage JPEG or PNG, or a decode
    error with ``decode``). Structure: JPEG must start with ``FFD8`` and end with ``FFD9`` (trailing zero padding
    allowed, as :func:`fertrain.data.images.read_image` allows it); PNG must start with its signature and end with
    the ``IEND`` chunk; other formats are only checked for size unless ``decode``.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing", f"{path} does not exist"
    except OSError as err:
        return "unreadable", f"{path} cannot be read ({type(err).__name__}: {err})"
    if size == 0:
        return "zero_byte", f"{path} is empty (0 bytes)"
    suffix = path.suffix.lower()
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(0, size - _TAIL))
            tail = f.read().rstrip(b"\x00")
    except OSError as err:
        return "unreadable", f"{path} cannot be read ({type(err).__name__}: {err})"
    if suffix in _JPEG:
        if not head.startswith(b"\xff\xd8"):
            return "corrupt_frame", f"{path} is not a JPEG (no start-of-image marker FFD8)"
        if not tail.endswith(b"\xff\xd9"):
            return "corrupt_frame", f"{path} is truncated (no JPEG end-of-image marker FFD9; {size} bytes)"
    elif suffix == ".png":
        if not head.startswith(_PNG_SIGNATURE):
            return "corrupt_frame", f"{path} is not a PNG (no PNG signature)"
        if not tail.endswith(_PNG_IEND):
            return "corrupt_frame", f"{path} is truncated (no PNG IEND chunk; {size} bytes)"
    if decode:
        from fertrain.data.readers import _decode_image  # the readers' own decoder: same library, same verdict

        try:  # JPEG at reduced DCT scale: the whole entropy-coded stream is still decoded, the IDCT is 1/64 the work
            _decode_image(path, _DECODE_CHECK_SIZE)
        except DatasetError as err:
            return "corrupt_frame", str(err)
    return None, ""


def check_sample(rec: ClipRecord, level: str = "exists", min_frames: int = 1) -> SampleCheck:
    """Check whether a record's media can give its frames, at ``level`` (see the module docstring).

    Never raises for a media problem (the result says it); nothing is cached except video frame counts
    (:func:`fertrain.data.readers.count_frames`).

    Args:
        rec: the record (its ``path``/``frame_files``, ``start_frame``, ``num_frames``).
        level: ``"exists"``, ``"structure"`` or ``"decode"``.
        min_frames: fewer usable frames make the sample ``too_short`` (frames, >= 1).

    Returns:
        A :class:`SampleCheck`.

    Raises:
        ValueError: unknown ``level`` or ``min_frames < 1``.
    """
    if level not in LEVELS:
        raise ValueError(f"check level must be one of {LEVELS}, got {level!r}")
    if isinstance(min_frames, bool) or int(min_frames) < 1:
        raise ValueError(f"min_frames must be an integer >= 1 (frames), got {min_frames!r}")
    media = _media(rec)
    indexed = int(rec.num_frames)
    if isinstance(media, (list, tuple)):
        return _check_file_list(list(map(Path, media)), rec, level, min_frames)
    path = Path(media)
    if path.is_dir():
        return _check_folder(path, rec, level, min_frames)
    if not path.exists():
        return SampleCheck("missing", f"{path} does not exist", str(path), 0, indexed)
    if path.suffix.lower() == ".npy":
        return _check_npy(path, rec, min_frames)
    if _is_image_file(path):
        reason, detail = check_file(path, decode=level == "decode") if level != "exists" else _size_only(path)
        if reason:
            return SampleCheck("unreadable" if reason == "corrupt_frame" else reason, detail, str(path), 0, indexed)
        return frames_result(1, rec, path, min_frames, indexed=max(indexed, 1) if indexed <= 1 else indexed)
    return _check_video(path, rec, level, min_frames)


def _size_only(path: Path) -> tuple[str | None, str]:
    try:
        if path.stat().st_size == 0:
            return "zero_byte", f"{path} is empty (0 bytes)"
    except OSError as err:
        return "unreadable", f"{path} cannot be read ({type(err).__name__}: {err})"
    return None, ""


def frames_result(available: int, rec: ClipRecord, path: Path, min_frames: int, indexed: int | None = None,
                  what: str = "frames") -> SampleCheck:
    """The check result of a source with ``available`` frames (from frame 0) for the record's segment: usable
    frames, ``truncated`` (fewer than indexed), ``too_short`` (< ``min_frames``), or nothing in the segment."""
    indexed = int(rec.num_frames) if indexed is None else indexed
    start = int(rec.start_frame)
    in_segment = available - start
    wanted = indexed if indexed >= 1 else in_segment
    if in_segment < 1:
        return SampleCheck("truncated" if available >= 1 else "empty",
                           f"{path}: the segment starts at frame {start} but only {available} {what} exist/decode",
                           str(path), 0, indexed)
    frames = min(wanted, in_segment)
    if frames < min_frames:
        return SampleCheck("too_short", f"{path}: {frames} usable frames, fewer than min_frames={min_frames}",
                           str(path), 0, indexed)
    truncated = indexed >= 1 and frames < indexed
    detail = (f"{path}: {indexed} frames indexed (from frame {start}) but only {frames} exist/decode"
              if truncated else "")
    return SampleCheck(None, detail, str(path), frames, indexed, truncated)


def _check_folder(folder: Path, rec: ClipRecord, level: str, min_frames: int) -> SampleCheck:
    from fertrain.data.readers import list_frame_files

    indexed = int(rec.num_frames)
    try:
        files = list_frame_files(folder)
    except DatasetError:
        return SampleCheck("empty", f"frame folder {folder} holds no *.jpg/*.jpeg/*.png frame (hidden files such as "
                           "._* are not frames)", str(folder), 0, indexed)
    if level != "exists":
        for t, file in enumerate(files):
            reason, detail = check_file(file, decode=level == "decode")
            if reason:
                where = f"frame {t + 1} of {len(files)}"
                return SampleCheck("corrupt_frame" if reason == "missing" else reason,
                                   f"{detail} ({where} of the clip {folder})", str(file), 0, indexed)
    return frames_result(len(files), rec, folder, min_frames)


def _check_file_list(files: list[Path], rec: ClipRecord, level: str, min_frames: int) -> SampleCheck:
    indexed = int(rec.num_frames)
    if not files:
        return SampleCheck("empty", f"{rec.path}: empty frame list", str(rec.path), 0, indexed)
    for t, file in enumerate(files):
        reason, detail = check_file(file, decode=level == "decode") if level != "exists" else (
            (None, "") if file.is_file() else ("missing", f"{file} does not exist"))
        if reason:
            return SampleCheck(reason, f"{detail} (frame {t + 1} of the {len(files)}-frame sequence)", str(file), 0,
                               indexed)
    return frames_result(len(files), rec, files[0], min_frames)


def _check_npy(path: Path, rec: ClipRecord, min_frames: int) -> SampleCheck:
    from fertrain.data.readers import _load_npy

    if path.stat().st_size == 0:
        return SampleCheck("zero_byte", f"{path} is empty (0 bytes)", str(path), 0, int(rec.num_frames))
    try:
        n = int(_load_npy(path).shape[0])
    except DatasetError as err:
        return SampleCheck("unreadable", str(err), str(path), 0, int(rec.num_frames))
    return frames_result(n, rec, path, min_frames)


def _check_video(path: Path, rec: ClipRecord, level: str, min_frames: int) -> SampleCheck:
    indexed = int(rec.num_frames)
    reason, detail = _size_only(path)
    if reason:
        return SampleCheck(reason, detail, str(path), 0, indexed)
    if level == "exists":
        if indexed < 1:
            return SampleCheck("unreadable", f"{path}: no frame count (the container cannot be opened or states no "
                               "count)", str(path), 0, indexed)
        return SampleCheck(None, "", str(path), indexed, indexed)
    from fertrain.data.readers import count_frames

    try:
        available = count_frames(path)
    except DatasetError as err:
        text = str(err)
        return SampleCheck("empty" if "no decodable frame" in text else "unreadable", text, str(path), 0, indexed)
    return frames_result(available, rec, path, min_frames, what="frames")


def classify_error(err: BaseException) -> str:
    """The reason of :data:`REASONS` a reader's error stands for (from its type and message)."""
    if isinstance(err, UnusableSampleError) and err.reason:
        return err.reason
    text = str(err)
    if "does not exist" in text:
        return "missing"
    if "0 bytes" in text or "is empty" in text:
        return "zero_byte"
    if "holds no" in text:
        return "empty"
    if "truncated" in text and "video" in text:
        return "truncated"
    if text.startswith("frame ") or "frame " in text and "cannot be decoded" in text:
        return "corrupt_frame"
    return "unreadable"
