"""Face extraction: temporal rules on synthetic detections, the numpy Haar evaluator on a hand-made cascade,
crops and frame folders on a synthetic video, bad input; the real videos of ../shared when present."""

from __future__ import annotations

import csv
import glob
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from fertrain.data.records import DatasetError
from fertrain.preprocess import faces as F
from fertrain.preprocess.faces import FaceTrack, TrackOptions, track_from_detections

TOL = 3  # frames: the labels of no_face.csv are hand-made, about +-3 frames


# ------------------------------------------------------------------------------------------ synthetic tracks
def _cands(n: int, face: dict[int, tuple[float, float, float]]) -> list[np.ndarray]:
    """Per-frame candidates: ``face[t] = (cx, cy, side)`` -> one box with 10 neighbours; other frames none."""
    out = []
    for t in range(n):
        if t in face:
            cx, cy, s = face[t]
            out.append(np.array([[cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2, 10.0]]))
        else:
            out.append(np.zeros((0, 5)))
    return out


def test_spans_of_edges_and_empty():
    assert F.spans_of(np.array([1, 1, 0, 0, 1, 0, 1, 1], bool)) == [(0, 1), (4, 4), (6, 7)]
    assert F.spans_of(np.zeros(5, bool)) == []
    assert F.spans_of(np.ones(3, bool)) == [(0, 2)]


def test_track_fills_short_gaps_splits_long_ones_and_rejects_short_runs():
    rng = np.random.default_rng(0)
    n = 120
    face = {t: (100 + rng.normal(0, 2), 80 + rng.normal(0, 2), 60 + rng.normal(0, 1)) for t in range(10, 100)}
    for t in (30, 31, 32, 33):  # gap of 4 <= max_gap: bridged and filled
        face.pop(t)
    for t in range(50, 62):  # gap of 12 > max_gap: two runs, the gap is no-face
        face.pop(t)
    face.update({t: (300.0, 200.0, 40.0) for t in (105, 106, 107)})  # 3-frame burst elsewhere: false positive
    face[70] = (100.0, 80.0, 200.0)  # a size jump inside a run: IoU too small, a 1-detection run, rejected
    opt = TrackOptions(max_gap=6, min_iou=0.3, min_run=8, smooth_window=5)
    track = track_from_detections(_cands(n, face), fps=25.0, options=opt)

    assert track.no_face_spans() == [(0, 9), (50, 61), (100, 119)]
    assert track.raw_detected.sum() == len(face)
    assert not track.detected[[70, 105, 106, 107]].any()
    assert track.summary()["rejected"] == 4
    assert track.filled.sum() == 4 + 1  # frames 30..33 and the rejected frame 70 inside the run
    assert np.array_equal(np.flatnonzero(track.filled), [30, 31, 32, 33, 70])
    assert np.isnan(track.boxes[~track.has_face]).all() and not np.isnan(track.boxes[track.has_face]).any()
    # the filled box at frame 70 is interpolated from its neighbours, not the 200-pixel outlier
    assert track.boxes[70, 2] - track.boxes[70, 0] < 70


def test_smoothing_reduces_jitter_and_filling_is_linear():
    rng = np.random.default_rng(1)
    face = {t: (100 + rng.normal(0, 4), 100.0, 50.0) for t in range(40)}
    raw = F.select_boxes(_cands(40, face))
    run = F.link_runs(raw, max_gap=6, min_iou=0.3)
    smooth = F.smooth_boxes(raw, run, window=7)
    cx_raw, cx_smooth = raw[:, [0, 2]].mean(1), smooth[:, [0, 2]].mean(1)
    assert np.std(np.diff(cx_smooth)) < 0.5 * np.std(np.diff(cx_raw))
    # linear interpolation across a 3-frame gap
    boxes = np.full((6, 4), np.nan)
    boxes[0], boxes[4] = [0, 0, 10, 10], [8, 4, 18, 14]
    filled, has = F.fill_gaps(boxes, np.array([0, -1, -1, -1, 0, -1]))
    assert np.allclose(filled[2], [4, 2, 14, 12]) and has.tolist() == [1, 1, 1, 1, 1, 0]


def test_select_boxes_prefers_neighbours_then_area():
    c = [np.array([[0, 0, 10, 10, 3], [0, 0, 50, 50, 9], [0, 0, 80, 80, 9]]), np.zeros((0, 5))]
    out = F.select_boxes(c)
    assert np.allclose(out[0], [0, 0, 80, 80]) and np.isnan(out[1]).all()


