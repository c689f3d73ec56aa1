"""Center cosine loss: CosFace margin logits against learnable class centres, plus centre compactness/separation.

Source: DMFE (Wen, Zhou, Gan, Luo, Measurement Science and Technology, https://doi.org/10.1088/1361-6501/ad191c)
names a "center cosine loss inspired by CosFace" that makes classes compact and apart; its definition is not
public. CosFace: Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018, Eq. 4
(``L_lmc``); centre loss: Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition",
ECCV 2016, Eq. 2.

Definition (the combination and the two extra terms are OURS). With ``x`` an embedding, ``c_k`` the learnable
centre of class k and ``cos_k = <x / |x|, c_k / |c_k|>``:

- CosFace term: cross-entropy of the logits ``s * (cos_k - m * [k == y])`` (margin m on the target class only).
- Intra-class term (a cosine centre loss): ``1 - cos_y``, averaged over the batch; in [0, 2].
- Inter-centre term: ``mean over pairs i < j of max(0, cos(c_i, c_j) - delta)``: pushes every pair of centres to
  a cosine of at most ``delta`` (``inter_margin``); in [0, 1 - delta]. The default delta is ``-1 / (K - 1)``, the
  cosine between the vertices of a regular simplex centred at the origin: the smallest largest-pairwise-cosine
  that K unit vectors can have (reached when D >= K - 1), so the term can reach 0 and then asks for centres as
  far apart as possible.

``loss = cosface + intra_weight * intra + inter_weight * inter``.

The CosFace logit is implemented here (three lines) rather than taken from pytorch-metric-learning: its
``CosFaceLoss`` owns its own weight matrix and does not expose the centres to the intra/inter terms, and it would
be a new dependency for one line of arithmetic.

How a task uses it (the loss works on embeddings, not logits): ``needs_embeddings`` is True; the task passes
``net.forward_features(x)`` (``(B, D)``) and the targets, and takes the metrics' logits from ``loss.logits(emb)``
(``s * cos``, no margin). The centres are parameters of this module, so a LightningModule that holds the loss as
a submodule optimises and checkpoints them with the network. ``bind_centers`` can instead share the centres of a
model's cosine head (``fertrain.models.dmfe.DMFE(head="cosine").class_centers``), so that the network's own
``forward`` predicts with the trained centres and a checkpoint's ``net.*`` weights alone (what
``fertrain.predict`` loads) are complete. ``param_groups(base_lr)`` gives the centres their own learning rate
(``center_lr_multiplier``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CenterCosineLoss(nn.Module):
    """CosFace loss against learnable class centres, with intra-class and inter-centre cosine terms.

    Args:
        num_classes: K.
        num_features: embedding width D (the model's ``num_features``).
        scale: s, multiplies the cosines (CosFace uses 64 for faces; 30 by default here, OURS for K = 7).
        margin: m, subtracted from the target class's cosine before scaling (CosFace: 0.35).
        intra_weight: weight of the intra-class term ``1 - cos_y``.
        inter_weight: weight of the inter-centre separation term (0 disables it).
        inter_margin: delta, the largest cosine between two centres that is not penalised; None = ``-1 / (K - 1)``
            (the regular simplex).
        center_lr_multiplier: learning rate of the centres relative to the network's (used by ``param_groups``).

    Attributes:
        needs_embeddings: True: ``forward`` takes embeddings ``(B, D)``, not logits.
        centers: float ``(K, D)`` learnable class centres (any norm; only their direction counts).

    Raises:
        ValueError: ``num_classes < 2``, ``num_features < 1``, ``scale <= 0``, a negative margin or weight.
    """

    needs_embeddings = True

    def __init__(
        self,
        num_classes: int,
        num_features: int,
        scale: float = 30.0,
        margin: float = 0.35,
        intra_weight: float = 1.0,
        inter_weight: float = 0.1,
        inter_margin: float | None = None,
        center_lr_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        if num_classes < 2 or num_features < 1:
            raise ValueError(f"need num_classes >= 2 and num_features >= 1; got {num_classes}, {num_features}")
        if scale <= 0 or margin < 0 or intra_weight < 0 or inter_weight < 0 or center_lr_multiplier <= 0:
            raise ValueError(
                f"need scale > 0, margin >= 0, intra_weight >= 0, inter_weight >= 0, center_lr_multiplier > 0; got "
                f"{scale=}, {margin=}, {intra_weight=}, {inter_weight=}, {center_lr_multiplier=}"
            )
        self.num_classes = num_classes
        self.num_features = num_features
        self.scale = scale
        self.margin = margin
        self.intra_weight = intra_weight
        self.inter_weight = inter_weight
        self.inter_margin = -1.0 / (num_classes - 1) if inter_margin is None else float(inter_margin)
        self.center_lr_multiplier = center_lr_multiplier
        self.centers = nn.Parameter(torch.empty(num_classes, num_features))
        nn.init.xavier_uniform_(self.centers)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, num_features={self.num_features}, scale={self.scale}, "
                f"margin={self.margin}, intra_weight={self.intra_weight}, inter_weight={self.inter_weight}, "
                f"inter_margin={self.inter_margin}")

    def bind_centers(self, centers: nn.Parameter) -> None:
        """Use ``centers`` (e.g. a model's cosine-head weight) as this loss's centres, shared, not copied.

        Args:
            centers: float ``(num_classes, num_features)`` parameter, owned by another module.

        Raises:
            ValueError: ``centers`` is not an ``nn.Parameter`` of shape ``(num_classes, num_features)``.
        """
        if not isinstance(centers, nn.Parameter) or tuple(centers.shape) != (self.num_classes, self.num_features):
            raise ValueError(
                f"bind_centers needs an nn.Parameter of shape ({self.num_classes}, {self.num_features}); got "
                f"{type(centers).__name__} of shape {tuple(getattr(centers, 'shape', ()))}"
            )
        del self.centers
        self.centers = centers  # registered here too; Module.parameters() de-duplicates shared parameters

    def param_groups(self, base_lr: float) -> list[dict]:
        """Optimiser parameter group of the centres: ``[{"params": [centers], "lr": base_lr * multiplier}]``.

        The other parameters of the task go in a group of their own (exclude ``self.centers`` from it).
        """
        return [{"params": [self.centers], "lr": base_lr * self.center_lr_multiplier}]

    def cosine(self, emb: torch.Tensor) -> torch.Tensor:
        """Cosine between embeddings and centres: float ``(B, D)`` -> float ``(B, K)`` in [-1, 1].

        Raises:
            ValueError: ``emb`` is not ``(B, num_features)``.
        """
        if emb.ndim != 2 or emb.shape[1] != self.num_features:
            raise ValueError(
                f"CenterCosineLoss expects embeddings (B, {self.num_features}) from the model's forward_features, "
                f"got shape {tuple(emb.shape)}: were logits passed? (needs_embeddings=True: the task must pass "
                f"embeddings; num_features must equal the model's num_features)"
            )
        return F.linear(F.normalize(emb, dim=1), F.normalize(self.centers, dim=1))  # (B, K)

    def logits(self, emb: torch.Tensor) -> torch.Tensor:
        """Logits for prediction and metrics, no margin: ``s * cos``, float ``(B, K)`` in ``[-s, s]``."""
        return self.scale * self.cosine(emb)

    def terms(self, emb: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three terms, unweighted (for logging).

        Args:
            emb: float ``(B, D)`` embeddings.
            target: int64 ``(B,)`` class indices in ``[0, K)``.

        Returns:
            ``{"cosface", "intra", "inter"}``: float scalars (``inter`` is 0 when ``inter_weight == 0``).

        Raises:
            ValueError: bad shapes.
        """
        if target.ndim != 1 or target.shape[0] != emb.shape[0]:
            raise ValueError(f"target must be (B,) = ({emb.shape[0]},) class indices; got shape {tuple(target.shape)}")
        cos = self.cosine(emb)  # (B, K)
        margin = self.margin * F.one_hot(target, self.num_classes).to(cos.dtype)  # (B, K), m at the target
        cosface = F.cross_entropy(self.scale * (cos - margin), target)  # CosFace, CVPR 2018, Eq. 4
        intra = (1.0 - cos.gather(1, target[:, None])).mean()
        if self.inter_weight > 0:
            c = F.normalize(self.centers, dim=1)  # (K, K) cosines below
            pairs = torch.triu_indices(self.num_classes, self.num_classes, offset=1, device=c.device)  # (2, P)
            inter = F.relu((c @ c.T)[pairs[0], pairs[1]] - self.inter_margin).mean()
        else:
            inter = cos.new_zeros(())
        return {"cosface": cosface, "intra": intra, "inter": inter}

    def forward(self, emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``cosface + intra_weight * intra + inter_weight * inter``: float scalar.

        Args:
            emb: float ``(B, D)`` embeddings (the model's ``forward_features``), not logits.
            target: int64 ``(B,)`` class indices in ``[0, K)``.

        Raises:
            ValueError: bad shapes (e.g. logits ``(B, K)`` passed instead of embeddings, when K != D).
        """
        t = self.terms(emb, target)
        return t["cosface"] + self.intra_weight * t["intra"] + self.inter_weight * t["inter"]
