"""Face extraction from raw videos: detect, smooth over time, fill short gaps, crop square faces, report no-face spans.

Pipeline of one video (``track_faces`` then ``crop_faces``; ``extract_video`` writes both to disk):

1. **Decode** every frame with OpenCV's FFmpeg backend (``cv2.VideoCapture``), sequentially, one frame in
   memory at a time. It is the decoder ``fertrain.data.readers`` falls back to for the HEVC ``.mov`` files, and a
   sequential pass stops at the last frame that really decodes, so over-reported containers (``no_face.mp4``: 98
   reported, 95 decodable) give the true count. Frame index = decoded order, 0-based.
2. **Detect** faces per frame with a Viola-Jones Haar cascade trained by OpenCV (Lienhart's frontal-face
   cascade, ``haarcascade_frontalface_default.xml``; Viola & Jones, CVPR 2001; Lienhart & Maydt, ICIP 2002).
   With OpenCV 4.x (``cv2.CascadeClassifier`` exists) OpenCV runs it. OpenCV 5 moved the cascade classifier
   out of the main modules (no ``cv2.CascadeClassifier``, no ``cv2.data`` XML files; ``cv2.FaceDetectorYN`` is
   there but no YuNet ONNX model is bundled), so ``HaarCascade`` here evaluates the same XML with numpy, the
   way OpenCV's ``HaarEvaluator`` does (integral images, window variance normalisation, boosted stumps/trees,
   ``groupRectangles`` clustering). Where the XML comes from: see ``find_cascade``.
   Frame-level rules (our choice): the grey frame is histogram-equalised (as OpenCV's ``facedetect.py``
   sample does) and scaled so its shorter side is at most ``detect_side`` pixels; faces smaller than
   ``min_face_frac`` of the frame's shorter side are not searched for; a detection needs ``min_neighbors``
   raw windows behind it. Of several faces in a frame the one with most neighbours is kept (one face per video).
3. **Temporal consistency** (our choice; ``link_runs``/``filter_runs``): kept detections are chained into
   runs; a detection joins an open run when it comes at most ``max_gap + 1`` frames after the run's last
   detection and overlaps that box with IoU >= ``min_iou`` (size and position continuity), otherwise it starts
   a new run (a one-frame outlier opens its own run and does not cut the face's run). Runs with fewer than
   ``min_run`` detections are rejected as false positives (animated titles, textures): they are counted
   (``rejected``) and reported, never silently dropped.
4. **Smoothing** (``smooth_boxes``): within a run, box centre and size are averaged over a centred window of
   ``smooth_window`` detected frames (shrinking at the run's ends); runs never mix.
5. **Filling** (``fill_gaps``): inside a run, frames without an accepted detection (gaps of at most
   ``max_gap`` frames by construction) get the box linearly interpolated between the two detected neighbours
   (``filled``). Before a run's first and after its last detection nothing is extrapolated: those frames are
   no-face. ``FaceTrack.no_face_spans`` lists the inclusive spans without a face.
6. **Alignment/crop** (``square_box``): a square of side ``max(w, h) * (1 + margin)`` centred on the box,
   padded with black where it leaves the frame, resized to ``size x size`` (``cv2.INTER_AREA`` when shrinking).
   No in-plane rotation (our choice, not measured: an eye-based rotation would need a second cascade pass per
   frame; the faces of the reference videos are upright except a laughing head tilt at the end of
   ``WolfgangLanger_Pexels.mp4``).

Defaults were tuned on the five videos of ``../shared/data/real`` against their ``no_face.csv`` (see
``tests/preprocess/test_faces.py``); the rules themselves are general. Measured there: with
``min_face_frac=0.2`` and ``min_neighbors=3`` the cascade returns no face at all on the black frames and
animated titles, and every labelled span comes out within 1 frame; raising ``min_neighbors`` to 4 or more loses
the tilted last 16 frames of ``WolfgangLanger_Pexels.mp4``. The numpy evaluator was checked against
``cv2.CascadeClassifier.detectMultiScale2`` of OpenCV 4.14 on 143 frames of these videos (minNeighbors 3 and 5):
the same faces (IoU > 0.5) in 277 of 286 cases, the rest differing by one weak 4-5-neighbour candidate.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from fertrain.data.records import DatasetError

__all__ = [
    "CASCADE_ENV",
    "DEFAULT_CASCADE",
    "FaceTrack",
    "HaarCascade",
    "TrackOptions",
    "VIDEO_SUFFIXES",
    "crop_faces",
    "extract_folder",
    "extract_video",
    "fill_gaps",
    "filter_runs",
    "find_cascade",
    "link_runs",
    "main",
    "select_boxes",
    "smooth_boxes",
    "spans_of",
    "square_box",
    "track_faces",
    "track_from_detections",
]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov")
DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"
CASCADE_ENV = "FERTRAIN_FACE_CASCADE"
_ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "haarcascades"
REPORT_FIELDS = ("video", "frames", "fps", "width", "height", "raw_detected", "rejected", "detected", "filled",
                 "face_frames", "no_face_frames", "no_face_spans", "seconds", "detector")


# ------------------------------------------------------------------------------------------------ results
@dataclass
class FaceTrack:
    """One face track over all decoded frames of a video.

    Attributes:
        boxes: float ``(N, 4)`` ``x0, y0, x1, y1`` in pixels of the source frame (``x1``/``y1`` exclusive), after
            smoothing and filling; NaN rows where ``has_face`` is False.
        detected: bool ``(N,)`` the detector found a face in this frame and it survived the temporal
            consistency rules (``raw_detected`` minus rejected runs).
        has_face: bool ``(N,)`` a crop exists for this frame (detected or filled).
        fps: frames per second reported by the container.
        raw_detected: bool ``(N,)`` the detector returned at least one face before the temporal rules.
        frame_size: ``(width, height)`` of the source frames in pixels.
        detector: short description of the detector (for reports).
    """

    boxes: np.ndarray
    detected: np.ndarray
    has_face: np.ndarray
    fps: float
    raw_detected: np.ndarray | None = None
    frame_size: tuple[int, int] = (0, 0)
    detector: str = ""

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        n = len(self.boxes)
        self.detected = np.asarray(self.detected, dtype=bool)
        self.has_face = np.asarray(self.has_face, dtype=bool)
        if self.raw_detected is None:
            self.raw_detected = self.detected.copy()
        self.raw_detected = np.asarray(self.raw_detected, dtype=bool)
        for name in ("detected", "has_face", "raw_detected"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"FaceTrack.{name} must have shape ({n},), got {getattr(self, name).shape}")

    @property
    def num_frames(self) -> int:
        """N, the number of decoded frames."""
        return len(self.boxes)

    @property
    def filled(self) -> np.ndarray:
        """bool ``(N,)``: frames with a crop but no accepted detection (box interpolated)."""
        return self.has_face & ~self.detected

    def no_face_spans(self) -> list[tuple[int, int]]:
        """Inclusive 0-based ``(start, end)`` frame spans where ``has_face`` is False, in order."""
        return spans_of(~self.has_face)

    def summary(self) -> dict:
        """Counts and spans as a JSON-ready dict (no per-frame arrays)."""
        raw = int(self.raw_detected.sum())
        return {
            "frames": self.num_frames,
            "fps": round(float(self.fps), 3),
            "width": int(self.frame_size[0]),
            "height": int(self.frame_size[1]),
            "raw_detected": raw,
            "rejected": int((self.raw_detected & ~self.detected).sum()),
            "detected": int(self.detected.sum()),
            "filled": int(self.filled.sum()),
            "face_frames": int(self.has_face.sum()),
            "no_face_frames": int((~self.has_face).sum()),
            "no_face_spans": [list(s) for s in self.no_face_spans()],
            "detector": self.detector,
        }


@dataclass
class TrackOptions:
    """Detector and temporal rules of ``track_faces`` (all our choice; tuned on ``../shared/data/real``).

    Attributes:
        cascade: path of an OpenCV Haar cascade XML; None: ``find_cascade()``.
        scale_factor: pyramid step between window sizes (OpenCV ``detectMultiScale``'s ``scaleFactor``).
        min_neighbors: raw windows a detection needs (OpenCV ``minNeighbors``): higher = fewer false positives.
        min_face_frac: smallest face searched, as a fraction of the frame's shorter side.
        detect_side: the frame is downscaled so its shorter side is at most this many pixels before detecting.
        equalize: histogram-equalise the grey frame before detecting.
        max_gap: longest run of frames without an accepted detection that is bridged (and filled) inside a run.
        min_iou: IoU between consecutive detections needed to stay in one run.
        min_run: detections a run needs to be kept; shorter runs are rejected as false positives.
        smooth_window: centred moving-average window (detected frames) for box centre and size.
    """

    cascade: str | None = None
    scale_factor: float = 1.1
    min_neighbors: int = 3
    min_face_frac: float = 0.2
    detect_side: int = 180
    equalize: bool = True
    max_gap: int = 6
    min_iou: float = 0.3
    min_run: int = 8
    smooth_window: int = 5

    def __post_init__(self) -> None:
        if not self.scale_factor > 1.0:
            raise ValueError(f"scale_factor must be > 1, got {self.scale_factor}")
        if not 0.0 < self.min_face_frac <= 1.0:
            raise ValueError(f"min_face_frac must be in (0, 1], got {self.min_face_frac}")
        for name in ("min_neighbors", "max_gap"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("detect_side", "min_run", "smooth_window"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in [0, 1], got {self.min_iou}")


# --------------------------------------------------------------------------------------------- spans/boxes
def spans_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive 0-based ``(start, end)`` spans of the True runs of a bool ``(N,)`` mask, in order."""
    m = np.asarray(mask, dtype=bool).astype(np.int8)
    d = np.diff(np.concatenate([[0], m, [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``x0, y0, x1, y1`` boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def select_boxes(candidates: list[np.ndarray]) -> np.ndarray:
    """One box per frame from per-frame candidates.

    Args:
        candidates: N arrays ``(K_t, 5)``: ``x0, y0, x1, y1, neighbours`` (K_t may be 0).

    Returns:
        float ``(N, 4)``; the candidate with most neighbours (ties: the larger box) per frame, NaN rows where
        ``K_t == 0``.
    """
    out = np.full((len(candidates), 4), np.nan)
    for t, c in enumerate(candidates):
        c = np.asarray(c, dtype=np.float64).reshape(-1, 5)
        if len(c):
            area = (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])
            out[t] = c[np.lexsort((area, c[:, 4]))[-1], :4]
    return out


def link_runs(boxes: np.ndarray, max_gap: int, min_iou: float) -> np.ndarray:
    """Chain detections into runs by time gap and overlap.

    Args:
        boxes: float ``(N, 4)`` per-frame boxes, NaN rows = no detection.
        max_gap: a detection joins a run if at most ``max_gap`` frames lie between it and the run's last
            detection...
        min_iou: ...and its IoU with that detection is >= ``min_iou`` (the run with the highest IoU when several
            qualify); otherwise it opens a new run. A one-frame outlier thus opens its own short run and the
            face's run continues after it.

    Returns:
        int ``(N,)`` run id per frame (0, 1, ... in time order) on detected frames, -1 elsewhere.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    run = np.full(len(boxes), -1, dtype=np.int64)
    last: dict[int, int] = {}  # open run -> its last frame; an outlier opens its own run and leaves this one open
    for t in np.flatnonzero(~np.isnan(boxes).any(axis=1)):
        open_runs = [(r, _iou(boxes[t], boxes[u])) for r, u in last.items() if t - u - 1 <= max_gap]
        open_runs = [(r, iou) for r, iou in open_runs if iou >= min_iou]
        r = max(open_runs, key=lambda x: x[1])[0] if open_runs else len(last)
        run[t], last[r] = r, t
    return run


def filter_runs(run: np.ndarray, min_run: int) -> np.ndarray:
    """Reject runs with fewer than ``min_run`` detections: int ``(N,)`` run ids with those set to -1."""
    run = np.asarray(run, dtype=np.int64).copy()
    ids, counts = np.unique(run[run >= 0], return_counts=True)
    run[np.isin(run, ids[counts < min_run])] = -1
    return run


def smooth_boxes(boxes: np.ndarray, run: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of box centre and size over the detected frames of each run.

    Args:
        boxes: float ``(N, 4)``; only rows with ``run >= 0`` are used.
        run: int ``(N,)`` run ids (-1: not a kept detection).
        window: frames (detected ones) in the centred window; shrinks symmetrically at a run's ends.

    Returns:
        float ``(N, 4)`` smoothed boxes on rows with ``run >= 0``, NaN elsewhere.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.full_like(boxes, np.nan)
    half = max(0, int(window) // 2)
    for r in np.unique(run[run >= 0]):
        idx = np.flatnonzero(run == r)
        b = boxes[idx]
        cs = np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1)  # cx, cy, w, h
        sm = np.empty_like(cs)
        for i in range(len(idx)):
            h = min(half, i, len(idx) - 1 - i)
            sm[i] = cs[i - h:i + h + 1].mean(axis=0)
        out[idx] = np.concatenate([sm[:, :2] - sm[:, 2:] / 2, sm[:, :2] + sm[:, 2:] / 2], axis=1)
    return out


def fill_gaps(boxes: np.ndarray, run: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate boxes inside each run between its detected frames; nothing outside a run's first..last frame.

    Args:
        boxes: float ``(N, 4)`` (smoothed) boxes on rows with ``run >= 0``.
        run: int ``(N,)`` run ids (-1: no kept detection).

    Returns:
        ``(boxes, has_face)``: float ``(N, 4)`` with the gaps inside runs linearly interpolated per coordinate
        (NaN elsewhere) and bool ``(N,)`` where a box exists. Where two kept runs overlap in time, the run with
        more detections gives the box.
    """
    src = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.full_like(src, np.nan)
    ids, counts = np.unique(run[run >= 0], return_counts=True)
    for r in ids[np.argsort(counts, kind="stable")]:  # where kept runs overlap in time the longest one wins
        idx = np.flatnonzero(run == r)
        span = np.arange(idx[0], idx[-1] + 1)
        for k in range(4):
            out[span, k] = np.interp(span, idx, src[idx, k])
    return out, ~np.isnan(out).any(axis=1)


def track_from_detections(candidates: list[np.ndarray], fps: float, options: TrackOptions | None = None,
                          frame_size: tuple[int, int] = (0, 0), detector: str = "") -> FaceTrack:
    """Temporal part of ``track_faces`` on given per-frame detections (no video, no detector).

    Args:
        candidates: N arrays ``(K_t, 5)`` ``x0, y0, x1, y1, neighbours`` in source pixels (after the detector's
            own per-frame filters).
        fps: frames per second, copied into the track.
        options: temporal rules (``max_gap``, ``min_iou``, ``min_run``, ``smooth_window``); defaults if None.
        frame_size: ``(width, height)`` of the frames, for the report.
        detector: description for the report.

    Returns:
        The ``FaceTrack`` (see module docstring, steps 3-5).
    """
    opt = options or TrackOptions()
    raw = select_boxes(candidates)
    raw_detected = ~np.isnan(raw).any(axis=1)
    run = filter_runs(link_runs(raw, opt.max_gap, opt.min_iou), opt.min_run)
    boxes, has_face = fill_gaps(smooth_boxes(raw, run, opt.smooth_window), run)
    return FaceTrack(boxes=boxes, detected=run >= 0, has_face=has_face, fps=float(fps),
                     raw_detected=raw_detected, frame_size=frame_size, detector=detector)


# ------------------------------------------------------------------------------------------------ cascade
def find_cascade(name: str = DEFAULT_CASCADE) -> Path:
    """Locate an OpenCV Haar cascade XML, offline.

    Looked up in order: ``$FERTRAIN_FACE_CASCADE`` (a file path); ``fertrain/assets/haarcascades/<name>``
    (shipped with the project when present); ``cv2.data.haarcascades`` (OpenCV 4.x wheels ship the XML files
    there; OpenCV 5 wheels do not).

    Raises:
        FileNotFoundError: none of these holds the file; the message says where to put it.
    """
    tried = []
    env = os.environ.get(CASCADE_ENV)
    if env:
        if Path(env).is_file():
            return Path(env)
        tried.append(f"${CASCADE_ENV}={env}")
    dirs = [_ASSET_DIR]
    cv2_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if cv2_dir:
        dirs.append(Path(cv2_dir))
    for d in dirs:
        if (d / name).is_file():
            return d / name
        tried.append(str(d / name))
    raise FileNotFoundError(
        f"Haar cascade {name} not found (tried {', '.join(tried)}). OpenCV {cv2.__version__} ships no cascade "
        f"files; set ${CASCADE_ENV} or pass --cascade with the path of an OpenCV Haar cascade XML (it is in "
        f"any opencv-python 4.x wheel under cv2/data/)")


class HaarCascade:
    """OpenCV Haar cascade (``opencv-cascade-classifier`` XML, BOOST stages, HAAR upright features) in numpy.

    Follows OpenCV's ``CascadeClassifierImpl``/``HaarEvaluator`` (modules/objdetect/src/cascadedetect.cpp,
    OpenCV 4.x): per pyramid level the grey image is resized by 1/factor (bilinear), integral and squared
    integral images are taken, the base window slides with a stride of 2 pixels (1 above factor 2), each feature sum is
    multiplied by ``1 / sqrt(area * sqsum - sum^2)`` over the window's inner ``(w-2) x (h-2)`` rectangle and
    compared with the node threshold; a window survives a stage when the sum of its leaf values is >= the
    stage threshold. Surviving windows are clustered as by ``cv2.groupRectangles`` (eps 0.2). All windows of
    all levels are evaluated together, stage by stage, as array operations.

    Args:
        path: cascade XML file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a new-format OpenCV BOOST/HAAR cascade or uses tilted features.
    """

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Haar cascade {path} does not exist")
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as err:
            raise ValueError(f"Haar cascade {path} is not valid XML ({err})") from err
        node = root.find("cascade")
        if node is None or node.findtext("stageType", "").strip() != "BOOST" \
                or node.findtext("featureType", "").strip() != "HAAR":
            raise ValueError(f"{path} is not a new-format OpenCV BOOST/HAAR cascade (expected <cascade> with "
                             f"stageType BOOST and featureType HAAR)")
        self.path = path
        self.win = (int(node.findtext("width")), int(node.findtext("height")))
        feats = []
        for f in node.find("features"):
            if int(f.findtext("tilted", "0") or 0):
                raise ValueError(f"{path}: tilted Haar features are not supported")
            feats.append([[float(v) for v in r.text.split()] for r in f.find("rects")])
        self.stages = [self._stage(s, feats) for s in node.find("stages")]

    def _stage(self, s: ET.Element, feats: list) -> dict:
        """Flatten one stage: nodes (feature, threshold, children) and leaf values over all its weak trees."""
        thr, left, right, feat_of, leaves, roots = [], [], [], [], [], []
        for weak in s.find("weakClassifiers"):
            nums = weak.findtext("internalNodes").split()
            vals = [float(v) for v in weak.findtext("leafValues").split()]
            n0, l0 = len(thr), len(leaves)
            roots.append(n0)
            for i in range(0, len(nums), 4):
                lc, rc, fi, th = int(nums[i]), int(nums[i + 1]), int(nums[i + 2]), float(nums[i + 3])
                # children: > 0 internal node (local index), <= 0 leaf -child; encode leaves as -(global + 1)
                left.append(n0 + lc if lc > 0 else -(l0 - lc) - 1)
                right.append(n0 + rc if rc > 0 else -(l0 - rc) - 1)
                feat_of.append(fi)
                thr.append(th)
            leaves.extend(vals)
        # unique integral-image corners of the stage's features -> weight matrix (corners x nodes)
        corners: dict[tuple[int, int], int] = {}
        entries = []
        for j, fi in enumerate(feat_of):
            for x, y, w, h, wt in feats[fi]:
                x, y, w, h = int(x), int(y), int(w), int(h)
                for (cx, cy), sign in (((x, y), 1), ((x + w, y), -1), ((x, y + h), -1), ((x + w, y + h), 1)):
                    k = corners.setdefault((cy, cx), len(corners))
                    entries.append((k, j, sign * wt))
        # sparse weights, entries sorted by node: feature sums are one gather + np.add.reduceat per stage
        # (~12 entries per node; a dense corners x nodes matmul costs 100x more per window on late stages)
        k, j, v = np.array(sorted(entries, key=lambda e: e[1])).T
        starts = np.searchsorted(j, np.arange(len(thr)))
        return {"threshold": float(s.findtext("stageThreshold")), "node_thr": np.array(thr, dtype=np.float32),
                "left": np.array(left), "right": np.array(right), "leaves": np.array(leaves),
                "roots": np.array(roots), "corners": np.array(list(corners), dtype=np.int64).reshape(-1, 2),
                "entry_corner": k.astype(np.int64), "entry_weight": v.astype(np.float32), "node_start": starts,
                "stump": bool(np.all(np.array(left) < 0) and np.all(np.array(right) < 0))}

    def detect(self, gray: np.ndarray, scale_factor: float = 1.1, min_size: int = 0, min_neighbors: int = 3,
               step: int | None = None) -> np.ndarray:
        """Faces in a grey image: ``windows`` clustered as ``cv2.groupRectangles(rects, min_neighbors, 0.2)``.

        Args:
            gray: uint8 ``(H, W)``.
            scale_factor: window growth per pyramid level (> 1).
            min_size: smallest window side in pixels (the cascade's own size at least).
            min_neighbors: a detection needs more than this many raw windows (OpenCV's ``minNeighbors``).
            step: window stride in pixels of each pyramid level; None: OpenCV's rule (2 up to factor 2, then 1).

        Returns:
            float ``(K, 5)``: ``x0, y0, x1, y1, neighbours`` in pixels of ``gray``.
        """
        return _group_rectangles(self.windows(gray, scale_factor, min_size, step), min_neighbors)

    def windows(self, gray: np.ndarray, scale_factor: float = 1.1, min_size: int = 0,
                step: int | None = None) -> np.ndarray:
        """Raw windows that pass every stage: float ``(M, 4)`` ``x, y, w, h`` in pixels of ``gray`` (see ``detect``)."""
        ww, wh = self.win
        H, W = gray.shape
        levels, f = [], 1.0
        while round(W / f) >= ww and round(H / f) >= wh:  # OpenCV: factor = scale_factor**k, from 1
            if ww * f >= min_size and wh * f >= min_size:
                levels.append(f)
            f *= scale_factor
        if not levels:
            return np.zeros((0, 4))
        sums, sqs, bases, facs, xy = [], [], [], [], []
        stride = round(W / levels[0]) + 1
        row = 0
        for f in levels:
            sw, sh = round(W / f), round(H / f)
            img = gray if f == 1.0 else cv2.resize(gray, (sw, sh), interpolation=cv2.INTER_LINEAR)
            s, sq = cv2.integral2(img, sdepth=cv2.CV_32S, sqdepth=cv2.CV_64F)  # exact up to 8.4 Mpixel
            pad = ((0, 0), (0, stride - s.shape[1]))
            sums.append(np.pad(s, pad))
            sqs.append(np.pad(sq, pad))
            st = step if step else (1 if f > 2 else 2)
            ys, xs = np.mgrid[0:sh - wh + 1:st, 0:sw - ww + 1:st]
            bases.append(((row + ys) * stride + xs).ravel())
            xy.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
            facs.append(np.full(ys.size, f))
            row += s.shape[0]
        ii, sqii = np.concatenate(sums).ravel(), np.concatenate(sqs).ravel()
        base, fac, pos = np.concatenate(bases), np.concatenate(facs), np.concatenate(xy)
        # variance normalisation over the inner rectangle (1, 1, w-2, h-2)
        o = np.array([1 * stride + 1, 1 * stride + ww - 1, (wh - 1) * stride + 1, (wh - 1) * stride + ww - 1])
        sgn = np.array([1.0, -1.0, -1.0, 1.0])
        area = (ww - 2) * (wh - 2)
        s1 = ii[base[:, None] + o].astype(np.float64) @ sgn
        s2 = sqii[base[:, None] + o] @ sgn
        nf = area * s2 - s1 * s1
        nf = np.where(nf > 0, np.sqrt(np.maximum(nf, 0)), 1.0).astype(np.float32)
        alive = np.arange(len(base))
        for st in self.stages:
            if not len(alive):
                break
            off = (st["corners"][:, 0] * stride + st["corners"][:, 1])[st["entry_corner"]]
            total = np.zeros(len(alive), dtype=np.float32)
            for c in range(0, len(alive), 16384):  # chunks bound the (windows x corners) gather
                a = alive[c:c + 16384]
                g = ii[base[a, None] + off]  # (windows, entries) integral-image values at the rect corners
                # float32 feature sums, as OpenCV's HaarEvaluator (int sums times float weights)
                vals = np.add.reduceat(g.astype(np.float32) * st["entry_weight"], st["node_start"], axis=1)
                lim = st["node_thr"] * nf[a, None]  # (windows, nodes) float32
                if st["stump"]:
                    leaf = np.where(vals < lim, st["left"], st["right"])
                    total[c:c + len(a)] = st["leaves"][-leaf - 1].sum(axis=1, dtype=np.float32)
                else:
                    cur = np.broadcast_to(st["roots"], (len(a), len(st["roots"]))).copy()
                    rows = np.arange(len(a))[:, None]
                    while (cur >= 0).any():
                        nodes = np.maximum(cur, 0)
                        nxt = np.where(vals[rows, nodes] < lim[rows, nodes], st["left"][nodes], st["right"][nodes])
                        cur = np.where(cur >= 0, nxt, cur)
                    total[c:c + len(a)] = st["leaves"][-cur - 1].sum(axis=1)
            alive = alive[total >= st["threshold"] - 1e-6]  # OpenCV: reject if sum < threshold - FLT_EPSILON
        f = fac[alive]
        return np.stack([np.round(pos[alive, 0] * f), np.round(pos[alive, 1] * f),
                         np.round(ww * f), np.round(wh * f)], axis=1)


def _components(adj: np.ndarray) -> np.ndarray:
    """Connected-component labels 0..C-1 of a symmetric bool adjacency matrix (OpenCV ``partition``)."""
    labels = np.full(len(adj), -1, dtype=np.int64)
    c = 0
    for i in range(len(adj)):
        if labels[i] >= 0:
            continue
        stack, labels[i] = [i], c
        while stack:
            nb = np.flatnonzero(adj[stack.pop()] & (labels < 0))
            labels[nb] = c
            stack.extend(nb.tolist())
        c += 1
    return labels


def _group_rectangles(rects: np.ndarray, group_threshold: int, eps: float = 0.2) -> np.ndarray:
    """``cv2.groupRectangles`` (OpenCV 4.x objdetect): cluster ``x, y, w, h`` rects; ``(K, 5)`` x0,y0,x1,y1,n."""
    if len(rects) == 0:
        return np.zeros((0, 5))
    r = rects.astype(np.float64)
    x0, y0, w, h = r.T
    delta = eps * (np.minimum(w[:, None], w[None]) + np.minimum(h[:, None], h[None])) * 0.5
    sim = ((np.abs(x0[:, None] - x0[None]) <= delta) & (np.abs(y0[:, None] - y0[None]) <= delta)
           & (np.abs(x0[:, None] + w[:, None] - x0[None] - w[None]) <= delta)
           & (np.abs(y0[:, None] + h[:, None] - y0[None] - h[None]) <= delta))
    labels = _components(sim)
    counts = np.bincount(labels)
    means = np.stack([np.bincount(labels, r[:, k]) for k in range(4)], axis=1) / counts[:, None]
    means = np.round(means)
    keep = np.flatnonzero(counts > group_threshold)
    out = []
    for i in keep:  # drop a cluster lying inside a stronger one (OpenCV's second pass)
        n1 = counts[i]
        inside = False
        for j in keep:
            if i == j:
                continue
            n2 = counts[j]
            dx, dy = round(means[j, 2] * eps), round(means[j, 3] * eps)
            if (means[i, 0] >= means[j, 0] - dx and means[i, 1] >= means[j, 1] - dy
                    and means[i, 0] + means[i, 2] <= means[j, 0] + means[j, 2] + dx
                    and means[i, 1] + means[i, 3] <= means[j, 1] + means[j, 3] + dy
                    and (n2 > max(3, n1) or n1 < 3)):
                inside = True
                break
        if not inside:
            x, y, ww, hh = means[i]
            out.append([x, y, x + ww, y + hh, n1])
    return np.array(out, dtype=np.float64).reshape(-1, 5)


class _Detector:
    """Per-frame face detector: OpenCV's CascadeClassifier when this OpenCV has it, else ``HaarCascade``."""

    def __init__(self, opt: TrackOptions):
        self.opt = opt
        path = Path(opt.cascade) if opt.cascade else find_cascade()
        if not path.is_file():
            raise FileNotFoundError(f"Haar cascade {path} does not exist (expected an OpenCV cascade XML)")
        if hasattr(cv2, "CascadeClassifier"):
            self.cv = cv2.CascadeClassifier(str(path))
            if self.cv.empty():
                raise ValueError(f"OpenCV could not load the Haar cascade {path}")
            self.name = f"cv2.CascadeClassifier({path.name})"
        else:
            self.cv = None
            self.haar = HaarCascade(path)
            self.name = f"numpy HaarCascade({path.name})"
        self.name += (f" sf={opt.scale_factor} mn={opt.min_neighbors} min_face={opt.min_face_frac}"
                      f" side<={opt.detect_side}")

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        """Candidates ``(K, 5)`` ``x0, y0, x1, y1, neighbours`` in pixels of the source frame."""
        opt = self.opt
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        h, w = gray.shape
        scale = min(1.0, opt.detect_side / min(h, w))
        if scale < 1.0:
            gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        if opt.equalize:
            gray = cv2.equalizeHist(gray)
        min_size = int(round(opt.min_face_frac * min(gray.shape)))
        if self.cv is not None:
            rects, counts = self.cv.detectMultiScale2(gray, scaleFactor=opt.scale_factor,
                                                      minNeighbors=opt.min_neighbors, minSize=(min_size, min_size))
            rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
            cand = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:],
                                   np.asarray(counts, dtype=np.float64).reshape(-1, 1)], axis=1)
        else:
            cand = self.haar.detect(gray, opt.scale_factor, min_size, opt.min_neighbors)
        cand[:, :4] /= scale
        return cand


# ------------------------------------------------------------------------------------------------ decoding
def _open(video: str | Path) -> tuple[cv2.VideoCapture, Path]:
    """Open a video with OpenCV's FFmpeg backend; DatasetError naming the file if it cannot be opened."""
    path = Path(video)
    if not path.is_file():
        raise DatasetError(f"video {path} does not exist (expected a video file: {', '.join(VIDEO_SUFFIXES)})")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise DatasetError(f"video {path} cannot be opened by OpenCV/FFmpeg (not a video or corrupt container)")
    return cap, path


def _frames(video: str | Path) -> Iterator[np.ndarray]:
    """Decoded BGR frames in order, until the first frame that fails to decode (the true count)."""
    cap, _ = _open(video)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
    finally:
        cap.release()


def track_faces(video: str | Path, **detector_options) -> FaceTrack:
    """Decode every frame, detect, link, smooth and fill: the face track of one video.

    Args:
        video: video file (anything OpenCV's FFmpeg backend decodes).
        **detector_options: fields of ``TrackOptions`` (``cascade``, ``min_neighbors``, ``max_gap``, ...).

    Returns:
        ``FaceTrack`` over all N decodable frames (module docstring, steps 1-5).

    Raises:
        DatasetError: the file is missing, cannot be opened or no frame decodes.
        FileNotFoundError: no Haar cascade found (``find_cascade``).
        TypeError: an unknown option name.
    """
    names = {f.name for f in fields(TrackOptions)}
    unknown = set(detector_options) - names
    if unknown:
        raise TypeError(f"unknown track_faces option(s) {sorted(unknown)}; expected some of {sorted(names)}")
    opt = TrackOptions(**detector_options)
    cap, path = _open(video)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    cap.release()
    detector = _Detector(opt)
    candidates, size = [], (0, 0)
    for frame in _frames(path):
        size = (frame.shape[1], frame.shape[0])
        candidates.append(detector(frame))
    if not candidates:
        raise DatasetError(f"video {path} has no decodable frame")
    return track_from_detections(candidates, fps, opt, size, detector.name)


# --------------------------------------------------------------------------------------------------- crops
def square_box(box: np.ndarray, margin: float) -> tuple[int, int, int]:
    """Square crop around a box: ``(x0, y0, side)`` in integer pixels (may leave the frame).

    Side ``max(w, h) * (1 + margin)``, centred on the box centre (our alignment rule).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0) * (1.0 + margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    s = max(1, int(round(side)))
    return int(round(cx - s / 2)), int(round(cy - s / 2)), s


def _crop(bgr: np.ndarray, box: np.ndarray, size: int, margin: float) -> np.ndarray:
    """Square crop of a BGR frame, black outside the frame, resized to ``(size, size, 3)`` RGB uint8."""
    x, y, s = square_box(box, margin)
    h, w = bgr.shape[:2]
    out = np.zeros((s, s, 3), dtype=np.uint8)
    sx0, sy0, sx1, sy1 = max(x, 0), max(y, 0), min(x + s, w), min(y + s, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y:sy1 - y, sx0 - x:sx1 - x] = bgr[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return cv2.cvtColor(cv2.resize(out, (size, size), interpolation=interp), cv2.COLOR_BGR2RGB)


def _iter_crops(video: str | Path, track: FaceTrack, size: int,
                margin: float) -> Iterator[tuple[int, np.ndarray | None]]:
    """``(frame index, RGB crop or None)`` for every decoded frame; checks the frame count matches the track."""
    if size < 1:
        raise ValueError(f"size must be >= 1 pixel, got {size}")
    if margin <= -1:
        raise ValueError(f"margin must be > -1, got {margin}")
    n = 0
    for t, frame in enumerate(_frames(video)):
        if t >= track.num_frames:
            raise ValueError(f"video {video} decodes more frames than its track has ({track.num_frames})")
        yield t, (_crop(frame, track.boxes[t], size, margin) if track.has_face[t] else None)
        n = t + 1
    if n != track.num_frames:
        raise ValueError(f"video {video} decoded {n} frames but its track has {track.num_frames}")


def crop_faces(video: str | Path, track: FaceTrack, size: int = 112, margin: float = 0.25) -> np.ndarray:
    """Aligned square face crops of every frame.

    Args:
        video: the video ``track`` was computed on.
        track: its ``FaceTrack``.
        size: output side in pixels.
        margin: the square's side is ``max(w, h) * (1 + margin)`` of the smoothed box.

    Returns:
        uint8 ``(N, size, size, 3)`` RGB; all zeros for frames without a face (``track.has_face`` False).

    Raises:
        DatasetError: the video cannot be opened. ValueError: its frame count differs from the track's, or bad
        ``size``/``margin``.
    """
    out = np.zeros((track.num_frames, size, size, 3), dtype=np.uint8)
    for t, crop in _iter_crops(video, track, size, margin):
        if crop is not None:
            out[t] = crop
    return out


# --------------------------------------------------------------------------------------------------- output
def extract_video(video: str | Path, out_dir: str | Path, size: int = 112, margin: float = 0.25,
                  quality: int = 95, **detector_options) -> dict:
    """Track, crop and write one video as a frame folder.

    Writes ``out_dir/00000.jpg ...`` (file number = source frame index, 5 digits) for the frames with a face
    only: no-face frames get no file (our choice; they are listed in the report), and
    ``out_dir/face_track.json``: the report plus per-frame ``boxes`` (NaN as null), ``detected``, ``has_face``.

    Args:
        video: video file. out_dir: output folder (created). size, margin: see ``crop_faces``.
        quality: JPEG quality (0-100). **detector_options: ``TrackOptions`` fields.

    Returns:
        The report dict: ``video``, ``frames``, ``fps``, ``width``, ``height``, ``raw_detected``, ``rejected``,
        ``detected``, ``filled``, ``face_frames``, ``no_face_frames``, ``no_face_spans`` (inclusive 0-based
        ``[start, end]`` lists), ``seconds`` (wall time), ``detector``, ``written`` (JPEG files).

    Raises:
        DatasetError, FileNotFoundError, ValueError: as ``track_faces``/``crop_faces``; OSError when a file
        cannot be written.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    track = track_faces(video, **detector_options)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("[0-9][0-9][0-9][0-9][0-9].jpg"):  # a re-run must not leave stale frames
        old.unlink()
    written = 0
    for t, crop in _iter_crops(video, track, size, margin):
        if crop is None:
            continue
        file = out_dir / f"{t:05d}.jpg"
        if not cv2.imwrite(str(file), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise OSError(f"could not write {file}")
        written += 1
    report = {"video": str(video), **track.summary(), "seconds": round(time.perf_counter() - start, 2),
              "written": written, "size": size, "margin": margin}
    per_frame = {"boxes": [[None if np.isnan(v) else round(float(v), 2) for v in b] for b in track.boxes],
                 "detected": track.detected.astype(int).tolist(), "has_face": track.has_face.astype(int).tolist(),
                 "raw_detected": track.raw_detected.astype(int).tolist()}
    (out_dir / "face_track.json").write_text(json.dumps({**report, **per_frame}) + "\n")
    return report


def _find_videos(root: Path) -> list[Path]:
    """Videos under a folder (recursive, case-insensitive suffixes) or the file itself."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DatasetError(f"input {root} does not exist (expected a video file or a folder of videos)")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def extract_folder(input_path: str | Path, output: str | Path, size: int = 112, margin: float = 0.25,
                   **detector_options) -> list[dict]:
    """Run ``extract_video`` on a video or every video under a folder; write ``output/face_report.csv``.

    Frame folders mirror the input's relative paths: ``<output>/<relative path without suffix>/00000.jpg``
    (a single video gives ``<output>/<stem>/``).

    Returns:
        One report dict per video (see ``extract_video``), in path order.

    Raises:
        DatasetError: the input is missing or holds no video; errors of ``extract_video`` propagate (naming the
        video).
    """
    root, output = Path(input_path), Path(output)
    videos = _find_videos(root)
    if not videos:
        raise DatasetError(f"no video ({', '.join('*' + s for s in VIDEO_SUFFIXES)}) under {root}")
    reports = []
    for v in videos:
        rel = Path(v.name) if root.is_file() else v.relative_to(root)
        rep = extract_video(v, output / rel.with_suffix(""), size=size, margin=margin, **detector_options)
        rep["video"] = str(rel)
        reports.append(rep)
        log.info("%s: %d frames, %d detected, %d filled, no-face spans %s", rel, rep["frames"], rep["detected"],
                 rep["filled"], rep["no_face_spans"])
    output.mkdir(parents=True, exist_ok=True)
    with open(output / "face_report.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=REPORT_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for rep in reports:
            writer.writerow({**rep, "no_face_spans": json.dumps(rep["no_face_spans"])})
    return reports


def _table(reports: list[dict]) -> str:
    """Plain-text summary table of the reports."""
    cols = ("video", "frames", "fps", "raw_detected", "rejected", "detected", "filled", "no_face_frames",
            "seconds", "no_face_spans")
    rows = [[str(r[c]) if c != "no_face_spans" else json.dumps(r[c]) for c in cols] for r in reports]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m fertrain.preprocess.faces --input VIDEO_OR_DIR --output DIR [--size 112]``."""
    p = argparse.ArgumentParser(prog="python -m fertrain.preprocess.faces", description=__doc__.split("\n")[0])
    p.add_argument("--input", required=True, help="video file or folder (recursive: *.mp4 *.avi *.mov)")
    p.add_argument("--output", required=True, help="output folder: frame folders + face_report.csv")
    p.add_argument("--size", type=int, default=112, help="crop side in pixels (default 112)")
    p.add_argument("--margin", type=float, default=0.25, help="square side = max(w, h) * (1 + margin)")
    d = TrackOptions()
    p.add_argument("--cascade", default=None, help=f"Haar cascade XML (default: ${CASCADE_ENV}, assets, cv2.data)")
    for name in ("scale_factor", "min_neighbors", "min_face_frac", "detect_side", "max_gap", "min_iou", "min_run",
                 "smooth_window"):
        p.add_argument("--" + name.replace("_", "-"), type=type(getattr(d, name)), default=getattr(d, name))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    opts = {k: getattr(args, k) for k in ("cascade", "scale_factor", "min_neighbors", "min_face_frac", "detect_side",
                                          "max_gap", "min_iou", "min_run", "smooth_window")}
    try:
        reports = extract_folder(args.input, args.output, size=args.size, margin=args.margin, **opts)
    except (DatasetError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(_table(reports))
    print(f"report: {Path(args.output) / 'face_report.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