def test_options_are_checked():
    with pytest.raises(ValueError, match="min_run"):
        TrackOptions(min_run=0)
    with pytest.raises(TypeError, match="unknown track_faces option"):
        F.track_faces("x.mp4", min_neighbours=3)
    with pytest.raises(ValueError, match="detected must have shape"):
        FaceTrack(boxes=np.zeros((3, 4)), detected=np.ones(2, bool), has_face=np.ones(3, bool), fps=1.0)


# ------------------------------------------------------------------------------------ numpy Haar evaluator
_TINY_CASCADE = """<?xml version="1.0"?>
<opencv_storage>
<cascade type_id="opencv-cascade-classifier"><stageType>BOOST</stageType>
  <featureType>HAAR</featureType><height>24</height><width>24</width>
  <stageParams><maxWeakCount>1</maxWeakCount></stageParams>
  <featureParams><maxCatCount>0</maxCatCount></featureParams>
  <stageNum>1</stageNum>
  <stages><_>
      <maxWeakCount>1</maxWeakCount>
      <stageThreshold>0.</stageThreshold>
      <weakClassifiers><_>
          <internalNodes>0 -1 0 -0.3</internalNodes>
          <leafValues>1. -1.</leafValues></_></weakClassifiers></_></stages>
  <features><_><rects><_>0 0 24 24 -1.</_><_>0 0 12 24 2.</_></rects></_></features>
</cascade>
</opencv_storage>
"""


def _brute_force_windows(img: np.ndarray, thr: float, step: int = 2) -> set[tuple[int, int]]:
    """The tiny cascade evaluated window by window (level 1 only): feature = 2 * sum(left half) - sum(window),
    divided by sqrt(area * sqsum - sum^2) over the inner 22x22 rectangle; the window passes if it is < thr."""
    out = set()
    f = img.astype(np.float64)
    for y in range(0, img.shape[0] - 24 + 1, step):
        for x in range(0, img.shape[1] - 24 + 1, step):
            w = f[y:y + 24, x:x + 24]
            inner = w[1:23, 1:23]
            nf = np.sqrt(max(inner.size * (inner ** 2).sum() - inner.sum() ** 2, 0)) or 1.0
            if (2 * w[:, :12].sum() - w.sum()) < thr * nf:
                out.add((x, y))
    return out


def test_haar_evaluator_matches_a_window_by_window_evaluation(tmp_path):
    xml = tmp_path / "tiny.xml"
    xml.write_text(_TINY_CASCADE)
    hc = F.HaarCascade(xml)
    rng = np.random.default_rng(0)
    img = rng.integers(100, 130, (60, 80)).astype(np.uint8)
    img[10:40, 20:35], img[10:40, 35:50] = 20, 230  # dark left, bright right: some windows pass, most do not
    got = hc.windows(img, scale_factor=10.0)  # one pyramid level (factor 1): stride 2, 24x24 windows
    assert np.all(got[:, 2:] == 24)
    want = _brute_force_windows(img, -0.3)
    assert 0 < len(want) < 0.5 * (29 * 19)
    assert {(int(x), int(y)) for x, y in got[:, :2]} == want
    # clustering: the passing windows group into detections centred on the dark/bright edge
    det = hc.detect(img, scale_factor=10.0, min_neighbors=2)
    assert len(det) >= 1 and np.all(det[:, 4] > 2)
    cx = (det[:, 0] + det[:, 2]) / 2
    assert np.all(np.abs(cx - 35) <= 12)


def test_group_rectangles_as_opencv():
    rects = np.array([[10, 10, 40, 40], [11, 10, 40, 41], [12, 11, 39, 40], [10, 12, 41, 40],
                      [100, 100, 30, 30]], dtype=float)
    out = F._group_rectangles(rects, group_threshold=2)
    assert out.shape == (1, 5) and out[0, 4] == 4 and np.allclose(out[0, :2], [11, 11], atol=1)
    assert F._group_rectangles(rects, group_threshold=4).shape == (0, 5)


def test_haar_cascade_rejects_other_formats(tmp_path):
    bad = tmp_path / "lbp.xml"
    bad.write_text(_TINY_CASCADE.replace(">HAAR<", ">LBP<"))
    with pytest.raises(ValueError, match="BOOST/HAAR"):
        F.HaarCascade(bad)
    with pytest.raises(FileNotFoundError, match="missing.xml"):
        F.HaarCascade(tmp_path / "missing.xml")


