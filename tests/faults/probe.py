"""Fault injection for the kill/resume tests: a callback that SIGKILLs its own process at one chosen point.

The point comes from the environment variable ``FERTRAIN_TEST_KILL`` (so the killed run and its resume have the
same config and config hash):

- ``train_step:E:B``: at the start of training batch B of epoch E (after B optimiser steps of that epoch);
- ``backward:E:B``: inside that batch's training step, before its backward pass;
- ``validation:E:B``: at the start of validation batch B of epoch E;
- ``ckpt_write:E``: in the middle of writing the first checkpoint file after validation epoch E (half the bytes
  are written, then the process dies); ``disk_full:E``: that write fails with ``OSError(ENOSPC)`` instead and the
  process lives on;
- ``sigterm:E:B``: the process sends itself SIGTERM at the start of training batch B of epoch E; ``sigint:E:B``:
  SIGINT (Ctrl-C) there;
- ``test:TAG``: the first test batch of ``test_best``/``test_last``;
- ``fit_start:N``: the N-th ``fit`` of this process (between the jobs of a multirun or the trials of a sweep).

Unset: the callback does nothing.
"""

from __future__ import annotations

import errno
import io
import os
import signal
from typing import Any

import pytorch_lightning as pl

ENV = "FERTRAIN_TEST_KILL"
WAIT_ENV = "FERTRAIN_TEST_WAIT_FOR_TRIALS"


def _wait_for_trials(journal: str, n: str, timeout: float = 300.0) -> None:
    """Block until the Optuna study in ``journal`` holds ``n`` trials (so two sweep workers overlap for sure)."""
    import time

    import optuna

    deadline = time.monotonic() + timeout
    while True:
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(journal))
        studies = storage.get_all_studies()
        if studies and len(storage.get_all_trials(studies[0]._study_id, deepcopy=False)) >= int(n):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{journal}: fewer than {n} trials after {timeout} s")
        time.sleep(0.2)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(pl.Callback):
    fits = 0  # fit() calls in this process

    def __init__(self) -> None:
        self.spec = os.environ.get(ENV, "").split(":")

    def _is(self, kind: str, *args: Any) -> bool:
        return self.spec[0] == kind and self.spec[1:] == [str(a) for a in args]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        wait_for = os.environ.get(WAIT_ENV)  # "<journal>:<n>": a sweep trial waits until the study has n trials
        if wait_for:
            _wait_for_trials(*wait_for.rsplit(":", 1))
        KillAt.fits += 1
        if self._is("fit_start", KillAt.fits):
            die()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._is("train_step", trainer.current_epoch, batch_idx):
            die()
        if self._is("sigterm", trainer.current_epoch, batch_idx):
            os.kill(os.getpid(), signal.SIGTERM)
        if self._is("sigint", trainer.current_epoch, batch_idx):
            os.kill(os.getpid(), signal.SIGINT)

    def on_before_backward(self, trainer: pl.Trainer, pl_module: Any, loss: Any) -> None:
        if self._is("backward", trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_idx):
            die()

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        if trainer.state.fn == "fit" and self._is("validation", trainer.current_epoch, batch_idx):
            die()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.state.fn == "fit" and self._is("ckpt_write", trainer.current_epoch):
            import fertrain.checkpoint_io as cio

            real_save = cio.torch.save

            def half_then_die(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
                buf = io.BytesIO()
                real_save(obj, buf)
                data = buf.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                die()

            cio.torch = _patched_torch(half_then_die)
        if trainer.state.fn == "fit" and self._is("disk_full", trainer.current_epoch):
            import fertrain.checkpoint_io as cio

            real_torch = cio.torch

            def no_space(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
                cio.torch = real_torch  # one failed write (the process lives on: tests run it in-process)
                f.write(b"some bytes before the disk filled up")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            cio.torch = _patched_torch(no_space)

    def on_test_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        if self._is("test", getattr(pl_module, "test_tag", "")):
            die()


def _patched_torch(save: Any) -> Any:
    """The ``torch`` module as ``fertrain.checkpoint_io`` sees it, with ``save`` replaced."""
    import types

    import torch

    mod = types.ModuleType("torch_with_dying_save")
    mod.__dict__.update(torch.__dict__)
    mod.save = save
    return mod


class PeakFirst(pl.Callback):
    """Logs ``val/probe``: 1.0 after the first validation epoch, then lower every epoch -- a monitored metric that
    peaks at the first epoch whatever the network learns (for the best-vs-last checkpoint test)."""

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            pl_module.log("val/probe", 1.0 - 0.1 * trainer.current_epoch)
