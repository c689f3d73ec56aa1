"""Lightning's rich model summary without the FLOPs column (a task returns :func:`summary_callbacks` from its
``configure_callbacks``)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelSummary as LightningModelSummary
from pytorch_lightning.callbacks import RichModelSummary
from pytorch_lightning.utilities.model_summary import get_human_readable_count


class ModelSummary(RichModelSummary):
    """Lightning's rich model summary without the FLOPs column.

    Lightning counts FLOPs only when the module sets ``example_input_array``; fertrain's tasks do not (the clip
    shape belongs to the data config), so Lightning's table shows a column of zeros and "Total FLOPs: 0", which
    reads as a measurement. ``python -m fertrain.bench.model_card`` measures FLOPs per clip instead. Installed by
    :func:`summary_callbacks` in place of Lightning's summary.

    Args:
        max_depth: module depth shown (Lightning's ``max_depth``; ``-1`` all, ``0`` none).
    """

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int = 0,
                  **summarize_kwargs: Any) -> None:
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        table.add_column(" ", style="dim")
        for name, _ in columns[1:]:
            table.add_column(name, justify="right" if name in ("Params", "Params per Device") else "left")
        rows = zip(*(values for _, values in columns))
        for row in rows:
            table.add_row(*row)
        console = get_console()
        console.print(table)
        frozen = total_parameters - trainable_parameters
        console.print(f"[bold]Trainable params[/]: {get_human_readable_count(int(trainable_parameters))}   "
                      f"[bold]Non-trainable params[/]: {get_human_readable_count(int(frozen))}   "
                      f"[bold]Total params[/]: {get_human_readable_count(int(total_parameters))}   "
                      f"[bold]Size[/]: {model_size:,.1f} MB   "
                      f"[bold]Modules[/]: {total_training_modes.get('train', 0)} train / "
                      f"{total_training_modes.get('eval', 0)} eval mode")


def summary_callbacks(trainer: pl.Trainer | None) -> list[pl.Callback]:
    """For ``LightningModule.configure_callbacks``: ``[ModelSummary()]`` (same ``max_depth``) when the trainer has a
    Lightning model summary (``enable_model_summary=True``), which it then replaces (Lightning replaces a trainer
    callback by a module callback of a subclass); ``[]`` when summaries are off."""
    found = [cb for cb in getattr(trainer, "callbacks", None) or [] if isinstance(cb, LightningModelSummary)]
    if not found or isinstance(found[0], ModelSummary):
        return []
    return [ModelSummary(max_depth=found[0]._max_depth)]
