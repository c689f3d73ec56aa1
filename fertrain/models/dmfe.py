"""DMFE: discriminative multiscale feature extraction for static-image FER (our reconstruction).

Source: Wen, Zhou, Gan, Luo, "A discriminative multiscale feature extraction network for facial expression
recognition in the wild", Measurement Science and Technology (IOP Publishing), https://doi.org/10.1088/1361-6501/ad191c
(reported: RAF-DB 89.63 %, AffectNet 61.82 %, FERPlus 91.15 % accuracy). The full text and code are not public;
the abstract fixes only: a CNN extracts deep semantic and shallow geometric features together; channel-wise
self-attention extracts and compresses the prominent features; a center cosine loss, inspired by CosFace, makes
the classes compact and apart (``fertrain.losses.center_cosine.CenterCosineLoss``).

Everything below is OURS:
- Backbone: torchvision ResNet-18 (``ResNet18Trunk``), random init unless a weights entry is given (``weights=``).
- Multiscale taps (``tap_stages``): the outputs of ``layer2`` (128 channels, stride 8: part shapes, the
  "shallow geometric" features), ``layer3`` (256, stride 16) and ``layer4`` (512, stride 32: "deep semantic").
- Channel-wise self-attention per tap, after the channel attention module of DANet (Fu et al., "Dual Attention
  Network for Scene Segmentation", CVPR 2019, Sec. 3.3): the tap is average-pooled to
  a ``pool_size x pool_size`` grid (L positions), each channel is a token of L values, the channel affinity
  ``softmax(X X^T / sqrt(L))`` (C x C) re-mixes the channels, added back with a learnable scale ``gamma``
  (initialised 0, as in DANet), then averaged over the grid -> (C,). Differences from DANet: pooled grid instead
  of the full map (cheap for C = 512), scaled dot product, plain softmax instead of DANet's ``max - energy``.
- Compression per tap: Linear(C -> ``tap_dim``) + BatchNorm1d + ReLU. Fusion: concatenate the taps, Dropout,
  Linear -> BatchNorm1d -> the embedding (``num_features`` = ``embed_dim``), as the BN-Dropout-FC-BN necks of
  margin-based face models (ArcFace, Deng et al., CVPR 2019, "E" output; deepinsight/insightface
  ``recognition/arcface_torch/backbones/iresnet.py`` ``IResNet.forward``: bn2, flatten, dropout, fc, features).
- Dropout placement (a fix): it sits INSIDE the neck, before the fusing Linear, so it acts whatever the head and
  whatever the loss. An earlier version applied it in ``forward_head`` only; ``loss=center_cosine`` trains on
  ``forward_features`` and never called ``forward_head`` in training, so the configured dropout was unused
  with the cosine head (the DMFE experiments). ``forward_head`` now applies no dropout.
- Head: ``head="linear"`` (dropout + Linear, for cross-entropy) or ``head="cosine"`` (``CosineClassifier``:
  ``scale * cos(theta)`` between the embedding and learnable class centres, no margin; pair it with
  ``CenterCosineLoss.bind_centers`` so the loss trains these centres and checkpoints carry them in ``net.*``).
- Images are clips of length 1: input ``(B, 1, 3, H, W)``. T > 1 is accepted: every frame is embedded and the
  embeddings are averaged over T (a clip-level prediction from frame-level features).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fertrain.models.backbones import ResNet18Trunk, init_pretrained


class ChannelSelfAttention(nn.Module):
    """Channel-wise self-attention of a feature map on a pooled grid, then global average -> ``(N, C)``.

    Args:
        pool_size: side of the pooled grid (L = ``pool_size ** 2`` positions per channel token).
    """

    def __init__(self, pool_size: int = 4) -> None:
        super().__init__()
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.gamma = nn.Parameter(torch.zeros(1))  # 0 at init: starts as plain average pooling

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend over channels.

        Args:
            x: float ``(N, C, h, w)``.

        Returns:
            ``(pooled, attention)``: float ``(N, C)``; the channel affinity float ``(N, C, C)``, rows sum to 1.
        """
        tokens = self.pool(x).flatten(2)  # (N, C, L): one token of L grid values per channel
        affinity = tokens @ tokens.transpose(1, 2) / math.sqrt(tokens.shape[2])  # (N, C, C)
        attention = affinity.softmax(dim=2)  # (N, C, C)
        tokens = tokens + self.gamma * (attention @ tokens)  # (N, C, L)
        return tokens.mean(dim=2), attention  # (N, C), (N, C, C)


class CosineClassifier(nn.Module):
    """``scale * cos(theta)`` between embeddings and learnable class centres (NormFace/CosFace logits, no margin).

    Args:
        in_features: embedding width D.
        num_classes: K.
        scale: s, multiplies the cosine (the softmax temperature 1 / s).

    Attributes:
        weight: the class centres, float ``(K, D)`` (any norm; normalised in ``forward``).
    """

    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0) -> None:
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """float ``(B, D)`` -> logits float ``(B, K)`` in ``[-scale, scale]``."""
        return self.scale * F.linear(F.normalize(emb, dim=1), F.normalize(self.weight, dim=1))


