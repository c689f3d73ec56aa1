"""Frame backbones shared by the video models, and the one loader of local pretrained weights.

``ResNet18Trunk`` is torchvision's ResNet-18 (He et al., "Deep Residual Learning for Image Recognition", CVPR
2016; code: ``torchvision.models.resnet18``, BSD-3-Clause) without its pooling and classifier, split into stages
so that a model can tap a mid-level stage (MSCM correlates the features after ``layer1`` or ``layer2``).
Submodule names are torchvision's own (``conv1``, ``bn1``, ``layer1`` ... ``layer4``), so a torchvision
ResNet-18 ``state_dict`` loads into the trunk key for key; only its ``fc.*`` keys have no place here.

``load_pretrained`` reads a LOCAL file with ``torch.load(..., weights_only=True)``: never the network, never
pickled code.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torchvision
from torch import nn

log = logging.getLogger(__name__)

# Channels of the trunk's output after stage i: 0 = stem (conv1, bn1, relu, maxpool), 1..4 = layer1..layer4.
RESNET18_STAGE_CHANNELS: tuple[int, ...] = (64, 64, 128, 256, 512)
# Spatial stride of the trunk's output after stage i, relative to the input frame (pixels).
RESNET18_STAGE_STRIDES: tuple[int, ...] = (4, 4, 8, 16, 32)


class ResNet18Trunk(nn.Module):
    """ResNet-18 without global pooling and classifier, runnable stage by stage.

    Stages: 0 = stem (``conv1`` 7x7/2, ``bn1``, ``relu``, ``maxpool`` 3x3/2), 1..4 = ``layer1`` .. ``layer4``.
    Channels and strides per stage are in ``stage_channels`` / ``stage_strides``.

    Random initialisation (torchvision's ``resnet18(weights=None)``); weights come only from
    ``load_pretrained`` with a local file.
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


def load_pretrained(
    module: nn.Module,
    path: str | Path,
    ignore_prefixes: tuple[str, ...] = ("fc.",),
) -> tuple[list[str], list[str]]:
    """Load a local ``state_dict`` file into ``module`` with ``strict=False`` and report what did not match.

    Meant for torchvision ResNet-18 weights (``torchvision.models.resnet18().state_dict()`` saved with
    ``torch.save``) loaded into a ``ResNet18Trunk``; works for any module whose key names match the file's.
    Keys of the file starting with one of ``ignore_prefixes`` (by default the ImageNet classifier ``fc.*``, which a
    trunk has no place for) are dropped before loading and logged at INFO level. Every other mismatch is logged as
    one WARNING naming the counts and the first few keys. A tensor whose shape differs from the module's
    parameter raises (``nn.Module.load_state_dict`` does, also with ``strict=False``).

    Args:
        module: the module to load into (modified in place).
        path: local file saved with ``torch.save(state_dict)``; a dict of tensors. A checkpoint that wraps the
            weights under a ``"state_dict"`` key is unwrapped.
        ignore_prefixes: key prefixes of the file that are expected to have no place in ``module``.

    Returns:
        ``(missing_keys, unexpected_keys)`` after dropping ``ignore_prefixes``: keys of ``module`` the file did not
        provide, and keys of the file ``module`` does not have.

    Raises:
        FileNotFoundError: ``path`` does not exist (message names the path).
        ValueError: the file does not hold a dict of tensors (message names the path and the type found).
        RuntimeError: a tensor's shape differs from the module's (from ``load_state_dict``).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path} (expected a local torch.save'd state_dict)")
    # weights_only=True: tensors and plain containers only; no pickled code runs.
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state_dict (dict of str -> tensor), found {type(state).__name__}")
    ignored = [k for k in state if k.startswith(ignore_prefixes)]
    state = {k: v for k, v in state.items() if k not in set(ignored)}
    if ignored:
        log.info("%s: ignored %d keys with prefixes %s: %s", path, len(ignored), ignore_prefixes, ignored[:5])
    result = module.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        log.warning(
            "%s loaded into %s with strict=False: %d missing keys (first: %s), %d unexpected keys (first: %s)",
            path,
            type(module).__name__,
            len(missing),
            missing[:5],
            len(unexpected),
            unexpected[:5],
        )
    else:
        log.info("%s: loaded %d tensors into %s, all keys matched", path, len(state), type(module).__name__)
    return missing, unexpected
