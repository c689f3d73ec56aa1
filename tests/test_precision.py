"""Mixed precision on CPU: ``trainer.precision=bf16-mixed`` trains through ``fertrain.train.run`` with finite metrics,
and what Lightning does with ``16-mixed`` on CPU (it switches to bf16-mixed, with a warning)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.plugins.precision import MixedPrecision

from fertrain.config import config_dir
from fertrain.train import run

TINY_SYNTH = ["+experiment=synthetic_mscm", "debug=limit", "data.datamodule.source.num_train=8",
              "data.datamodule.source.num_val=4", "data.datamodule.source.num_test=4",
              "data.datamodule.source.num_frames=8", "data.datamodule.source.size=48", "data.image_size=32",
              "data.datamodule.sampler.num_segments=4", "data.datamodule.batch_size=4",
              "~callbacks.rich_progress_bar"]

# dtypes seen at the classifier's output, per stage (filled in-process by HeadDtypeProbe)
SEEN_DTYPES: dict[str, set[torch.dtype]] = {}


class HeadDtypeProbe(pl.Callback):
    """Records the dtype of ``net.head``'s output in each stage: under bf16 autocast a Linear returns bfloat16."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            stage_name = trainer.state.stage.value if trainer.state.stage else "none"
            SEEN_DTYPES.setdefault(stage_name, set()).add(output.dtype)

        if not hasattr(pl_module, "_dtype_probe"):
            pl_module._dtype_probe = pl_module.net.head.register_forward_hook(hook)


def _compose(tmp_path: Path, overrides: list[str]) -> DictConfig:
    base = [f"paths.output_dir={tmp_path / 'run'}", f"paths.log_dir={tmp_path / 'logs'}",
            f"paths.cache_dir={tmp_path / 'cache'}"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("train", overrides=base + overrides)


def test_bf16_mixed_trains_on_cpu(tmp_path: Path) -> None:
    probe = f"{HeadDtypeProbe.__module__}.{HeadDtypeProbe.__qualname__}"
    cfg = _compose(tmp_path, TINY_SYNTH + ["trainer.precision=bf16-mixed", f"+callbacks.dtype_probe._target_={probe}"])
    SEEN_DTYPES.clear()
    summary = run(cfg)
    for key in ("val_best", "val_last", "test_best", "test_last"):
        for metric in ("uar", "war"):
            value = summary[key][metric]
            assert math.isfinite(value) and 0.0 <= value <= 1.0, (key, metric, value)
    assert summary["val_last"]["epoch"] == 0 and math.isfinite(summary["val_last"]["loss"])
    assert Path(summary["last_ckpt"]).is_file()
    # autocast really ran: the head computed in bfloat16 while training, validating and testing
    assert SEEN_DTYPES == {stage: {torch.bfloat16} for stage in ("train", "validate", "test")}, SEEN_DTYPES
    # weights stay float32 (mixed, not true half precision)
    ckpt = torch.load(summary["last_ckpt"], map_location="cpu", weights_only=False)
    assert {v.dtype for v in ckpt["state_dict"].values() if v.is_floating_point()} == {torch.float32}


@pytest.mark.parametrize("accelerator", ["cpu", "auto"])
def test_16_mixed_on_cpu_becomes_bf16_mixed(accelerator: str, tmp_path: Path) -> None:
    """Lightning 2.x: fp16 AMP is not supported on CPU, so ``16-mixed`` is run as ``bf16-mixed`` (with a
    warning, no gradient scaler). ``auto`` resolves to ``cpu`` on a machine without an accelerator."""
    if accelerator == "auto" and torch.cuda.is_available():
        pytest.skip("auto selects the GPU here")
    cfg = _compose(tmp_path, ["trainer.precision=16-mixed", f"trainer.accelerator={accelerator}"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    assert trainer.precision == "bf16-mixed"
    plugin = trainer.precision_plugin
    assert isinstance(plugin, MixedPrecision) and plugin.scaler is None and plugin.device == "cpu"
    assert any("16-mixed" in str(w.message) and "bf16-mixed" in str(w.message) for w in caught), \
        [str(w.message) for w in caught]
