"""FESNet: facial expression spotting by local spatial discrepancy and multi-scale temporal aggregation.

Source: Zhang, Lu, Wang, He, "FESNet: Spotting Facial Expressions Using Local Spatial Discrepancy and Multi-Scale
Temporal Aggregation", Computing and Informatics 43(2):458-481 (2024), doi 10.31577/cai_2024_2_458. Only the
abstract is public. What it fixes, and what we built for it:

- Local spatial discrepancy module (LSDM), from the abstract: static spatial features of every frame by residual
  convolution; the inner spatial correlation learned by multi-head attention; subtle facial motion modelled as
  the discrepancy between the FIRST frame and the current frame of the input interval, giving frame-wise spatial
  proposals. OURS: a 3-stage residual CNN (stride 8), adaptive average pooling to a ``token_grid x token_grid``
  grid of tokens (so any input size works), one pre-norm Transformer encoder layer over the tokens of each frame
  with a learned position embedding, the per-token discrepancy ``d_t = z_t - z_0`` pooled as
  ``[mean(d), mean(|d|), max(|d|)]`` over tokens (the max keeps a change that is local to a few tokens, e.g. a
  micro-expression at the mouth) and projected to ``D`` channels; the proposals are a linear classifier on it.
- Multi-scale temporal aggregation module (MTAM), from the abstract: takes the discrepancy features and the
  proposals, adds temporal correlation by multi-scale temporal convolution, refines in a cascade to the final
  prediction. OURS: ``stages`` cascade stages; stage ``s`` gets ``[discrepancy features, softmax(proposals of
  stage s-1)]`` (``D + K`` channels, 1x1 conv to ``D``), then ``layers_per_stage`` residual blocks of parallel
  dilated temporal convolutions (kernel 3, one branch per dilation in ``scales``, concatenated and fused by a
  1x1 conv), and a 1x1 classifier. The design of the cascade follows MS-TCN (Farha & Gall, CVPR 2019).
- The smooth loss on the cascade-refined proposals: :class:`fertrain.losses.smooth.TemporalSmoothLoss`.

Output (our choice, per frame): logits of ``K = 3`` classes ``neutral / macro / micro`` (the frame lies outside
any expression, inside a macro-, inside a micro-expression). The task stitches overlapping windows by averaging
the per-frame softmax over the whole video and turns the macro and micro columns into intervals
(:func:`fertrain.spotting.postprocess.spot_video`).

Sizes: every width is a config value; the defaults (~0.2 M parameters) train on CPU in minutes on 64 px crops.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fertrain.weights import WeightsError, WeightsSpec


class ResidualBlock(nn.Module):
    """Basic residual block (He et al. 2016): two 3x3 convs + BN, 1x1 projection shortcut when shape changes.

    ``(N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short = (nn.Identity() if stride == 1 and c_in == c_out else
                      nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class LSDM(nn.Module):
    """Local spatial discrepancy module (module docstring).

    Args:
        in_channels: image channels ``C``.
        widths: channels of the stem and the two residual stages (the last is the token width ``D``).
        token_grid: tokens per side after adaptive pooling (``N = token_grid ** 2`` tokens per frame).
        heads: attention heads (must divide ``D``).
        num_classes: ``K`` proposal classes.
        dropout: dropout in the attention layer.

    ``forward(x)``: float ``(B, T, C, H, W)`` -> ``(features (B, T, D), proposals (B, T, K))``; the features of
    frame 0 are those of a zero discrepancy.
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (16, 32, 48), token_grid: int = 8,
                 heads: int = 4, num_classes: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        w0, w1, dim = widths
        if dim % heads:
            raise ValueError(f"FESNet: token width {dim} (widths[-1]) must be divisible by heads={heads}")
        self.backbone = nn.Sequential(
            nn.Conv2d(in_channels, w0, 3, 2, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU(inplace=True),
            ResidualBlock(w0, w1, stride=2), ResidualBlock(w1, dim, stride=2),
        )
        self.pool = nn.AdaptiveAvgPool2d(token_grid)
        self.pos = nn.Parameter(torch.zeros(1, token_grid * token_grid, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.attn = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout,
                                               batch_first=True, norm_first=True, activation="gelu")
        self.disc = nn.Sequential(nn.Linear(3 * dim, dim), nn.GELU(), nn.LayerNorm(dim))
        self.proposal = nn.Linear(dim, num_classes)
        self.dim = dim

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """float ``(B, T, C, H, W)`` -> spatially correlated tokens ``(B, T, N, D)``."""
        B, T = x.shape[:2]
        f = self.pool(self.backbone(x.flatten(0, 1)))  # (B*T, D, g, g)
        z = f.flatten(2).transpose(1, 2) + self.pos  # (B*T, N, D)
        return self.attn(z).unflatten(0, (B, T))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.tokens(x)  # (B, T, N, D)
        d = z - z[:, :1]  # discrepancy to the first frame of the interval
        a = d.abs()
        pooled = torch.cat([d.mean(2), a.mean(2), a.amax(2)], dim=-1)  # (B, T, 3D)
        feats = self.disc(pooled)  # (B, T, D)
        return feats, self.proposal(feats)


class MultiScaleTemporalConv(nn.Module):
    """Residual block of parallel dilated temporal convolutions: ``(B, D, T) -> (B, D, T)``.

    One kernel-3 branch per dilation in ``scales`` (receptive field ``2 * s + 1`` frames), ReLU, concatenation,
    1x1 fusion, dropout, residual sum.
    """

    def __init__(self, dim: int, scales: Sequence[int] = (1, 2, 4), dropout: float = 0.1) -> None:
        super().__init__()
        if not scales or any(int(s) < 1 for s in scales):
            raise ValueError(f"FESNet scales are temporal dilations >= 1, got {list(scales)}")
        self.branches = nn.ModuleList(nn.Conv1d(dim, dim, 3, padding=int(s), dilation=int(s)) for s in scales)
        self.fuse = nn.Conv1d(dim * len(scales), dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = torch.cat([F.relu(b(h)) for b in self.branches], dim=1)
        return h + self.drop(self.fuse(y))


class CascadeStage(nn.Module):
    """One MTAM refinement stage: ``(features (B, D, T), previous logits (B, K, T)) -> logits (B, K, T)``."""

    def __init__(self, dim: int, num_classes: int, scales: Sequence[int], layers: int, dropout: float) -> None:
        super().__init__()
        self.inp = nn.Conv1d(dim + num_classes, dim, 1)
        self.layers = nn.Sequential(*(MultiScaleTemporalConv(dim, scales, dropout) for _ in range(layers)))
        self.out = nn.Conv1d(dim, num_classes, 1)

    def forward(self, feats: torch.Tensor, prev_logits: torch.Tensor) -> torch.Tensor:
        h = self.inp(torch.cat([feats, prev_logits.softmax(dim=1)], dim=1))
        return self.out(self.layers(h))


class FESNet(nn.Module):
    """FESNet for per-frame expression spotting on a fixed-length interval (module docstring).

    Args:
        num_classes: ``K`` per-frame classes (3: neutral, macro, micro).
        in_channels: image channels.
        widths: LSDM stem/stage channels; ``widths[-1]`` is the feature width ``D``.
        token_grid: LSDM tokens per side.
        heads: LSDM attention heads.
        scales: MTAM temporal dilations (one branch each).
        stages: MTAM cascade stages (>= 1).
        layers_per_stage: multi-scale blocks per stage.
        dropout: dropout in attention and MTAM.
        weights: a weights entry; only ``none`` (or None) is accepted: FESNet has no pretrained backbone here.
        pretrained_path: must be None (random init only; kept for the model contract).

    ``forward(x)``: float ``(B, T, C, H, W)`` -> final logits ``(B, T, K)``.
    ``forward_stages(x)``: ``(S + 1, B, T, K)``: index 0 the LSDM proposals, then every cascade stage.
    ``forward_features(x)``: discrepancy features ``(B, T, D)``.

    Raises:
        ValueError: ``stages < 1``, ``widths`` not of length 3, heads not dividing ``D``, bad scales.
        fertrain.weights.WeightsError: ``weights`` names pretrained weights, or ``pretrained_path`` is given (they
            would be silently unused).
    """

    backbone_arch = None  # no pretrained backbone: random initialisation only

    def __init__(self, num_classes: int = 3, in_channels: int = 3, widths: Sequence[int] = (16, 32, 48),
                 token_grid: int = 8, heads: int = 4, scales: Sequence[int] = (1, 2, 4), stages: int = 2,
                 layers_per_stage: int = 2, dropout: float = 0.1, weights: Mapping[str, Any] | None = None,
                 pretrained_path: str | None = None) -> None:
        super().__init__()
        spec = WeightsSpec.from_config(weights)
        if spec.enabled or pretrained_path is not None:
            raise WeightsError(f"FESNet has no pretrained backbone in fertrain (random initialisation only), so the "
                               f"weights {spec.name if spec.enabled else pretrained_path!r} would be unused: use "
                               "weights=none")
        self.weights_report = None
        if stages < 1:
            raise ValueError(f"FESNet needs stages >= 1, got {stages}")
        if len(widths) != 3:
            raise ValueError(f"FESNet widths are (stem, stage 1, stage 2 = D), got {list(widths)}")
        self.num_classes = num_classes
        self.lsdm = LSDM(in_channels, widths, token_grid, heads, num_classes, dropout)
        self.num_features = self.lsdm.dim
        self.stages = nn.ModuleList(CascadeStage(self.num_features, num_classes, scales, layers_per_stage, dropout)
                                    for _ in range(stages))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.lsdm(x)[0]

    def forward_stages(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"FESNet expects (B, T, C, H, W), got shape {tuple(x.shape)}")
        feats, logits = self.lsdm(x)  # (B, T, D), (B, T, K)
        f = feats.transpose(1, 2)  # (B, D, T)
        p = logits.transpose(1, 2)  # (B, K, T)
        outs = [p]
        for stage in self.stages:
            p = stage(f, p)
            outs.append(p)
        return torch.stack(outs).transpose(2, 3)  # (S+1, B, T, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)[-1]
