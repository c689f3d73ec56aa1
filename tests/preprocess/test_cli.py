"""The face pipeline and ``python -m fertrain.preprocess`` on synthetic videos: crops, layouts, JSON, report,
resume, bad input. A stand-in detector (a red square is the face) keeps these fast; the real detector (and
``--workers 2``) runs in ``test_real_videos.py``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fertrain.preprocess import FaceOptions, extract_faces
from fertrain.preprocess import cli as cli_module
from fertrain.preprocess import pipeline as pipeline_module
from fertrain.preprocess.align import TEMPLATES
from fertrain.preprocess.detect import Detections, FaceDetector

PROG = "python -m fertrain.preprocess"


class RedSquare(FaceDetector):
    """The red square is the face; its 5 landmarks are the mtcnn5 template placed in the square."""

    name, default_side, landmark_scheme, description = "dlib", 120, "mtcnn5", "red square (test)"

    def detect(self, bgr: np.ndarray) -> Detections:
        ys, xs = np.nonzero((bgr[..., 2] > 200) & (bgr[..., 1] < 60) & (bgr[..., 0] < 60))
        if not len(xs):
            return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
        lm = box[:2] + TEMPLATES["mtcnn5"] * (box[2:] - box[:2])
        return Detections(box[None], np.ones(1), lm[None])


@pytest.fixture
def fake_detector(monkeypatch):
    monkeypatch.setattr(pipeline_module, "build_detector", lambda name, **kw: RedSquare())


def make_video(path: Path, n: int = 14, face: range = range(2, 12), size: tuple[int, int] = (160, 120)) -> Path:
    """An MJPG .avi of grey frames; frames in ``face`` show a 40-pixel red square drifting right."""
    path.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    assert vw.isOpened(), "OpenCV cannot write MJPG .avi here"
    for t in range(n):
        frame = np.full((size[1], size[0], 3), 90, np.uint8)
        if t in face:
            frame[30:70, 40 + t:80 + t] = (0, 0, 255)  # BGR red
        vw.write(frame)
    vw.release()
    return path


def test_extract_faces_crops_every_frame_and_caches(tmp_path, fake_detector, monkeypatch):
    video = make_video(tmp_path / "v.avi")
    faces = extract_faces(video, {"size": 48, "min_run": 4}, cache_dir=tmp_path / "cache")
    assert faces.frames.shape == (14, 48, 48, 3) and faces.frames.dtype == np.uint8
    assert np.flatnonzero(faces.has_face).tolist() == list(range(2, 12)) and faces.no_face_spans() == [(0, 1), (12, 13)]
    assert not faces.frames[[0, 1, 12, 13]].any()
    centre = faces.frames[5, 16:32, 16:32].reshape(-1, 3).mean(0)
    assert centre[0] > 200 and centre[1] < 60 and centre[2] < 60  # RGB red: the face fills the crop's centre
    assert faces.track.landmark_scheme == "mtcnn5" and abs(faces.fps - 10.0) < 0.01
    monkeypatch.setattr(pipeline_module, "build_detector", lambda name, **kw: pytest.fail("cache not used"))
    again = extract_faces(video, {"size": 48, "min_run": 4}, cache_dir=tmp_path / "cache")
    assert np.array_equal(again.frames, faces.frames) and np.array_equal(again.has_face, faces.has_face)


def _rows(out: Path) -> dict[str, dict]:
    return {r["video"]: r for r in csv.DictReader(open(out / "face_report.csv"))}


def test_cli_folder_layout_json_report_and_resume(tmp_path, fake_detector, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    make_video(src / "train" / "Happy" / "a.avi")
    make_video(src / "test" / "Sad" / "b.avi", face=range(0, 14))
    args = ["--input", str(src), "--output", str(out), "--layout", "folder", "--size", "40", "--min-run", "4"]
    assert cli_module.main(args) == 0
    folder = out / "train" / "Happy" / "a"
    assert sorted(p.name for p in folder.iterdir()) == [f"{t:05d}.jpg" for t in range(2, 12)]
    assert cv2.imread(str(folder / "00002.jpg")).shape == (40, 40, 3)
    record = json.loads((out / "face_tracks" / "train" / "Happy" / "a.json").read_text())
    assert record["no_face_spans"] == [[0, 1], [12, 13]] and record["written"] == 10
    assert record["options"]["size"] == 40 and record["per_frame"]["boxes"][0] == [None] * 4
    assert record["per_frame"]["landmarks"][5] is not None and len(record["per_frame"]["scores"]) == 14
    rows = _rows(out)
    assert set(rows) == {str(Path("train/Happy/a.avi")), str(Path("test/Sad/b.avi"))}
    b = rows[str(Path("test/Sad/b.avi"))]
    assert b["no_face_spans"] == "[]" and b["status"] == "done"
    stamp = (folder / "00005.jpg").stat().st_mtime_ns
    assert cli_module.main(args) == 0  # resumed: nothing redone
    assert {r["status"] for r in _rows(out).values()} == {"done (earlier run)"}
    assert (folder / "00005.jpg").stat().st_mtime_ns == stamp
    assert _rows(out)[str(Path("train/Happy/a.avi"))]["written"] == "10"
    assert cli_module.main(args + ["--redo"]) == 0
    assert {r["status"] for r in _rows(out).values()} == {"done"} and (folder / "00005.jpg").stat().st_mtime_ns != stamp
    assert cli_module.main(args[:-3] + ["48", "--min-run", "4"]) == 0  # other options: redone, old frames replaced
    assert cv2.imread(str(folder / "00005.jpg")).shape == (48, 48, 3) and "done" in capsys.readouterr().out


def test_cli_dfew_layout_names_clips_by_number(tmp_path, fake_detector, capsys):
    src, out = tmp_path / "original", tmp_path / "DFEW"
    make_video(src / "7.avi")
    make_video(src / "00012.avi", face=range(0))  # no face at all: no frame folder, listed
    assert cli_module.main(["--input", str(src), "--output", str(out), "--layout", "dfew", "--min-run", "4"]) == 0
    assert len(list((out / "Clip" / "clip_224x224" / "00007").glob("*.jpg"))) == 10
    assert not (out / "Clip" / "clip_224x224" / "00012").exists()
    assert "1 video(s) have no face in any frame" in capsys.readouterr().out
    make_video(src / "clip_a.avi")
    with pytest.raises(SystemExit) as exc:
        cli_module.main(["--input", str(src), "--output", str(out), "--layout", "dfew"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("error:") == 1 and "clip_a.avi is not named by a DFEW clip number" in err


@pytest.mark.parametrize("case, args, message", [
    ("missing input", ["--input", "{tmp}/nope"], "nope does not exist"),
    ("no --input", [], "the following arguments are required: --input"),
    ("empty folder", ["--input", "{tmp}/empty"], "no video"),
    ("workers 0", ["--input", "{tmp}/empty", "--workers", "0"], "--workers must be >= 1"),
    ("bad margin", ["--input", "{tmp}/empty", "--margin", "-0.5"], "margin must be >= 0"),
    ("folder depth", ["--input", "{tmp}/flat", "--layout", "folder"], "is not at <Class>/<video>"),
    ("two videos one folder", ["--input", "{tmp}/twins"], "would both be written to"),
])
def test_cli_bad_input_is_one_usage_error(tmp_path, capsys, fake_detector, case, args, message):
    (tmp_path / "empty").mkdir()
    make_video(tmp_path / "flat" / "x.avi", n=2)
    make_video(tmp_path / "twins" / "x.avi", n=2)
    make_video(tmp_path / "twins" / "x.AVI", n=2)
    with pytest.raises(SystemExit) as exc:
        cli_module.main([a.format(tmp=tmp_path) for a in args] + ["--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()  # argparse's own errors print the usage line first
    assert exc.value.code == 2 and err[-1].startswith(f"{PROG}: error:") and message in err[-1], err
    assert sum("error" in line for line in err) == 1 and len(err) <= 2


def test_cli_a_broken_video_fails_alone_with_exit_1(tmp_path, fake_detector, capsys):
    src = tmp_path / "in"
    make_video(src / "good.avi")
    (src / "broken.mp4").write_bytes(b"not a video" * 50)
    assert cli_module.main(["--input", str(src), "--output", str(tmp_path / "out"), "--min-run", "4"]) == 1
    rows = _rows(tmp_path / "out")
    assert rows["good.avi"]["status"] == "done" and rows["broken.mp4"]["status"] == "error"
    assert "cannot be opened" in rows["broken.mp4"]["error"]
    err = capsys.readouterr().err
    assert "1 of 2 videos failed" in err and "broken.mp4" in err


def test_cli_usage_and_every_option_has_help(capsys):
    parser = cli_module._parser()
    assert parser.format_usage().startswith(f"usage: {PROG} --input VIDEO_OR_DIR --output DIR")
    for action in parser._actions:
        assert action.help, f"option {action.option_strings} has no help"
    with pytest.raises(SystemExit) as exc:
        cli_module.main(["--help"])
    assert exc.value.code == 0 and "--layout {mirror,dfew,folder}" in capsys.readouterr().out
    assert cli_module.main(["--list-detectors"]) == 0  # no --input/--output needed
    listed = capsys.readouterr().out
    assert "dlib" in listed and "haar" in listed and "mtcnn" in listed


def test_face_options_are_checked():
    with pytest.raises(ValueError, match="unknown face option"):
        FaceOptions.from_dict({"detectr": "dlib"})
    with pytest.raises(ValueError, match="not one of"):
        FaceOptions(detector="yunet")
    with pytest.raises(ValueError, match="align"):
        FaceOptions(align="affine")


def test_missing_landmark_model_is_a_usage_error_naming_it(tmp_path, capsys):
    pytest.importorskip("dlib")
    make_video(tmp_path / "in" / "a.avi", n=2)
    with pytest.raises(SystemExit) as exc:
        cli_module.main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                         "--landmarks-model", str(tmp_path / "nope.dat")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "dlib model" in err[0] and "nope.dat does not exist" in err[0]
