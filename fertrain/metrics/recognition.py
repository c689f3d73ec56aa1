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

from pathlib import Path
from typing import Sequence

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


def plot_confusion_matrix(
    confmat: torch.Tensor, class_names: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """Save a row-normalised confusion matrix (counts annotated) as a PNG.

    Args:
        confmat: ``(K, K)`` counts, rows = target, columns = prediction.
        class_names: ``K`` names in label order.
        path: output file; parent folders are created. Written atomically (temp file, then rename).
        title: figure title (e.g. ``"test (best) UAR 0.612 WAR 0.701"``).

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = confmat.detach().cpu().double()
    rows = cm.sum(dim=1, keepdim=True).clamp(min=1)
    norm = (cm / rows).numpy()
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * k, 0.8 + 0.8 * k))
    ax.imshow(norm, vmin=0.0, vmax=1.0, cmap="Blues")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("target")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path
