"""In-process end-to-end runs: compose the real Hydra config and call :func:`fertrain.train.run`.

A subprocess (`python -m fertrain`) costs ~10 s of imports on 2 cores; the CLI itself is covered by a few tests in
``tests/test_train.py``. Every other end-to-end test composes here, with the same overrides a user would type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from fertrain.config import config_dir

# Keep end-to-end runs tiny: 2 train steps, 2 val/test batches, no workers, CSV logger only.
FAST = ["debug=limit", "logger=csv", "data.datamodule.num_workers=0"]


def compose_config(overrides: Sequence[str], tmp_path: Path) -> DictConfig:
    """The config ``python -m fertrain <overrides>`` would run, with its run directory under ``tmp_path``."""
    overrides = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={tmp_path / 'cache'}", *overrides]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    # outside @hydra.main there is no ${hydra:runtime.output_dir}: use the run directory Hydra would create
    cfg.paths.output_dir = str(Path(cfg.paths.log_dir) / str(cfg.experiment_name) / str(cfg.run_id))
    return cfg


def run_experiment(overrides: Sequence[str], tmp_path: Path, fast: bool = True) -> dict[str, Any]:
    """Compose and run in this process; returns the run summary (also in ``<run_dir>/summary.json``)."""
    from fertrain.train import run

    return run(compose_config([*(FAST if fast else []), *overrides], tmp_path))
