"""Model complexity: parameter count and GFLOPs per clip, as PyTorch counts them.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts matrix products and convolutions
(``mm``, ``addmm``, ``bmm``, ``convolution``, attention, ...) with a multiply-add as 2 FLOPs, and does NOT count
element-wise work (BatchNorm, ReLU, pooling, additions) — nor MSCM's correlation, which is an element-wise
multiply and a sum over channels (about ``2 * C * K * h * w`` FLOPs per frame pair for K displacements, small
beside the convolutions). Papers often report multiply-adds ("FLOPs" = MACs): divide ours by 2 to compare.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``model`` (shared parameters counted once).

    Args:
        model: any module.
        trainable_only: count only parameters with ``requires_grad``.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def gflops_per_clip(model: nn.Module, clip_shape: Sequence[int] = (8, 3, 112, 112)) -> float:
    """Forward GFLOPs of one clip (batch 1), as counted by ``FlopCounterMode``; 1 GFLOP = 1e9 FLOPs.

    The model runs once in eval mode on zeros of shape ``(1, *clip_shape)`` on its own device and dtype, then
    its train/eval mode is restored.

    Args:
        model: a fertrain video model taking float ``(B, T, C, H, W)``.
        clip_shape: ``(T, C, H, W)`` of one clip (frames, channels, pixels).

    Returns:
        Forward FLOPs / 1e9 (a multiply-add counts 2; element-wise ops not counted, see the module docstring).

    Raises:
        ValueError: ``clip_shape`` does not have 4 entries.
    """
    if len(clip_shape) != 4:
        raise ValueError(f"clip_shape must be (T, C, H, W); got {tuple(clip_shape)}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros(1, *clip_shape, device=device, dtype=dtype)  # (1, T, C, H, W)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9
