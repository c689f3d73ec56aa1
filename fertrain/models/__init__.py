"""Video models for FER: each a plain ``nn.Module`` built by Hydra ``instantiate`` from its ``_target_``.

Contract shared by every model (timm-like): ``__init__(num_classes, ..., pretrained_path=None)``;
``forward(x)`` with x float ``(B, T, 3, H, W)`` normalised -> logits ``(B, num_classes)``;
``forward_features(x) -> (B, num_features)``; ``forward_head(feats) -> logits``; ``num_features``;
``reset_classifier(num_classes)``. Models never import data code or Lightning.
"""

from fertrain.models.baselines import R3D18, FrameMeanResNet18
from fertrain.models.mscm import MSCM

__all__ = ["MSCM", "FrameMeanResNet18", "R3D18"]
