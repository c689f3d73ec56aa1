"""What makes a killed run resume to the numbers an uninterrupted run gives: Lightning callbacks and a CSV logger.

A run is resumed with ``ckpt_path=last`` (:func:`fertrain.train.resolve_ckpt_path`). On CPU with the same seed
the resumed run's metrics equal the uninterrupted run's exactly (``tests/faults/``), because everything the rest
of the run depends on is either in the checkpoint or a pure function of the position in the run:

- weights, optimiser, LR schedule, ``val_history``, the training metrics' partial sums, the DataLoader position
  (:class:`fertrain.data.resumable.ResumableDataLoader`): in the checkpoint;
- the training order and each sample's temporal jitter and augmentation: functions of ``(seed, epoch, index)``
  (:mod:`fertrain.data.resumable`);
- dropout and any other draw from the global generators during a training step: :class:`ExactResume` seeds torch,
  numpy and ``random`` before every training batch from ``(seed, epoch, batch, rank)``.

Remaining sources of difference (docs/reliability.md): non-deterministic GPU kernels (``trainer.deterministic``),
a different number of CPU threads or devices, and epoch-interval LR schedulers (Lightning does not step them for
the epoch it resumes at its end; fertrain's schedulers step per optimiser step).

Also here: :class:`LastCheckpoint` (``last.ckpt`` after every epoch whatever the monitor says, and optionally every
N steps), :class:`Preemption` (SIGTERM / SIGUSR1: save and stop cleanly), :class:`ResumableCSVLogger` (a resumed
run appends to ``metrics.csv`` instead of deleting it).
"""

from __future__ import annotations

import csv
import logging
import os
import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.trainer.states import TrainerFn

from fertrain.cli import RunFailure

log = logging.getLogger("fertrain")


# ------------------------------------------------------------------------------------------------ checkpoints
def _csv_rows(trainer: pl.Trainer) -> dict[str, int]:
    """Flush every logger, then ``{csv log folder relative to the run directory: data rows on disk}``."""
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.save()
    return {os.path.relpath(lg.log_dir, trainer.default_root_dir): lg.rows_on_disk()
            for lg in trainer.loggers if isinstance(lg, ResumableCSVLogger)}


class _StepSnapshot:
    """The full training state dumped at the end of a training batch, written a moment later.

    Lightning logs a step's metrics (``train/loss_step``) after ``on_train_batch_end``, the hook where a step
    checkpoint is taken; a checkpoint written there would not count that row, and a resume would drop it. So the
    state is dumped at ``on_train_batch_end`` (progress counters, DataLoader position, and references to the
    weights and optimiser tensors, which nothing changes before the next optimiser step) and written at the next
    hook -- the next batch's start, the validation start or the epoch end -- after the step's rows are flushed.
    """

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None

    def take(self, trainer: pl.Trainer) -> None:
        self.pending = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)

    def write(self, trainer: pl.Trainer, path: str | Path) -> bool:
        """Write the pending snapshot to ``path`` (atomic, through the trainer's CheckpointIO); False if none."""
        if self.pending is None:
            return False
        checkpoint, self.pending = self.pending, None
        checkpoint.setdefault("callbacks", {}).setdefault("LastCheckpoint", {})["log_rows"] = _csv_rows(trainer)
        trainer.strategy.save_checkpoint(checkpoint, str(path))
        trainer.strategy.barrier("fertrain.resume.step_checkpoint")
        return True


