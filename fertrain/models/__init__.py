"""Video models for FER: each a plain ``nn.Module`` built by Hydra ``instantiate`` from its ``_target_``.

Contract shared by every model (timm-like): ``__init__(num_classes, ..., weights=None, pretrained_path=None)``;
``forward(x)`` with x float ``(B, T, 3, H, W)`` normalised -> logits ``(B, num_classes)``;
``forward_features(x) -> (B, num_features)``; ``forward_head(feats) -> logits``; ``num_features``;
``reset_classifier(num_classes)``. Pretrained initialisation: ``backbone_arch`` (the architecture weights must hold,
None = random init only), ``pretrained_target()`` (the module they load into), ``weights_report`` (what the load
did); ``weights`` is the config's weights entry (``conf/weights``, loaded strictly by
:func:`fertrain.models.backbones.init_pretrained`). Models never import data code or Lightning.
"""

from fertrain.models.baselines import R3D18, FrameMeanResNet18, R2Plus1D18, ResNet18Image
from fertrain.models.mscm import MSCM

__all__ = ["MSCM", "FrameMeanResNet18", "R2Plus1D18", "R3D18", "ResNet18Image"]
