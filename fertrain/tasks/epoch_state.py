"""A training epoch's partial metric sums in checkpoints, so a run resumed mid-epoch (or replaying an epoch's end)
logs the same epoch-level ``train/*`` values as an uninterrupted one.

torchmetrics registers metric states as non-persistent buffers (not in ``state_dict``) and Lightning does not save
``self.log``'s epoch accumulators; the tasks put these dictionaries into the checkpoint themselves (``on_save_checkpoint``
/ ``on_load_checkpoint``).
"""

from __future__ import annotations

from typing import Any

from torchmetrics import Metric


def metric_state(metric: Metric) -> dict[str, Any]:
    """A torchmetrics Metric's accumulated states (tensors, cloned to CPU) and update count."""
    return {"state": {k: v.detach().cpu().clone() for k, v in metric.metric_state.items()},
            "updates": int(metric._update_count)}


def load_metric_state(metric: Metric, saved: dict[str, Any]) -> None:
    """Put :func:`metric_state`'s ``saved`` back into ``metric`` (on its device and dtype)."""
    for name, value in saved["state"].items():
        current = getattr(metric, name)
        setattr(metric, name, value.to(current.device, current.dtype))
    metric._update_count = int(saved["updates"])
    metric._computed = None
