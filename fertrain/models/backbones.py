"""Frame backbones shared by the video models, and the one loader of local pretrained weights.

``ResNet18Trunk`` is torchvision's ResNet-18 (He et al., "Deep Residual Learning for Image Recognition", CVPR
2016; code: ``torchvision.models.resnet18``, BSD-3-Clause) without its pooling and classifier, split into stages
so that a model can tap a mid-level stage (MSCM correlates the features after ``layer1`` or ``layer2``).
Submodule names are torchvision's own (``conv1``, ``bn1``, ``layer1`` ... ``layer4``), so a torchvision
ResNet-18 ``state_dict`` loads into the trunk key for key; only its ``fc.*`` keys have no place here.

``init_pretrained`` is the one entry point of pretrained initialisation for every model: a weights entry
(``conf/weights/*.yaml``, :mod:`fertrain.weights`) or, in the Python API, ``pretrained_path`` (a local file,
``load_pretrained``). Loading is strict: 100% of the backbone's tensors, or an error naming the file, the key
prefixes found and the setting that fixes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from fertrain.weights import LoadReport, WeightsError, WeightsSpec, generic_spec, load_into


# Channels of the trunk's output after stage i: 0 = stem (conv1, bn1, relu, maxpool), 1..4 = layer1..layer4.
RESNET18_STAGE_CHANNELS: tuple[int, ...] = (64, 64, 128, 256, 512)
# Spatial stride of the trunk's output after stage i, relative to the input frame (pixels).
RESNET18_STAGE_STRIDES: tuple[int, ...] = (4, 4, 8, 16, 32)


class ResNet18Trunk(nn.Module):
    """ResNet-18 without global pooling and classifier, runnable stage by stage.

    Stages: 0 = stem (``conv1`` 7x7/2, ``bn1``, ``relu``, ``maxpool`` 3x3/2), 1..4 = ``layer1`` .. ``layer4``.
    Channels and strides per stage are in ``stage_channels`` / ``stage_strides``.

    Random initialisation (torchvision's ``resnet18(weights=None)``); pretrained weights come from
    ``init_pretrained`` (a weights entry) or ``load_pretrained`` (a local file).
    """

    num_stages = 5

    def __init__(self) -> None:
        super().__init__()
        resnet = torchvision.models.resnet18(weights=None)
        # Same attribute names as torchvision, so its state_dict keys match ours.
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4
        self.stage_channels = RESNET18_STAGE_CHANNELS
        self.stage_strides = RESNET18_STAGE_STRIDES
        self.num_features = RESNET18_STAGE_CHANNELS[-1]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Stage 0: ``(N, 3, H, W)`` float -> ``(N, 64, H/4, W/4)`` (sizes rounded up), non-negative."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def stage(self, index: int) -> nn.Module | None:
        """The module of stage ``index`` (1..4), or None for 0 (the stem is a method, not one module)."""
        return None if index == 0 else getattr(self, f"layer{index}")

    def forward_stages(self, x: torch.Tensor, start: int = 0, end: int = 4) -> torch.Tensor:
        """Run stages ``start`` .. ``end`` inclusive.

        Args:
            x: float ``(N, C_in, H_in, W_in)``: image frames ``(N, 3, H, W)`` when ``start == 0``, else the output
                of stage ``start - 1``.
            start: first stage to run, 0..4.
            end: last stage to run, ``start - 1`` .. 4 (``start - 1`` runs nothing and returns ``x``).

        Returns:
            float ``(N, stage_channels[end], H / stage_strides[end], W / stage_strides[end])`` (sizes rounded up).

        Raises:
            ValueError: ``start`` or ``end`` out of range.
        """
        if not (0 <= start <= self.num_stages - 1 and start - 1 <= end <= self.num_stages - 1):
            raise ValueError(f"stages must satisfy 0 <= start <= 4 and start - 1 <= end <= 4; got {start=}, {end=}")
        for i in range(start, end + 1):
            x = self.stem(x) if i == 0 else getattr(self, f"layer{i}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """All stages: float ``(N, 3, H, W)`` -> feature map ``(N, 512, H/32, W/32)`` (rounded up)."""
        return self.forward_stages(x, 0, self.num_stages - 1)


def load_pretrained(module: nn.Module, path: str | Path, arch: str = "resnet18", owner: str | None = None,
                    **rules: Any) -> LoadReport:
    """Load a local weights file into ``module`` STRICTLY (the ``state_dict`` weights entry).

    The file may be a plain ``state_dict``, a ``{'state_dict': ...}`` checkpoint, a Lightning checkpoint or a
    DataParallel (``module.``) file: the key prefix is detected (see :mod:`fertrain.weights.loader`). Every tensor of
    ``module`` must be loaded; file keys under the prefix that ``module`` has no place for must match ``ignore``
    (default ``("fc.",)``: the classifier of torchvision's ResNets).

    Args:
        module: the backbone to load into (modified in place).
        path: the local file; read with ``torch.load(weights_only=True)``: never the network, never pickled code.
        arch: the backbone's architecture (``resnet18``, ``r3d_18``, ``r2plus1d_18``).
        owner: name of ``module`` for messages (default: its class name).
        **rules: ``WeightsSpec`` fields, e.g. ``prefix="encoder."``, ``allow_missing=("layer4.",)``.

    Returns:
        The load report (loaded/total tensors, format, rule, sha256).

    Raises:
        fertrain.weights.WeightsError: missing or unreadable file, coverage below 100%, unused keys, shape mismatch.
    """
    spec = generic_spec(path, arch=arch, **rules)
    report = load_into(module, spec, arch=arch, owner=owner or type(module).__name__)
    assert report is not None  # a file entry always loads or raises
    return report


def init_pretrained(owner: str, module: nn.Module, arch: str, weights: Mapping[str, Any] | WeightsSpec | None,
                    pretrained_path: str | Path | None) -> dict[str, Any] | None:
    """The pretrained initialisation every model runs in ``__init__``: ``weights`` (an entry) or ``pretrained_path``.

    Args:
        owner: e.g. ``"MSCM.backbone"`` (messages).
        module: the backbone.
        arch: its architecture.
        weights: the ``weights`` config node (``conf/weights/*.yaml``) or a ``WeightsSpec``; None or the ``none``
            entry = random initialisation.
        pretrained_path: Python API shortcut: a local file loaded as the ``state_dict`` entry (no declared
            normalisation). Not combinable with ``weights`` (in configs ``weights`` is always given).

    Returns:
        The load report as a dict (``model.weights_report``), or None for random initialisation.

    Raises:
        fertrain.weights.WeightsError: both given; or any loading error (see :func:`load_pretrained`).
    """
    if pretrained_path is not None:
        if weights is not None:
            raise WeightsError(
                f"model.pretrained_path={pretrained_path} is replaced by the weights group, which also sets the input "
                f"normalisation the file expects: use weights=state_dict weights.path={pretrained_path} "
                "weights.mean=[...] weights.std=[...] (ImageNet: [0.485,0.456,0.406] / [0.229,0.224,0.225]; input in "
                "[0, 1]: [0,0,0] / [1,1,1]), or a named entry, e.g. weights=emotion_fan_ferplus_resnet18 "
                f"weights.path={pretrained_path} (list: python -m fertrain.weights list)")
        return load_pretrained(module, pretrained_path, arch=arch, owner=owner).as_dict()
    report = load_into(module, WeightsSpec.from_config(weights), arch=arch, owner=owner)
    return None if report is None else report.as_dict()
