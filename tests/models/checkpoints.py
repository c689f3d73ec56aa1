"""Checkpoint files in every layout fertrain.weights reads, written from a randomly initialised network (tests).

Layouts (``write_checkpoint(fmt, net, path)``, ``net`` a torchvision ResNet with an ``fc`` head):

- ``torchvision``: ``torch.save(net.state_dict())`` (torchvision's and timm's files);
- ``state_dict_key``: ``{'state_dict': sd, 'epoch': 3}``;
- ``emotion_fan``: ``{'epoch', 'state_dict': {'module.<key>'}, 'prec1'}`` with the FER+ ``fc`` head (8 classes):
  the layout Open-Debin/Emotion-FAN ``basic_code/load.py`` ``model_parameters`` reads;
- ``ceflnet``: as ``emotion_fan`` plus a ``module.feature`` layer (CVLab-Liuyuanyuan/CEFLNet
  ``data/load_materials.py`` ``LoadParameter`` skips ``module.fc.*`` and ``module.feature.*``);
- ``dataparallel``: a plain ``{'module.<key>'}`` state_dict (``nn.DataParallel(net).state_dict()``);
- ``lightning_model``: a real Lightning checkpoint (``Trainer.save_checkpoint``) of a LightningModule holding the
  network as ``self.model``;
- ``lightning_fertrain``: a real Lightning checkpoint of a LightningModule holding a fertrain
  ``FrameMeanResNet18`` as ``self.net`` (keys ``net.backbone.*`` and ``net.head.*``, as fertrain's own runs);
- ``model_key``: ``{'model': sd, 'epoch': 1}`` (timm/DeiT training scripts);
- ``renamed``: ``{'encoder.<key with layerN -> stageN>'}`` (needs ``prefix`` + ``rename``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

RESNET18_FORMATS = ("torchvision", "state_dict_key", "emotion_fan", "ceflnet", "dataparallel", "lightning_model",
                    "lightning_fertrain", "model_key", "renamed")


def resnet18_source(seed: int = 0, num_classes: int = 8) -> nn.Module:
    """A randomly initialised torchvision ResNet-18 with non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    for m in net.modules():  # random running statistics, so that a missed buffer changes the output
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return net.eval()


def trunk_of(net: nn.Module) -> nn.Module:
    """A torchvision ResNet without avgpool and fc: ``(N, 3, H, W) -> (N, 512, H/32, W/32)``."""
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                         net.layer4).eval()


def _lightning_checkpoint(module: nn.Module, attr: str, path: Path) -> None:
    import pytorch_lightning as pl

    class Holder(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            setattr(self, attr, module)

    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.strategy.connect(Holder())
    trainer.save_checkpoint(path)


def write_checkpoint(fmt: str, net: nn.Module, path: str | Path) -> Path:
    """Save ``net`` (a torchvision ResNet with ``fc``) to ``path`` in layout ``fmt`` (see the module docstring)."""
    path = Path(path)
    sd = net.state_dict()
    if fmt == "torchvision":
        torch.save(sd, path)
    elif fmt == "state_dict_key":
        torch.save({"state_dict": sd, "epoch": 3}, path)
    elif fmt == "emotion_fan":
        torch.save({"epoch": 30, "state_dict": {f"module.{k}": v for k, v in sd.items()}, "prec1": 84.25}, path)
    elif fmt == "ceflnet":
        state = {f"module.{k}": v for k, v in sd.items()}
        state["module.feature.weight"] = torch.randn(512, 512)
        state["module.feature.bias"] = torch.randn(512)
        torch.save({"epoch": 12, "state_dict": state, "prec1": 0.5}, path)
    elif fmt == "dataparallel":
        torch.save(nn.DataParallel(net).state_dict(), path)
    elif fmt == "lightning_model":
        _lightning_checkpoint(net, "model", path)
    elif fmt == "lightning_fertrain":
        from fertrain.models import FrameMeanResNet18

        fm = FrameMeanResNet18(num_classes=3)
        fm.backbone.load_state_dict({k: v for k, v in sd.items() if not k.startswith("fc.")})
        _lightning_checkpoint(fm, "net", path)
    elif fmt == "model_key":
        torch.save({"model": sd, "epoch": 1}, path)
    elif fmt == "renamed":
        torch.save({"encoder." + k.replace("layer", "stage"): v for k, v in sd.items()}, path)
    else:
        raise ValueError(f"unknown format {fmt!r}; known: {RESNET18_FORMATS}")
    return path
