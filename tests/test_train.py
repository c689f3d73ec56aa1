"""Fast end-to-end runs through the real CLI (`python -m fertrain`, `python -m fertrain.predict`)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fertrain.data.datasets.dfew import make_miniature_dfew

REPO = Path(__file__).resolve().parents[1]
TINY_SYNTH = ["+experiment=synthetic_mscm", "data.datamodule.source.num_train=16", "data.datamodule.source.num_val=8",
              "data.datamodule.source.num_test=8", "data.datamodule.batch_size=4", "data.datamodule.num_workers=0"]


def fertrain(args: list[str], tmp_path: Path, module: str = "fertrain", check: bool = True):
    env = dict(os.environ, WANDB_MODE="offline", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-5000:]}")
    return proc


def test_dfew_mscm_on_miniature_tree(tmp_path: Path) -> None:
    root = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=2, num_frames=6, size=48)
    fertrain(["+experiment=dfew_mscm", f"data.root={root}", "data.fold=2", "debug=limit", "data.image_size=48",
              "data.datamodule.batch_size=4", f"paths.log_dir={tmp_path / 'logs'}", "logger=wandb"], tmp_path)
    run = tmp_path / "logs" / "dfew_mscm" / "fold2_seed42"
    assert list((run / "wandb").glob("offline-run-*")), "wandb (offline) wrote no run"
    summary = json.loads((run / "summary.json").read_text())
    for key in ("val_best", "val_last", "test_best", "test_last"):
        assert 0.0 <= summary[key]["uar"] <= 1.0 and 0.0 <= summary[key]["war"] <= 1.0, key
    assert Path(summary["best_ckpt"]).is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "csv" / "metrics.csv").is_file()
    assert (run / "config_resolved.yaml").is_file() and (run / "plots" / "confusion_test_best.png").is_file()
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/uar", "val/war", "train/loss_step", "val_best/uar", "test_best/uar", "test_last/war"} <= set(header)


def test_missing_dataset_root_gives_one_clear_error(tmp_path: Path) -> None:
    proc = fertrain(["+experiment=dfew_mscm", f"data.root={tmp_path / 'nowhere'}", "debug=limit"], tmp_path,
                    check=False)
    assert proc.returncode != 0
    err = proc.stderr
    assert "dataset error" in err and "EmoLabel_DataSplit" in err and str(tmp_path / "nowhere") in err
    assert "Traceback" not in err


def test_resume_from_last_checkpoint(tmp_path: Path) -> None:
    common = TINY_SYNTH + [f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={tmp_path / 'cache'}",
                           "data.image_size=48", "data.datamodule.source.size=48"]
    fertrain(common + ["trainer.max_epochs=1"], tmp_path)
    run = tmp_path / "logs" / "synthetic_mscm" / "seed42"
    first = json.loads((run / "summary.json").read_text())
    assert first["val_last"]["epoch"] == 0
    fertrain(common + ["trainer.max_epochs=2", "ckpt_path=last"], tmp_path)
    second = json.loads((run / "summary.json").read_text())
    assert second["val_last"]["epoch"] == 1 and second["epochs"] == 2
    # history carried over from the checkpoint: best is chosen over both epochs
    assert second["val_best"]["epoch"] in (0, 1)


def test_demo_pipeline_and_predict_cli(tmp_path: Path) -> None:
    """The default (no experiment) job on the embedded real video, shrunk, then the predict CLI on its ckpt."""
    fertrain(["debug=limit", "data.image_size=64", "data.datamodule.batch_size=4", f"paths.log_dir={tmp_path / 'logs'}",
              "predict_video=${data.predict_video}"], tmp_path)
    run = tmp_path / "logs" / "demo" / "seed42"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["experiment"] == "demo" and "test_best" in summary
    rows = list(csv.DictReader(Path(summary["predict"]["csv"]).open()))
    assert rows and int(rows[0]["start_frame"]) == 0 and int(rows[-1]["end_frame"]) == 471
    probs = [float(rows[0]["p_sad"]) + float(rows[0]["p_happy"])]
    assert probs[0] == pytest.approx(1.0, abs=1e-3)
    assert Path(summary["predict"]["png"]).is_file()
    proc = fertrain([f"ckpt={run / 'checkpoints' / 'last.ckpt'}", f"video={REPO}/fertrain/assets/demo/WolfgangLanger_Pexels.mp4",
                     "window=48", "stride=48", f"out_dir={tmp_path / 'pred'}"], tmp_path, module="fertrain.predict")
    rows = list(csv.DictReader((tmp_path / "pred" / "WolfgangLanger_Pexels_windows.csv").open()))
    assert len(rows) == 10 and rows[1]["start_frame"] == "48"
    assert float(rows[1]["start_s"]) == pytest.approx(48 / 23.976, abs=1e-3)
    assert "csv:" in proc.stdout
