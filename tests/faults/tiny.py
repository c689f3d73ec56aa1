"""A tiny video network for the fault tests: checkpoints of a few kB and millisecond steps, with the pieces whose
state a resume must restore exactly (BatchNorm running statistics, dropout draws, AdamW moments)."""

from __future__ import annotations

import torch
from torch import nn


class TinyVideoNet(nn.Module):
    """float ``(B, T, C, H, W)`` -> logits ``(B, K)``: a strided 2D conv per frame, BatchNorm, mean over frames
    and pixels, dropout, linear head."""

    def __init__(self, num_classes: int, pretrained_path: str | None = None, dropout: float = 0.3,
                 width: int = 8, **model_config: object) -> None:
        # the tests swap model._target_ inside the MSCM config: its other keys (corr_stage, scales, weights...) are
        # accepted and ignored
        super().__init__()
        self.conv = nn.Conv2d(3, width, kernel_size=5, stride=4)
        self.bn = nn.BatchNorm2d(width)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        f = torch.relu(self.bn(self.conv(x.flatten(0, 1))))  # (B*T, W, h, w)
        f = f.mean(dim=(2, 3)).view(b, t, -1)  # (B, T, W)
        motion = f[:, 1:] - f[:, :-1] if t > 1 else torch.zeros_like(f)
        return self.head(self.drop(torch.cat([f.mean(1), motion.mean(1)], dim=1)))
