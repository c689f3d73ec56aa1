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
    """A debug LOSO run with every other evaluator on request: pooled counts per evaluator, the evaluator in
    summary.json, one spotting plot PNG per test video, and ``fertrain.predict`` on the spotting checkpoint."""
    from PIL import Image

    root = make_miniature_casme2(tmp_path / "CASME2", folders=(15, 16), num_frames=40, size=16)
    also = ["megc2020", "softnet", "strs", "auwgcn"]
    summary = run_experiment(["+experiment=casme2_fesnet", f"data.root={root}", f"metric.also=[{','.join(also)}]",
                              "data.postprocess.threshold=rel:0.3", *TINY], tmp_path)
    _check_loso(summary, ["s15", "s16"], num_gt=6, capsys=capsys)
    assert summary["metric"]["protocol"] == "fertrain" and summary["metric"]["also"] == also
    assert summary["metric"]["rules"]["matching"] == "found"
    pooled = summary["test"]
    for name in also:
        for kind in ("macro", "micro"):
            for c in COUNTS:  # each evaluator's counts pooled over the folds too
                assert pooled[f"{name}/{kind}/{c}"] == sum(f[f"{name}/{kind}/{c}"] for f in summary["folds"].values())
    # megc2020, auwgcn: every GT of the test videos is counted (CAS offset-0 rows: apex / kept as 0)
    assert pooled["megc2020/overall/tp"] + pooled["megc2020/overall/fn"] == 6
    assert pooled["auwgcn/overall/tp"] + pooled["auwgcn/overall/fn"] == 6
    assert pooled["megc2020/quirk_changes"] >= 0 and pooled["softnet/macro/dummies"] >= 0
    run_dir = Path(summary["run_dir"])
    pngs = sorted((run_dir / "folds" / "s15" / "spotting" / "plots" / "test_last").glob("*.png"))
    assert [p.stem for p in pngs] == ["15_0101", "15_0401", "15_0502"]  # every test video of the fold
    img = Image.open(pngs[0])
    assert img.info["dpi"][0] >= 99.9 and img.size[0] >= 1000
    # predict on the spotting checkpoint: stitched scores, intervals and the plot
    from fertrain.predict import predict_video

    ckpt = run_dir / "folds" / "s15" / "checkpoints" / "last.ckpt"
    video = root / "rawpic" / "s15" / "15_0101disgustingteeth"
    res = predict_video(ckpt, video, tmp_path / "predict")
    scores = list(csv.DictReader(res["scores_csv"].open()))
    assert len(scores) == 40 and set(scores[0]) == {"frame", "p_neutral", "p_macro", "p_micro"}
    assert abs(sum(float(scores[7][f"p_{c}"]) for c in ("neutral", "macro", "micro")) - 1) < 1e-3
    assert next(csv.reader(res["intervals_csv"].open())) == ["kind", "onset", "offset", "score"]
    assert Image.open(res["png"]).size[0] >= 1000


def test_sammlv_fesnet_loso(tmp_path: Path, capsys) -> None:
    root = make_miniature_sammlv(tmp_path / "SAMM", subjects=(6, 7), num_frames=48, size=16)
    summary = run_experiment(["+experiment=sammlv_fesnet", f"data.root={root}", "data.datamodule.sampler.frame_step=2",
                              "task.plots=false", *TINY], tmp_path)  # plots: tested in the CAS(ME)^2 run
    assert not (Path(summary["run_dir"]) / "folds" / "006" / "spotting" / "plots").exists()
    _check_loso(summary, ["006", "007"], num_gt=6, capsys=capsys)


def test_synthetic_fesnet_with_validation(tmp_path: Path) -> None:
    src = "data.datamodule.source"
    summary = run_experiment(["+experiment=synthetic_fesnet", f"{src}.num_subjects=3", f"{src}.videos_per_subject=1",
                              f"{src}.num_frames=120", f"{src}.size=48", f"{src}.test_subjects=1", "task.plots=false",
                              *TINY], tmp_path)
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