def test_find_cascade_names_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setenv(F.CASCADE_ENV, str(tmp_path / "nope.xml"))
    try:
        found = F.find_cascade("surely_not_a_cascade.xml")
    except FileNotFoundError as err:
        assert "nope.xml" in str(err) and "--cascade" in str(err)
    else:
        pytest.fail(f"found {found}")


# ------------------------------------------------------------------------------- synthetic video and crops
def _synthetic_video(path: Path, n: int = 12) -> Path:
    """An MJPG .avi of ``n`` 160x120 frames: grey, a red square at (40..80, 30..70)."""
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    assert vw.isOpened(), "OpenCV cannot write MJPG .avi here"
    for _ in range(n):
        frame = np.full((120, 160, 3), 90, np.uint8)
        frame[30:70, 40:80] = (0, 0, 255)  # BGR red
        vw.write(frame)
    vw.release()
    return path


def _track(n: int, face_frames: range) -> FaceTrack:
    boxes = np.full((n, 4), np.nan)
    has = np.zeros(n, bool)
    has[list(face_frames)] = True
    boxes[has] = [40, 30, 80, 70]
    return FaceTrack(boxes=boxes, detected=has, has_face=has, fps=10.0, frame_size=(160, 120))


def test_crop_faces_square_rgb_and_zeros_without_face(tmp_path):
    video = _synthetic_video(tmp_path / "v.avi")
    track = _track(12, range(2, 10))
    crops = F.crop_faces(video, track, size=32, margin=0.0)
    assert crops.shape == (12, 32, 32, 3) and crops.dtype == np.uint8
    assert not crops[[0, 1, 10, 11]].any()
    centre = crops[5, 8:24, 8:24].reshape(-1, 3).mean(0)
    assert centre[0] > 200 and centre[1] < 40 and centre[2] < 40  # RGB red
    wide = F.crop_faces(video, track, size=32, margin=1.0)  # the grey surround enters the crop
    assert wide[5, 0, 0, 0] < 150
    # a box leaving the frame is padded with black
    x0, y0, s = F.square_box(np.array([-20, -20, 20, 20]), 0.0)
    assert (x0, y0, s) == (-20, -20, 40)


def test_crop_faces_checks_the_frame_count(tmp_path):
    video = _synthetic_video(tmp_path / "v.avi", n=6)
    with pytest.raises(ValueError, match="decoded 6 frames but its track has 8"):
        F.crop_faces(video, _track(8, range(2, 5)))


def test_extract_writes_face_frames_json_and_report(tmp_path, monkeypatch):
    src = tmp_path / "in" / "sub"
    src.mkdir(parents=True)
    _synthetic_video(src / "clip.avi", n=10)
    track = _track(10, range(3, 8))
    monkeypatch.setattr(F, "track_faces", lambda video, **kw: track)  # no detector: the writing path only
    reports = F.extract_folder(tmp_path / "in", tmp_path / "out", size=48)
    folder = tmp_path / "out" / "sub" / "clip"
    assert sorted(p.name for p in folder.glob("*.jpg")) == [f"{t:05d}.jpg" for t in range(3, 8)]
    assert cv2.imread(str(folder / "00003.jpg")).shape == (48, 48, 3)
    meta = json.loads((folder / "face_track.json").read_text())
    assert meta["no_face_spans"] == [[0, 2], [8, 9]] and meta["boxes"][0] == [None] * 4 and meta["written"] == 5
    rows = list(csv.DictReader(open(tmp_path / "out" / "face_report.csv")))
    assert len(rows) == 1 and rows[0]["video"] == str(Path("sub/clip.avi")) and rows[0]["frames"] == "10"
    assert json.loads(rows[0]["no_face_spans"]) == [[0, 2], [8, 9]] and reports[0]["face_frames"] == 5


