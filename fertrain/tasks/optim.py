"""Learning-rate schedules built from ``torch.optim.lr_scheduler`` pieces, stepped once per optimiser step."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0
) -> LRScheduler:
    """Linear warm-up from ``lr / 100`` over ``warmup_steps`` steps, then cosine decay to ``lr * min_lr_ratio``.

    Args:
        optimizer: the optimiser (its ``lr`` is the peak learning rate).
        total_steps: optimiser steps of the whole run (``trainer.estimated_stepping_batches``).
        warmup_steps: steps of linear warm-up (0 = none); capped at ``total_steps - 1``.
        min_lr_ratio: final learning rate as a fraction of the peak.

    Raises:
        ValueError: ``total_steps < 1``.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    warmup_steps = max(0, min(warmup_steps, total_steps - 1))
    eta_min = optimizer.param_groups[0]["lr"] * min_lr_ratio
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup_steps), eta_min=eta_min)
    if warmup_steps == 0:
        return cosine
    warmup = LinearLR(optimizer, start_factor=0.01, end_factor=1.0, total_iters=warmup_steps)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


def epoch_warmup_cosine(
    optimizer: Optimizer, total_steps: int, epochs: int, warmup_epochs: int = 0, cosine_epochs: int | None = None
) -> LRScheduler:
    """A schedule that changes once per EPOCH (stepped every optimiser step, constant within an epoch).

    The learning rate of epoch ``e`` (0-based) is ``lr * min(1, (e + 1) / warmup_epochs) * 0.5 * (1 + cos(pi * e /
    cosine_epochs))``. Source: the official CEFLNet code (github.com/CVLab-Liuyuanyuan/CEFLNet, ``main.py`` l.94-99:
    ``CosineAnnealingLR(T_max=160).step(epoch)`` then ``pytorch_warmup.LinearWarmup(warmup_period=10).dampen()``,
    once per epoch, 120 epochs, so the rate ends at ~15% of its peak rather than 0).

    Args:
        optimizer: the optimiser (its ``lr`` is the peak learning rate).
        total_steps: optimiser steps of the whole run (``trainer.estimated_stepping_batches``).
        epochs: epochs of the run (``trainer.max_epochs``); steps per epoch = ``total_steps // epochs`` (>= 1).
        warmup_epochs: epochs of linear warm-up, factor ``(e + 1) / warmup_epochs`` (0 = none).
        cosine_epochs: period ``T_max`` of the cosine in epochs (default: ``epochs``).

    Raises:
        ValueError: ``total_steps``, ``epochs`` or ``cosine_epochs`` < 1, or ``warmup_epochs`` < 0.
    """
    import math

    from torch.optim.lr_scheduler import LambdaLR

    t_max = epochs if cosine_epochs is None else cosine_epochs
    if total_steps < 1 or epochs < 1 or t_max < 1 or warmup_epochs < 0:
        raise ValueError(f"need total_steps, epochs, cosine_epochs >= 1 and warmup_epochs >= 0; got {total_steps}, "
                         f"{epochs}, {t_max}, {warmup_epochs}")
    steps_per_epoch = max(1, total_steps // epochs)

    def factor(step: int) -> float:
        e = step // steps_per_epoch
        warm = min(1.0, (e + 1) / warmup_epochs) if warmup_epochs > 0 else 1.0
        return warm * 0.5 * (1.0 + math.cos(math.pi * e / t_max))

    return LambdaLR(optimizer, factor)
