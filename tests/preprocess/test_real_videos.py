"""The default face pipeline on the real videos of ``../shared/data/real`` (skipped without them).

* Every no-face span of ``no_face.csv`` within 1 frame (label ends clamped to the decodable frames), no face at all
  on ``no_face.mp4``, none missing on ``single_face.mp4`` -- through the CLI's ``--layout dfew``, whose output
  then trains ``+experiment=dfew_mscm`` on a hand-written split.
* The tilted laugh at the end of ``WolfgangLanger_Pexels.mp4`` (frames 456-471, eye line ~24 degrees): no no-face
  span, and the aligned crops have a level eye line, measured with landmarks re-detected on the crops.

Only the frames a check needs are processed: the Pexels tail (frames 440-471, written losslessly as a frame folder)
instead of its 472 frames; the four short videos whole (a span claim needs every frame).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import run_experiment

TOL = 1  # frames
VIDEOS = {"00001.mp4": "single_face.mp4", "00002.mov": "face_noface.mov", "00003.mov": "noface_face.mov",
          "00004.mp4": "no_face.mp4"}


@pytest.fixture(scope="module")
def dfew_out(shared_dir, tmp_path_factory) -> Path:
    """The four short real videos, named as DFEW clips, through ``python -m fertrain.preprocess --layout dfew
    --workers 2`` (two spawned worker processes, each loading its own models)."""
    pytest.importorskip("dlib")
    from fertrain.preprocess.cli import main

    base = tmp_path_factory.mktemp("real_faces")
    (base / "original").mkdir()
    for clip, name in VIDEOS.items():
        (base / "original" / clip).symlink_to(shared_dir / "data" / "real" / name)
    assert main(["--input", str(base / "original"), "--output", str(base / "DFEW"), "--layout", "dfew",
                 "--workers", "2"]) == 0
    return base / "DFEW"


def _labels(shared_dir: Path, video: str) -> list[tuple[int, int]]:
    with open(shared_dir / "data" / "real" / "no_face.csv") as fh:
        return [(int(r["start_frame"]), int(r["end_frame"])) for r in csv.DictReader(fh) if r["video"] == video]


@pytest.mark.slow
def test_no_face_spans_match_the_labels(shared_dir, dfew_out):
    for clip, name in VIDEOS.items():
        rec = json.loads((dfew_out / "face_tracks" / Path(clip).with_suffix(".json")).read_text())
        n = rec["frames"]
        want = [(s, min(e, n - 1)) for s, e in _labels(shared_dir, name)]
        got = [tuple(s) for s in rec["no_face_spans"]]
        assert len(got) == len(want) and all(abs(a - c) <= TOL and abs(b - d) <= TOL
                                             for (a, b), (c, d) in zip(got, want)), (name, got, want)
        assert rec["multi_face_frames"] == 0 and rec["written"] == rec["face_frames"] == n - sum(
            e - s + 1 for s, e in got)
    no_face = json.loads((dfew_out / "face_tracks" / "00004.json").read_text())
    assert no_face["frames"] == 95 and no_face["raw_detected"] == 0  # not even a rejected false positive
    assert not (dfew_out / "Clip" / "clip_224x224" / "00004").exists()
    crop = cv2.imread(str(dfew_out / "Clip" / "clip_224x224" / "00001" / "00036.jpg"))
    assert crop.shape == (224, 224, 3) and crop.std() > 10  # a real image, not a black fill


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dfew_layout_output_trains_dfew_mscm(dfew_out, tmp_path):
    """``--layout dfew`` output is a DFEW root: a hand-written fold-1 split over its clips trains and tests."""
    for split, rows in (("train", [(1, 1), (2, 3)]), ("test", [(3, 1)])):  # Happy, Neutral; Happy
        folder = dfew_out / "EmoLabel_DataSplit" / f"{split}(single-labeled)"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "set_1.csv").write_text("video_name,label\n" + "".join(f"{v},{lab}\n" for v, lab in rows))
    summary = run_experiment(["+experiment=dfew_mscm", f"data.root={dfew_out}", "data.fold=1", "data.image_size=32",
                              "data.datamodule.batch_size=2", "callbacks=none", "trainer.limit_val_batches=1",
                              "trainer.limit_test_batches=1",
                              "data.datamodule.sampler.num_segments=2", "data.datamodule.sampler.frames_per_segment=2"],
                             tmp_path)
    assert np.isfinite(summary["test_last"]["uar"]) and summary["test_last"]["uar"] in (0.0, 1.0)


def test_tilted_laugh_is_found_and_aligned_level(shared_dir, tmp_path):
    """Frames 456-471 of the Pexels video (head tilted ~24 degrees): faces on every frame, and on the aligned crops
    the re-detected eye line is level (median |angle| <= 3 degrees)."""
    pytest.importorskip("dlib")
    from fertrain.preprocess import extract_faces
    from fertrain.preprocess.align import eye_line_angle
    from fertrain.preprocess.detect import DlibHOG, DlibLandmarks5

    first, last = 440, 471
    cap = cv2.VideoCapture(str(shared_dir / "data" / "real" / "WolfgangLanger_Pexels.mp4"))
    folder = tmp_path / "tail"
    folder.mkdir()
    for t in range(last + 1):
        ok, frame = cap.read()
        assert ok, f"frame {t} does not decode"
        if t >= first:
            cv2.imwrite(str(folder / f"{t:05d}.png"), frame)  # lossless: the same pixels as the video
    assert not cap.read()[0], "the video has more than 472 frames"
    cap.release()
    faces = extract_faces(folder)
    assert faces.no_face_spans() == [] and faces.track.detected.all()
    tail = slice(456 - first, last - first + 1)
    source = [eye_line_angle(lm, "dlib5") for lm in faces.track.landmarks[tail]]
    assert np.median(np.abs(source)) > 15  # the head really is tilted in the source frames
    detector, landmarks = DlibHOG(), DlibLandmarks5()
    angles = []
    for crop in faces.frames[tail]:  # RGB (224, 224, 3)
        bgr = np.ascontiguousarray(crop[..., ::-1])
        det = detector.detect(bgr)
        if len(det.boxes):
            angles.append(eye_line_angle(landmarks(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), det.boxes[0]), "dlib5"))
    assert len(angles) >= 15, f"face re-detected on {len(angles)} of 16 aligned crops"
    assert np.median(np.abs(angles)) <= 3.0, np.round(angles, 2)
