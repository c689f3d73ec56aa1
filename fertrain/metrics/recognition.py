"""Recognition metrics: WAR, UAR, per-class recall and the confusion matrix.

Definitions (as used by the DFEW, AFEW and FERV39k papers):

- **WAR** (weighted average recall) = overall accuracy = trace(CM) / sum(CM).
- **UAR** (unweighted average recall) = mean over classes *that occur in the targets* of recall_c =
  CM[c, c] / sum_j CM[c, j]. This equals scikit-learn's ``balanced_accuracy_score``.

torchmetrics' ``MulticlassRecall(average="macro")`` differs: it also averages over a class that is only
*predicted* (absent from the targets), counting its recall as 0, which lowers UAR on small or unbalanced
evaluation sets. So the metric here accumulates torchmetrics' ``MulticlassConfusionMatrix`` (summed states,
synchronised across DDP processes by torchmetrics) and derives UAR/WAR from it.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.classification import MulticlassConfusionMatrix


def uar_war_from_confmat(confmat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """UAR, WAR and per-class recall from a confusion matrix.

    Args:
        confmat: int or float ``(K, K)``, rows = target class, columns = predicted class (counts).

    Returns:
        ``(uar, war, recall)``: scalars in [0, 1] and a float ``(K,)`` tensor of per-class recall, ``nan`` for a
        class with no target sample (excluded from UAR).

    Raises:
        ValueError: ``confmat`` is not square or is empty (no samples).
    """
    if confmat.ndim != 2 or confmat.shape[0] != confmat.shape[1]:
        raise ValueError(f"confusion matrix must be (K, K), got shape {tuple(confmat.shape)}")
    cm = confmat.double()
    total = cm.sum()
    if total == 0:
        raise ValueError("confusion matrix is empty: no samples were evaluated")
    support = cm.sum(dim=1)  # (K,) samples per target class
    present = support > 0
    recall = torch.full_like(support, float("nan"))
    recall[present] = cm.diagonal()[present] / support[present]
    uar = recall[present].mean()
    war = cm.diagonal().sum() / total
    return uar.float(), war.float(), recall.float()


class RecognitionMetrics(Metric):
    """Epoch-level UAR/WAR/per-class recall for single-label classification.

    ``update(preds, target)`` takes logits or probabilities ``(N, K)`` float, or class indices ``(N,)`` int64,
    and targets ``(N,)`` int64 in ``[0, K-1]``. ``compute()`` returns a dict with ``uar``, ``war`` (scalars),
    ``recall`` ``(K,)`` and ``confmat`` ``(K, K)`` int64. States are summed across processes in DDP.
    """

    full_state_update = False

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.confmat = MulticlassConfusionMatrix(num_classes=num_classes)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # noqa: D102
        self.confmat.update(preds, target)

    def compute(self) -> dict[str, torch.Tensor]:  # noqa: D102
        cm = self.confmat.compute()
        uar, war, recall = uar_war_from_confmat(cm)
        return {"uar": uar, "war": war, "recall": recall, "confmat": cm.long()}

    def reset(self) -> None:  # noqa: D102
        super().reset()
        self.confmat.reset()


def chance_levels(confmat: torch.Tensor) -> tuple[float, float]:
    """The best UAR and WAR a classifier that ignores its input can expect on this evaluation set.

    A classifier that predicts class ``j`` with probability ``q_j`` whatever the input has expected recall ``q_c``
    on class ``c``, so its UAR is the mean of ``q_c`` over the ``K'`` classes present in the targets, at most
    ``1 / K'`` (reached by always predicting one present class); its WAR is at most the share of the largest class.
    Ours (the usual "chance" of UAR is ``1 / K``; equal here when every class occurs).

    Args:
        confmat: ``(K, K)`` counts, rows = target class.

    Returns:
        ``(uar_chance, war_chance)`` in [0, 1].

    Raises:
        ValueError: empty confusion matrix.
    """
    support = confmat.double().sum(dim=1)
    total = float(support.sum())
    if total == 0:
        raise ValueError("confusion matrix is empty: no samples were evaluated")
    return 1.0 / int((support > 0).sum()), float(support.max()) / total
