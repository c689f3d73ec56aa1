"""Kill/resume for the spotting task: a run killed mid-epoch (step checkpoints) or during validation and resumed
with ``ckpt_path=last`` writes the same ``metrics.csv`` byte for byte, and the same ``summary.json`` numbers, as
one uninterrupted run. The epoch-level ``train/loss``, ``train/ce`` and ``train/smooth`` of the interrupted epoch
included: their partial sums are in the checkpoint (before, they were Lightning's accumulators, lost on resume).

Same machinery as ``test_kill_resume.py`` (forked real CLI, the probe callback kills its own process).
"""

from __future__ import annotations

import io
import json
import signal
from csv import DictReader
from pathlib import Path

import pytest
import torch

from tests.faults.forked import cli, reference_run
from tests.faults.probe import ENV

EPOCHS = 2
SRC = "data.datamodule.source"
CORE = ["+experiment=synthetic_fesnet", f"{SRC}.num_subjects=3", f"{SRC}.videos_per_subject=1",
        f"{SRC}.num_frames=120", f"{SRC}.size=48", f"{SRC}.test_subjects=1", "task.plots=false",
        "data.image_size=16", "data.datamodule.sampler.window=8", "data.datamodule.sampler.stride=4",
        "data.datamodule.sampler.train_stride=8", "data.datamodule.batch_size=4", "data.datamodule.num_workers=0",
        "model.widths=[8,8,8]", "model.token_grid=2", "model.heads=2", "model.layers_per_stage=1",
        "trainer.enable_model_summary=false", "callbacks.rich_progress_bar=null", "callbacks.lr_monitor=null",
        f"trainer.max_epochs={EPOCHS}", "checkpoint.every_n_train_steps=1", "++trainer.log_every_n_steps=1",
        "+callbacks.probe._target_=tests.faults.probe.KillAt"]
RUN = Path("logs") / "synthetic_fesnet" / "seed42"
TRAIN_KEYS = ("train/loss", "train/ce", "train/smooth")


def _numbers(summary: dict) -> dict:
    return {k: {kk: (Path(vv).name if kk == "ckpt" else vv) for kk, vv in summary[k].items()}
            for k in ("val_best", "val_last", "test_best", "test_last")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache, run_dir = reference_run(CORE, tmp_path_factory.mktemp("spotting_faults"), RUN)
    csv = (run_dir / "csv" / "metrics.csv").read_text()
    rows = list(DictReader(io.StringIO(csv)))
    for key in TRAIN_KEYS:  # the reference itself has every epoch's training means, once
        assert sorted(int(r["epoch"]) for r in rows if r.get(key)) == list(range(EPOCHS)), key
    batches = len([r for r in rows if r.get("train/loss_step")])
    assert batches >= 2 * EPOCHS, f"{batches} training steps: a mid-epoch kill needs >= 2 batches per epoch"
    return {"cache": cache, "csv": csv, "summary": json.loads((run_dir / "summary.json").read_text())}


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["backward:1:1", "validation:1:0"], ids=["mid-epoch", "validation"])
def test_spotting_kill_then_resume_equals_uninterrupted(spec: str, reference: dict, tmp_path: Path) -> None:
    args = [*CORE, *reference["cache"], f"paths.log_dir={tmp_path / 'logs'}"]
    rc = cli(args, tmp_path, tmp_path / "killed.log", env={ENV: spec})
    assert rc == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    run_dir = tmp_path / RUN
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 1 and state["fertrain_train_epoch"]["loss"]["updates"] >= 1, "resumes inside epoch 1"

    rc = cli([*args, "ckpt_path=last"], tmp_path, tmp_path / "resumed.log")
    assert rc == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    assert (run_dir / "csv" / "metrics.csv").read_text() == reference["csv"]
    assert _numbers(json.loads((run_dir / "summary.json").read_text())) == _numbers(reference["summary"])
