"""MSCM: Multi-Scale Correlation Module with adaptive fusion, on a ResNet-18 frame backbone.

Source: Li, Chan, Tjahjadi, "Multi-Scale correlation module for video-based facial expression recognition in
the wild", Pattern Recognition 142 (2023) 109691, https://doi.org/10.1016/j.patcog.2023.109691 (reported on
DFEW: UAR 58.49 / WAR 70.16). The full text and the official code are not public; what the abstract fixes is:
facial motion features are extracted from RGB frames only (no optical flow), large and small motions are captured
by correlation at multiple scales, encoded by CNNs, and aggregated by an adaptive fusion module.

Everything else below is OURS, built from public correlation designs: FlowNetC (Dosovitskiy et al., ICCV 2015,
Sec. 3: correlation layer, a dot product of feature vectors over a window of displacements), PWC-Net (Sun et al.,
CVPR 2018, Sec. 3: cost volume of normalised features over a small search range), RAFT (Teed & Deng, ECCV 2020,
Sec. 3.2: correlation over several ranges) and MotionSqueeze (Kwon et al., ECCV 2020, Sec. 3: correlation of
consecutive frames' mid-level features, encoded by convolutions, added back to the appearance stream); the
adaptive fusion follows Selective Kernel networks (Li et al., CVPR 2019, Sec. 3.1: softmax attention over
branches from pooled features).

OURS, choice by choice:
- Backbone: torchvision ResNet-18, per frame (2D), random init unless a weights entry is given (``weights=``, e.g.
  ``imagenet_resnet18``; loaded strictly, see ``fertrain.weights``); the paper's initialisation is not public.
- Tap point (``corr_stage``): correlation on the output of ``layer1`` (stride 4) by default, ``layer2`` (stride 8)
  as the option: stride 4 keeps motions of 1-2 pixels at 64x64 input visible.
- Correlation: cosine similarity (dot product of channel-L2-normalised feature vectors, range [-1, 1]) between
  frame t at pixel p and frame t+1 at p + (dy, dx), for all (dy, dx) in ``{-r..r} * d`` squared; outside the map
  counts as 0. One scale = (radius r, dilation d); default scales ((1, 1), (2, 2), (2, 4)): displacements up to
  1, 4 and 8 feature pixels = 4, 16 and 32 input pixels at stride 4, i.e. small and large motion ranges.
- Pairs: consecutive sampled frames (t, t+1), t = 0..T-2. One shared backbone for appearance and correlation.
- Cost-volume encoder: per scale, the cost volume (K channels) and its antisymmetric part (K // 2 channels,
  ``c(d) - c(-d)``, see ``antisymmetric_part``) through two conv3x3-ReLU layers (with bias, no normalisation) to
  ``motion_channels`` (default: the tapped stage's channels). No BatchNorm here: motion of 1-2 pixels is a tiny
  shift of the batch mean of these maps, and in our toy check BatchNorm's running mean lagged behind it, so the
  model learned in train mode but failed in eval mode.
- Adaptive fusion: per sample, global-average-pool each encoded scale, concatenate, MLP (Linear-ReLU-Linear)
  -> softmax over scales -> weighted sum of the scales' maps. One scalar weight per scale and sample.
- Combination with appearance: the fused motion map goes through a 1x1 conv + BN to the tapped stage's channels
  and is ADDED to the appearance features of frame t+1 (as MotionSqueeze does); frame 0 has no predecessor and
  gets zeros. The sum then runs through the remaining ResNet stages.
- Motion descriptor shortcut (``motion_shortcut``, on by default; with/without ablation on ``synthetic_motion`` in
  ``docs/methods.md``): the spatial mean of each scale's antisymmetric cost volume, a vector of ``sum_s K_s // 2``
  numbers per frame pair that is exactly 0 for identical frames and flips sign under time reversal (a histogram of
  net motion per displacement). BatchNorm1d (per pair), mean over pairs, then concatenated to the clip embedding.
  Reason: through the deep appearance path alone, a randomly initialised MSCM did not learn 1-2 pixel up/down motion
  on our toy clips (moving square, 64x64, T=8, 4 classes up/down x subtle/large; Adam 1e-3, batch 16: val UAR 0.28
  after 150 steps); with this direct path it reached 0.67 after 150 and 0.81 after 300 steps (one-cycle schedule),
  the frame-mean baseline 0.27. On ``synthetic_motion`` (docs/methods.md) it only speeds up the start: after 5
  epochs both variants reach about 0.94 val UAR. ``num_features`` = 512 + descriptor size.
- Head: global average pool per frame -> temporal pooling -> dropout -> linear. Temporal pooling ``"mean"``
  (default: mean over frames) or ``"conv"`` (a residual Conv1d(k=3)-BN-ReLU over time, then the mean).
- T == 1 (a single image): there is no frame pair; the motion branch contributes zeros and the model is the
  appearance stream alone.

Unlike the frame-mean baseline, MSCM depends on frame order (the correlation compares t with t+1): reversing a
clip changes its logits, which is what lets it tell an expression's onset from its offset.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fertrain.models.backbones import ResNet18Trunk, init_pretrained

DEFAULT_SCALES: tuple[tuple[int, int], ...] = ((1, 1), (2, 2), (2, 4))


def displacements(radius: int, dilation: int) -> list[tuple[int, int]]:
    """Displacements ``(dy, dx)`` of one correlation scale, in the channel order of ``local_correlation``.

    Row-major over ``dy`` then ``dx``, each in ``{-radius, ..., radius} * dilation`` (feature pixels):
    channel ``k`` is ``(dy, dx) = ((k // (2r+1) - r) * d, (k % (2r+1) - r) * d)``; the centre (0, 0) is channel
    ``(2r+1)^2 // 2``.

    Raises:
        ValueError: ``radius < 0`` or ``dilation < 1``.
    """
    if radius < 0 or dilation < 1:
        raise ValueError(f"a correlation scale needs radius >= 0 and dilation >= 1; got {radius=}, {dilation=}")
    steps = [i * dilation for i in range(-radius, radius + 1)]
    return [(dy, dx) for dy in steps for dx in steps]


# Bytes of one block's zero-padded ``f2`` slice (``(n, C, h + 2p, w + 2p)``) on the CPU: about a quarter of a
# 2 MiB L2 cache, so a block's inputs, its product buffer and its gradients stay in cache across the K shifts.
_CPU_BLOCK_BYTES = 1 << 19


def correlation_block_pairs(f1: torch.Tensor, pad: int) -> int:
    """Frame pairs per block of ``local_correlation`` (OURS, for speed; the result does not depend on it).

    CPU: as many pairs as fit one zero-padded ``f2`` slice into ``_CPU_BLOCK_BYTES`` (at least 1): 2 pairs for
    MSCM's layer1 features at 112 px (64 channels, 28 x 28, padding 8). Every other device: one block of all
    pairs (fewer kernel launches). Under ``torch.compile``/``torch.export`` ``local_correlation`` does not block.

    Args:
        f1: float ``(N, C, h, w)``, the features of frame t.
        pad: zero padding ``radius * dilation`` (feature pixels).
    """
    N, C, h, w = f1.shape
    if f1.device.type != "cpu":
        return max(N, 1)
    per_pair = C * (h + 2 * pad) * (w + 2 * pad) * f1.element_size()
    return max(1, min(N, _CPU_BLOCK_BYTES // max(per_pair, 1)))


class _LocalCorrelation(torch.autograd.Function):
    """Autograd of ``local_correlation`` with hand-written backward (OURS, for speed on CPU).

    With plain autograd, every one of the K shifted views of the padded map gets its own full-size zero gradient
    buffer in the backward pass (``(N, C, h+2p, w+2p)`` filled K times), which dominated the model's backward
    time. Here the two input gradients are accumulated in place, one buffer each. First-order gradients only.

    Blocked (OURS, for speed): the N frame pairs are processed in blocks of ``correlation_block_pairs`` pairs,
    all K displacements of a block before the next block, so the block's inputs, the product buffer and the
    gradient slices stay in the CPU cache instead of streaming the whole ``(N, C, h, w)`` maps from memory K
    times; the backward pass also works on a row-flattened layout (long contiguous runs, see ``backward``).
    Every output and gradient element is computed by the same operations in the same order as with one block of
    all pairs (the product per displacement, the sum over C, the accumulation over k), so the bits are identical
    (tests/test_speed.py). Measured on the development machine (one thread, MSCM's three scales on 64 x 28 x 28
    maps, CPU time): 120 pairs (batch 8), forward + backward 1.42 s in one block, 0.70 s in blocks; 15 pairs
    (batch 1), backward 58 ms -> 43 ms with the flat layout.
    """

    @staticmethod
    def forward(ctx, f1: torch.Tensor, f2: torch.Tensor, radius: int, dilation: int) -> torch.Tensor:
        offsets = displacements(radius, dilation)
        f1, f2 = f1.contiguous(), f2.contiguous()  # the sum over C runs in the same order for any memory format
        N, C, h, w = f1.shape
        p = radius * dilation
        f2p = F.pad(f2, (p, p, p, p))  # (N, C, h + 2p, w + 2p)
        out = f1.new_empty(len(offsets), N, h, w)  # (K, N, h, w)
        block = correlation_block_pairs(f1, p)
        product = f1.new_empty(min(block, N), C, h, w)  # (n, C, h, w), reused for every shift of every block
        for s in range(0, N, block):
            a, b = f1[s : s + block], f2p[s : s + block]  # (n, C, h, w), (n, C, h + 2p, w + 2p)
            prod = product[: a.shape[0]]
            for k, (dy, dx) in enumerate(offsets):
                # f2 at (y + dy, x + dx) is f2p at (y + dy + p, x + dx + p).
                torch.mul(a, b[:, :, p + dy : p + dy + h, p + dx : p + dx + w], out=prod)
                torch.sum(prod, dim=1, out=out[k, s : s + block])  # (n, h, w)
        ctx.save_for_backward(f1, f2)
        ctx.offsets, ctx.pad, ctx.block = offsets, p, block
        return out.permute(1, 0, 2, 3).contiguous()  # (N, K, h, w)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        f1, f2 = ctx.saved_tensors
        N, C, h, w = f1.shape
        p, block = ctx.pad, ctx.block
        # Row-flattened layout (OURS, for speed): every row gets p zeros on its right, W = w + p columns, so the
        # shift (dy, dx) of f2 is ONE flat offset into ``B`` and each in-place update below runs over long
        # contiguous runs of h * W numbers instead of rows of w. A read left of column 0 lands in the previous
        # row's p zeros, right of column w - 1 in its own, above/below in the p zero rows and the p leading or
        # trailing zeros: exactly the zero padding of the forward pass. Pad columns of ``G`` are 0, so they add
        # only zeros; every real gradient element gets the same products in the same order over k as before.
        W = w + p
        L = h * W
        A = F.pad(f1, (0, p)).reshape(N, C, L)  # (N, C, h * W)
        B = F.pad(F.pad(f2, (0, p, p, p)).reshape(N, C, (h + 2 * p) * W), (p, p))  # (N, C, (h + 2p) * W + 2p)
        G = F.pad(grad_out, (0, p)).reshape(N, -1, L)  # (N, K, h * W)
        grad_a = torch.zeros_like(A) if ctx.needs_input_grad[0] else None
        grad_b = torch.zeros_like(B) if ctx.needs_input_grad[1] else None
        offsets = [p + (p + dy) * W + dx for dy, dx in ctx.offsets]  # flat start in B of each shift
        for s in range(0, N, block):
            a, b, go = A[s : s + block], B[s : s + block], G[s : s + block]
            ga = grad_a[s : s + block] if grad_a is not None else None
            gb = grad_b[s : s + block] if grad_b is not None else None
            for k, o in enumerate(offsets):
                g = go[:, k : k + 1]  # (n, 1, h * W), broadcast over C
                if ga is not None:
                    ga.addcmul_(g, b[:, :, o : o + L])
                if gb is not None:
                    gb[:, :, o : o + L].addcmul_(g, a)
        grad_f1 = grad_a.reshape(N, C, h, W)[..., :w] if grad_a is not None else None  # (N, C, h, w)
        grad_f2 = None
        if grad_b is not None:
            grad_f2 = grad_b[:, :, p : p + (h + 2 * p) * W].reshape(N, C, h + 2 * p, W)[:, :, p : p + h, :w]
        return grad_f1, grad_f2, None, None


def local_correlation(f1: torch.Tensor, f2: torch.Tensor, radius: int, dilation: int = 1) -> torch.Tensor:
    """Local correlation (cost volume) of two feature maps over a window of displacements.

    ``out[n, k, y, x] = sum_c f1[n, c, y, x] * f2[n, c, y + dy_k, x + dx_k]`` with ``(dy_k, dx_k)`` the k-th entry
    of ``displacements(radius, dilation)``; positions outside ``f2`` count as 0 (zero padding). If ``f2`` is ``f1``
    moved by ``(dy, dx)`` (content at p in ``f1`` is at p + (dy, dx) in ``f2``), the maximum over k is at that
    displacement. Pass channel-L2-normalised maps to get cosine similarities in [-1, 1]. FlowNetC (Dosovitskiy et
    al., ICCV 2015, Sec. 3, Eq. 1) with a 1x1 patch; no division by C (OURS).

    Pure PyTorch: a loop over the (2r+1)^2 displacements, each a multiply-sum over channels of a shifted view of
    the zero-padded ``f2``, with a hand-written backward that accumulates the gradients in place (first-order
    gradients only). On the CPU the pairs go in cache-sized blocks (``correlation_block_pairs``; same bits).

    Args:
        f1: float ``(N, C, h, w)``, features of frame t.
        f2: float ``(N, C, h, w)``, features of frame t+1.
        radius: r >= 0, displacements per axis in ``{-r, ..., r}``.
        dilation: d >= 1, spacing of the displacements (feature pixels).

    Returns:
        float ``(N, (2r+1)^2, h, w)``.

    Raises:
        ValueError: the two maps differ in shape or are not 4-D; bad ``radius``/``dilation``.
    """
    if f1.ndim != 4 or f1.shape != f2.shape:
        raise ValueError(
            f"expected two feature maps of the same shape (N, C, h, w); got {tuple(f1.shape)} and {tuple(f2.shape)}"
        )
    offsets = displacements(radius, dilation)  # validates radius and dilation
    if torch.compiler.is_compiling():
        # torch.compile / torch.export (ONNX): plain autograd ops, no Python loop over N, so the batch dimension
        # stays symbolic; the same product and channel sum per displacement as the eager path.
        _, _, h, w = f1.shape
        p = radius * dilation
        f2p = F.pad(f2, (p, p, p, p))  # (N, C, h + 2p, w + 2p)
        return torch.stack(
            [(f1 * f2p[:, :, p + dy : p + dy + h, p + dx : p + dx + w]).sum(dim=1) for dy, dx in offsets], dim=1
        )  # (N, K, h, w)
    return _LocalCorrelation.apply(f1, f2, radius, dilation)


def antisymmetric_part(cost: torch.Tensor) -> torch.Tensor:
    """Odd part of a cost volume under the displacement reflection d -> -d.

    ``out[:, k] = cost[:, k] - cost[:, K-1-k]`` for the first ``K // 2`` displacements (channel ``K-1-k`` of
    ``local_correlation`` holds ``-d_k``; the centre and the mirrored half would repeat these up to sign).
    Its spatial mean is a motion descriptor with two exact properties (OURS): it is 0 when both frames have the
    same features (every pair of positions (p, p + d) is counted once from each side, zero padding included), and
    it changes sign when the two frames are swapped (time reversal).

    Args:
        cost: float ``(N, K, h, w)`` from ``local_correlation``, K = (2r+1)^2.

    Returns:
        float ``(N, K // 2, h, w)``.
    """
    K = cost.shape[1]
    return cost[:, : K // 2] - cost[:, K // 2 + 1 :].flip(1)  # (N, K//2, h, w)


def _norm(channels: int, kind: str) -> nn.Module:
    """``"batch"``: BatchNorm2d; ``"group"``: GroupNorm with up to 8 groups (per sample, batch-independent)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'group' or 'none'; got {kind!r}")


def _conv_norm_relu(in_channels: int, out_channels: int, norm: str, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=norm == "none"),
        _norm(out_channels, norm),
        nn.ReLU(inplace=True),
    )


class AdaptiveScaleFusion(nn.Module):
    """Input-conditioned softmax weights over scales and the weighted sum of the scales' maps (OURS, after SKNet,
    Li et al., CVPR 2019, Sec. 3.1 "Select").

    Args:
        channels: channels C of each scale's map.
        num_scales: S >= 1.
        hidden: width of the MLP's hidden layer (default ``max(C // 4, 16)``).
    """

    def __init__(self, channels: int, num_scales: int, hidden: int | None = None) -> None:
        super().__init__()
        if num_scales < 1:
            raise ValueError(f"num_scales must be >= 1, got {num_scales}")
        hidden = hidden or max(channels // 4, 16)
        self.num_scales = num_scales
        # One scale: the weight is 1, nothing to learn (no parameters that would never get a gradient).
        self.mlp = (
            nn.Sequential(nn.Linear(num_scales * channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_scales))
            if num_scales > 1
            else None
        )

    def forward(self, maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse S maps.

        Args:
            maps: S float maps, each ``(N, C, h, w)``.

        Returns:
            ``(fused, weights)``: fused float ``(N, C, h, w)``; weights float ``(N, S)``, in [0, 1], summing to 1
            over S for every sample.

        Raises:
            ValueError: the number of maps is not ``num_scales``.
        """
        if len(maps) != self.num_scales:
            raise ValueError(f"expected {self.num_scales} scale maps, got {len(maps)}")
        if self.mlp is None:
            return maps[0], maps[0].new_ones(maps[0].shape[0], 1)
        stacked = torch.stack(list(maps), dim=1)  # (N, S, C, h, w)
        pooled = stacked.mean(dim=(3, 4)).flatten(1)  # (N, S * C)
        weights = self.mlp(pooled).softmax(dim=1)  # (N, S)
        fused = (stacked * weights[:, :, None, None, None]).sum(dim=1)  # (N, C, h, w)
        return fused, weights


class MultiScaleCorrelation(nn.Module):
    """Motion features of a frame pair: multi-scale local correlation, a CNN encoder per scale, adaptive fusion.

    Args:
        scales: ``(radius, dilation)`` per scale (see ``local_correlation``); feature pixels.
        motion_channels: channels of each encoded scale and of the fused motion map.
        norm: normalisation in the cost-volume encoders: ``"none"`` (default, see the module docstring),
            ``"batch"`` or ``"group"``.

    Raises:
        ValueError: no scales, a bad scale, or an unknown ``norm``.
    """

    def __init__(
        self, scales: Sequence[Sequence[int]] = DEFAULT_SCALES, motion_channels: int = 64, norm: str = "none"
    ) -> None:
        super().__init__()
        if len(scales) == 0:
            raise ValueError("scales must name at least one (radius, dilation) pair")
        self.scales = tuple((int(r), int(d)) for r, d in scales)
        for r, d in self.scales:
            displacements(r, d)  # validates
        self.encoders = nn.ModuleList(
            nn.Sequential(
                _conv_norm_relu((2 * r + 1) ** 2 + (2 * r + 1) ** 2 // 2, motion_channels, norm),
                _conv_norm_relu(motion_channels, motion_channels, norm),
            )
            for r, _ in self.scales
        )
        self.fusion = AdaptiveScaleFusion(motion_channels, len(self.scales))
        self.descriptor_dim = sum((2 * r + 1) ** 2 // 2 for r, _ in self.scales)

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Motion from frame t to t+1.

        Args:
            f1: float ``(N, C, h, w)``, features of frame t (any scale; normalised here over C).
            f2: float ``(N, C, h, w)``, features of frame t+1.

        Returns:
            ``(motion, weights, descriptor)``: the fused motion map float ``(N, motion_channels, h, w)``; the fusion
            weights float ``(N, S)`` (sum 1 per sample); the motion descriptor float ``(N, descriptor_dim)``, the
            spatial mean of every scale's ``antisymmetric_part`` (0 for identical frames, odd in time), in [-2, 2].
        """
        f1 = F.normalize(f1, dim=1, eps=1e-6)  # (N, C, h, w), unit L2 norm per pixel
        f2 = F.normalize(f2, dim=1, eps=1e-6)
        encoded, descriptors = [], []
        for encoder, (r, d) in zip(self.encoders, self.scales):
            cost = local_correlation(f1, f2, r, d)  # (N, K, h, w)
            odd = antisymmetric_part(cost)  # (N, K//2, h, w)
            descriptors.append(odd.mean(dim=(2, 3)))  # (N, K//2)
            encoded.append(encoder(torch.cat([cost, odd], dim=1)))  # (N, motion_channels, h, w)
        fused, weights = self.fusion(encoded)
        return fused, weights, torch.cat(descriptors, dim=1)  # (N, Cm, h, w), (N, S), (N, D)


class MSCM(nn.Module):
    """MSCM video classifier: ResNet-18 appearance stream plus multi-scale correlation motion stream.

    See the module docstring for the source and for every choice that is ours.

    Args:
        num_classes: number of expression classes (from the data config).
        corr_stage: ResNet stage whose output is correlated: 1 (``layer1``, stride 4) or 2 (``layer2``, stride 8).
        scales: ``(radius, dilation)`` per correlation scale, in feature pixels of ``corr_stage``.
        motion_channels: width of the encoded motion maps; None = the tapped stage's channels.
        temporal_pool: ``"mean"`` (mean of per-frame embeddings) or ``"conv"`` (residual temporal
            Conv1d(k=3)-BN-ReLU, then mean).
        motion_shortcut: concatenate the normalised motion descriptor (``MultiScaleCorrelation``) to the clip
            embedding; ``num_features`` = 512 + ``sum_s (2 r_s + 1)^2 // 2`` (540 for the default scales), else 512.
        dropout: dropout probability before the linear head.
        weights: a weights entry (``conf/weights``, the config's ``weights`` node) for the ResNet-18 backbone;
            None = random init.
        pretrained_path: Python API: a local ResNet-18 weights file loaded strictly into the backbone (not with
            ``weights``).

    Attributes:
        weights_report: what the pretrained load did (loaded/total tensors, file, sha256), or None.

    Raises:
        ValueError: ``corr_stage`` not in (1, 2); unknown ``temporal_pool``; bad scales.
        fertrain.weights.WeightsError: the weights cannot be loaded completely (see ``init_pretrained``).
    """

    backbone_arch = "resnet18"  # what pretrained weights must hold (fertrain.weights.ARCHS)

    def pretrained_target(self) -> nn.Module:
        """The module pretrained weights load into: the ResNet-18 trunk."""
        return self.backbone

    def __init__(
        self,
        num_classes: int,
        corr_stage: int = 1,
        scales: Sequence[Sequence[int]] = DEFAULT_SCALES,
        motion_channels: int | None = None,
        temporal_pool: str = "mean",
        motion_shortcut: bool = True,
        dropout: float = 0.5,
        weights: Mapping[str, Any] | None = None,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        if corr_stage not in (1, 2):
            raise ValueError(f"corr_stage must be 1 (layer1, stride 4) or 2 (layer2, stride 8); got {corr_stage}")
        if temporal_pool not in ("mean", "conv"):
            raise ValueError(f"temporal_pool must be 'mean' or 'conv'; got {temporal_pool!r}")
        self.num_classes = num_classes
        self.corr_stage = corr_stage
        self.temporal_pool = temporal_pool
        self.backbone = ResNet18Trunk()
        self.weights_report = init_pretrained("MSCM.backbone", self.backbone, "resnet18", weights, pretrained_path)
        stage_channels = self.backbone.stage_channels[corr_stage]
        motion_channels = motion_channels or stage_channels
        self.correlation = MultiScaleCorrelation(scales, motion_channels)
        # Motion map -> the tapped stage's channels, added to the appearance features of frame t+1.
        self.motion_proj = nn.Sequential(
            nn.Conv2d(motion_channels, stage_channels, 1, bias=False),
            nn.BatchNorm2d(stage_channels),
        )
        self.motion_shortcut = motion_shortcut
        self.motion_channels = motion_channels
        appearance_features = self.backbone.num_features
        descriptor_dim = self.correlation.descriptor_dim
        self.num_features = appearance_features + (descriptor_dim if motion_shortcut else 0)
        # Scales the (small) motion descriptor to O(1) beside the appearance embedding. Its mean is 0 by
        # construction for static content and balanced directions, so the running mean cannot drift far from it.
        self.descriptor_norm = nn.BatchNorm1d(descriptor_dim) if motion_shortcut else None
        if temporal_pool == "conv":
            self.temporal = nn.Sequential(
                nn.Conv1d(appearance_features, appearance_features, 3, padding=1, bias=False),
                nn.BatchNorm1d(appearance_features),
                nn.ReLU(inplace=True),
            )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def motion_features(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Motion of consecutive frame pairs, aligned to frame t+1 (frame 0 gets zeros).

        Args:
            feats: float ``(B, T, C_s, h, w)``, appearance features of the tapped stage.

        Returns:
            ``(motion, descriptor, weights)``: ``motion`` float ``(B, T, C_s, h, w)``, the fused motion maps
            projected to the stage's channels, zeros at t = 0 (all zeros when T == 1); ``descriptor`` float
            ``(B, D)``, the pairs' motion descriptors, normalised (``descriptor_norm``) and averaged over the T - 1
            pairs (zeros when T == 1 or ``motion_shortcut`` is off); ``weights`` the fusion weights float
            ``(B, T - 1, S)``, summing to 1 over S.
        """
        B, T, Cs, h, w = feats.shape
        S, D = len(self.correlation.scales), self.correlation.descriptor_dim
        if T < 2:
            return torch.zeros_like(feats), feats.new_zeros(B, D), feats.new_zeros(B, 0, S)
        f1 = feats[:, :-1].reshape(B * (T - 1), Cs, h, w)  # (B*(T-1), Cs, h, w), frames 0..T-2
        f2 = feats[:, 1:].reshape(B * (T - 1), Cs, h, w)  # (B*(T-1), Cs, h, w), frames 1..T-1
        fused, weights, descriptor = self.correlation(f1, f2)  # (B*(T-1), Cm, h, w), (B*(T-1), S), (B*(T-1), D)
        motion = self.motion_proj(fused).reshape(B, T - 1, Cs, h, w)  # (B, T-1, Cs, h, w)
        motion = torch.cat([motion.new_zeros(B, 1, Cs, h, w), motion], dim=1)  # (B, T, Cs, h, w)
        if self.descriptor_norm is None:
            descriptor = descriptor.new_zeros(B, D)
        else:
            norm = self.descriptor_norm
            # A single pair in a training batch has no batch statistics: use the running ones (OURS).
            use_batch_stats = norm.training and descriptor.shape[0] > 1
            descriptor = F.batch_norm(
                descriptor, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                training=use_batch_stats, momentum=norm.momentum, eps=norm.eps,
            )  # (B*(T-1), D)
            descriptor = descriptor.reshape(B, T - 1, D).mean(dim=1)  # (B, D)
        return motion, descriptor, weights.reshape(B, T - 1, S)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip embedding.

        Args:
            x: float ``(B, T, 3, H, W)``, normalised frames, T >= 1.

        Returns:
            float ``(B, num_features)``, pooled over space and time.

        Raises:
            ValueError: ``x`` is not 5-D.
        """
        if x.ndim != 5:
            raise ValueError(f"expected a clip batch (B, T, C, H, W); got shape {tuple(x.shape)}")
        B, T, C, H, W = x.shape
        frames = x.reshape(B * T, C, H, W)  # (B*T, C, H, W)
        feats = self.backbone.forward_stages(frames, 0, self.corr_stage)  # (B*T, Cs, h, w)
        _, Cs, h, w = feats.shape
        motion, descriptor, _ = self.motion_features(feats.reshape(B, T, Cs, h, w))  # (B, T, Cs, h, w), (B, D)
        feats = feats + motion.reshape(B * T, Cs, h, w)  # (B*T, Cs, h, w)
        feats = self.backbone.forward_stages(feats, self.corr_stage + 1, 4)  # (B*T, 512, h', w')
        emb = feats.mean(dim=(2, 3)).reshape(B, T, -1)  # (B, T, 512)
        if self.temporal_pool == "conv":
            emb = emb + self.temporal(emb.transpose(1, 2)).transpose(1, 2)  # (B, T, 512), conv over T
        emb = emb.mean(dim=1)  # (B, 512)
        return torch.cat([emb, descriptor], dim=1) if self.motion_shortcut else emb  # (B, num_features)

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, num_features)`` -> logits ``(B, num_classes)`` (after dropout), or the dropped-out features."""
        feats = self.drop(feats)
        return feats if pre_logits else self.head(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised clip float ``(B, T, 3, H, W)`` -> unnormalised logits float ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the linear head by a fresh one with ``num_classes`` outputs (0 = identity, features out)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
