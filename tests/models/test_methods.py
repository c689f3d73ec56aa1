"""Method fidelity: every experiment value states its source; the official CEFLNet variant runs as configured;
its per-epoch schedule equals the official one; DMFE's dropout acts with the center cosine loss."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from fertrain.config import config_dir
from fertrain.models.dmfe import DMFE
from fertrain.tasks.optim import epoch_warmup_cosine
from tests.helpers import compose_config, run_experiment
from tests.models.checkpoints import resnet18_source, write_checkpoint

CONF = config_dir()
SPOTTING_OR_DEMO = ("demo", "casme2_fesnet", "sammlv_fesnet", "synthetic_fesnet")
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml") if p.stem not in SPOTTING_OR_DEMO)
TAG = re.compile(r"#.*\b(paper|official|protocol|ours)\b")
PLUMBING_KEYS = {"experiment_name", "run_id", "_target_", "name", "mode", "sampler", "train_transform",
                 "eval_transform", "num_clips", "frames_per_clip", "scale", "size", "height", "width", "compose"}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_value_states_its_source(name: str) -> None:
    """Each line that sets a value (or picks a config group) carries a `# ... paper|official|protocol|ours` comment;
    exempt: run naming and pure plumbing (a key whose value only interpolates another key)."""
    text = (CONF / "experiment" / f"{name}.yaml").read_text()
    untagged = []
    for line in text.splitlines():
        code = line.split("#", 1)[0].rstrip()
        m = re.match(r"^\s*(?:- )?(override /\w+|[\w]+):\s*(.*)$", code)
        if not m or not m.group(2):  # comments, structure (a key with children), `defaults:`
            continue
        key, value = m.group(1), m.group(2)
        if key in PLUMBING_KEYS or re.fullmatch(r"\$\{[^}]+\}", value):
            continue
        if not TAG.search(line):
            untagged.append(line.strip())
    assert not untagged, f"conf/experiment/{name}.yaml: values without a source tag: {untagged}"
    if "mscm" in name or "dmfe" in name:
        assert "RECONSTRUCTION FROM THE PAPER'S ABSTRACT" in text or "reconstruction from the paper's abstract" in text


def test_reconstructions_say_so_and_the_mscm_shortcut_is_ours() -> None:
    for model in ("mscm", "dmfe", "fesnet"):
        assert "A RECONSTRUCTION FROM THE ABSTRACT" in (CONF / "model" / f"{model}.yaml").read_text(), model
    line = next(x for x in (CONF / "model" / "mscm.yaml").read_text().splitlines() if x.startswith("motion_shortcut"))
    assert "# ours" in line and "docs/methods.md" in line


def test_epoch_warmup_cosine_is_the_official_ceflnet_schedule() -> None:
    """Reference: torch's CosineAnnealingLR(T_max=160).step(epoch) and pytorch_warmup's LinearWarmup(10).dampen(),
    once per epoch, as CVLab-Liuyuanyuan/CEFLNet main.py l.94-99 (warmup factor min(1, (step + 1) / period))."""
    steps_per_epoch, epochs = 3, 120
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    sched = epoch_warmup_cosine(opt, total_steps=steps_per_epoch * epochs, epochs=epochs, warmup_epochs=10,
                                cosine_epochs=160)
    ours = []
    for _ in range(steps_per_epoch * epochs):
        ours.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ref_opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=160)
    official = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # step(epoch) is deprecated in torch; the official code uses it
        for epoch in range(epochs):
            cosine.step(epoch)
            lr = ref_opt.param_groups[0]["lr"] * min(1.0, (epoch + 1) / 10)
            official += [lr] * steps_per_epoch
    assert ours == pytest.approx(official, rel=1e-9, abs=1e-15)
    assert ours[0] == pytest.approx(1e-5) and ours[-1] == pytest.approx(1e-4 * 0.5 * (1 + math.cos(math.pi * 119 / 160)))


def test_dmfe_dropout_acts_with_the_center_cosine_loss() -> None:
    """The center cosine loss trains on forward_features: the dropout must act there (it used to sit in forward_head
    only, never called in training with that loss)."""
    x = torch.randn(4, 1, 3, 32, 32)
    torch.manual_seed(0)
    net = DMFE(num_classes=7, head="cosine", dropout=0.5).train()
    assert not torch.equal(net.forward_features(x), net.forward_features(x))  # dropout draws differ
    net.eval()
    torch.testing.assert_close(net.forward_features(x), net.forward_features(x))
    assert torch.equal(net.forward_head(net.forward_features(x)), net(x))  # no second dropout in the head
    plain = DMFE(num_classes=7, head="cosine", dropout=0.0).train()
    torch.testing.assert_close(plain.forward_features(x), plain.forward_features(x))


@pytest.mark.timeout(300)
def test_dfew_ceflnet_official_runs_a_debug_epoch(tmp_path: Path) -> None:
    from fertrain.data.datasets.dfew import make_miniature_dfew

    dfew = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=1, num_frames=6, size=40, folds=(1,))
    weights = write_checkpoint("ceflnet", resnet18_source(), tmp_path / "Resnet18_pytorch.pth.tar")
    summary = run_experiment(["+experiment=dfew_ceflnet_official", f"data.root={dfew}", f"weights.path={weights}",
                              "data.image_size=32", "data.datamodule.batch_size=2", "trainer.limit_val_batches=1",
                              "trainer.limit_test_batches=1", "callbacks=none", "data.ceflnet_sampler.num_clips=2",
                              "data.ceflnet_sampler.frames_per_clip=2"], tmp_path)
    for key in ("val_best", "val_last", "test_last"):
        assert 0.0 <= summary[key]["war"] <= 1.0, key
    # the load's report sits beside the numbers it produced
    report = json.loads((Path(summary["run_dir"]) / "summary.json").read_text())["weights"]
    assert report["file"] == str(weights) and report["loaded"] == report["total"] == 100
    assert report["entry"] == "ceflnet_resnet18" and len(report["sha256"]) == 64

    # a file that fits nothing stops the build with the loader's own error (exit status 2), not Hydra's wrapper
    from fertrain.train import build
    from fertrain.weights.spec import WeightsError

    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "wrong.pth")
    cfg = compose_config(["+experiment=dfew_ceflnet_official", f"data.root={dfew}", f"weights.path={tmp_path / 'wrong.pth'}"],
                         tmp_path)
    with pytest.raises(WeightsError, match="wrong.pth"):
        build(cfg)
    cfg = OmegaConf.load(Path(summary["run_dir"]) / "config_resolved.yaml")
    assert cfg.weights.name == "ceflnet_resnet18" and cfg.weights.path == str(weights)
    assert list(cfg.data.datamodule.mean) == [0.0] * 3 and list(cfg.data.datamodule.std) == [1.0] * 3  # [0, 1] input
    assert cfg.data.datamodule.train_transform == cfg.data.datamodule.eval_transform  # no training augmentation
    assert [t._target_ for t in cfg.data.datamodule.train_transform.compose.transforms] == ["albumentations.Resize"]
    assert cfg.scheduler._target_.endswith("epoch_warmup_cosine") and cfg.monitor.key == "val/war"
