"""Reference video classifiers to measure the video models against.

- ``FrameMeanResNet18``: a 2D ResNet-18 per frame, global average pool, mean over time, linear head. Appearance
  only and order-free by construction: permuting the frames of a clip leaves its logits unchanged. A model that
  beats it on a motion-defined task uses the temporal order. Backbone: torchvision ResNet-18 (He et al., CVPR
  2016); the frame-averaging design is OURS (the common appearance-only reference).
- ``ResNet18Image``: torchvision's 2D ResNet-18 (He et al., CVPR 2016) for static images, i.e. clips of length 1:
  the reference for the image datasets (RAF-DB, AffectNet, FERPlus).
- ``R3D18``: torchvision's 3D ResNet-18 (``torchvision.models.video.r3d_18``; Tran et al., "A Closer Look at
  Spatiotemporal Convolutions for Action Recognition", CVPR 2018, Sec. 3.1 "R3D"), wrapped in the fertrain model
  contract.
- ``R2Plus1D18``: torchvision's R(2+1)D-18 (``torchvision.models.video.r2plus1d_18``; same paper, Sec. 3.5:
  every 3-D convolution factorised into a 2-D spatial and a 1-D temporal one), same wrapper.

All models: ``forward(x)`` with x float ``(B, T, 3, H, W)`` normalised -> logits ``(B, num_classes)``;
``forward_features``, ``forward_head``, ``num_features``, ``reset_classifier``; ``backbone_arch`` and
``pretrained_target()`` say which weights entries fit (``fertrain.weights``). Random init by default;
``weights=`` an entry (e.g. ``imagenet_resnet18``, ``kinetics400_r3d18``) loads the backbone strictly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torchvision
from torch import nn

from fertrain.models.backbones import ResNet18Trunk, init_pretrained


def _check_clip(x: torch.Tensor) -> None:
    if x.ndim != 5:
        raise ValueError(f"expected a clip batch (B, T, C, H, W); got shape {tuple(x.shape)}")


class _ClassifierMixin:
    """Shared head of the contract: dropout, linear; ``reset_classifier``; the pretrained target."""

    num_features: int
    num_classes: int
    drop: nn.Dropout
    head: nn.Module
    backbone_arch = "resnet18"  # what pretrained weights must hold (fertrain.weights.ARCHS)

    def pretrained_target(self) -> nn.Module:
        """The module pretrained weights load into (the backbone)."""
        return self.backbone  # type: ignore[attr-defined]

    def _init_head(self, num_features: int, num_classes: int, dropout: float) -> None:
        """Set ``num_features``, ``num_classes``, the dropout and the linear head (0 classes = identity)."""
        self.num_features, self.num_classes = num_features, num_classes
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, num_features)`` -> logits ``(B, num_classes)`` (after dropout), or the dropped-out features."""
        feats = self.drop(feats)
        return feats if pre_logits else self.head(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised clip float ``(B, T, 3, H, W)`` -> unnormalised logits float ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))  # type: ignore[attr-defined]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the linear head by a fresh one with ``num_classes`` outputs (0 = identity, features out)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