class DMFE(nn.Module):
    """DMFE image classifier: multiscale ResNet-18 taps, channel-wise self-attention, fused embedding, head.

    See the module docstring for the source and for every choice that is ours.

    Args:
        num_classes: number of expression classes (from the data config); 0 = no head (embeddings out).
        tap_stages: ResNet stages (1..4) whose outputs are tapped, shallow to deep.
        tap_dim: width of each tap after compression.
        embed_dim: width of the fused embedding (``num_features``).
        pool_size: grid side of the channel self-attention (positions per channel token = ``pool_size ** 2``).
        head: ``"linear"`` (dropout + linear) or ``"cosine"`` (``CosineClassifier`` with ``scale``).
        scale: s of the cosine head (ignored by the linear head).
        dropout: dropout on the concatenated taps, inside the embedding neck (before the fusing Linear), so it
            acts with both heads, also when ``loss=center_cosine`` trains on ``forward_features``.
        weights: a weights entry (``conf/weights``, the config's ``weights`` node) for the ResNet-18 backbone;
            None = random init.
        pretrained_path: Python API: a local ResNet-18 weights file loaded strictly into the backbone (not with
            ``weights``).

    Attributes:
        weights_report: what the pretrained load did (loaded/total tensors, file, sha256), or None.

    Raises:
        ValueError: ``tap_stages`` empty, not increasing or outside 1..4; unknown ``head``.
        fertrain.weights.WeightsError: the weights cannot be loaded completely (see ``init_pretrained``).
    """

    backbone_arch = "resnet18"  # what pretrained weights must hold (fertrain.weights.ARCHS)

    def pretrained_target(self) -> nn.Module:
        """The module pretrained weights load into: the ResNet-18 trunk."""
        return self.backbone

    def __init__(
        self,
        num_classes: int,
        tap_stages: Sequence[int] = (2, 3, 4),
        tap_dim: int = 256,
        embed_dim: int = 512,
        pool_size: int = 4,
        head: str = "linear",
        scale: float = 30.0,
        dropout: float = 0.2,
        weights: Mapping[str, Any] | None = None,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        taps = tuple(int(s) for s in tap_stages)
        if not taps or any(s not in (1, 2, 3, 4) for s in taps) or list(taps) != sorted(set(taps)):
            raise ValueError(f"tap_stages must be increasing ResNet stages in 1..4, e.g. (2, 3, 4); got {tap_stages}")
        if head not in ("linear", "cosine"):
            raise ValueError(f"head must be 'linear' or 'cosine'; got {head!r}")
        self.num_classes = num_classes
        self.tap_stages = taps
        self.head_type = head
        self.scale = scale
        self.backbone = ResNet18Trunk()
        self.weights_report = init_pretrained("DMFE.backbone", self.backbone, "resnet18", weights, pretrained_path)
        self.attention = nn.ModuleList(ChannelSelfAttention(pool_size) for _ in taps)
        self.compress = nn.ModuleList(
            nn.Sequential(
                nn.Linear(self.backbone.stage_channels[s], tap_dim, bias=False),
                nn.BatchNorm1d(tap_dim),
                nn.ReLU(inplace=True),
            )
            for s in taps
        )
        self.fuse = nn.Sequential(nn.Linear(len(taps) * tap_dim, embed_dim, bias=False), nn.BatchNorm1d(embed_dim))
        self.num_features = embed_dim
        self.drop = nn.Dropout(dropout)
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        if self.head_type == "cosine":
            return CosineClassifier(self.num_features, num_classes, self.scale)
        return nn.Linear(self.num_features, num_classes)

    @property
    def class_centers(self) -> nn.Parameter | None:
        """The cosine head's class centres float ``(K, D)`` (for ``CenterCosineLoss.bind_centers``); None if the
        head is linear or absent."""
        return self.head.weight if isinstance(self.head, CosineClassifier) else None

    def embed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Embeddings of single images: float ``(N, 3, H, W)`` normalised -> float ``(N, num_features)``."""
        pooled = []
        x, done = frames, -1
        for tap, attn, compress in zip(self.tap_stages, self.attention, self.compress):
            x = self.backbone.forward_stages(x, done + 1, tap)  # (N, C_tap, H / stride, W / stride)
            done = tap
            vec, _ = attn(x)  # (N, C_tap)
            pooled.append(compress(vec))  # (N, tap_dim)
        return self.fuse(self.drop(torch.cat(pooled, dim=1)))  # (N, len(taps) * tap_dim) -> (N, embed_dim)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding of each sample.

        Args:
            x: float ``(B, T, 3, H, W)`` normalised; T = 1 for images, T > 1 averages the frame embeddings.

        Returns:
            float ``(B, num_features)``.

        Raises:
            ValueError: ``x`` is not 5-D.
        """
        if x.ndim != 5:
            raise ValueError(f"expected (B, T, C, H, W) with T = 1 for images; got shape {tuple(x.shape)}")
        B, T, C, H, W = x.shape
        emb = self.embed_frames(x.reshape(B * T, C, H, W))  # (B*T, D)
        return emb.reshape(B, T, -1).mean(dim=1)  # (B, D)

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, num_features)`` -> logits ``(B, num_classes)``, or the features themselves (``pre_logits``).

        No dropout here: it is inside the embedding neck (see the module docstring)."""
        return feats if pre_logits else self.head(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images float ``(B, 1, 3, H, W)`` (or clips, averaged over T) -> logits float ``(B, K)``."""
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a fresh one of the same kind with ``num_classes`` outputs (0 = identity)."""
        self.num_classes = num_classes
        self.head = self._make_head(num_classes)
