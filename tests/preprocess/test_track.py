"""Temporal rules of the face tracker on synthetic detections: gaps, rejection, smoothing of boxes and landmarks,
overlap, and the online tracker (decode once) against the whole-video run."""

from __future__ import annotations

import numpy as np
import pytest

from fertrain.preprocess.track import FaceTracker, TrackOptions, spans_of, track_from_detections


def _detections(n: int, face: dict[int, tuple[float, float, float]], extra: dict[int, tuple] | None = None):
    """Per-frame candidates: ``face[t] = (cx, cy, side)`` -> one box (score 1) with 5 landmarks at fixed offsets;
    ``extra[t]`` another one (score 2: the per-frame choice)."""
    boxes, scores, lms = [], [], []
    for t in range(n):
        cands = [face[t]] if t in face else []
        cands += [(extra or {})[t]] if t in (extra or {}) else []
        b = np.array([[cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2] for cx, cy, s in cands]).reshape(-1, 4)
        lm = np.array([[[cx + dx * s, cy + dy * s] for dx, dy in ((-.2, -.1), (.2, -.1), (0, .1), (-.1, .3), (.1, .3))]
                       for cx, cy, s in cands]).reshape(-1, 5, 2)
        boxes.append(b)
        scores.append(np.array([1.0] * (t in face) + [2.0] * (t in (extra or {}))))
        lms.append(lm)
    return boxes, scores, lms


def test_spans_of_edges_and_empty():
    assert spans_of(np.array([1, 1, 0, 0, 1, 0, 1, 1], bool)) == [(0, 1), (4, 4), (6, 7)]
    assert spans_of(np.zeros(5, bool)) == [] and spans_of(np.ones(3, bool)) == [(0, 2)]


def test_fills_short_gaps_splits_long_ones_rejects_short_runs():
    rng = np.random.default_rng(0)
    face = {t: (100 + rng.normal(0, 2), 80 + rng.normal(0, 2), 60 + rng.normal(0, 1)) for t in range(10, 100)}
    for t in (30, 31, 32, 33):  # gap of 4 <= max_gap: bridged and filled
        face.pop(t)
    for t in range(50, 62):  # gap of 12 > max_gap: two runs, the gap is no-face
        face.pop(t)
    face.update({t: (300.0, 200.0, 40.0) for t in (105, 106, 107)})  # 3-frame burst elsewhere: false positive
    face[70] = (100.0, 80.0, 200.0)  # size jump inside a run: IoU too small, a 1-detection run, rejected
    track = track_from_detections(*_detections(120, face), TrackOptions(max_gap=6, min_iou=0.3, min_run=8))

    assert track.no_face_spans() == [(0, 9), (50, 61), (100, 119)]
    assert track.raw_detected.sum() == len(face) and not track.detected[[70, 105, 106, 107]].any()
    assert track.summary()["rejected"] == 4
    assert np.array_equal(np.flatnonzero(track.filled), [30, 31, 32, 33, 70])
    assert track.filled_spans() == [(30, 33), (70, 70)]
    assert np.isnan(track.boxes[~track.has_face]).all() and not np.isnan(track.boxes[track.has_face]).any()
    assert not np.isnan(track.landmarks[track.has_face]).any()
    assert track.boxes[70, 2] - track.boxes[70, 0] < 70  # interpolated from the neighbours, not the outlier


def test_smoothing_reduces_jitter_of_boxes_and_landmarks_and_filling_is_linear():
    rng = np.random.default_rng(1)
    face = {t: (100 + rng.normal(0, 4), 100.0, 50.0) for t in range(40)}
    raw = track_from_detections(*_detections(40, face), TrackOptions(smooth_window=1))
    smooth = track_from_detections(*_detections(40, face), TrackOptions(smooth_window=7))
    for get in (lambda tr: tr.boxes[:, [0, 2]].mean(1), lambda tr: tr.landmarks[:, 0, 0]):
        assert np.std(np.diff(get(smooth))) < 0.5 * np.std(np.diff(get(raw)))
    face = {t: (100.0 + 2 * t, 100.0, 50.0) for t in range(20) if t not in (8, 9, 10)}
    tr = track_from_detections(*_detections(20, face), TrackOptions(smooth_window=1))
    assert np.allclose(tr.boxes[9], [93, 75, 143, 125]) and tr.filled[8:11].all()
    assert np.allclose(tr.landmarks[9, 2], [118, 105])  # landmarks interpolated like the boxes


def test_two_faces_the_run_with_more_detections_nearby_wins():
    """A second face, chosen per frame (higher score) in every other frame of 20..38, forms a kept run of its own;
    where both runs cover a frame the face seen in more frames nearby keeps it, and its gaps are filled."""
    a = {t: (100.0, 100.0, 50.0) for t in range(0, 60)}
    b = {t: (300.0, 100.0, 50.0) for t in range(20, 40) if t % 2 == 0}
    track = track_from_detections(*_detections(60, a, b))
    assert np.allclose(track.boxes[:, 0], 75.0) and track.has_face.all()
    assert np.array_equal(np.flatnonzero(track.filled), sorted(b))
    assert track.summary()["multi_face_frames"] == 10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_online_tracker_equals_whole_video_run(seed):
    """Frames popped while detections are still arriving (what lets a video be decoded once) are exactly the
    whole-video result: every decision about frame t needs detections up to t + lag only."""
    rng = np.random.default_rng(seed)
    n, face, cx = 300, {}, 100.0
    for t in range(n):
        cx += rng.normal(0, 3)
        if rng.random() < 0.75 and not 120 <= t < 140:  # and a long stretch without a face
            face[t] = (cx, 100 + rng.normal(0, 2), 60 + rng.normal(0, 2))
    extra = {t: (rng.uniform(0, 400), rng.uniform(0, 300), 40.0) for t in range(n) if rng.random() < 0.05}
    boxes, scores, lms = _detections(n, face, extra)
    for t in range(n):  # the outliers sometimes outscore the face
        scores[t] = rng.random(len(scores[t]))
    opt = TrackOptions(max_gap=4, min_run=6, smooth_window=5)
    whole = track_from_detections(boxes, scores, lms, opt)
    online = FaceTracker(opt, 5)
    popped = []
    for t in range(n):
        online.push(boxes[t], scores[t], lms[t])
        popped += online.pop()
        assert all(f.index <= t - opt.lag for f in popped)
    popped += online.pop(final=True)
    assert [f.index for f in popped] == list(range(n))
    got = online.track()
    assert 0 < whole.has_face.sum() < n and whole.summary()["rejected"] > 0  # the rules did something
    for name in ("has_face", "detected"):
        assert np.array_equal(getattr(got, name), getattr(whole, name)), name
    assert np.allclose(got.boxes, whole.boxes, equal_nan=True)
    assert np.allclose(got.landmarks, whole.landmarks, equal_nan=True)


def test_options_are_checked():
    for bad in ({"min_run": 0}, {"max_gap": -1}, {"min_iou": 1.5}, {"smooth_window": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrackOptions(**bad)
    assert TrackOptions(max_gap=6, min_run=8, smooth_window=5).lag == 7 * 7
