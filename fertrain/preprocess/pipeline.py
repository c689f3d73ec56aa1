"""The face pipeline of one video: decode once -> detect (reduced frame) -> landmarks -> track -> align.

``extract_faces(video)`` is the one call training-data preparation (``python -m fertrain.preprocess``),
``fertrain.predict`` and the demo dataset share, so inference sees the faces training saw. Stages:
:mod:`~fertrain.preprocess.decode`, :mod:`~fertrain.preprocess.detect`, :mod:`~fertrain.preprocess.track`,
:mod:`~fertrain.preprocess.align`; :mod:`~fertrain.preprocess.write` and :mod:`~fertrain.preprocess.cli` put
many videos on disk.

Per frame: the BGR frame is resized (``cv2.INTER_AREA``) so its shorter side is at most ``detect_side`` pixels,
the detector runs on it, boxes are scaled back to source pixels, and for detectors without their own landmarks
dlib's 5-point predictor runs on the full-resolution grey frame inside each box (``align=similarity``
only: ``align=none`` needs no landmarks). The tracker decides each
frame ``lag`` frames later (``TrackOptions.lag``), and only then is the frame cropped, so frames are decoded once
and at most ``lag`` + 16 of them are held in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import cv2
import numpy as np

from fertrain.preprocess.align import align_face, square_crop
from fertrain.preprocess.decode import iter_frames, probe
from fertrain.preprocess.detect import DETECTORS, Detections, DlibLandmarks5, build_detector
from fertrain.preprocess.track import FaceTrack, FaceTracker, TrackOptions

__all__ = ["ALIGN_MODES", "FaceOptions", "FacePipeline", "FaceVideo", "extract_faces"]

ALIGN_MODES = ("similarity", "none")
_POP_EVERY = 16  # frames between two tracker pops (a few more frames in memory, less bookkeeping)
_CACHE_VERSION = 1  # bump when the pipeline's output for the same options changes


@dataclass(frozen=True)
class FaceOptions:
    """Everything that decides the faces a video gives (recorded with every output).

    Attributes:
        detector: ``dlib`` (default), ``dlib_cnn``, ``haar`` or ``mtcnn`` (``fertrain.preprocess.detect``).
        detect_side: shorter side in pixels the frame is reduced to before detecting; None: the detector's default
            (dlib 360, haar 180, mtcnn 360). Frames already smaller are not enlarged.
        upsample: dlib detectors only: times the detection image is doubled (smaller faces, 4x slower each).
        align: ``similarity`` (5-point least-squares alignment) or ``none`` (square crop around the box).
        size: output side in pixels.
        margin: ``similarity``: fraction of the face square added on each side; ``none``: square side =
            ``max(w, h) * (1 + margin)`` (``fertrain.preprocess.align``).
        max_gap, min_iou, min_run, smooth_window: temporal rules (``TrackOptions``).
        landmarks_model: path of dlib's ``shape_predictor_5_face_landmarks.dat`` (None: found in the installed
            ``face_recognition_models`` package or ``$FERTRAIN_DLIB_MODELS``).
    """

    detector: str = "dlib"
    detect_side: int | None = None
    upsample: int = 0
    align: str = "similarity"
    size: int = 224
    margin: float = 0.25
    max_gap: int = 6
    min_iou: float = 0.3
    min_run: int = 8
    smooth_window: int = 5
    landmarks_model: str | None = None

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"face detector {self.detector!r} is not one of {sorted(DETECTORS)}")
        if self.align not in ALIGN_MODES:
            raise ValueError(f"align {self.align!r} is not one of {ALIGN_MODES}")
        if self.detect_side is not None and int(self.detect_side) < 32:
            raise ValueError(f"detect_side must be >= 32 pixels (or None), got {self.detect_side}")
        if int(self.size) < 8:
            raise ValueError(f"size must be >= 8 pixels, got {self.size}")
        if int(self.upsample) < 0:
            raise ValueError(f"upsample must be >= 0, got {self.upsample}")
        if not (self.margin >= 0 if self.align == "similarity" else self.margin > -1):
            raise ValueError(f"margin must be >= 0 with align=similarity (> -1 with align=none), got {self.margin}")
        self.track_options()  # checks the temporal rules

    def track_options(self) -> TrackOptions:
        return TrackOptions(self.max_gap, self.min_iou, self.min_run, self.smooth_window)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "FaceOptions":
        """Options from a mapping (a config's ``data.faces``, a JSON record); missing keys take the defaults.

        Raises:
            ValueError: an unknown key (the message lists the valid ones) or a bad value.
        """
        values = dict(values or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown face option(s) {unknown}; expected some of {sorted(names)}")
        return cls(**values)


@dataclass
class FaceVideo:
    """The faces of one video (``extract_faces``).

    Attributes:
        frames: uint8 ``(N, S, S, 3)`` RGB face crops of every decoded frame, S = ``options.size``; all zeros
            where ``track.has_face`` is False (no face: these frames are not faces and must not be used as such).
        track: boxes, landmarks, scores, detected/filled/no-face per frame (``FaceTrack``).
        options: the options that made them.
    """

    frames: np.ndarray
    track: FaceTrack
    options: FaceOptions

    @property
    def has_face(self) -> np.ndarray:
        """bool ``(N,)``."""
        return self.track.has_face

    @property
    def fps(self) -> float:
        return self.track.fps

    def no_face_spans(self) -> list[tuple[int, int]]:
        """Inclusive 0-based frame spans without a face."""
        return self.track.no_face_spans()


class FacePipeline:
    """Detector, landmarker and rules for many videos (build once per process: loading the models costs ~0.1 s).

    Args:
        options: the face options (defaults if None).
        decode_threads: FFmpeg threads per video (None: OpenCV's default; extraction workers use 1).

    Raises:
        ValueError: bad options. ImportError / FileNotFoundError: the detector or the landmark model is not
        installed (the message says how to install it).
    """

    def __init__(self, options: FaceOptions | None = None, decode_threads: int | None = None) -> None:
        self.options = opt = options or FaceOptions()
        kwargs = {"upsample": opt.upsample} if opt.detector in ("dlib", "dlib_cnn") else {}
        self.detector = build_detector(opt.detector, **kwargs)
        self.side = int(opt.detect_side or self.detector.default_side)
        self.landmarker: DlibLandmarks5 | None = None
        if self.detector.landmark_scheme is None and opt.align == "similarity":
            self.landmarker = DlibLandmarks5(opt.landmarks_model)
        self.scheme = self.detector.landmark_scheme or (self.landmarker.scheme if self.landmarker else None)
        self.decode_threads = decode_threads
        self.description = self.detector.description + (
            f" + dlib 5-point landmarks ({self.landmarker.description})" if self.landmarker else "")

    def detect(self, bgr: np.ndarray) -> Detections:
        """Faces of one full-resolution BGR frame, in its pixels, with landmarks where there are any."""
        h, w = bgr.shape[:2]
        scale = min(1.0, self.side / min(h, w))
        small = bgr if scale >= 1.0 else cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                      interpolation=cv2.INTER_AREA)
        det = self.detector.detect(small)
        if scale < 1.0:
            det = det.scaled(1.0 / scale)
        if self.landmarker is not None and len(det.boxes):
            grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            det.landmarks = np.stack([self.landmarker(grey, b) for b in det.boxes])
        return det

    def crop(self, bgr: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The output crop (BGR ``(S, S, 3)``) of one frame from its track box and landmarks."""
        opt = self.options
        if opt.align == "similarity":
            return align_face(bgr, landmarks, self.scheme, opt.size, opt.margin)
        return square_crop(bgr, box, opt.size, opt.margin)

    def process(self, video: str | Path, sink: Callable[[int, np.ndarray | None], None] | None = None,
                on_frame: Callable[[int], None] | None = None) -> FaceTrack:
        """Run the pipeline over one video, decoding it once.

        Args:
            video: video file or frame folder.
            sink: called ``sink(t, crop)`` for every frame in order, ``crop`` uint8 ``(S, S, 3)`` BGR or None
                (no face). None: track only (no crops, no frames kept).
            on_frame: called with each decoded frame's index (progress).

        Returns:
            The video's ``FaceTrack``.

        Raises:
            DatasetError: the video is missing, cannot be opened or has no decodable frame.
        """
        info = probe(video)
        tracker = FaceTracker(self.options.track_options(), 5 if self.scheme else 0)
        frames: deque[np.ndarray] = deque()
        size = (info.width, info.height)

        def emit(done):
            for tf in done:
                frame = frames.popleft()  # frames[0] is always frame tf.index: both advance in order
                sink(tf.index, self.crop(frame, tf.box, tf.landmarks) if tf.has_face else None)

        for t, frame in enumerate(iter_frames(video, self.decode_threads)):
            size = (frame.shape[1], frame.shape[0])
            det = self.detect(frame)
            tracker.push(det.boxes, det.scores, det.landmarks)
            if sink is not None:
                frames.append(frame)
            if t % _POP_EVERY == 0:
                done = tracker.pop()
                if sink is not None:
                    emit(done)
            if on_frame is not None:
                on_frame(t)
        done = tracker.pop(final=True)
        if sink is not None:
            emit(done)
        return tracker.track(info.fps, size, self.scheme, self.description)


def _cache_key(video: Path, options: FaceOptions) -> str:
    st = video.stat()
    blob = json.dumps([_CACHE_VERSION, str(video.resolve()), st.st_size, st.st_mtime_ns, options.to_dict()],
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


_TRACK_ARRAYS = ("boxes", "landmarks", "scores", "detected", "has_face", "raw_detected", "faces_in_frame")


def _save(path: Path, faces: FaceVideo) -> None:
    t = faces.track
    meta = {"fps": t.fps, "frame_size": list(t.frame_size), "landmark_scheme": t.landmark_scheme,
            "detector": t.detector, "options": faces.options.to_dict()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, frames=faces.frames, meta=np.array(json.dumps(meta)),
                 **{k: getattr(t, k) for k in _TRACK_ARRAYS})
    tmp.replace(path)


def _load(path: Path) -> FaceVideo:
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        track = FaceTrack(**{k: z[k] for k in _TRACK_ARRAYS}, fps=meta["fps"], frame_size=tuple(meta["frame_size"]),
                          landmark_scheme=meta["landmark_scheme"], detector=meta["detector"])
        return FaceVideo(z["frames"], track, FaceOptions.from_dict(meta["options"]))


@contextmanager
def opencv_single_thread() -> Iterator[None]:
    """Run OpenCV on the calling thread inside the block, then restore its thread count.

    Once OpenCV's thread pool has run (e.g. ``cv2.resize`` of a large frame with the default thread count), a
    process forked from this one (a DataLoader worker) hangs in its first OpenCV call: the pool's threads are not
    copied by ``fork`` (checked on opencv-python-headless 4.14: ``cv2.setNumThreads(1)`` in the child, which
    ``fertrain.data.transforms.seed_worker`` calls, never returns). With one thread the pool is never started, and a
    later ``setNumThreads`` only starts it on the next parallel call. :func:`extract_faces` runs inside it, so a
    training or predict process may extract faces and then fork DataLoader workers.
    """
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def extract_faces(video: str | Path, options: FaceOptions | Mapping[str, Any] | None = None,
                  cache_dir: str | Path | None = None, pipeline: FacePipeline | None = None) -> FaceVideo:
    """The aligned faces of every frame of one video, in memory (about N x S x S x 3 bytes).

    Args:
        video: a video file (or a frame folder).
        options: ``FaceOptions`` or a mapping of its fields (e.g. a config's ``data.faces``); None: defaults.
        cache_dir: when given, the result is stored there (``faces-<key>.npz``, key = video path, size, mtime
            and options) and reused by the next call with the same video and options (training then predict).
        pipeline: a ``FacePipeline`` to reuse (its options win over ``options``).

    Returns:
        ``FaceVideo``: ``frames`` uint8 ``(N, S, S, 3)`` RGB (zeros without a face), ``track`` (``has_face``,
        ``no_face_spans()``, boxes, landmarks, scores), ``options``.

    Raises:
        DatasetError: the video is missing or unreadable. ValueError: bad options. ImportError /
        FileNotFoundError: the detector or the landmark model is not installed.
    """
    if pipeline is None:
        opts = options if isinstance(options, FaceOptions) else FaceOptions.from_dict(options)
    else:
        opts = pipeline.options
    video = Path(video)
    cached = None
    if cache_dir is not None and video.is_file():
        cached = Path(cache_dir) / f"faces-{_cache_key(video, opts)}.npz"
        if cached.is_file():
            return _load(cached)
    pipe = pipeline or FacePipeline(opts)
    crops: list[np.ndarray | None] = []
    with opencv_single_thread():
        track = pipe.process(video, lambda t, crop: crops.append(crop))
    frames = np.zeros((len(crops), opts.size, opts.size, 3), dtype=np.uint8)
    for t, crop in enumerate(crops):
        if crop is not None:
            frames[t] = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    out = FaceVideo(frames, track, opts)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        _save(cached, out)
    return out

