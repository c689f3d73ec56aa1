"""CEFLNet: clip-aware emotion-rich feature learning for video FER.

Source: Y. Liu, C. Feng, X. Yuan, L. Zhou, W. Wang, J. Qin, Z. Luo, "Clip-aware expressive feature learning for
video-based facial expression recognition", Information Sciences 598 (2022) (reported on DFEW: UAR 51.14 /
WAR 65.35, about 13 M parameters; also BU-3DFE, MMI, AFEW). Official code:
https://github.com/CVLab-Liuyuanyuan/CEFLNet (``models/Model.py``, ``data/NewDataset.py``, ``main.py``; the
repository has no licence file), read to learn the design, not copied.

A sample is ``num_clips`` overlapping clips of ``frames_per_clip`` frames (7 x 5 in the paper), stacked
clip-major along T (``fertrain.data.samplers.CEFLNetSampler`` produces that layout):

1. Clip-based feature encoder, per clip:
   - a ResNet-18 per frame, global average pool -> frame features ``f_i`` (512-d);
   - first attention (intra-clip relation): 4-head self-attention over the clip's frames, residual connection
     (attention output after dropout 0.1 added to ``f_i``) and LayerNorm;
   - max-pool of the attended frame features over the frames -> the clip-global feature ``g`` (512-d);
   - second attention (local-global relation): ``[f_i ; g]`` (the UNattended frame feature concatenated with
     ``g``, 1024-d) -> dropout 0.5 -> Linear(1024, 1) -> sigmoid = weight ``beta_i`` in (0, 1);
   - the weighted average is taken over the CONCATENATED vectors, ``sum_i beta_i [f_i ; g] / sum_i beta_i``,
     which is why it is 1024-d (as in the relation-attention of Frame Attention Networks, Meng et al., ICIP
     2019, Eq. 4); a Linear(1024, 512) maps it to the clip feature.
2. Emotional intensity activation network (EIAN): a 1x1 Conv1d(512 -> 1, no bias) over the
   clip sequence and a softmax over the clips give the activation map ``a`` (B, num_clips), summing to 1; the
   clip features are multiplied by ``a`` and max-pooled over the clips -> the video embedding (512-d).
3. Classifier: MLP 512 -> 256 -> ReLU -> 128 -> ReLU -> dropout 0.4 -> Linear(128, num_classes).

Order: neither attention has a positional encoding and both poolings are symmetric, so (as in the official code)
the output does not change when the frames inside a clip, or the clips, are permuted; what it depends on is which
frames are grouped into a clip. Temporal order enters only through the sampler (overlapping clips of neighbouring
frames) and not through the network.

Official recipe (``main.py``): Adam, lr 1e-4, weight decay 1e-4, 10-step linear warm-up then cosine schedule,
120 epochs, batch 8, 224 x 224 frames (``conf/experiment/dfew_ceflnet.yaml``).

OURS (where this module departs from or adds to the official code):
- All ``B * num_clips * frames_per_clip`` frames go through the ResNet in one batch and the attention runs
  batched over ``B * num_clips`` clips (the official code loops over clips and frames; same arithmetic).
- Backbone: torchvision's ResNet-18 (``ResNet18Trunk``) with torchvision's initialisation; random init unless a
  weights entry is given (the official code starts from the ResNet-18 of ``main.py``'s ``--parameterDir``:
  ``weights=ceflnet_resnet18``, used by ``+experiment=dfew_ceflnet_official``; input in [0, 1]).
- The official forward also returns the argmax of the activation map (the key clip); here
  ``forward_with_activation`` returns the whole map, and ``forward`` returns logits only (the model contract).
- ``num_clips``/``frames_per_clip`` are arguments (7 / 5 by default); any T other than their product raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fertrain.models.backbones import ResNet18Trunk, init_pretrained


class ClipEncoder(nn.Module):
    """Frame features of one clip -> one clip feature (the two attentions of CEFLNet's clip-based encoder).

    Args:
        dim: frame feature width D (512 for ResNet-18).
        num_heads: heads of the intra-clip self-attention (4).
        attn_dropout: dropout inside the self-attention and on its output before the residual (0.1).
        relation_dropout: dropout on ``[f_i ; g]`` before the local-global weight (0.5).
    """

    def __init__(self, dim: int = 512, num_heads: int = 4, attn_dropout: float = 0.1,
                 relation_dropout: float = 0.5) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=attn_dropout, batch_first=True)
        self.attn_drop = nn.Dropout(attn_dropout)
        self.norm = nn.LayerNorm(dim)
        self.relation_drop = nn.Dropout(relation_dropout)
        self.relation = nn.Linear(2 * dim, 1)  # [f_i ; g] -> beta_i (before the sigmoid)
        self.proj = nn.Linear(2 * dim, dim)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode clips.

        Args:
            frames: float ``(N, F, D)``, the features of the F frames of N clips.

        Returns:
            ``(clip, beta)``: clip features float ``(N, D)``; local-global weights float ``(N, F)`` in (0, 1).
        """
        attended, _ = self.attn(frames, frames, frames, need_weights=False)  # (N, F, D)
        attended = self.norm(frames + self.attn_drop(attended))  # (N, F, D), residual + LayerNorm
        glob = attended.amax(dim=1)  # (N, D), clip-global feature
        cat = torch.cat([frames, glob[:, None].expand_as(frames)], dim=2)  # (N, F, 2D): [f_i ; g]
        beta = torch.sigmoid(self.relation(self.relation_drop(cat)))  # (N, F, 1)
        pooled = (cat * beta).sum(dim=1) / beta.sum(dim=1)  # (N, 2D), beta-weighted average of [f_i ; g]
        return self.proj(pooled), beta.squeeze(2)  # (N, D), (N, F)


class IntensityActivation(nn.Module):
    """EIAN: per-clip activation by a 1x1 Conv1d and a softmax over clips; activation-weighted
    max-pool of the clip features.

    Args:
        dim: clip feature width D.
    """

    def __init__(self, dim: int = 512) -> None:
        super().__init__()
        self.score = nn.Conv1d(dim, 1, kernel_size=1, bias=False)
        nn.init.kaiming_normal_(self.score.weight, mode="fan_out")  # as the official code

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool clips.

        Args:
            clips: float ``(B, K, D)``, the features of K clips in temporal order.

        Returns:
            ``(video, activation)``: float ``(B, D)``; float ``(B, K)`` in [0, 1], summing to 1 over K.
        """
        activation = self.score(clips.transpose(1, 2)).squeeze(1).softmax(dim=1)  # (B, D, K) -> (B, K)
        video = (clips * activation[:, :, None]).amax(dim=1)  # (B, D)
        return video, activation


class CEFLNet(nn.Module):
    """CEFLNet video classifier (see the module docstring for the source and the choices that are ours).

    Input: float ``(B, T, 3, H, W)`` normalised frames with ``T = num_clips * frames_per_clip``, clip-major
    (frames ``c * frames_per_clip .. (c + 1) * frames_per_clip - 1`` are clip ``c``, clips in temporal order).

    Args:
        num_classes: number of expression classes (from the data config); 0 = no classifier layer.
        num_clips: clips per sample (7); must match the sampler's ``num_clips``.
        frames_per_clip: frames per clip (5); must match the sampler's ``frames_per_clip``.
        num_heads: heads of the intra-clip self-attention (4).
        attn_dropout: dropout of the self-attention (0.1).
        relation_dropout: dropout before the local-global weight (0.5).
        dropout: dropout of the classifier MLP, before its last layer (0.4).
        weights: a weights entry (``conf/weights``, the config's ``weights`` node) for the ResNet-18 backbone;
            None = random init.
        pretrained_path: Python API: a local ResNet-18 weights file loaded strictly into the backbone (not with
            ``weights``).

    Attributes:
        num_features: width of the video embedding (512).
        head_hidden_size: width of the classifier MLP's output before the last layer (128; ``forward_head(...,
            pre_logits=True)``).
        weights_report: what the pretrained load did (loaded/total tensors, file, sha256), or None.

    Raises:
        ValueError: ``num_clips`` or ``frames_per_clip`` < 1.
        fertrain.weights.WeightsError: the weights cannot be loaded completely (see ``init_pretrained``).
    """

    backbone_arch = "resnet18"  # what pretrained weights must hold (fertrain.weights.ARCHS)

    def pretrained_target(self) -> nn.Module:
        """The module pretrained weights load into: the ResNet-18 trunk."""
        return self.backbone

    def __init__(
        self,
        num_classes: int,
        num_clips: int = 7,
        frames_per_clip: int = 5,
        num_heads: int = 4,
        attn_dropout: float = 0.1,
        relation_dropout: float = 0.5,
        dropout: float = 0.4,
        weights: Mapping[str, Any] | None = None,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        if num_clips < 1 or frames_per_clip < 1:
            raise ValueError(f"num_clips and frames_per_clip must be >= 1; got {num_clips}, {frames_per_clip}")
        self.num_classes = num_classes
        self.num_clips = num_clips
        self.frames_per_clip = frames_per_clip
        self.backbone = ResNet18Trunk()
        self.weights_report = init_pretrained("CEFLNet.backbone", self.backbone, "resnet18", weights, pretrained_path)
        self.num_features = self.backbone.num_features  # 512
        self.encoder = ClipEncoder(self.num_features, num_heads, attn_dropout, relation_dropout)
        self.eian = IntensityActivation(self.num_features)
        self.head_hidden_size = 128
        self.mlp = nn.Sequential(
            nn.Linear(self.num_features, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, self.head_hidden_size),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    @property
    def clip_len(self) -> int:
        """Frames per sample the model expects: ``num_clips * frames_per_clip`` (T)."""
        return self.num_clips * self.frames_per_clip

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Video embedding and activation map: float ``(B, T, 3, H, W)`` -> ``(B, 512)``, ``(B, num_clips)``."""
        if x.ndim != 5:
            raise ValueError(f"expected a clip batch (B, T, C, H, W); got shape {tuple(x.shape)}")
        B, T, C, H, W = x.shape
        K, F = self.num_clips, self.frames_per_clip
        if T != K * F:
            raise ValueError(
                f"CEFLNet expects T = num_clips * frames_per_clip = {K} * {F} = {K * F} frames per sample "
                f"(clip-major, e.g. from fertrain.data.samplers.CEFLNetSampler with the same num_clips and "
                f"frames_per_clip); got T = {T} (input shape {tuple(x.shape)})"
            )
        feats = self.backbone(x.reshape(B * T, C, H, W))  # (B*T, 512, h, w)
        feats = feats.mean(dim=(2, 3)).reshape(B * K, F, self.num_features)  # (B*K, F, 512), clip-major
        clips, _ = self.encoder(feats)  # (B*K, 512)
        return self.eian(clips.reshape(B, K, self.num_features))  # (B, 512), (B, K)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Video embedding.

        Args:
            x: float ``(B, num_clips * frames_per_clip, 3, H, W)``, normalised, clip-major.

        Returns:
            float ``(B, num_features)``: activation-weighted clip features max-pooled over clips.

        Raises:
            ValueError: ``x`` is not 5-D, or T is not ``num_clips * frames_per_clip``.
        """
        return self._encode(x)[0]

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, num_features)`` -> logits ``(B, num_classes)``, or the MLP output ``(B, 128)`` if ``pre_logits``."""
        feats = self.mlp(feats)
        return feats if pre_logits else self.head(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised clip-major frames float ``(B, T, 3, H, W)`` -> unnormalised logits float ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))

    def forward_with_activation(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the EIAN activation map of each sample.

        Args:
            x: float ``(B, num_clips * frames_per_clip, 3, H, W)``, normalised, clip-major.

        Returns:
            ``(logits, activation)``: float ``(B, num_classes)``; float ``(B, num_clips)`` in [0, 1], summing to 1
            over the clips (``activation.argmax(1)`` is the official "key clip" output).

        Raises:
            ValueError: ``x`` is not 5-D, or T is not ``num_clips * frames_per_clip``.
        """
        video, activation = self._encode(x)
        return self.forward_head(video), activation

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last linear layer (128 -> ``num_classes``) by a fresh one; 0 = identity (MLP output out).

        The MLP before it is kept (it is part of the paper's classifier, but trained weights stay useful).
        """
        self.num_classes = num_classes
        self.head = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()
