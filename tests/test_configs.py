"""Every config group option and every experiment composes, resolves and instantiates (on CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fertrain.config import config_dir
from fertrain.data.datasets.casme2 import make_miniature_casme2
from fertrain.data.datasets.dfew import make_miniature_dfew
from fertrain.data.datasets.sammlv import make_miniature_sammlv

CONF = config_dir()
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
GROUPS = ["data", "model", "loss", "optimizer", "scheduler", "task", "trainer", "logger", "callbacks", "debug"]


def compose_cfg(overrides: list[str], tmp_path: Path):
    base = [f"paths.output_dir={tmp_path / 'run'}", f"paths.log_dir={tmp_path / 'logs'}",
            f"paths.cache_dir={tmp_path / 'cache'}"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=base + overrides)


def test_experiment_not_in_primary_defaults() -> None:
    primary = OmegaConf.load(CONF / "train.yaml")
    names = [next(iter(d)) if isinstance(d, dict) else d for d in OmegaConf.to_container(primary.defaults)]
    assert "experiment" not in names and not any("experiment" in str(n) for n in names)


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes(group: str, tmp_path: Path) -> None:
    options = sorted(p.stem for p in (CONF / group).glob("*.yaml") if p.stem != "default" or group != "trainer")
    assert options, f"no options in conf/{group}"
    for option in options:
        if group == "data" and option in ("folder", "csv"):  # your own data: needs data.root / data.csv (tests/data)
            continue
        cfg = compose_cfg([f"{group}={option}"], tmp_path)
        # resolves everything except Hydra's own runtime values
        OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_instantiates(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    dfew = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=1, num_frames=4, size=48)
    if name.startswith("casme2"):
        make_miniature_casme2(tmp_path / "CASME2")
    if name.startswith("sammlv"):
        make_miniature_sammlv(tmp_path / "SAMM_LV")
    # the demo extracts the faces of its video: the session's face cache (tests/conftest.py) has them
    faces = [f"data.cache_dir={request.getfixturevalue('demo_faces')}"] if name == "demo" else []
    cfg = compose_cfg([f"+experiment={name}", f"paths.data_dir={tmp_path}", "data.datamodule.num_workers=0", *faces],
                      tmp_path)
    assert cfg.experiment_name == name
    assert cfg.data.num_classes == len(cfg.data.class_names) == cfg.model.num_classes
    if cfg.data.name == "dfew":
        assert Path(cfg.data.root) == dfew
    if cfg.weights.source == "file":  # e.g. dfew_ceflnet_official: its weights file, written from a random ResNet-18
        from tests.models.checkpoints import resnet18_source, write_checkpoint

        cfg.weights.path = str(write_checkpoint("ceflnet", resnet18_source(), tmp_path / "weights.pth.tar"))
    model = instantiate(cfg.model)
    clip_len = instantiate(cfg.data.datamodule.sampler).clip_len  # e.g. CEFLNet needs its sampler's T
    x = torch.randn(2, clip_len, 3, 48, 48)
    spotting = cfg.task._target_.endswith("SpottingTask")
    # recognition: one clip label (B, K); spotting: per-frame neutral/macro/micro logits (B, T, K)
    expected = (2, clip_len, cfg.data.num_classes) if spotting else (2, cfg.data.num_classes)
    assert model(x).shape == expected
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[instantiate(c) for c in cfg.callbacks.values()])
    assert trainer.max_epochs == cfg.trainer.max_epochs
    if not cfg.data.name.startswith("synthetic"):  # synthetic data would be generated here; covered elsewhere
        dm = instantiate(cfg.data.datamodule)
        assert dm.num_classes == cfg.data.num_classes


def test_run_dir_is_deterministic(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=dfew_mscm", "data.fold=3", "seed=7"], return_hydra_config=True)
    assert cfg.hydra.run.dir.endswith("dfew_mscm/fold3_seed7")
    assert "${now:" not in OmegaConf.to_yaml(cfg.hydra.run) + OmegaConf.to_yaml(cfg.hydra.sweep)


def test_debug_limit_bounds_an_experiment(tmp_path: Path) -> None:
    """`+experiment=` merges after `debug=`; debug=limit must still bound the run (by max_steps)."""
    cfg = compose_cfg(["+experiment=dfew_mscm", "debug=limit"], tmp_path)
    assert cfg.trainer.max_steps == 2 and cfg.trainer.limit_train_batches == 2
    assert cfg.trainer.max_epochs == 50  # the experiment's value, bounded by max_steps


def test_fold_experiments_name_runs_by_fold_and_run_on_data_without_folds(tmp_path: Path) -> None:
    """``run_id`` of a fold experiment is ``fold<N>_seed<S>``; with a data config that has no ``fold``
    (``+experiment=dfew_mscm data=folder``) it is train.yaml's ``seed<S>`` instead of Hydra's unresolvable
    interpolation of ``data.fold`` in the run directory."""
    from tests.helpers import compose_config

    assert compose_config(["+experiment=dfew_mscm", "data.fold=2", "seed=7"], tmp_path).run_id == "fold2_seed7"
    assert compose_config(["+experiment=mmi_ceflnet", "data.fold=10"], tmp_path).run_id.startswith("fold10_seed")
    own = compose_config(["+experiment=dfew_mscm", "data=folder", f"data.root={tmp_path}", "seed=7"], tmp_path)
    assert own.data.name == "folder" and own.run_id == "seed7"
