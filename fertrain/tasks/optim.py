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
