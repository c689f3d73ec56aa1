"""Spotting under DDP: the real CLI with ``trainer=ddp`` on 2 CPU processes (gloo) gives the same MEGC counts as
one process testing the checkpoint it wrote. Each rank scores some windows; the task all-reduces the per-frame
score sums before stitching videos and spotting, so the pooled TP/FP/FN must not depend on the process count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from fertrain.train import build
from tests.helpers import compose_config

pytestmark = pytest.mark.slow

SRC = "data.datamodule.source"
TINY = [f"{SRC}.num_subjects=3", f"{SRC}.videos_per_subject=1", f"{SRC}.num_frames=120", f"{SRC}.size=48",
        f"{SRC}.test_subjects=1", "data.image_size=16", "data.datamodule.sampler.window=8",
        "data.datamodule.sampler.stride=4", "data.datamodule.sampler.train_stride=4", "data.datamodule.batch_size=4",
        "model.widths=[8,8,8]", "model.token_grid=2", "model.heads=2", "model.layers_per_stage=1", "debug=limit",
        "trainer.limit_val_batches=1.0", "trainer.limit_test_batches=1.0", "data.datamodule.num_workers=0",
        "data.postprocess.threshold=rel:0.3",  # relative threshold: an untrained network still predicts intervals
        "task.plots=false"]


def test_cli_ddp_spotting_counts_equal_single_process(tmp_path: Path) -> None:
    paths = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    env = dict(os.environ, WANDB_MODE="offline", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "fertrain", "+experiment=synthetic_fesnet", *TINY, *paths,
                           "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    run_dir = next((tmp_path / "logs" / "synthetic_fesnet").glob("*/summary.json")).parent
    assert (run_dir / "train_ddp_process_1.log").is_file(), "rank 1 did not run in the same run directory"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "spotting"
    ckpt = summary[summary["test_source"]]["ckpt"]
    assert ckpt and Path(ckpt).is_file()

    cfg = compose_config(["+experiment=synthetic_fesnet", *TINY, *paths], tmp_path / "single")
    cfg.paths.cache_dir = str(tmp_path / "cache")  # the same generated videos
    datamodule, task = build(cfg)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], default_root_dir=str(tmp_path / "single"))
    trainer.test(task, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
    single = task.last_test
    counts = {k: v for k, v in summary["test"].items() if k.rsplit("/", 1)[-1] in ("tp", "fp", "fn")}
    assert counts, summary["test"]
    assert counts == {k: single[k] for k in counts}, (counts, single)
    # not a trivial comparison: intervals were predicted (here e.g. TP 1, FP 5) and ground truths exist
    test = summary["test"]
    assert test["overall/tp"] + test["overall/fp"] > 0 and test["overall/tp"] + test["overall/fn"] > 0, test