class FrameMeanResNet18(_ClassifierMixin, nn.Module):
    """Per-frame ResNet-18, global average pool, mean over time, dropout, linear head.

    Args:
        num_classes: number of expression classes (from the data config).
        dropout: dropout probability before the linear head.
        weights: a weights entry for the backbone (``conf/weights``, the config's ``weights`` node; arch
            ``resnet18``); None = random init.
        pretrained_path: Python API: a local weights file loaded strictly into the backbone (not with
            ``weights``).

    Attributes:
        weights_report: what the pretrained load did (loaded/total tensors, file, sha256), or None.

    Raises:
        fertrain.weights.WeightsError: the weights cannot be loaded completely (see ``init_pretrained``).
    """

    def __init__(self, num_classes: int, dropout: float = 0.5, weights: Mapping[str, Any] | None = None,
                 pretrained_path: str | None = None) -> None:
        super().__init__()
        self.backbone = ResNet18Trunk()
        self.weights_report = init_pretrained("FrameMeanResNet18.backbone", self.backbone, "resnet18", weights,
                                              pretrained_path)
        self._init_head(self.backbone.num_features, num_classes, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip embedding: float ``(B, T, 3, H, W)``, T >= 1 -> float ``(B, 512)``, invariant to frame order.

        Raises:
            ValueError: ``x`` is not 5-D.
        """
        _check_clip(x)
        B, T, C, H, W = x.shape
        feats = self.backbone(x.reshape(B * T, C, H, W))  # (B*T, 512, h, w)
        emb = feats.mean(dim=(2, 3)).reshape(B, T, self.num_features)  # (B, T, 512)
        return emb.mean(dim=1)  # (B, 512)


class _VideoResNet(_ClassifierMixin, nn.Module):
    """A torchvision video ResNet-18 (``torchvision.models.video``) on the fertrain contract.

    The clip ``(B, T, C, H, W)`` is permuted to torchvision's video layout ``(B, C, T, H, W)``; the network's own
    global average pool over (T, H, W) gives the embedding. Needs T >= 1; T is downsampled 8x inside (the pooling
    is adaptive, so any T works). torchvision's ``fc`` is replaced by the contract's dropout + linear head (the
    dropout is OURS; torchvision's video ResNets have none); pretrained weights load into ``net`` (``fc.*`` of a
    torchvision file is ignored).
    """

    builder: Callable[..., nn.Module]
    backbone_arch: str

    def __init__(self, num_classes: int, dropout: float = 0.5, weights: Mapping[str, Any] | None = None,
                 pretrained_path: str | None = None) -> None:
        super().__init__()
        net = type(self).builder(weights=None)
        net.fc = nn.Identity()  # the head is ours
        self.weights_report = init_pretrained(f"{type(self).__name__}.net", net, self.backbone_arch, weights,
                                              pretrained_path)
        self.net = net
        self._init_head(512, num_classes, dropout)

    def pretrained_target(self) -> nn.Module:
        """The module pretrained weights load into: torchvision's network without its ``fc``."""
        return self.net

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip embedding: float ``(B, T, 3, H, W)`` -> float ``(B, 512)``.

        Raises:
            ValueError: ``x`` is not 5-D.
        """
        _check_clip(x)
        return self.net(x.permute(0, 2, 1, 3, 4))  # (B, C, T, H, W) in -> (B, 512) out


class R3D18(_VideoResNet):
    """Torchvision 3D ResNet-18 (R3D-18) on the fertrain contract (see ``_VideoResNet``).

    Args:
        num_classes: number of expression classes (from the data config).
        dropout: dropout probability before the linear head (OURS; torchvision's R3D has none).
        weights: a weights entry for the backbone (``conf/weights``, the config's ``weights`` node; arch
            ``r3d_18``, e.g. ``kinetics400_r3d18``); None = random init.
        pretrained_path: Python API: a local weights file loaded strictly into the backbone (not with
            ``weights``).

    Attributes:
        weights_report: what the pretrained load did (loaded/total tensors, file, sha256), or None.

    Raises:
        fertrain.weights.WeightsError: the weights cannot be loaded completely (see ``init_pretrained``).
    """

    builder = staticmethod(torchvision.models.video.r3d_18)
    backbone_arch = "r3d_18"


class R2Plus1D18(_VideoResNet):
    """Torchvision R(2+1)D-18 on the fertrain contract (see ``_VideoResNet``).

    Args:
        num_classes: number of expression classes (from the data config).
        dropout: dropout probability before the linear head (OURS; torchvision's R(2+1)D has none).
        weights: a weights entry for the backbone (``conf/weights``, the config's ``weights`` node; arch
            ``r2plus1d_18``, e.g. ``kinetics400_r2plus1d18``); None = random init.
        pretrained_path: Python API: a local weights file loaded strictly into the backbone (not with
            ``weights``).

    Attributes:
        weights_report: what the pretrained load did (loaded/total tensors, file, sha256), or None.

    Raises:
        fertrain.weights.WeightsError: the weights cannot be loaded completely (see ``init_pretrained``).
    """

    builder = staticmethod(torchvision.models.video.r2plus1d_18)
    backbone_arch = "r2plus1d_18"


class ResNet18Image(_ClassifierMixin, nn.Module):
    """Torchvision ResNet-18 for static images (clips of length 1): trunk, global average pool, dropout, linear.

    The image baseline of fertrain: ``torchvision.models.resnet18`` as is (stem, 4 stages, global average pool), its
    ``fc`` replaced by the contract's dropout + linear head. Images arrive as ``(B, 1, 3, H, W)``; any size works
    (adaptive pooling), e.g. 112 or 224 pixels, FERPlus 48x48 grey upsampled and replicated to 3 channels by the
    data pipeline.

    Args:
        num_classes: number of expression classes (from the data config); 0 = no head (embeddings out).
        dropout: dropout probability before the linear head (torchvision's ResNet-18 has none: default 0).
        weights: a weights entry for the backbone (``conf/weights``, the config's ``weights`` node; arch
            ``resnet18``, e.g. ``imagenet_resnet18``); None = random init.
        pretrained_path: Python API: a local weights file loaded strictly into the backbone (not with
            ``weights``).

    Attributes:
        weights_report: what the pretrained load did (loaded/total tensors, file, sha256), or None.

    Raises:
        fertrain.weights.WeightsError: the weights cannot be loaded completely (see ``init_pretrained``).
    """

    def __init__(self, num_classes: int, dropout: float = 0.0, weights: Mapping[str, Any] | None = None,
                 pretrained_path: str | None = None) -> None:
        super().__init__()
        self.backbone = ResNet18Trunk()
        self.weights_report = init_pretrained("ResNet18Image.backbone", self.backbone, "resnet18", weights,
                                              pretrained_path)
        self._init_head(self.backbone.num_features, num_classes, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image embedding: float ``(B, 1, 3, H, W)`` -> float ``(B, 512)`` (global average pool of ``layer4``).

        Raises:
            ValueError: ``x`` is not 5-D or has T != 1 (a video model or the mean over frames is
                ``FrameMeanResNet18``).
        """
        _check_clip(x)
        if x.shape[1] != 1:
            raise ValueError(f"ResNet18Image takes single images (B, 1, C, H, W); got T={x.shape[1]} frames "
                             f"(shape {tuple(x.shape)}): use an image data config (clip_len 1) or FrameMeanResNet18")
        return self.backbone(x[:, 0]).mean(dim=(2, 3))  # (B, 512, h, w) -> (B, 512)
