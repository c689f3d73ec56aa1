"""Stage 1 of face extraction: decode a video (or a frame folder) sequentially, once, frame by frame.

OpenCV's FFmpeg backend (``cv2.VideoCapture``) reads every container fertrain's datasets use, including the
HEVC ``.mov`` files ``decord`` cannot open. Frames are read in decoded order until the first frame that does not
decode, so a container that over-reports its length (``no_face.mp4`` of ``../shared/data/real``: 98 reported,
95 decodable) gives the true count. Frame index = decoded order, 0-based.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from fertrain.data.records import DatasetError

__all__ = ["VIDEO_SUFFIXES", "VideoInfo", "find_videos", "iter_frames", "probe"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (before decoding).

    Attributes:
        path: the video file or frame folder.
        fps: frames per second reported by the container (0.0 for frame folders or when unknown).
        width, height: frame size in pixels.
        reported_frames: frame count in the container header (may be wrong; the decoded count is the truth).
    """

    path: Path
    fps: float
    width: int
    height: int
    reported_frames: int


def _open(path: Path, threads: int | None) -> cv2.VideoCapture:
    if not path.exists():
        raise DatasetError(f"video {path} does not exist (expected a video file "
                           f"({', '.join(VIDEO_SUFFIXES)}) or a folder of frame images)")
    params = [cv2.CAP_PROP_N_THREADS, int(threads)] if threads and hasattr(cv2, "CAP_PROP_N_THREADS") else []
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise DatasetError(f"video {path} cannot be opened by OpenCV/FFmpeg (not a video, or a corrupt container)")
    return cap


def probe(video: str | Path) -> VideoInfo:
    """Container facts of a video file, or of a frame folder (fps 0.0, size of its first image).

    Raises:
        DatasetError: the file or folder is missing, cannot be opened, or the folder holds no frame image.
    """
    path = Path(video)
    if path.is_dir():
        from fertrain.data.readers import list_frame_files

        files = list_frame_files(path)
        first = cv2.imread(str(files[0]), cv2.IMREAD_COLOR)
        if first is None:
            raise DatasetError(f"frame {files[0]} cannot be decoded as an image")
        return VideoInfo(path, 0.0, first.shape[1], first.shape[0], len(files))
    cap = _open(path, None)
    try:
        return VideoInfo(path, float(cap.get(cv2.CAP_PROP_FPS) or 0.0), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                         int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        cap.release()


def iter_frames(video: str | Path, threads: int | None = None) -> Iterator[np.ndarray]:
    """Decoded frames in order, one in memory at a time.

    Args:
        video: a video file, or a folder of frame images (``*.jpg``/``*.png``, natural order of their numbers,
            as :func:`fertrain.data.readers.list_frame_files`).
        threads: FFmpeg decoding threads (None: OpenCV's default). Extraction workers use 1 (one video per
            core).

    Yields:
        uint8 ``(H, W, 3)`` BGR frames (OpenCV's channel order), until the first frame that fails to decode.

    Raises:
        DatasetError: missing or unreadable input, a frame folder image that does not decode, or no frame at all.
    """
    path = Path(video)
    n = 0
    if path.is_dir():
        from fertrain.data.readers import list_frame_files

        for file in list_frame_files(path):
            frame = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if frame is None:
                raise DatasetError(f"frame {file} cannot be decoded as an image (frame {n} of {path})")
            n += 1
            yield frame
        return
    cap = _open(path, threads)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            n += 1
            yield frame
    finally:
        cap.release()
    if n == 0:
        raise DatasetError(f"video {path} has no decodable frame")


def find_videos(root: str | Path) -> list[Path]:
    """Video files under a folder (recursive; suffixes of ``VIDEO_SUFFIXES``, any case), or the file itself.

    Raises:
        DatasetError: ``root`` does not exist, or is a folder without any video.
    """
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DatasetError(f"input {root} does not exist (expected a video file or a folder of videos)")
    videos = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise DatasetError(f"no video ({', '.join('*' + s for s in VIDEO_SUFFIXES)}) under {root}")
    return videos
