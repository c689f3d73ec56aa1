"""Losses on crowd-sourced label distributions: the four FERPlus training schemes.

Source: E. Barsoum, C. Zhang, C. Canton Ferrer, Z. Zhang, "Training Deep Networks for Facial Expression
Recognition with Crowd-Sourced Label Distribution", ICMI 2016 (arXiv:1608.01041), Sec. 3; the target processing
follows the official code (github.com/microsoft/FERPlus, ``src/ferplus.py`` ``_process_target`` and
``src/train.py`` ``cost_func``; re-implemented, not copied). With ``p = softmax(logits)`` and ``t`` the image's
label distribution (:mod:`fertrain.data.datasets.ferplus`, ``target``):

- ``majority`` (MV, Sec. 3.1) and ``crossentropy`` (CEL, Sec. 3.4): ``L = -sum_k t_k log p_k`` (for majority ``t``
  is one-hot, so this is the usual cross-entropy).
- ``probability`` (PLD, Sec. 3.3): in training, a label ``k ~ t`` is drawn anew at every step (the official reader
  draws when it builds each mini-batch) and ``L = -log p_k``; in eval mode (``module.eval()``) the loss is its
  expectation ``-sum_k t_k log p_k`` (ours: a deterministic validation loss).
- ``multi_target`` (ML, Sec. 3.2): every emotion with a non-zero share is an acceptable answer:
  ``t'_k = (1 - eps) [t_k > 0] + eps`` and ``L = -log max_k (t'_k p_k)`` (eps = 0.001 in the official code, to
  keep the log finite); computed as ``-max_k (log t'_k + log p_k)`` for stability.

All losses are averaged over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SOFT_TARGET_MODES = ("majority", "probability", "crossentropy", "multi_target")


class SoftTargetLoss(nn.Module):
    """Loss of logits against soft targets, one of the FERPlus schemes (module docstring).

    Args:
        mode: ``"majority"``, ``"probability"``, ``"crossentropy"`` or ``"multi_target"`` (use the data's
            ``label_mode``).
        epsilon: the multi_target smoothing ``eps`` (official code: 0.001).

    Attributes:
        needs_soft_targets: True: the recognition task passes the batch's ``target`` float ``(B, K)``, not ``label``.

    Raises:
        ValueError: unknown mode, or ``epsilon`` outside ``(0, 1)``.
    """

    needs_soft_targets = True

    def __init__(self, mode: str = "crossentropy", epsilon: float = 0.001) -> None:
        super().__init__()
        if mode not in SOFT_TARGET_MODES:
            raise ValueError(f"SoftTargetLoss mode must be one of {SOFT_TARGET_MODES}, got {mode!r}")
        if not 0.0 < epsilon < 1.0:
            raise ValueError(f"epsilon must be in (0, 1), got {epsilon!r}")
        self.mode = mode
        self.epsilon = epsilon

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, epsilon={self.epsilon}"

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Batch-mean loss: float scalar.

        Args:
            logits: float ``(B, K)`` unnormalised scores.
            target: float ``(B, K)`` label distributions (non-negative rows summing to 1).

        Raises:
            ValueError: ``target`` is not a float ``(B, K)`` of the logits' shape (e.g. int labels were passed).
        """
        if target.shape != logits.shape or not torch.is_floating_point(target):
            raise ValueError(f"SoftTargetLoss needs float targets (B, K) = {tuple(logits.shape)}, got "
                             f"{target.dtype} {tuple(target.shape)}: the batch must carry 'target' (soft labels, "
                             f"e.g. data=ferplus)")
        logp = F.log_softmax(logits.float(), dim=1)  # (B, K)
        t = target.float()
        if self.mode == "multi_target":
            acceptable = (1.0 - self.epsilon) * (t > 0).float() + self.epsilon  # (B, K)
            return -(acceptable.log() + logp).max(dim=1).values.mean()
        if self.mode == "probability" and self.training:
            drawn = torch.multinomial(t, 1).squeeze(1)  # (B,) one label per image, drawn from its distribution
            return F.nll_loss(logp, drawn)
        return -(t * logp).sum(dim=1).mean()
