"""Fault tolerance in one process: checkpoint writes are atomic, a failed write (disk full) keeps the previous
``last.ckpt`` and stops with one error, unusable checkpoints give one message naming the file and what it holds,
and a non-finite loss either stops the run with a message naming epoch and step or (``task.skip_nonfinite_loss``)
skips the batch, counted -- and stops when a whole epoch was skipped. (Kills and resumes through the CLI:
``tests/faults/``.)"""

from __future__ import annotations

import csv
import errno
import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from fertrain.checkpoint_io import (AtomicCheckpointIO, CheckpointError, CheckpointWriteError, check_checkpoint,
                                    describe_checkpoint)
from fertrain.report.run_record import read_run_record
from fertrain.train import resolve_ckpt_path
from tests.faults.tiny import TinyVideoNet
from tests.helpers import run_experiment

# tiny synthetic_motion: 8 train clips (2 steps of 4 per epoch), 4 val clips, 2 of 8 frames at 48 px, no test;
# the tiny network of tests/faults (kB checkpoints)
TINY = ["+experiment=synthetic_mscm", "data.datamodule.source.num_train=8", "data.datamodule.source.num_val=4",
        "data.datamodule.source.num_test=4", "data.datamodule.source.num_frames=8", "data.datamodule.source.size=48",
        "data.image_size=48", "data.datamodule.sampler.num_segments=2", "data.datamodule.batch_size=4",
        "data.datamodule.num_workers=0", "test=false", "trainer.enable_model_summary=false",
        "~callbacks.rich_progress_bar", "model._target_=tests.faults.tiny.TinyVideoNet"]
STEPS_PER_EPOCH = 2


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
    with pytest.raises(CheckpointWriteError, match=f"could not write checkpoint {path} .*killed before rename.*"
                                                   "the previous file is kept unchanged"):
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


def test_whole_epoch_of_nonfinite_losses_stops_with_a_clear_message(tmp_path: Path) -> None:
    """skip_nonfinite_loss skips single batches; an epoch that skipped every batch trained nothing and stops (it used
    to end in "confusion matrix is empty")."""
    with pytest.raises(FloatingPointError, match=r"every training batch of epoch 0 \(2 batches, up to global step "
                                                 r"2\) had a non-finite loss and was skipped"):
        run_experiment([*TINY, *NAN_LOSS, "+loss.nan_calls=[0,1]", "task.skip_nonfinite_loss=true",
                        "trainer.max_steps=-1", "trainer.max_epochs=2"], tmp_path)
    record = read_run_record(tmp_path / "logs" / "synthetic_mscm" / "seed42")
    assert record["status"] == "failed" and "every training batch of epoch 0" in record["error"]


def test_disk_full_while_saving_keeps_the_previous_checkpoint_and_stops(tmp_path: Path) -> None:
    """The checkpoint write after epoch 1 fails with ENOSPC: one CheckpointWriteError naming the file; last.ckpt
    is still the complete state of epoch 0; run.json says failed, with the reason."""
    os.environ["FERTRAIN_TEST_KILL"] = "disk_full:1"
    try:
        with pytest.raises(CheckpointWriteError, match=r"could not write checkpoint .*\.ckpt \(ENOSPC: No space left "
                                                       r"on device\); the previous file is kept unchanged"):
            run_experiment([*TINY, "trainer.max_epochs=3",
                            "+callbacks.probe._target_=tests.faults.probe.KillAt"], tmp_path, fast=False)
    finally:
        del os.environ["FERTRAIN_TEST_KILL"]
    run_dir = tmp_path / "logs" / "synthetic_mscm" / "seed42"
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 0 and last["global_step"] == STEPS_PER_EPOCH
    assert not list((run_dir / "checkpoints").glob("*.tmp")), "the partial temporary file was removed"
    record = read_run_record(run_dir)
    assert record["status"] == "failed" and "ENOSPC" in record["error"]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("ckpt")
    summary = run_experiment([*TINY, "trainer.max_epochs=1"], tmp, fast=False)
    return Path(summary["last_ckpt"])


def test_truncated_checkpoint_gives_one_message_naming_the_file(tiny_ckpt: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(tiny_ckpt.read_bytes()[: tiny_ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=rf"checkpoint {cut} \(\d+ bytes\) cannot be read: it is truncated, "
                                              "corrupt or not a PyTorch checkpoint"):
        describe_checkpoint(cut)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"\(0 bytes\) cannot be read"):
        describe_checkpoint(empty)
    with pytest.raises(CheckpointError, match="no such file"):
        describe_checkpoint(tmp_path / "nowhere.ckpt")
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match=r"holds no 'state_dict' \(\['weights'\]\)"):
        describe_checkpoint(plain)


def test_checkpoint_of_another_model_config_or_version_is_named(tiny_ckpt: Path) -> None:
    """What the file holds (model class, epoch, config hash, fertrain version) against what the run expects."""
    from fertrain.tasks.recognition import RecognitionTask

    info = describe_checkpoint(tiny_ckpt)
    assert (info["model_class"], info["epoch"], info["weights_only"]) == ("tests.faults.tiny.TinyVideoNet", 0, False)
    assert info["config_hash"].startswith("sha256:") and info["bytes"] == tiny_ckpt.stat().st_size

    def task(width: int) -> RecognitionTask:
        return RecognitionTask(TinyVideoNet(4, width=width), nn.CrossEntropyLoss(), torch.optim.AdamW, "abcd")

    assert check_checkpoint(tiny_ckpt, task(8), model_class="x")["epoch"] == 0  # the same network: fine
    with pytest.raises(CheckpointError, match=r"holds tests.faults.tiny.TinyVideoNet at epoch 0 \(config hash "
                                              r"sha256:[0-9a-f]{12}, fertrain 0.1.0\); this run expects my.Net: .*"
                                              r"with other shapes \(e.g. net.conv.weight \(8, 3, 5, 5\) vs "
                                              r"\(16, 3, 5, 5\)"):
        check_checkpoint(tiny_ckpt, task(16), model_class="my.Net")
    with pytest.raises(CheckpointError, match="resuming this run expects config hash sha256:000000000000: it was "
                                              "written by another configuration"):
        check_checkpoint(tiny_ckpt, task(8), model_class="x", config_hash="sha256:" + "0" * 64)
    with pytest.raises(CheckpointError, match="this is fertrain 9.9: a run is resumed with the version that started"):
        check_checkpoint(tiny_ckpt, task(8), model_class="x", fertrain_version="9.9")
