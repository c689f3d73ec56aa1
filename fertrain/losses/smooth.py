"""Temporal smooth loss: truncated MSE between the log-probabilities of consecutive frames.

Source: FESNet (Zhang, Lu, Wang, He, Computing and Informatics 43(2):458-481, 2024, doi 10.31577/cai_2024_2_458)
names "a smooth loss" that keeps the cascade-refined proposals temporally consistent; only the abstract is public,
so the definition is OURS, taken from the truncated MSE of MS-TCN (Farha & Gall, "MS-TCN: Multi-Stage Temporal
Convolutional Network for Action Segmentation", CVPR 2019, Eq. 3-4), the standard smoothing loss of cascaded
frame-wise classifiers:

    delta_{t,c} = | log p_{t,c} - log p_{t-1,c} |          (p = softmax over the K classes of frame t)
    L = mean over valid pairs (t-1, t) and classes c of  min(delta_{t,c}, tau)^2

with ``tau = 4`` (MS-TCN's value). As in MS-TCN the previous frame's log-probabilities are detached (gradient
flows through frame t only); ``detach_previous=False`` makes the loss symmetric.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TemporalSmoothLoss(nn.Module):
    """Truncated MSE over consecutive frames' log-probabilities (module docstring).

    Args:
        tau: truncation threshold on ``|log p_t - log p_{t-1}|`` (nats, > 0).
        detach_previous: stop the gradient through frame ``t - 1`` (MS-TCN).

    ``forward(logits, mask=None)``: ``logits`` float ``(B, T, K)`` (or ``(S, B, T, K)``: stages are averaged);
    ``mask`` optional bool ``(B, T)``, True where the frame is real (a pair counts when both frames are real).
    Returns a scalar; 0 when ``T < 2`` or no pair is valid.

    Raises:
        ValueError: ``tau <= 0``; logits with fewer than 3 dimensions; a mask of the wrong shape.
    """

    def __init__(self, tau: float = 4.0, detach_previous: bool = True) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau = float(tau)
        self.detach_previous = bool(detach_previous)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if logits.dim() == 4:  # (S, B, T, K): one loss per stage, averaged
            return torch.stack([self.forward(stage, mask) for stage in logits]).mean()
        if logits.dim() != 3:
            raise ValueError(f"logits must be (B, T, K) or (S, B, T, K), got shape {tuple(logits.shape)}")
        B, T, K = logits.shape
        if T < 2:
            return logits.sum() * 0.0
        logp = F.log_softmax(logits.float(), dim=-1)  # (B, T, K)
        prev = logp[:, :-1].detach() if self.detach_previous else logp[:, :-1]
        delta = (logp[:, 1:] - prev).abs().clamp(max=self.tau) ** 2  # (B, T-1, K)
        if mask is None:
            return delta.mean()
        if mask.shape != (B, T):
            raise ValueError(f"mask must be (B, T) = {(B, T)}, got {tuple(mask.shape)}")
        pair = (mask[:, 1:] & mask[:, :-1]).to(delta.dtype)  # (B, T-1)
        n = pair.sum() * K
        if n == 0:
            return logits.sum() * 0.0
        return (delta * pair[..., None]).sum() / n
