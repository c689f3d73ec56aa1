"""The console table printed at the end of a recognition run (from the run's ``summary.json`` content)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

STAGES = ("val_best", "val_last", "test_best", "test_last", "test")


def summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """``(stage, epoch, UAR, WAR, chance UAR / WAR, checkpoint)`` per stage present in ``summary``; the chance
    column is filled for test stages that carry ``chance_uar``/``chance_war`` (see
    :func:`fertrain.metrics.recognition.chance_levels`)."""
    rows = []
    for key in STAGES:
        if key not in summary:
            continue
        s = summary[key]
        chance = (f"{s['chance_uar']:.4f} / {s['chance_war']:.4f}"
                  if s.get("chance_uar") is not None and s.get("chance_war") is not None else "")
        rows.append((key, str(s.get("epoch", "")), f"{s['uar']:.4f}", f"{s['war']:.4f}", chance,
                     Path(s["ckpt"]).name if s.get("ckpt") else ""))
    return rows


def print_recognition_summary(summary: Mapping[str, Any]) -> None:
    """Print the run's val/test UAR and WAR as a table, with the chance level beside every test result."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"fertrain · {summary['experiment']} · {summary['run_dir']}")
    for col in ("stage", "epoch", "UAR", "WAR", "chance UAR / WAR", "checkpoint"):
        table.add_column(col)
    for row in summary_rows(summary):
        table.add_row(*row)
    Console().print(table)