def test_bad_input_names_the_file(tmp_path):
    with pytest.raises(DatasetError, match="missing.mp4.*does not exist"):
        F.track_faces(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DatasetError, match="junk.mp4"):
        F.track_faces(junk)
    with pytest.raises(DatasetError, match="does not exist"):
        F.extract_folder(tmp_path / "missing_dir", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no video"):
        F.extract_folder(tmp_path / "empty", tmp_path / "out")
    assert F.main(["--input", str(tmp_path / "missing.mp4"), "--output", str(tmp_path / "o")]) == 2


# ------------------------------------------------------------------------------------------- real videos
@pytest.fixture(scope="module")
def cascade(tmp_path_factory) -> Path:
    """The frontal-face Haar cascade: ``find_cascade()``, else read out of an opencv-python 4.x wheel stored on
    this machine (nothing installed); skip with the reason when neither exists."""
    try:
        return F.find_cascade()
    except FileNotFoundError as err:
        reason = str(err)
    for wheel in sorted(glob.glob("/opt/pypi*/files/opencv_python*-4.*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            member = f"cv2/data/{F.DEFAULT_CASCADE}"
            if member in zf.namelist():
                out = tmp_path_factory.mktemp("cascade") / F.DEFAULT_CASCADE
                out.write_bytes(zf.read(member))
                return out
    pytest.skip(f"no Haar cascade available: {reason}")


def _expected_spans(shared: Path, video: str) -> list[tuple[int, int]]:
    with open(shared / "data/real/no_face.csv") as fh:
        return [(int(r["start_frame"]), int(r["end_frame"])) for r in csv.DictReader(fh) if r["video"] == video]


def _spans_match(got: list[tuple[int, int]], want: list[tuple[int, int]], frames: int) -> bool:
    """Same number of spans, each end within TOL frames (label ends clamped to the decodable frames)."""
    want = [(s, min(e, frames - 1)) for s, e in want]
    return len(got) == len(want) and all(abs(a - c) <= TOL and abs(b - d) <= TOL
                                         for (a, b), (c, d) in zip(got, want))


def test_single_face_video_gives_crops_for_every_frame(shared_dir, cascade, tmp_path):
    video = shared_dir / "data/real/single_face.mp4"
    rep = F.extract_video(video, tmp_path / "single_face", size=64, cascade=str(cascade))
    assert rep["frames"] == 72 and abs(rep["fps"] - 30) < 0.1
    assert _spans_match([tuple(s) for s in rep["no_face_spans"]], _expected_spans(shared_dir, "single_face.mp4"), 72)
    assert rep["written"] == rep["face_frames"] >= 72 - TOL
    assert rep["detected"] >= 0.8 * rep["frames"]
    crop = cv2.imread(str(tmp_path / "single_face" / "00036.jpg"))
    assert crop.shape == (64, 64, 3) and crop.std() > 10  # a real image, not a black fill


@pytest.mark.slow
@pytest.mark.parametrize("video", ["face_noface.mov", "noface_face.mov", "no_face.mp4"])
def test_no_face_spans_match_the_labels(shared_dir, cascade, video):
    """The videos of no_face.csv (WolfgangLanger_Pexels.mp4, 472 frames, ~1 min here, is left to the CLI run)."""
    path = shared_dir / "data/real" / video
    track = F.track_faces(path, cascade=str(cascade))
    want = _expected_spans(shared_dir, video)
    assert _spans_match(track.no_face_spans(), want, track.num_frames), (track.no_face_spans(), want)
    face = ~np.isin(np.arange(track.num_frames),
                    [t for s, e in want for t in range(max(0, s - TOL), min(e + TOL, track.num_frames - 1) + 1)])
    assert track.has_face[face].all()  # away from the labelled spans every frame gets a crop


@pytest.mark.skipif(not hasattr(cv2, "CascadeClassifier"), reason="this OpenCV has no CascadeClassifier")
def test_numpy_haar_fallback_agrees_with_opencv_on_real_frames(shared_dir):
    """The OpenCV-5 fallback finds the same faces as OpenCV's own cascade on real frames (same parameters)."""
    xml = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    numpy_cascade, opencv = F.HaarCascade(xml), cv2.CascadeClassifier(str(xml))
    cap = cv2.VideoCapture(str(shared_dir / "data/real/single_face.mp4"))
    compared = 0
    for index in range(0, 72, 18):
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = cap.read()
        assert ok, f"frame {index} of single_face.mp4 does not decode"
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        grey = cv2.resize(grey, (180, round(180 * grey.shape[0] / grey.shape[1])), interpolation=cv2.INTER_AREA)
        ours = numpy_cascade.detect(grey, scale_factor=1.1, min_size=36, min_neighbors=3)[:, :4]  # x0, y0, x1, y1
        theirs = np.asarray(opencv.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=3, minSize=(36, 36)))
        assert len(ours) == len(theirs) == 1, (index, ours, theirs)
        x, y, w, h = theirs[0]
        ix = max(0.0, min(ours[0, 2], x + w) - max(ours[0, 0], x))
        iy = max(0.0, min(ours[0, 3], y + h) - max(ours[0, 1], y))
        inter = ix * iy
        union = (ours[0, 2] - ours[0, 0]) * (ours[0, 3] - ours[0, 1]) + w * h - inter
        assert inter / union >= 0.85, (index, ours, theirs)
        compared += 1
    assert compared == 4