class LastCheckpoint(ModelCheckpoint):
    """Writes ``<dirpath>/last.ckpt`` (the full training state) at the end of EVERY epoch, and every
    ``every_n_train_steps`` optimiser steps if set.

    Why not ``ModelCheckpoint(save_last=True)`` beside ``save_top_k=1``: in pytorch_lightning 2.6
    ``ModelCheckpoint.on_validation_end`` writes ``last.ckpt`` only "if a checkpoint was actually saved in this step"
    (``_last_global_step_saved == trainer.global_step``), i.e. only when the monitored metric improved; and
    ``save_last="link"`` links ``last.ckpt`` to the best file. So ``last.ckpt`` was the state of the last
    improvement, and ``ckpt_path=last`` resumed from there.

    The epoch-end save happens at ``on_validation_end`` when the epoch ends with a validation (after the val
    metrics are logged; Lightning resumes such a checkpoint by re-running only the epoch's end hooks, which log
    the epoch's training metrics from the partial sums in the checkpoint), else at ``on_train_epoch_end``. The best
    checkpoint (``conf/callbacks/default.yaml``) is saved at ``on_validation_end`` too, just before, so a kill
    between the two replays the epoch and writes both again. Step saves are dumped at the batch end and written a
    moment later (:class:`_StepSnapshot`). Before writing, the loggers are flushed and the number of rows of every
    :class:`ResumableCSVLogger` is stored in the checkpoint (``callbacks["LastCheckpoint"]["log_rows"]``), so a
    resume keeps exactly the rows logged before.

    Args:
        dirpath: the run's checkpoint folder.
        every_n_train_steps: also save every N optimiser steps (a mid-epoch resume point for long epochs); None
            or 0: only at epoch ends.
    """

    CHECKPOINT_NAME_LAST = "last"

    def __init__(self, dirpath: str, every_n_train_steps: int | None = None) -> None:
        super().__init__(dirpath=dirpath, monitor=None, save_top_k=0, save_last=True,
                         every_n_train_steps=int(every_n_train_steps or 0), enable_version_counter=False,
                         save_on_train_epoch_end=False)
        self._snapshot = _StepSnapshot()

    @property
    def state_key(self) -> str:  # stable: changing every_n_train_steps must not orphan the saved state
        return "LastCheckpoint"

    @property
    def path(self) -> str:
        return str(Path(self.dirpath or ".") / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")

    def _fitting(self, trainer: pl.Trainer) -> bool:
        return not (trainer.fast_dev_run or trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking)

    @staticmethod
    def _validates_at_epoch_end(trainer: pl.Trainer) -> bool:
        n = trainer.num_val_batches
        n = sum(n) if isinstance(n, list) else n
        every = trainer.check_val_every_n_epoch
        return bool(trainer.enable_validation and n and every and (trainer.current_epoch + 1) % every == 0)

    def _write_step_snapshot(self, trainer: pl.Trainer) -> None:
        if self._snapshot.write(trainer, self.path):
            self.last_model_path = self.path

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        n = self._every_n_train_steps
        if self._fitting(trainer) and n >= 1 and trainer.global_step % n == 0 and not _last_batch(trainer):
            self._snapshot.take(trainer)  # (the epoch's last batch: the epoch-end save follows at once)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._write_step_snapshot(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._fitting(trainer):
            self._write_step_snapshot(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._fitting(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_step_snapshot(trainer)
        # the epoch-end save, unless a validation ended this epoch (that one saved at on_validation_end)
        if self._fitting(trainer) and not self._validates_at_epoch_end(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_step_snapshot(trainer)  # every epoch end already saved; nothing else to repeat

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._snapshot.pending = None  # the step may have changed tensors the snapshot refers to

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Any]) -> None:
        self._log_rows = _csv_rows(trainer)  # rows logged so far are on disk before the state that follows them
        super()._save_last_checkpoint(trainer, monitor_candidates)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["log_rows"] = getattr(self, "_log_rows", {})
        return state


def _last_batch(trainer: pl.Trainer) -> bool:
    """Whether the batch that just ended is the last of the epoch. Lightning resumes a checkpoint taken there by
    skipping the epoch's validation and end hooks, so no step state is saved there (the epoch-end save follows)."""
    return bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)


def checkpoint_log_rows(checkpoint: dict[str, Any]) -> dict[str, int]:
    """``{csv log folder relative to the run directory: data rows on disk}`` when ``checkpoint`` was written
    (empty for checkpoints written without :class:`LastCheckpoint`)."""
    state = (checkpoint.get("callbacks") or {}).get("LastCheckpoint") or {}
    return {str(k): int(v) for k, v in (state.get("log_rows") or {}).items()}


# ------------------------------------------------------------------------------------------------ randomness
class ExactResume(pl.Callback):
    """The two things Lightning does not do for an exact resume.

    1. Seeds torch (CPU and CUDA), numpy and ``random`` before every training batch from
       ``(seed, epoch, batch index, global rank)`` (*ours*). Dropout masks, stochastic depth and any other global
       draw of a training step then depend only on where the step is in the run, so a run resumed from any
       checkpoint makes the same draws as an uninterrupted run, whatever consumed the generators in between
       (DataLoader start-up, validation, checkpoint loading). Cost: a few microseconds per step.
    2. Gives the training DataLoader its saved position. pytorch_lightning 2.6 restores stateful loaders in
       ``_FitLoop.setup_data``, but when ``configure_optimizers`` reads ``trainer.estimated_stepping_batches``
       (fertrain's schedulers do) ``setup_data`` has already run before the checkpoint is restored and returns early
       afterwards, so the saved position was silently dropped and a mid-epoch resume re-trained the epoch's first
       batches. Here the pending state is applied at ``on_train_start`` (after the restore, before the first batch is
       fetched: :class:`fertrain.data.resumable.ResumableDataLoader` starts lazily).
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loop = trainer.fit_loop
        pending = getattr(loop, "_combined_loader_states_to_load", None)
        if pending and getattr(loop, "_combined_loader", None) is not None:
            loop._combined_loader._load_state_dicts(pending)
            loop._combined_loader_states_to_load = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        state = np.random.SeedSequence([self.seed, trainer.current_epoch, batch_idx, trainer.global_rank])
        a, b = (int(x) for x in state.generate_state(2))
        torch.manual_seed((a << 32) | b)
        np.random.seed(a)
        random.seed(b)


# ------------------------------------------------------------------------------------------------ signals
class Preempted(RunFailure):
    """The run was stopped by SIGTERM/SIGUSR1 after saving its state (exit status 1; resume with ckpt_path=last)."""


class Preemption(pl.Callback):
    """SIGTERM and SIGUSR1 (Slurm preemption / time limit) save the state and stop the run cleanly.

    The handler only records the signal. At the end of the current training batch the full training state is
    dumped and, once the batch's metrics are logged (:class:`_StepSnapshot`), written to ``last.ckpt`` (atomic:
    :class:`fertrain.checkpoint_io.AtomicCheckpointIO`); then :class:`Preempted` is raised, which
    :func:`fertrain.train.run` records (``run.json`` status ``killed``) and the CLI prints as one line (exit 1).
    Re-running the same command with ``ckpt_path=last`` continues after that batch, exactly. After an epoch's
    last batch (or during its validation) the run goes on to the epoch-end save and stops at the next epoch's
    start; during the test, after the current test batch (training is over; ``last.ckpt`` holds its final
    state). Under Slurm with ``trainer=slurm`` (auto-requeue)
    SIGUSR1 is left to Lightning's requeue handler. Under DDP all ranks stop at the same batch (the decision is
    all-reduced).

    Args:
        dirpath: the run's checkpoint folder (``last.ckpt`` is written there).
    """

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._snapshot = _StepSnapshot()

    def _handler(self, signum: int, frame: Any) -> None:
        self.received = signum
        # Lightning's own SIGTERM handler (which runs first) makes the fit loop raise SIGTERMException at the epoch
        # end: a SystemExit with status 0, i.e. a killed run that looks successful. This callback stops the run.
        connector = getattr(getattr(self, "_trainer", None), "_signal_connector", None)
        if connector is not None:
            connector.received_sigterm = False
        log.warning("received %s: saving the state after this batch, then stopping", signal.Signals(signum).name)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from pytorch_lightning.plugins.environments import SLURMEnvironment

        self._trainer = trainer
        env = trainer._accelerator_connector.cluster_environment
        slurm_requeue = isinstance(env, SLURMEnvironment) and env.auto_requeue
        for name in self.SIGNALS:
            signum = getattr(signal, name, None)
            if signum is None or (name == "SIGUSR1" and slurm_requeue):
                continue
            try:
                self._previous[signum] = signal.signal(signum, self._handler)
            except ValueError:  # not the main thread: signals cannot be handled here
                return

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        self._trainer = None

    def _signalled(self, trainer: pl.Trainer) -> bool:
        flag = self.received is not None
        if trainer.world_size > 1:
            flag = trainer.strategy.reduce_boolean_decision(flag, all=False)
        return flag

    def _raise(self, trainer: pl.Trainer, saved: bool) -> None:
        name = signal.Signals(self.received).name if self.received else "a signal on another rank"
        where = f"epoch {trainer.current_epoch}, global step {trainer.global_step}"
        state = (f"the training state is in {self.dirpath / 'last.ckpt'}" if saved else
                 f"{self.dirpath / 'last.ckpt'} holds the last saved state")
        raise Preempted(f"stopped by {name} at {where}; {state}: run the same command with ckpt_path=last to "
                        "continue")

    def _write_and_stop(self, trainer: pl.Trainer) -> None:
        if self._snapshot.write(trainer, self.dirpath / "last.ckpt"):
            self._raise(trainer, saved=True)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if not _last_batch(trainer) and self._signalled(trainer):
            self._snapshot.take(trainer)  # (at the epoch's last batch: stop after the epoch-end save instead)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._write_and_stop(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_and_stop(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_and_stop(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_and_stop(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._signalled(trainer):  # last.ckpt is the end of the previous epoch (if there was one)
            self._raise(trainer, saved=False)

    def on_test_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self._signalled(trainer):
            self._raise(trainer, saved=False)


# ------------------------------------------------------------------------------------------------ CSV log
class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing ``metrics.csv`` is continued (its header read back), never
    deleted, and header rewrites are atomic (temporary file + rename)."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = list(next(csv.reader(f), []))

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with open(self.metrics_file_path, newline="") as f:
            rows = list(csv.DictReader(f))
        self._write_rows(fieldnames, rows)

    def _write_rows(self, fieldnames: list[str], rows: list[dict[str, Any]]) -> None:
        tmp = self.metrics_file_path + ".tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.metrics_file_path)

    def rows_on_disk(self) -> int:
        if not os.path.isfile(self.metrics_file_path):
            return 0
        with open(self.metrics_file_path, newline="") as f:
            return sum(1 for _ in csv.DictReader(f))

    def truncate(self, rows: int) -> int:
        """Keep the first ``rows`` data rows (drop what a killed attempt logged after its checkpoint); returns the
        number dropped."""
        if not os.path.isfile(self.metrics_file_path):
            return 0
        with open(self.metrics_file_path, newline="") as f:
            reader = csv.DictReader(f)
            fieldnames, kept = list(reader.fieldnames or []), list(reader)
        if rows <= 0:
            os.remove(self.metrics_file_path)
            self.metrics_keys = []
            return len(kept)
        if len(kept) > rows:
            self._write_rows(fieldnames, kept[:rows])
        return max(0, len(kept) - rows)


class ResumableCSVLogger(CSVLogger):
    """``pytorch_lightning.loggers.CSVLogger`` whose ``metrics.csv`` survives a resume.

    Lightning's CSVLogger deletes an existing ``metrics.csv`` when a run starts in its folder, so every resume lost
    the epochs before the kill. Here the file is continued: :func:`fertrain.train.run` calls :meth:`resume_at` with
    the row count stored in the checkpoint it resumes from (:class:`LastCheckpoint`), which drops only rows a
    killed attempt logged after that checkpoint; the resumed run then appends the rest, so the file holds every
    epoch once, as an uninterrupted run writes it. Same arguments as ``CSVLogger``.
    """

    @property
    def experiment(self) -> _AppendingWriter:  # type: ignore[override]
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def rows_on_disk(self) -> int:
        """Data rows of ``metrics.csv`` now on disk."""
        return self.experiment.rows_on_disk()

    def resume_at(self, rows: int) -> None:
        """Continue the log after its first ``rows`` rows (0: a fresh start, the old file is removed)."""
        dropped = self.experiment.truncate(rows)
        if dropped:
            log.info("%s: dropped %d rows logged after the checkpoint the run resumes from",
                     self.experiment.metrics_file_path, dropped)
