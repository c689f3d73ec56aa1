"""Model-side speed options of a run: ``trainer.compile`` and ``trainer.channels_last``.

Both live in the trainer config group (they are about how a step runs, not what it computes). The trainer config
instantiates :class:`Trainer`, ``pytorch_lightning.Trainer`` with these two arguments more; it hands them to a
:class:`SpeedOptions` callback that applies them to the task's network (``pl_module.net``) in every process, in
``setup``, before a checkpoint is restored and before the first step:

- ``trainer.compile``: ``false`` (default), ``true``, or a mapping of ``torch.compile`` keyword arguments
  (``trainer.compile={mode: max-autotune, dynamic: false}``). The network is compiled in place with
  ``nn.Module.compile`` (PyTorch >= 2.2), so its ``state_dict`` keys (and checkpoints) stay those of the eager
  model (``forward_features`` and ``forward_stages``, which tasks call directly, are compiled too). Shapes are
  static unless ``dynamic`` says otherwise (ours: with automatic dynamic shapes, inductor 2.14 failed to compile
  MSCM once a second batch size appeared, ``TypeError: cannot determine truth value of Relational``); a new
  batch size (the last or an evaluation batch) is compiled once more. Compilation
  happens in the first training step; the callback reports that step's wall time
  (compilation included) and the median of the next 10 (``perf/first_step_s``, ``perf/step_s`` in the loggers
  and the console log). Works for every model; MSCM's cost volumes then run as plain tensor ops (a multiply-and-sum
  per displacement, ``fertrain.models.mscm.correlation_volumes``), which the compiler fuses. Compiled kernels may round
  differently from eager ones (of the order of 1e-6 in the logits); the resolved config records the option.
- ``trainer.channels_last``: ``false`` (default) or ``true``: parameters in ``torch.channels_last`` memory format
  (``channels_last_3d`` for a model with 3-D convolutions), so convolutions run NHWC (cuDNN's and oneDNN's native
  layout). Outputs equal the default layout's up to the rounding of the convolution algorithms.

Measured figures: ``python -m fertrain.bench.train --compile`` / ``--channels-last`` (CPU and GPU) and
``python -m fertrain.bench.gpu_check``.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any, Mapping

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

__all__ = ["SpeedOptions", "Trainer", "compile_kwargs"]

log = logging.getLogger(__name__)

_COMPILE_KWARGS = ("fullgraph", "dynamic", "backend", "mode", "options", "disable")
_ENTRY_POINTS = ("forward_features", "forward_stages")  # besides forward


def compile_kwargs(value: Any) -> dict[str, Any] | None:
    """``trainer.compile`` as keyword arguments of ``torch.compile``; None when compilation is off.

    Raises:
        ValueError: ``value`` is not a bool, None, or a mapping whose keys are ``torch.compile`` arguments.
    """
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None or value is False:
        return None
    if value is True:
        return {"dynamic": False}
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(_COMPILE_KWARGS))
        if unknown:
            raise ValueError(f"trainer.compile: unknown torch.compile argument(s) {unknown}; expected true/false or "
                             f"a mapping with keys from {list(_COMPILE_KWARGS)}")
        return {"dynamic": False, **dict(value)}
    raise ValueError(f"trainer.compile={value!r}: expected true, false or a mapping of torch.compile arguments "
                     f"({', '.join(_COMPILE_KWARGS)})")


class SpeedOptions(pl.Callback):
    """Applies ``channels_last`` and then ``compile`` to ``pl_module.net`` once, in ``setup``; times the first
    training step and the median of the next ``timed_steps`` when compiling.

    Args:
        compile: ``trainer.compile`` (see the module docstring).
        channels_last: ``trainer.channels_last``.
        timed_steps: later steps whose median is reported beside the first one.

    Raises:
        ValueError: a bad ``compile`` value (at construction); ``setup`` on a module without a ``net`` network.
    """

    def __init__(self, compile: Any = False, channels_last: bool = False, timed_steps: int = 10) -> None:
        self.compile_kwargs = compile_kwargs(compile)
        if not isinstance(channels_last, bool):
            raise ValueError(f"trainer.channels_last={channels_last!r}: expected true or false")
        self.channels_last = channels_last
        self.timed_steps = timed_steps
        self.times: list[float] = []
        self._applied: set[int] = set()
        self._t0: float | None = None
        self._reported = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        net = getattr(pl_module, "net", None)
        if not isinstance(net, nn.Module):
            raise ValueError(f"trainer.compile / trainer.channels_last act on the task's network `net`; "
                             f"{type(pl_module).__name__} has none")
        if id(net) in self._applied:
            return
        self._applied.add(id(net))
        if self.channels_last:
            has_3d = any(p.dim() == 5 for p in net.parameters())
            net.to(memory_format=torch.channels_last_3d if has_3d else torch.channels_last)
            log.info("trainer.channels_last: %s parameters in %s", type(net).__name__,
                     "channels_last_3d" if has_3d else "channels_last")
        if self.compile_kwargs is not None:
            net.compile(**self.compile_kwargs)  # in place (forward): state_dict keys unchanged
            for name in _ENTRY_POINTS:  # methods the tasks call directly (DMFE's center cosine loss, spotting)
                if callable(getattr(type(net), name, None)):
                    setattr(net, name, torch.compile(getattr(net, name), **self.compile_kwargs))
            log.info("trainer.compile: %s compiled with torch.compile(%s); compilation runs in the first step",
                     type(net).__name__, ", ".join(f"{k}={v!r}" for k, v in self.compile_kwargs.items()))

    # ---------------------------------------------------------------- step timing (compile only)
    @staticmethod
    def _sync(pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.compile_kwargs is not None and len(self.times) <= self.timed_steps:
            self._sync(pl_module)
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._t0 is None:
            return
        self._sync(pl_module)
        self.times.append(time.perf_counter() - self._t0)
        self._t0 = None
        if len(self.times) == self.timed_steps + 1:
            self._report(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer)

    def _report(self, trainer: pl.Trainer) -> None:
        if self._reported or not self.times:
            return
        self._reported = True
        metrics = {"perf/first_step_s": self.times[0]}
        if len(self.times) > 1:
            metrics["perf/step_s"] = statistics.median(self.times[1:])
        log.info("trainer.compile: first step %.1f s (compilation included)%s", self.times[0],
                 f", later steps {metrics['perf/step_s']:.3f} s (median of {len(self.times) - 1})"
                 if len(self.times) > 1 else "")
        if trainer.is_global_zero:
            for lg in trainer.loggers:
                lg.log_metrics(metrics, step=trainer.global_step)


class Trainer(pl.Trainer):
    """``pytorch_lightning.Trainer`` with ``compile`` and ``channels_last`` (see the module docstring).

    Args:
        compile: ``false`` | ``true`` | mapping of ``torch.compile`` arguments.
        channels_last: channels_last parameters.
        *args, **kwargs: ``pytorch_lightning.Trainer`` arguments.

    Raises:
        ValueError: a bad ``compile`` or ``channels_last`` value.
    """

    def __init__(self, *args: Any, compile: Any = False, channels_last: bool = False, **kwargs: Any) -> None:
        options = SpeedOptions(compile=compile, channels_last=channels_last)
        if options.compile_kwargs is not None or options.channels_last:
            callbacks = kwargs.get("callbacks")
            callbacks = [] if callbacks is None else [callbacks] if isinstance(callbacks, pl.Callback) else list(
                callbacks)
            kwargs["callbacks"] = [*callbacks, options]
        super().__init__(*args, **kwargs)
