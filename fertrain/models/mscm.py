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


# Bytes of one chunk's row products ``(rows, w, w)`` on the CPU: about the size of a 2 MiB L2 cache, so a chunk's
# products stay in cache while its displacements are read out (forward) or written in (backward).
_CPU_CHUNK_BYTES = 1 << 21


def correlation_chunk_rows(f1: torch.Tensor) -> int:
    """Feature rows per chunk of ``correlation_volume`` (OURS, for speed; the result does not depend on it).

    CPU: as many rows (one row = one ``(n, y)`` of the ``(N, C, h, w)`` maps) as fit their ``(w, w)`` products into
    ``_CPU_CHUNK_BYTES`` (at least 1): 668 rows for MSCM's layer1 features at 112 px (28 x 28). Every other
    device: all ``N * h`` rows at once (fewer kernel launches).

    Args:
        f1: float ``(N, C, h, w)``, the features of frame t.
    """
    N, _, h, w = f1.shape
    if f1.device.type != "cpu":
        return max(N * h, 1)
    return max(1, min(N * h, _CPU_CHUNK_BYTES // max(w * w * f1.element_size(), 1)))


def _by_row_shift(offsets: Sequence[tuple[int, int]]) -> dict[int, list[tuple[int, int]]]:
    """``{dy: [(k, dx), ...]}``: the channels ``k`` of each vertical displacement ``dy``."""
    groups: dict[int, list[tuple[int, int]]] = {}
    for k, (dy, dx) in enumerate(offsets):
        groups.setdefault(dy, []).append((k, dx))
    return groups


class _RowCorrelation(torch.autograd.Function):
    """Autograd of ``correlation_volumes`` as batched row matrix products (OURS, for speed).

    For one feature row ``y`` of pair ``n`` and one vertical displacement ``dy``, the products of every column of
    ``f1`` with every column of ``f2``'s row ``y + dy`` are one small matrix product,
    ``R = f1[n, :, y, :]^T @ f2[n, :, y + dy, :]`` of shape ``(w, w)``; displacement ``(dy, dx)`` is R's diagonal at
    offset ``dx``. So a cost volume costs one batched ``torch.bmm`` per distinct ``dy`` (oneDNN/cuBLAS GEMMs at high
    arithmetic intensity) instead of a multiply-and-sum over ``C`` per displacement, which is bound by memory
    bandwidth; the backward pass is two ``bmm`` per ``dy`` into band matrices built from the output gradient.
    The rows of all pairs are flattened into one batch (``(N * h, ...)``), with ``p = max |dy|`` zero rows at both
    ends; a row ``y + dy`` that falls outside its own map (into the zero rows or the neighbouring pair's rows) is
    zeroed in the output and in the gradient, which is the zero padding of the definition. Rows are processed in
    cache-sized chunks on the CPU (``correlation_chunk_rows``). Several volumes (MSCM's scales) share one pass over
    the union of their displacements; each output is written in ``torch.channels_last`` memory format, the layout
    its consumer (a convolution) runs fastest in on the CPU.

    Same values as the multiply-and-sum up to float rounding: a GEMM sums over ``C`` in its own order (max |diff|
    2.4e-7 on unit-norm 64-channel features; tests/test_speed.py). Measured on the development machine (one
    thread, MSCM's three scales as one pass over 49 displacements on 120 pairs of 64 x 28 x 28 maps, CPU time):
    forward + backward 0.26 s, against 0.70 s for the per-displacement formulation in cache-sized blocks and 1.42 s
    unblocked. First-order gradients only.
    """

    @staticmethod
    def forward(ctx, f1: torch.Tensor, f2: torch.Tensor, offsets: tuple[tuple[int, int], ...],
                outputs: tuple[tuple[int, ...], ...]) -> tuple[torch.Tensor, ...]:
        N, C, h, w = f1.shape
        rows = N * h
        p = max(abs(dy) for dy, _ in offsets)
        groups = _by_row_shift(offsets)
        A = f1.permute(0, 2, 3, 1).reshape(rows, w, C)  # (N*h, w, C): row (n, y), column x, channel c
        B = f2.new_zeros(p + rows + p, C, w)  # (p + N*h + p, C, w): row (n, y) at p + n*h + y
        B[p : p + rows].view(N, h, C, w).copy_(f2.permute(0, 2, 1, 3))
        outs = [f1.new_empty(N, h, w, len(channels)) for channels in outputs]  # channels last
        holders: list[list[torch.Tensor]] = [[] for _ in offsets]  # per union channel: (N*h, w) views to fill
        for out, channels in zip(outs, outputs):
            flat = out.view(rows, w, len(channels))
            for i, k in enumerate(channels):
                holders[k].append(flat[:, :, i])
        chunk = correlation_chunk_rows(f1)
        products = f1.new_empty(min(chunk, rows), w, w)
        for s in range(0, rows, chunk):
            e = min(s + chunk, rows)
            R = products[: e - s]  # (n, w, w): [x, x'] = <f1 at (y, x), f2 at (y + dy, x')>
            for dy, channels in groups.items():
                torch.bmm(A[s:e], B[p + dy + s : p + dy + e], out=R)
                for k, dx in channels:  # (dy, dx) at x is R[x, x + dx]; outside the row counts as 0
                    for view in holders[k]:
                        _diagonal_to_row(R, dx, view[s:e], w)
        for dy, channels in groups.items():  # rows y + dy outside the map are zero padding
            for k, _ in channels:
                for view in holders[k]:
                    _zero_outside_rows(view.view(N, h, w), dy, h)
        ctx.save_for_backward(A, B)
        ctx.offsets, ctx.outputs, ctx.pad, ctx.chunk = offsets, outputs, p, chunk
        return tuple(out.permute(0, 3, 1, 2) for out in outs)  # each (N, K_j, h, w), channels_last

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grad_outs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        A, B = ctx.saved_tensors
        rows, w, C = A.shape
        p, chunk, offsets = ctx.pad, ctx.chunk, ctx.offsets
        N, h = grad_outs[0].shape[0], grad_outs[0].shape[2]
        G = A.new_zeros(N, h, w, len(offsets))  # the union's gradient, summed over the volumes holding a channel
        for g, channels in zip(grad_outs, ctx.outputs):
            index = torch.tensor(channels, device=G.device)
            G.view(-1, len(offsets)).index_add_(1, index, g.permute(0, 2, 3, 1).reshape(-1, len(channels)))
        groups = _by_row_shift(offsets)
        for dy, channels in groups.items():
            for k, _ in channels:
                _zero_outside_rows(G[..., k], dy, h)
        flat = G.view(rows, w, len(offsets))
        grad_a = torch.empty_like(A)  # (N*h, w, C)
        grad_b = torch.zeros_like(B)  # (p + N*h + p, C, w)
        band = A.new_empty(min(chunk, rows), w, w)
        for s in range(0, rows, chunk):
            e = min(s + chunk, rows)
            gR = band[: e - s]  # (n, w, w), the gradient of R
            for i, (dy, channels) in enumerate(groups.items()):
                gR.zero_()
                for k, dx in channels:
                    _row_to_diagonal(flat[s:e, :, k], dx, gR, w)
                b = B[p + dy + s : p + dy + e]  # (n, C, w)
                if i == 0:
                    torch.bmm(gR, b.transpose(1, 2), out=grad_a[s:e])
                else:
                    grad_a[s:e].baddbmm_(gR, b.transpose(1, 2))
                grad_b[p + dy + s : p + dy + e].baddbmm_(A[s:e].transpose(1, 2), gR)
        grad_f1 = grad_a.view(N, h, w, C).permute(0, 3, 1, 2)  # (N, C, h, w)
        grad_f2 = grad_b[p : p + rows].view(N, h, C, w).permute(0, 2, 1, 3)  # (N, C, h, w)
        return grad_f1, grad_f2, None, None


def _diagonal_to_row(R: torch.Tensor, dx: int, row: torch.Tensor, w: int) -> None:
    """``row[:, x] = R[:, x, x + dx]`` where ``0 <= x + dx < w``, else 0. ``R (n, w, w)``, ``row (n, w)``."""
    if abs(dx) >= w:
        row.zero_()
        return
    d = R.diagonal(dx, 1, 2)  # (n, w - |dx|)
    if dx >= 0:
        row[:, : w - dx] = d
        row[:, w - dx :] = 0
    else:
        row[:, -dx:] = d
        row[:, :-dx] = 0


def _row_to_diagonal(row: torch.Tensor, dx: int, R: torch.Tensor, w: int) -> None:
    """``R[:, x, x + dx] = row[:, x]`` where ``0 <= x + dx < w`` (the transpose of ``_diagonal_to_row``)."""
    if abs(dx) >= w:
        return
    R.diagonal(dx, 1, 2).copy_(row[:, : w - dx] if dx >= 0 else row[:, -dx:])


def _zero_outside_rows(cost: torch.Tensor, dy: int, h: int) -> None:
    """Zero ``cost[:, y]`` (``(N, h, w)``) where ``y + dy`` is outside ``[0, h)``."""
    if dy > 0:
        cost[:, max(h - dy, 0) :] = 0
    elif dy < 0:
        cost[:, : min(-dy, h)] = 0


# Set by ``fertrain.export`` while tracing: the plain-ops formulation, which ``torch.jit.trace`` can record.
_PLAIN_OPS = False


def correlation_volumes(
    f1: torch.Tensor, f2: torch.Tensor, offset_lists: Sequence[Sequence[tuple[int, int]]]
) -> list[torch.Tensor]:
    """Cost volumes of two feature maps, one per list of displacements, computed in one pass over their union.

    ``out_j[n, k, y, x] = sum_c f1[n, c, y, x] * f2[n, c, y + dy_k, x + dx_k]`` for ``(dy_k, dx_k) =
    offset_lists[j][k]``; positions outside ``f2`` count as 0 (zero padding). FlowNetC (Dosovitskiy et al., ICCV
    2015, Sec. 3, Eq. 1) with a 1x1 patch; no division by C (OURS). MSCM passes its scales' displacement lists
    (49 distinct displacements for the default scales, not 59).

    Eager mode: batched row matrix products with a hand-written backward (``_RowCorrelation``; first-order
    gradients only); outputs in ``torch.channels_last`` memory format. Under ``torch.compile``/``torch.export``
    (ONNX) and TorchScript export: plain autograd ops, a multiply-and-sum over channels per displacement with no
    Python loop over N, so the batch dimension stays symbolic. The two agree up to float rounding (the order of the
    sum over C).

    Args:
        f1: float ``(N, C, h, w)``, features of frame t.
        f2: float ``(N, C, h, w)``, features of frame t+1.
        offset_lists: J lists of displacements ``(dy, dx)`` in feature pixels, e.g. ``displacements(r, d)``.

    Returns:
        J float tensors ``(N, K_j, h, w)``, channel k of volume j for ``offset_lists[j][k]``.

    Raises:
        ValueError: the two maps differ in shape or are not 4-D; a list of displacements is empty.
    """
    if f1.ndim != 4 or f1.shape != f2.shape:
        raise ValueError(
            f"expected two feature maps of the same shape (N, C, h, w); got {tuple(f1.shape)} and {tuple(f2.shape)}"
        )
    lists = [tuple((int(dy), int(dx)) for dy, dx in offsets) for offsets in offset_lists]
    if not lists or any(not offsets for offsets in lists):
        raise ValueError(f"every list of displacements must name at least one (dy, dx); got {offset_lists!r}")
    union = tuple(sorted({o for offsets in lists for o in offsets}))
    if _PLAIN_OPS or torch.compiler.is_compiling():
        _, _, h, w = f1.shape
        p = max(max(abs(dy), abs(dx)) for dy, dx in union)
        f2p = F.pad(f2, (p, p, p, p))  # (N, C, h + 2p, w + 2p)
        maps = {(dy, dx): (f1 * f2p[:, :, p + dy : p + dy + h, p + dx : p + dx + w]).sum(dim=1) for dy, dx in union}
        return [torch.stack([maps[o] for o in offsets], dim=1) for offsets in lists]  # each (N, K_j, h, w)
    index = {o: k for k, o in enumerate(union)}
    outputs = tuple(tuple(index[o] for o in offsets) for offsets in lists)
    return list(_RowCorrelation.apply(f1, f2, union, outputs))


def correlation_volume(f1: torch.Tensor, f2: torch.Tensor, offsets: Sequence[tuple[int, int]]) -> torch.Tensor:
    """One cost volume: ``correlation_volumes(f1, f2, [offsets])[0]``, float ``(N, len(offsets), h, w)``.

    Raises:
        ValueError: see ``correlation_volumes``.
    """
    return correlation_volumes(f1, f2, [offsets])[0]


def local_correlation(f1: torch.Tensor, f2: torch.Tensor, radius: int, dilation: int = 1) -> torch.Tensor:
    """Local correlation (cost volume) of two feature maps over a square window of displacements.

    ``correlation_volume(f1, f2, displacements(radius, dilation))``: ``out[n, k, y, x] = sum_c f1[n, c, y, x] *
    f2[n, c, y + dy_k, x + dx_k]`` with ``(dy_k, dx_k)`` the k-th entry of ``displacements(radius, dilation)``;
    positions outside ``f2`` count as 0. If ``f2`` is ``f1`` moved by ``(dy, dx)`` (content at p in ``f1`` is at
    p + (dy, dx) in ``f2``), the maximum over k is at that displacement. Pass channel-L2-normalised maps to get
    cosine similarities in [-1, 1].

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
    return correlation_volume(f1, f2, displacements(radius, dilation))


def antisymmetric_part(cost: torch.Tensor) -> torch.Tensor:
    """Odd part of a cost volume under the displacement reflection d -> -d.

    ``out[:, k] = cost[:, k] - cost[:, K-1-k]`` for the first ``K // 2`` displacements (channel ``K-1-k`` of
    ``local_correlation`` holds ``-d_k``; the centre and the mirrored half would repeat these up to sign).
    Its spatial mean is a motion descriptor with two exact properties (OURS): it is 0 when both frames have the
    same features (every pair of positions (p, p + d) is counted once from each side, zero padding included), and
    it changes sign when the two frames are swapped (time reversal).

    Args:
        cost: float ``(N, K, h, w)`` from ``local_correlation``, K = (2r+1)^2, or any ``(N, K, ...)`` (e.g. its
            spatial mean ``(N, K)``).

    Returns:
        float ``(N, K // 2, h, w)`` (``(N, K // 2, ...)``).
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
        # (N, S * C), scale-major; sum / count rather than mean: a mean's backward writes a full (N, C, h, w) map
        pooled = torch.cat([m.sum(dim=(2, 3)) for m in maps], dim=1) / (maps[0].shape[2] * maps[0].shape[3])
        weights = self.mlp(pooled).softmax(dim=1)  # (N, S)
        fused = maps[0] * weights[:, 0, None, None, None]  # (N, C, h, w); no (N, S, C, h, w) stack (speed)
        for s in range(1, self.num_scales):
            fused = fused.addcmul(maps[s], weights[:, s, None, None, None])
        return fused, weights


class _UnitNorm(torch.autograd.Function):
    """``F.normalize(x, dim=1, eps)`` with a hand-written backward (OURS, for speed: three passes over the map
    instead of autograd's chain of div, mul, neg and sum over the broadcast norm). Same values as ``F.normalize``;
    gradients equal up to float rounding, including pixels whose norm is below ``eps`` (there ``y = x / eps``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)  # (N, 1, h, w)
        scale = norm.clamp_min(eps)
        y = x / scale
        ctx.save_for_backward(y, scale, norm > eps)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        y, scale, above = ctx.saved_tensors
        # d y / d x = (I - y y^T) / ||x|| where ||x|| > eps, I / eps below it
        along = (g * y).sum(dim=1, keepdim=True).mul_(above)  # (N, 1, h, w)
        return torch.addcmul(g, y, along, value=-1).div_(scale), None


def unit_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Channel-L2-normalised feature maps: float ``(N, C, h, w)`` -> ``(N, C, h, w)``, ``x / max(||x||_C, eps)``
    (= ``F.normalize(x, dim=1, eps=eps)``; plain ``F.normalize`` under ``torch.compile`` and export)."""
    if _PLAIN_OPS or torch.compiler.is_compiling():
        return F.normalize(x, dim=1, eps=eps)
    return _UnitNorm.apply(x, eps)


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

    def forward(
        self, f1: torch.Tensor, f2: torch.Tensor, normalized: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Motion from frame t to t+1.

        Args:
            f1: float ``(N, C, h, w)``, features of frame t (any scale; normalised here over C).
            f2: float ``(N, C, h, w)``, features of frame t+1.
            normalized: the maps are already L2-normalised over C (``MSCM.motion_features`` normalises each frame
                once, not once as t and once as t+1).

        Returns:
            ``(motion, weights, descriptor)``: the fused motion map float ``(N, motion_channels, h, w)``; the fusion
            weights float ``(N, S)`` (sum 1 per sample); the motion descriptor float ``(N, descriptor_dim)``, the
            spatial mean of every scale's ``antisymmetric_part`` (0 for identical frames, odd in time), in [-2, 2].
        """
        if not normalized:
            f1 = unit_norm(f1)  # (N, C, h, w), unit L2 norm per pixel
            f2 = unit_norm(f2)
        h, w = f1.shape[-2:]
        # one pass over the union of the scales' displacements; each (N, K, h, w) in ``displacements`` order
        costs = correlation_volumes(f1, f2, [displacements(r, d) for r, d in self.scales])
        encoded, descriptors = [], []
        for encoder, cost in zip(self.encoders, costs):
            # channels_last (OURS, for speed): oneDNN's NHWC convolutions over these few channels took 0.4-0.7x the
            # time of NCHW on the CPU (a no-op for the eager outputs, which are channels_last already)
            cost = cost.contiguous(memory_format=torch.channels_last)
            mean = cost.sum(dim=(2, 3)) / (h * w)  # (N, K); a sum's backward broadcasts (a mean's fills a map)
            descriptors.append(antisymmetric_part(mean))  # (N, K//2): the odd part's mean (it is linear)
            encoded.append(_encode_cost(encoder, cost))  # (N, motion_channels, h, w)
        fused, weights = self.fusion(encoded)
        return fused, weights, torch.cat(descriptors, dim=1)  # (N, Cm, h, w), (N, S), (N, D)


def _encode_cost(encoder: nn.Sequential, cost: torch.Tensor) -> torch.Tensor:
    """``encoder(cat([cost, antisymmetric_part(cost)], 1))`` without building the odd part (OURS, for speed).

    The odd part is linear in the cost volume, so the first convolution over ``[cost, odd]`` (K + K//2 input
    channels) equals one over ``cost`` alone (K channels) with the folded weight ``W_cost + [W_odd, 0, -flip(W_odd)]``
    (odd channel j is ``cost_j - cost_{K-1-j}``). The parameters (and checkpoints) stay those of the
    ``(K + K//2)``-channel convolution; a third fewer multiply-adds in that layer, same values up to float rounding.

    Args:
        encoder: ``Sequential(conv-norm-ReLU, conv-norm-ReLU)`` of ``MultiScaleCorrelation``.
        cost: float ``(N, K, h, w)`` from ``correlation_volume``, K = (2r+1)^2.

    Returns:
        float ``(N, motion_channels, h, w)``.
    """
    first, rest = encoder[0], encoder[1:]
    conv = first[0]
    K = cost.shape[1]
    w_cost, w_odd = conv.weight[:, :K], conv.weight[:, K:]  # (Cm, K, 3, 3), (Cm, K//2, 3, 3)
    folded = w_cost + torch.cat([w_odd, torch.zeros_like(w_odd[:, :1]), -w_odd.flip(1)], dim=1)  # (Cm, K, 3, 3)
    x = F.conv2d(cost, folded, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return rest(first[1:](x))


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
        # (B, T, Cs, h, w): each frame normalised once, for both of its pairs
        unit = unit_norm(feats.reshape(B * T, Cs, h, w)).reshape(B, T, Cs, h, w)
        f1 = unit[:, :-1].reshape(B * (T - 1), Cs, h, w)  # (B*(T-1), Cs, h, w), frames 0..T-2
        f2 = unit[:, 1:].reshape(B * (T - 1), Cs, h, w)  # (B*(T-1), Cs, h, w), frames 1..T-1
        # (B*(T-1), Cm, h, w), (B*(T-1), S), (B*(T-1), D)
        fused, weights, descriptor = self.correlation(f1, f2, normalized=True)
        # back to the standard layout of the appearance stream (the encoders ran channels_last; oneDNN's BatchNorm
        # backward in channels_last took twice the time of NCHW on the CPU)
        conv, norm = self.motion_proj
        motion = norm(conv(fused).contiguous()).reshape(B, T - 1, Cs, h, w)  # (B, T-1, Cs, h, w)
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
