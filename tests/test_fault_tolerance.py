"""Fault tolerance: a SIGKILLed run resumes with ``ckpt_path=last``, checkpoint writes are atomic, and a non-finite
loss either stops the run with a message naming epoch and step or (``task.skip_nonfinite_loss=true``) skips the
batch, counted in the metrics and ``summary.json``."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from fertrain.checkpoint_io import AtomicCheckpointIO
from fertrain.train import resolve_ckpt_path
from tests.helpers import run_experiment

REPO = Path(__file__).resolve().parents[1]
# tiny synthetic_motion: 8 train clips (2 steps of 4 per epoch), 4 val clips, 2 of 8 frames at 48 px, no test
TINY = ["+experiment=synthetic_mscm", "data.datamodule.source.num_train=8", "data.datamodule.source.num_val=4",
        "data.datamodule.source.num_test=4", "data.datamodule.source.num_frames=8", "data.datamodule.source.size=48",
        "data.image_size=48", "data.datamodule.sampler.num_segments=2", "data.datamodule.batch_size=4",
        "data.datamodule.num_workers=0", "test=false", "trainer.enable_model_summary=false",
        "~callbacks.rich_progress_bar"]
STEPS_PER_EPOCH = 2


class KillWindow(pl.Callback):
    """Probe for the SIGKILL test, run inside the ``python -m fertrain`` subprocess (``+callbacks.probe=...``).

    Appends ``{"event", "epoch", "global_step"}`` JSON lines to ``record`` at train start and end. With
    ``stall_epoch``, at the start of batch 1 of that epoch (one optimiser step of the epoch done, so the process
    state is ahead of ``last.ckpt``) it writes ``marker`` and sleeps, so the test kills a run in a known state.
    """

    def __init__(self, record: str, stall_epoch: int | None = None, marker: str | None = None) -> None:
        self.record, self.stall_epoch, self.marker = Path(record), stall_epoch, marker

    def _append(self, event: str, trainer: pl.Trainer) -> None:
        with self.record.open("a") as f:
            f.write(json.dumps({"event": event, "epoch": trainer.current_epoch, "global_step": trainer.global_step})
                    + "\n")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._append("start", trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._append("end", trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.stall_epoch is not None and trainer.current_epoch == self.stall_epoch and batch_idx == 1:
            Path(self.marker).write_text(str(trainer.global_step))
            time.sleep(300)  # the test kills us here


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    env = dict(os.environ, WANDB_MODE="offline", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "fertrain", *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_from_last(tmp_path: Path) -> None:
    record, marker = tmp_path / "record.jsonl", tmp_path / "stalled"
    common = [*TINY, "trainer.max_epochs=3", f"paths.log_dir={tmp_path / 'logs'}",
              f"paths.cache_dir={tmp_path / 'cache'}",
              "+callbacks.probe._target_=tests.test_fault_tolerance.KillWindow", f"+callbacks.probe.record={record}"]
    run_dir = tmp_path / "logs" / "synthetic_mscm" / "seed42"
    last = run_dir / "checkpoints" / "last.ckpt"

    proc = _start([*common, "+callbacks.probe.stall_epoch=1", f"+callbacks.probe.marker={marker}"], tmp_path)
    deadline = time.monotonic() + 240
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before epoch 2 started:\n{proc.stdout.read()[-4000:]}")
        assert time.monotonic() < deadline, "epoch 2 did not start within 240 s"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert int(marker.read_text()) == STEPS_PER_EPOCH + 1, "killed after one optimiser step of epoch 2"
    assert last.is_file() and not (run_dir / "summary.json").exists()
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert (saved["epoch"], saved["global_step"]) == (0, STEPS_PER_EPOCH), "last.ckpt is the end of epoch 1"

    proc = _start([*common, "ckpt_path=last"], tmp_path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-4000:]
    events = [json.loads(line) for line in record.read_text().splitlines()]
    assert events[0] == {"event": "start", "epoch": 0, "global_step": 0}
    # the restarted run began at the saved epoch boundary (not from scratch, not from the killed step 5) ...
    assert events[1] == {"event": "start", "epoch": 1, "global_step": STEPS_PER_EPOCH}
    # ... and ended where an uninterrupted 3-epoch run ends
    assert events[2] == {"event": "end", "epoch": 3, "global_step": 3 * STEPS_PER_EPOCH}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["val_last"]["epoch"] == 2
    assert summary["val_best"]["epoch"] in (0, 1, 2)  # validation history of the killed run was restored
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 3 * STEPS_PER_EPOCH


def test_atomic_checkpoint_write_never_replaces_last_with_a_partial_file(tmp_path: Path, monkeypatch) -> None:
    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.arange(4.0)}, path)
    assert torch.load(path)["step"] == 1 and not path.with_name("last.ckpt.tmp").exists()
    good = path.read_bytes()

    real_save = torch.save

    def crash_midway(obj, f, *args, **kwargs):  # writes some bytes, then the process "dies"
        f.write(b"partial checkpoint bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2, "w": torch.zeros(4)}, path)
    assert path.read_bytes() == good and not path.with_name("last.ckpt.tmp").exists()

    # killed between the complete temp file and the rename: the old checkpoint is still the one in place
    monkeypatch.setattr(torch, "save", real_save)
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("killed before rename")))
    with pytest.raises(OSError, match="killed before rename"):
        io.save_checkpoint({"step": 3}, path)
    assert path.read_bytes() == good
    monkeypatch.undo()
    io.save_checkpoint({"step": 4}, path)
    assert torch.load(path)["step"] == 4


def test_resume_prefers_the_newest_of_last_and_slurm_requeue_checkpoints(tmp_path: Path) -> None:
    assert resolve_ckpt_path("last", tmp_path) is None
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"x")
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    hpc.write_bytes(b"x")
    os.utime(last, (1000, 1000))
    os.utime(hpc, (2000, 2000))
    assert resolve_ckpt_path("last", tmp_path) == str(hpc)  # saved on SIGUSR1 after the last epoch end
    os.utime(last, (3000, 3000))
    assert resolve_ckpt_path("last", tmp_path) == str(last)


class NonFiniteAt(nn.CrossEntropyLoss):
    """Cross-entropy that returns NaN on the training calls (grad enabled) numbered in ``nan_calls``."""

    def __init__(self, nan_calls: list[int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.nan_calls, self.calls = set(nan_calls), 0

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = super().forward(logits, target)
        if not torch.is_grad_enabled():
            return loss
        self.calls += 1
        return loss * float("nan") if self.calls - 1 in self.nan_calls else loss


NAN_LOSS = ["loss._target_=tests.test_fault_tolerance.NonFiniteAt", "logger=csv"]


def test_nonfinite_loss_stops_with_epoch_and_step(tmp_path: Path) -> None:
    stop = r"non-finite training loss \(nan\) at epoch 0, global step 1, batch 1"
    with pytest.raises(FloatingPointError, match=stop):
        run_experiment([*TINY, *NAN_LOSS, "+loss.nan_calls=[1]"], tmp_path)


def test_nonfinite_loss_skipped_counted_and_logged_when_opted_in(tmp_path: Path) -> None:
    summary = run_experiment([*TINY, *NAN_LOSS, "+loss.nan_calls=[0]", "task.skip_nonfinite_loss=true",
                              "trainer.max_steps=-1", "trainer.max_epochs=1"],
                             tmp_path)
    assert summary["skipped_nonfinite"] == 1 and summary["epochs"] == 1
    rows = list(csv.DictReader((Path(summary["run_dir"]) / "csv" / "metrics.csv").open()))
    logged = [float(r["train/skipped_nonfinite"]) for r in rows if r.get("train/skipped_nonfinite")]
    assert logged == [1.0]
    train_loss = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert train_loss and all(torch.isfinite(torch.tensor(train_loss))), "skipped batch kept out of train/loss"
    # no NaN reached the weights
    ckpt = torch.load(summary["last_ckpt"], map_location="cpu", weights_only=False)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert ckpt["fertrain_skipped_nonfinite"] == 1
    assert ckpt["global_step"] == 2  # Lightning still counts the skipped step (and steps the LR schedule) ...
    adam_steps = {float(st["step"]) for st in ckpt["optimizer_states"][0]["state"].values()}
    assert adam_steps == {1.0}, "... but AdamW updated the weights once, not on the skipped batch"
