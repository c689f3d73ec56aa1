"""End-to-end spotting experiments through the real config and fertrain.train.run (tiny data and model)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fertrain.data.datasets.casme2 import make_miniature_casme2
from fertrain.data.datasets.sammlv import make_miniature_sammlv
from tests.helpers import run_experiment

TINY = ["data.image_size=16", "data.datamodule.sampler.window=8", "data.datamodule.sampler.stride=4",
        "data.datamodule.sampler.train_stride=4", "data.datamodule.batch_size=4", "model.widths=[8,8,8]",
        "model.token_grid=2", "model.heads=2", "model.layers_per_stage=1", "trainer.enable_model_summary=false",
        "callbacks.rich_progress_bar=null", "callbacks.lr_monitor=null"]
COUNTS = ("tp", "fp", "fn")


def _check_loso(summary: dict, folds: list[str], num_gt: int, capsys) -> None:
    assert summary["task"] == "spotting" and sorted(summary["folds"]) == folds
    pooled = summary["test"]
    for kind in ("macro", "micro", "overall"):
        for c in COUNTS:  # pooled = summed over folds, not averaged
            assert pooled[f"{kind}/{c}"] == sum(f[f"{kind}/{c}"] for f in summary["folds"].values())
    # every ground truth of every test video is counted exactly once over the folds (found or missed)
    assert pooled["overall/tp"] + pooled["overall/fn"] == num_gt
    run_dir = Path(summary["run_dir"])
    assert json.loads((run_dir / "summary.json").read_text())["test"] == pooled
    for fold in folds:
        fold_dir = run_dir / "folds" / fold
        fold_summary = json.loads((fold_dir / "summary.json").read_text())
        assert fold_summary["task"] == "spotting" and fold_summary["test_source"] == "test_last"
        rows = list(csv.DictReader((fold_dir / "spotting" / "result_log_test_last.csv").open()))
        assert {r["result"] for r in rows} <= {"TP", "FP", "FN"} and len(rows) >= 1
    out = capsys.readouterr().out
    assert "overall F1" in out and f"TP {int(pooled['overall/tp'])}, FP {int(pooled['overall/fp'])}" in out


def test_casme2_fesnet_loso(tmp_path: Path, capsys) -> None:
    root = make_miniature_casme2(tmp_path / "CASME2", folders=(15, 16), num_frames=40, size=16)
    summary = run_experiment(["+experiment=casme2_fesnet", f"data.root={root}", *TINY], tmp_path)
    _check_loso(summary, ["s15", "s16"], num_gt=6, capsys=capsys)


def test_sammlv_fesnet_loso(tmp_path: Path, capsys) -> None:
    root = make_miniature_sammlv(tmp_path / "SAMM", subjects=(6, 7), num_frames=48, size=16)
    summary = run_experiment(["+experiment=sammlv_fesnet", f"data.root={root}", "data.datamodule.sampler.frame_step=2",
                              *TINY], tmp_path)
    _check_loso(summary, ["006", "007"], num_gt=6, capsys=capsys)


def test_synthetic_fesnet_with_validation(tmp_path: Path) -> None:
    src = "data.datamodule.source"
    summary = run_experiment(["+experiment=synthetic_fesnet", f"{src}.num_subjects=3", f"{src}.videos_per_subject=1",
                              f"{src}.num_frames=120", f"{src}.size=48", f"{src}.test_subjects=1", *TINY], tmp_path)
    assert summary["task"] == "spotting" and summary["test_source"] == "test_best"
    assert summary["val"] == summary["val_best"] and 0.0 <= summary["val"]["f1"] <= 1.0
    assert summary["val"]["f1"] == summary["val"]["overall/f1"]
    assert "f1" in Path(summary["best_ckpt"]).name  # checkpoint named after the monitored metric
    assert set(summary["test"]) >= {f"{k}/{c}" for k in ("macro", "micro", "overall") for c in COUNTS}
    header = next(csv.reader((Path(summary["run_dir"]) / "csv" / "metrics.csv").open()))
    assert {"val/f1", "val/micro/tp", "test_best/f1", "train/smooth"} <= set(header)


def test_unknown_subject_is_a_dataset_error(tmp_path: Path) -> None:
    from fertrain.data.records import DatasetError

    root = make_miniature_casme2(tmp_path / "CASME2", folders=(15, 16), num_frames=40, size=16)
    with pytest.raises(DatasetError, match="test subject 's99'"):
        run_experiment(["+experiment=casme2_fesnet", f"data.root={root}", "data.subject=s99", *TINY], tmp_path)
