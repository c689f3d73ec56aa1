"""Every image experiment runs end to end (2 train steps, 2 val/test batches) on a miniature tree of its dataset."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fertrain.data.datasets.affectnet import make_miniature_affectnet
from fertrain.data.datasets.ferplus import make_miniature_ferplus
from fertrain.data.datasets.rafdb import make_miniature_rafdb
from tests.helpers import run_experiment

MAKERS = {
    "rafdb": lambda root: make_miniature_rafdb(root, train_per_class=1, test_per_class=1, size=32),
    "affectnet": lambda root: make_miniature_affectnet(root, train_per_class=1, test_per_class=1, size=40),
    "ferplus": lambda root: make_miniature_ferplus(root, per_class=1, png=False),  # pixel strings -> .npy cache
}
EXPERIMENTS = [f"{ds}_{model}" for ds in MAKERS for model in ("resnet18", "dmfe")]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_image_experiment_runs(name: str, tmp_path: Path) -> None:
    dataset = name.split("_")[0]
    root = MAKERS[dataset](tmp_path / dataset)
    summary = run_experiment([f"+experiment={name}", f"data.root={root}", "data.image_size=32",
                              "data.datamodule.batch_size=4"], tmp_path)
    assert summary["experiment"] == name
    for key in ("val_best", "val_last", "test_best", "test_last"):
        for metric in ("uar", "war"):
            value = summary[key][metric]
            assert not math.isnan(value) and 0.0 <= value <= 1.0, (key, metric, value)
    # the test metrics cover every test image of the miniature tree (2 batches of 4 >= 7 or 8 images)
    run_dir = Path(summary["run_dir"])
    assert (run_dir / "summary.json").is_file() and (run_dir / "plots" / "confusion_test_best.png").is_file()
