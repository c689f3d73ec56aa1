"""Stage 3 of face extraction: one face track per video from per-frame detections (all rules ours).

Per frame the detector's candidates are reduced to one (highest score; ties: the larger box), then:

1. **Linking** (online, ``Linker``): a detection joins an open run when at most ``max_gap`` frames lie between it
   and the run's last detection and its IoU with that detection is >= ``min_iou`` (the best such run);
   otherwise it opens a new run. A one-frame outlier opens its own run and does not cut the face's run.
2. **Rejection**: runs with fewer than ``min_run`` detections are false positives (a texture, a title card):
   counted (``rejected``) and reported, never silently dropped.
3. **Smoothing**: inside a run, box centre and size and every landmark coordinate are averaged over a centred
   window of ``smooth_window`` detected frames (shrinking symmetrically at the run's ends), so aligned clips do
   not jitter; runs never mix.
4. **Filling**: frames between two detections of a kept run (gaps of at most ``max_gap`` frames by
   construction) get the box and landmarks linearly interpolated (``filled``). Nothing is extrapolated before a
   run's first or after its last detection: those frames are no-face.
5. **Overlap**: where two kept runs cover a frame (two faces), the run with more detections within
   ``lag`` frames of it wins (ties: the older run).

Every decision about frame ``t`` depends only on detections up to ``t + lag`` frames, ``lag = max(min_run - 1,
smooth_window // 2, 1) * (max_gap + 1)``: a run that will reach ``min_run`` detections does so within
``(min_run - 1) * (max_gap + 1)`` frames. ``FaceTracker`` uses that to emit finished frames while the video is
still being decoded, so a video is decoded once with at most ``lag`` + a few frames in memory;
``track_from_detections`` runs the same code on a whole video's detections (the tests check both agree).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["FaceTrack", "FaceTracker", "Linker", "TrackOptions", "select", "spans_of", "track_from_detections"]


@dataclass
class TrackOptions:
    """Temporal rules (module docstring). Frames are source frames.

    Attributes:
        max_gap: longest run of frames without a detection that is bridged (and filled) inside a run.
        min_iou: IoU with the run's last detection needed to join it.
        min_run: detections a run needs to be kept.
        smooth_window: centred moving-average window, in detected frames, for boxes and landmarks.
    """

    max_gap: int = 6
    min_iou: float = 0.3
    min_run: int = 8
    smooth_window: int = 5

    def __post_init__(self) -> None:
        if int(self.max_gap) < 0:
            raise ValueError(f"max_gap must be >= 0 frames, got {self.max_gap}")
        for name in ("min_run", "smooth_window"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in [0, 1], got {self.min_iou}")

    @property
    def lag(self) -> int:
        """Frames of look-ahead every decision needs (module docstring)."""
        return max(self.min_run - 1, self.smooth_window // 2, 1) * (self.max_gap + 1)


def spans_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive 0-based ``(start, end)`` spans of the True runs of a bool ``(N,)`` mask, in order."""
    m = np.asarray(mask, dtype=bool).astype(np.int8)
    d = np.diff(np.concatenate([[0], m, [0]]))
    return [(int(s), int(e)) for s, e in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def select(boxes: np.ndarray, scores: np.ndarray) -> int:
    """Index of the candidate kept in a frame: highest score, ties the larger box; -1 when there is none."""
    if len(boxes) == 0:
        return -1
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(np.lexsort((area, scores))[-1])


class Linker:
    """Online run linking (rule 1): ``push`` one frame's box (NaN row: no detection), get its run id (-1: none)."""

    def __init__(self, max_gap: int, min_iou: float) -> None:
        self.max_gap, self.min_iou = max_gap, min_iou
        self._open: dict[int, tuple[int, np.ndarray]] = {}  # run -> (last frame, last box)
        self.t, self.runs = 0, 0

    def push(self, box: np.ndarray) -> int:
        t, self.t = self.t, self.t + 1
        self._open = {r: v for r, v in self._open.items() if t - v[0] - 1 <= self.max_gap}
        if np.isnan(box).any():
            return -1
        best, best_iou = -1, -1.0
        for r, (_, last) in self._open.items():
            iou = _iou(box, last)
            if iou >= self.min_iou and iou > best_iou:
                best, best_iou = r, iou
        if best < 0:
            best, self.runs = self.runs, self.runs + 1
        self._open[best] = (t, box)
        return best


def _centred_mean(values: np.ndarray, half: int) -> np.ndarray:
    """Centred moving average over rows, window ``2 * half + 1`` shrinking symmetrically at both ends (NaN-aware)."""
    m = len(values)
    out = np.empty_like(values)
    for i in range(m):
        h = min(half, i, m - 1 - i)
        with np.errstate(invalid="ignore"):
            block = values[i - h:i + h + 1]
            ok = ~np.isnan(block)
            n = ok.sum(axis=0)
            out[i] = np.where(n > 0, np.where(ok, block, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
    return out


def _resolve(boxes: np.ndarray, lms: np.ndarray, run: np.ndarray, kept: set[int], opt: TrackOptions,
             lag: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rules 3-5 on a stretch of frames: ``(boxes (n, 4), landmarks (n, P, 2), chosen run (n,))``, NaN / -1 where
    no kept run covers a frame."""
    n, p = len(run), lms.shape[1]
    out = np.full((n, 4 + 2 * p), np.nan)
    chosen = np.full(n, -1, dtype=np.int64)
    best = np.full(n, -1, dtype=np.int64)
    half = opt.smooth_window // 2
    for r in sorted(kept & set(np.unique(run[run >= 0]).tolist())):
        idx = np.flatnonzero(run == r)
        b = boxes[idx]
        vals = np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2], lms[idx].reshape(len(idx), -1)],
                              axis=1)  # (m, 4 + 2P): cx, cy, w, h, landmark x/y
        sm = _centred_mean(vals, half)
        cover = np.arange(idx[0], idx[-1] + 1)
        count = np.searchsorted(idx, cover + lag, "right") - np.searchsorted(idx, cover - lag, "left")
        win = count > best[cover]  # strict: on a tie the older (lower id) run keeps the frame
        frames = cover[win]
        if not len(frames):
            continue
        best[frames], chosen[frames] = count[win], r
        for k in range(vals.shape[1]):
            col = sm[:, k]
            ok = ~np.isnan(col)
            out[frames, k] = np.interp(frames, idx[ok], col[ok]) if ok.any() else np.nan
    c, s = out[:, :2], out[:, 2:4]
    return (np.concatenate([c - s / 2, c + s / 2], axis=1), out[:, 4:].reshape(n, p, 2), chosen)


@dataclass
class FaceTrack:
    """One face track over the N decoded frames of a video.

    Attributes:
        boxes: float ``(N, 4)`` ``x0, y0, x1, y1`` source pixels after smoothing and filling; NaN without a face.
        landmarks: float ``(N, P, 2)`` ``x, y`` source pixels, smoothed and filled like the boxes (P = 5, or 0
            when none were computed); NaN without a face or without landmarks.
        scores: float ``(N,)`` detector score of the frame's kept candidate; NaN without one.
        detected: bool ``(N,)`` a kept run detected the face in this frame.
        has_face: bool ``(N,)`` a box exists (detected or filled).
        raw_detected: bool ``(N,)`` the detector returned at least one face (before the temporal rules).
        faces_in_frame: int ``(N,)`` candidates the detector returned (> 1: several faces; the kept one is chosen
            by ``select``).
        fps: frames per second of the container (0.0 unknown).
        frame_size: ``(width, height)`` of the source frames, pixels.
        landmark_scheme: ``"dlib5"``, ``"mtcnn5"`` or None (``fertrain.preprocess.align.TEMPLATES``).
        detector: what detected (for reports).
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    scores: np.ndarray
    detected: np.ndarray
    has_face: np.ndarray
    raw_detected: np.ndarray
    faces_in_frame: np.ndarray
    fps: float = 0.0
    frame_size: tuple[int, int] = (0, 0)
    landmark_scheme: str | None = None
    detector: str = ""

    def __post_init__(self) -> None:
        n = len(self.boxes)
        for name in ("scores", "detected", "has_face", "raw_detected", "faces_in_frame"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"FaceTrack.{name} must have {n} entries, got {len(getattr(self, name))}")
        if self.landmarks.shape[:1] != (n,):
            raise ValueError(f"FaceTrack.landmarks must have shape ({n}, P, 2), got {self.landmarks.shape}")

    @property
    def num_frames(self) -> int:
        """N, the number of decoded frames."""
        return len(self.boxes)

    @property
    def filled(self) -> np.ndarray:
        """bool ``(N,)``: frames with a box but no kept detection (interpolated)."""
        return self.has_face & ~self.detected

    def no_face_spans(self) -> list[tuple[int, int]]:
        """Inclusive 0-based ``(start, end)`` frame spans without a face, in order."""
        return spans_of(~self.has_face)

    def filled_spans(self) -> list[tuple[int, int]]:
        """Inclusive 0-based spans of filled frames, in order."""
        return spans_of(self.filled)

    def summary(self) -> dict:
        """Counts and spans, JSON-ready (no per-frame arrays)."""
        return {
            "frames": self.num_frames,
            "fps": round(float(self.fps), 3),
            "width": int(self.frame_size[0]),
            "height": int(self.frame_size[1]),
            "raw_detected": int(self.raw_detected.sum()),
            "multi_face_frames": int((self.faces_in_frame > 1).sum()),
            "rejected": int((self.raw_detected & ~self.detected).sum()),
            "detected": int(self.detected.sum()),
            "filled": int(self.filled.sum()),
            "face_frames": int(self.has_face.sum()),
            "no_face_frames": int((~self.has_face).sum()),
            "no_face_spans": [list(s) for s in self.no_face_spans()],
            "filled_spans": [list(s) for s in self.filled_spans()],
            "landmark_scheme": self.landmark_scheme,
            "detector": self.detector,
        }

    def per_frame(self) -> dict:
        """Per-frame arrays as JSON lists (NaN as null, pixels rounded to 0.01)."""
        def num(a):
            return [None if np.isnan(v) else round(float(v), 2) for v in a]

        return {"boxes": [num(b) for b in self.boxes],
                "landmarks": [[num(p) for p in lm] if not np.isnan(lm).all() else None for lm in self.landmarks],
                "scores": num(self.scores),
                "detected": self.detected.astype(int).tolist(),
                "has_face": self.has_face.astype(int).tolist(),
                "raw_detected": self.raw_detected.astype(int).tolist(),
                "faces_in_frame": self.faces_in_frame.astype(int).tolist()}


@dataclass
class TrackedFrame:
    """One finished frame of ``FaceTracker``: ``box (4,)``, ``landmarks (P, 2)`` (NaN without a face)."""

    index: int
    box: np.ndarray
    landmarks: np.ndarray
    has_face: bool


@dataclass
class FaceTracker:
    """The temporal rules online: ``push`` each frame's detections, ``pop`` the frames whose face is decided.

    Args:
        options: the rules.
        num_points: landmarks per face (P; 0 for none).
    """

    options: TrackOptions = field(default_factory=TrackOptions)
    num_points: int = 5

    def __post_init__(self) -> None:
        self._linker = Linker(self.options.max_gap, self.options.min_iou)
        self._boxes: list[np.ndarray] = []
        self._lms: list[np.ndarray] = []
        self._scores: list[float] = []
        self._run: list[int] = []
        self._faces: list[int] = []
        self._count: dict[int, int] = {}
        self._done = 0  # frames popped
        self._chosen: list[int] = []
        self._out_boxes: list[np.ndarray] = []
        self._out_lms: list[np.ndarray] = []

    def push(self, boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray | None = None) -> None:
        """Add the next frame's candidates: ``boxes (K, 4)``, ``scores (K,)``, ``landmarks (K, P, 2)`` or None."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        k = select(boxes, np.asarray(scores, dtype=np.float64).reshape(-1))
        box = boxes[k] if k >= 0 else np.full(4, np.nan)
        lm = np.full((self.num_points, 2), np.nan)
        if k >= 0 and landmarks is not None and self.num_points:
            lm = np.asarray(landmarks, dtype=np.float64)[k].reshape(self.num_points, 2)
        r = self._linker.push(box)
        if r >= 0:
            self._count[r] = self._count.get(r, 0) + 1
        self._boxes.append(box)
        self._lms.append(lm)
        self._scores.append(float(np.asarray(scores).reshape(-1)[k]) if k >= 0 else np.nan)
        self._run.append(r)
        self._faces.append(len(boxes))

    def pop(self, final: bool = False) -> list[TrackedFrame]:
        """Frames now decided (all remaining ones when ``final``: call it after the last ``push``), in order."""
        lag = self.options.lag
        n = len(self._run)
        upto = n if final else n - lag  # frames [done, upto) are decided
        if upto <= self._done:
            return []
        start = max(0, self._done - lag)
        kept = {r for r, c in self._count.items() if c >= self.options.min_run}
        boxes, lms, chosen = _resolve(np.array(self._boxes[start:]), np.array(self._lms[start:]).reshape(
            n - start, self.num_points, 2), np.array(self._run[start:]), kept, self.options, lag)
        out = []
        for t in range(self._done, upto):
            i = t - start
            self._chosen.append(int(chosen[i]))
            self._out_boxes.append(boxes[i])
            self._out_lms.append(lms[i])
            out.append(TrackedFrame(t, boxes[i], lms[i], bool(chosen[i] >= 0)))
        self._done = upto
        return out

    def track(self, fps: float = 0.0, frame_size: tuple[int, int] = (0, 0), landmark_scheme: str | None = None,
              detector: str = "") -> FaceTrack:
        """The ``FaceTrack`` of every frame (after ``pop(final=True)``)."""
        if self._done != len(self._run):
            raise RuntimeError(f"FaceTracker.track: {len(self._run) - self._done} frames not popped yet; "
                               f"call pop(final=True) first")
        n = len(self._run)
        run, chosen = np.array(self._run, dtype=np.int64), np.array(self._chosen, dtype=np.int64)
        boxes = np.array(self._out_boxes).reshape(n, 4)
        return FaceTrack(boxes=boxes, landmarks=np.array(self._out_lms).reshape(n, self.num_points, 2),
                         scores=np.array(self._scores, dtype=np.float64), detected=(run >= 0) & (chosen == run),
                         has_face=chosen >= 0, raw_detected=~np.isnan(np.array(self._boxes).reshape(n, 4)).any(1),
                         faces_in_frame=np.array(self._faces, dtype=np.int64), fps=float(fps),
                         frame_size=tuple(frame_size), landmark_scheme=landmark_scheme, detector=detector)


def track_from_detections(boxes: list[np.ndarray], scores: list[np.ndarray],
                          landmarks: list[np.ndarray | None] | None = None, options: TrackOptions | None = None,
                          num_points: int = 5, **track_info) -> FaceTrack:
    """The temporal rules on a whole video's detections (no video, no detector).

    Args:
        boxes: N arrays ``(K_t, 4)`` ``x0, y0, x1, y1`` source pixels (K_t may be 0).
        scores: N arrays ``(K_t,)``.
        landmarks: N arrays ``(K_t, P, 2)`` or None.
        options: the rules (defaults if None).
        num_points: P (0: no landmarks).
        **track_info: ``fps``, ``frame_size``, ``landmark_scheme``, ``detector`` for the ``FaceTrack``.
    """
    tracker = FaceTracker(options or TrackOptions(), num_points if landmarks is not None else 0)
    for t in range(len(boxes)):
        tracker.push(boxes[t], scores[t], None if landmarks is None else landmarks[t])
    tracker.pop(final=True)
    return tracker.track(**track_info)
