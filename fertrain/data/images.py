"""Static images: decode one image file, crop a face box, parse FER2013 pixel strings.

A static image is a clip of length 1 everywhere in fertrain: ``read_image`` returns uint8 ``(1, H, W, 3)`` RGB,
which :func:`fertrain.data.readers.read_frames` hands on for an image-file path (any suffix of
:data:`IMAGE_FILE_SUFFIXES`: ``.jpg``, ``.png``, ``.bmp``, ``.tif`` ...), so images flow through the same
``ClipDataset`` -> transform -> ``(B, 1, C, H, W)`` batches as videos.

Decoding: a complete colour or grey JPEG (starts with the SOI marker, ends with EOI) is decoded by OpenCV's
libjpeg-turbo (``cv2.imdecode``, EXIF orientation ignored, as PIL does); anything else (PNG, BMP, a truncated
JPEG, garbage bytes) by PIL, which raises on a broken file. Grey images come back with the grey value replicated
into the 3 channels (FER2013/FERPlus are 48x48 grey).

Also here, shared by the image dataset modules (:mod:`~fertrain.data.datasets.rafdb`,
:mod:`~fertrain.data.datasets.affectnet`, :mod:`~fertrain.data.datasets.ferplus`): :func:`carve_stratified_val` and
the :class:`~fertrain.data.records.LazySplitRecords` base (``records(split)``, parsed once).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from fertrain.data.records import ClipRecord, DatasetError, LazySplitRecords

__all__ = ["FER2013_SIZE", "IMAGE_FILE_SUFFIXES", "LazySplitRecords", "carve_stratified_val", "crop_box",
           "parse_fer2013_pixels", "read_image"]

# Single-image files: everything PIL decodes that FER datasets ship (AffectNet has .tif/.png besides .jpg).
IMAGE_FILE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
FER2013_SIZE = 48  # FER2013 images are 48 x 48 grey pixels (Goodfellow et al., ICONIP 2013)

_PIL_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
_CV2_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image file as a clip of length 1.

    Args:
        path: a JPEG, PNG or BMP file (colour or grey).

    Returns:
        uint8 ``(1, H, W, 3)`` RGB in ``[0, 255]``, C-contiguous (grey replicated to 3 channels).

    Raises:
        DatasetError: the file does not exist, cannot be read, or is not a decodable image (names the file).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"image {path} does not exist") from None
    except OSError as err:
        raise DatasetError(f"image {path} cannot be read ({type(err).__name__}: {err})") from err
    if not data:
        raise DatasetError(f"image {path} is empty (0 bytes); expected an image file (JPEG/PNG/BMP/TIFF ...)")
    rgb = None
    if data.startswith(_JPEG_SOI) and data.rstrip(b"\x00").endswith(_JPEG_EOI):
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _CV2_FLAGS)
        if bgr is not None and bgr.ndim == 3 and bgr.shape[2] == 3:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if rgb is None:  # not a complete JPEG, or OpenCV refused it: PIL decodes or names the problem
        try:
            with Image.open(io.BytesIO(data)) as im:
                rgb = np.array(im.convert("RGB"))  # a writable copy
        except _PIL_ERRORS as err:
            raise DatasetError(f"image {path} cannot be decoded ({type(err).__name__}: {err}); expected a readable "
                               f"JPEG/PNG/BMP image") from err
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise DatasetError(f"image {path} has size {rgb.shape[1]}x{rgb.shape[0]} (W x H); expected at least 1x1")
    return np.ascontiguousarray(rgb[None])


def crop_box(frames: np.ndarray, box: Sequence[int], source: str | Path = "") -> np.ndarray:
    """Crop every frame to a face box, clamped to the frame.

    Args:
        frames: uint8 ``(T, H, W, C)``.
        box: ``(x, y, width, height)`` in pixels, top-left origin (AffectNet's ``face_x, face_y, face_width,
            face_height``). Parts outside the frame are cut off (no padding).
        source: the file the frames came from, for the error message.

    Returns:
        uint8 ``(T, h, w, C)`` C-contiguous, ``h <= height``, ``w <= width``.

    Raises:
        DatasetError: the box does not overlap the frame (names the source, the box and the frame size).
    """
    x, y, w, h = (int(v) for v in box)
    height, width = frames.shape[1:3]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
    if x1 <= x0 or y1 <= y0:
        raise DatasetError(f"{source}: face box (x={x}, y={y}, width={w}, height={h}) does not overlap the "
                           f"{width}x{height} (W x H) image")
    return np.ascontiguousarray(frames[:, y0:y1, x0:x1])


def parse_fer2013_pixels(pixels: str, where: str) -> np.ndarray:
    """One FER2013 ``pixels`` cell: 2304 space-separated grey values, row-major -> uint8 ``(48, 48)``.

    Args:
        pixels: the cell text (``fer2013.csv``, column ``pixels``).
        where: file and row for the error message.

    Raises:
        DatasetError: not 48*48 integers in 0..255 (names ``where``, the count found).
    """
    values = pixels.split()
    n = FER2013_SIZE * FER2013_SIZE
    if len(values) != n:
        raise DatasetError(f"{where}: expected {n} space-separated grey values (48x48) in 'pixels', found "
                           f"{len(values)}")
    try:
        arr = np.array(values, dtype=np.int64)
    except ValueError:
        raise DatasetError(f"{where}: 'pixels' holds a non-integer value (expected integers 0..255)") from None
    if arr.min() < 0 or arr.max() > 255:
        raise DatasetError(f"{where}: 'pixels' values range {arr.min()}..{arr.max()}; expected 0..255")
    return arr.astype(np.uint8).reshape(FER2013_SIZE, FER2013_SIZE)


def carve_stratified_val(
    records: Sequence[ClipRecord], fraction: float, seed: int, num_classes: int
) -> tuple[list[ClipRecord], list[ClipRecord]]:
    """Split records into (train, val): ``round(fraction * n_c)`` records of each class ``c`` go to val.

    Deterministic for a seed (numpy ``default_rng``); the list order is kept in both parts. Our choice for
    datasets without an official validation set (honest model selection instead of selecting on the test set).

    Raises:
        ValueError: ``fraction`` outside ``[0, 1)``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    labels = np.array([r.label for r in records], dtype=np.int64)
    val_idx: set[int] = set()
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        n_val = int(np.floor(fraction * len(idx) + 0.5))
        val_idx.update(rng.permutation(idx)[:n_val].tolist())
    return ([r for i, r in enumerate(records) if i not in val_idx],
            [r for i, r in enumerate(records) if i in val_idx])


