"""``fertrain.predict``: faces as the run saw them (``faces=auto|on|off``), no-face windows get no class and are
recorded, window/stride checks, and its own command line (``key=value``, ``--help``, one-line errors)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest

from fertrain.cli import UsageError
from fertrain.data.datasets.dfew import make_miniature_dfew
from fertrain.predict import face_plan, main, predict_video
from tests.helpers import run_experiment
from tests.preprocess.test_cli import RedSquare, make_video

PROG = "python -m fertrain.predict"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A tiny MSCM checkpoint trained on a miniature DFEW tree (its data config declares no ``faces``)."""
    base = tmp_path_factory.mktemp("predict_run")
    root = make_miniature_dfew(base / "DFEW", clips_per_class=1, num_frames=6, size=40, folds=(1,))
    summary = run_experiment(["+experiment=dfew_mscm", f"data.root={root}", "data.image_size=32",
                              "data.datamodule.batch_size=2", "trainer.limit_val_batches=1",
                              "trainer.limit_test_batches=1", "callbacks=none",
                              "data.datamodule.sampler.num_segments=2", "data.datamodule.sampler.frames_per_segment=2"],
                             base)
    return Path(summary["run_dir"]) / "checkpoints" / "last.ckpt"


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def test_faces_on_no_face_windows_get_no_class_and_are_recorded(ckpt, tmp_path, monkeypatch, caplog):
    from fertrain.preprocess import pipeline

    monkeypatch.setattr(pipeline, "build_detector", lambda name, **kw: RedSquare())
    video = make_video(tmp_path / "clip.avi", n=80, face=range(10, 60))
    with caplog.at_level(logging.WARNING, logger="fertrain.predict"):
        out = predict_video(ckpt, video, tmp_path / "pred", window=16, stride=8, faces="on",
                            face_options={"size": 48, "min_run": 4})
    rows = _rows(out["csv"])
    assert [int(r["start_frame"]) for r in rows] == list(range(0, 65, 8))
    classified = [int(r["start_frame"]) for r in rows if r["pred"]]
    assert classified == [16, 24, 32, 40]  # the windows inside frames 10..59
    for r in rows:
        probs = [r[k] for k in r if k.startswith("p_")]
        if r["pred"]:
            assert r["no_face_frames"] == "0" and sum(map(float, probs)) == pytest.approx(1.0, abs=1e-3)
        else:
            assert int(r["no_face_frames"]) > 0 and probs == [""] * len(probs)
    record = json.loads(out["json"].read_text())
    assert record["faces"]["mode"] == "face crops" and record["faces"]["no_face_spans"] == [[0, 9], [60, 79]]
    assert (record["faces"]["no_face_frames"], record["faces"]["no_face_fraction"]) == (30, 0.375)
    assert (record["windows"], record["windows_classified"], record["windows_no_face"]) == (9, 4, 5)
    assert "30 of 80 frames (37.5%) have no face" in caplog.text and "5 of 9 windows got no class" in caplog.text
    assert out["png"].stat().st_size > 0


def test_faces_auto_follows_the_run_and_is_recorded(ckpt, tmp_path):
    video = make_video(tmp_path / "clip.avi", n=20, face=range(0))
    out = predict_video(ckpt, video, tmp_path / "pred", window=8, stride=8)
    record = json.loads(out["json"].read_text())
    assert record["faces"]["mode"] == "whole frames" and "no data.faces" in record["faces"]["reason"]
    assert all(r["pred"] for r in _rows(out["csv"])) and record["windows_no_face"] == 0
    # face_plan: what the run's data config says decides
    opts, why = face_plan({"faces": {"size": 64, "detector": "dlib"}})
    assert opts.size == 64 and "face crops" in why
    assert face_plan({"faces": None})[0] is None and face_plan({}, "on")[0].size == 224
    assert face_plan({"faces": {"size": 64}}, "on", {"margin": 0.4})[0].margin == 0.4
    with pytest.raises(UsageError, match="expected one of auto, on, off"):
        face_plan({}, "yes")
    with pytest.raises(UsageError, match="unknown face option"):
        face_plan({"faces": {"sizes": 64}})


@pytest.mark.parametrize("key", ["window", "stride"])
def test_window_and_stride_must_be_positive(tmp_path, capsys, key):
    with pytest.raises(UsageError, match=f"{key}=0: must be >= 1 frame"):
        predict_video(tmp_path / "x.ckpt", tmp_path / "v.mp4", tmp_path, **{key: 0})
    with pytest.raises(SystemExit) as exc:
        main([f"ckpt={tmp_path / 'x.ckpt'}", f"video={tmp_path / 'v.mp4'}", f"{key}=-2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and err == [f"{PROG}: error: {key}=-2: must be >= 1 frame (or unset for the default)"]


@pytest.mark.parametrize("args, message", [
    (["video=v.mp4"], "the following arguments are required: --ckpt"),
    (["ckpt={tmp}/missing.ckpt", "video={tmp}"], "missing.ckpt: no such checkpoint file"),
    (["ckpt=a", "video=b", "wndow=3"], "unrecognized arguments: --wndow 3"),
])
def test_cli_errors_are_one_line_with_exit_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main([a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and err[-1].startswith(f"{PROG}: error:") and message in err[-1], err
    assert sum("error" in line for line in err) == 1


def test_help_lists_predicts_own_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and out.startswith(f"usage: {PROG} ckpt=PATH video=PATH")
    for key in ("--window", "--stride", "--out_dir", "--batch_size", "--device", "--faces", "--cache_dir"):
        assert key in out
    for training in ("trainer", "optimizer", "hydra", "experiment"):
        assert training not in out


def test_not_a_fertrain_checkpoint_and_faces_on_an_array_are_usage_errors(tmp_path, ckpt):
    import numpy as np
    import torch

    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, other)
    (tmp_path / "v.mp4").write_bytes(b"")
    with pytest.raises(UsageError, match="no 'fertrain_config' entry"):
        predict_video(other, tmp_path / "v.mp4", tmp_path / "out")
    np.save(tmp_path / "clip.npy", np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(UsageError, match="faces cannot be extracted from a .npy array"):
        predict_video(ckpt, tmp_path / "clip.npy", tmp_path / "out", faces="on")


def test_labels_file_rows_are_checked_and_filtered_by_video(tmp_path: Path) -> None:
    """``labels=``: the segments of this video, as class indices; a bad row or label is one error naming it."""
    from fertrain.cli import UsageError
    from fertrain.predict import read_segments

    good = tmp_path / "labels.csv"
    good.write_text("video,start_frame,end_frame,label\na.mp4,0,9,happy\nb.mp4,0,5,sad\na.mp4,12,20,sad\n")
    assert read_segments(good, ["sad", "happy"], "a.mp4") == [(0, 9, 1), (12, 20, 0)]
    bad = tmp_path / "bad.csv"
    bad.write_text("start_frame,end_frame,label\n0,9,happy\n9,3,sad\n")
    with pytest.raises(UsageError, match=r"bad.csv, row 3: start_frame='9', end_frame='3'"):
        read_segments(bad, ["sad", "happy"])
    bad.write_text("start_frame,end_frame,label\n0,9,angry\n")
    with pytest.raises(UsageError, match=r"row 2: label 'angry' is not a class of this run \(sad, happy\)"):
        read_segments(bad, ["sad", "happy"])
    bad.write_text("start,end,label\n")
    with pytest.raises(UsageError, match=r"missing column\(s\) \['end_frame', 'start_frame'\]"):
        read_segments(bad, ["sad", "happy"])
