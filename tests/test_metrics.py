"""UAR/WAR against scikit-learn, including a class that is predicted but absent from the targets."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, recall_score
from torchmetrics.classification import MulticlassRecall

from fertrain.metrics.recognition import RecognitionMetrics, chance_levels, uar_war_from_confmat


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_uar_war_match_sklearn_on_random_predictions(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    k, n = 7, 300
    target = torch.randint(0, k - 1, (n,), generator=g)  # class 6 never a target
    logits = torch.randn(n, k, generator=g)
    metric = RecognitionMetrics(k)
    for chunk in range(0, n, 64):  # accumulate over batches like an epoch
        metric.update(logits[chunk:chunk + 64], target[chunk:chunk + 64])
    out = metric.compute()
    pred = logits.argmax(1)
    assert (pred == k - 1).any(), "the absent class must be predicted for this test to mean something"
    assert out["uar"].item() == pytest.approx(balanced_accuracy_score(target, pred), abs=1e-6)
    assert out["war"].item() == pytest.approx((pred == target).float().mean().item(), abs=1e-6)
    sk_recall = recall_score(target, pred, labels=list(range(k - 1)), average=None, zero_division=0)
    assert torch.allclose(out["recall"][: k - 1], torch.as_tensor(sk_recall, dtype=torch.float32), atol=1e-6)
    assert torch.isnan(out["recall"][k - 1])
    assert torch.equal(out["confmat"], torch.as_tensor(confusion_matrix(target, pred, labels=list(range(k)))))
    # torchmetrics' macro recall averages over the predicted-only class too, and so is lower: the trap we avoid.
    tm = MulticlassRecall(num_classes=k, average="macro")(pred, target).item()
    assert tm < out["uar"].item()


def test_reset_between_epochs() -> None:
    metric = RecognitionMetrics(3)
    metric.update(torch.tensor([0, 0, 0]), torch.tensor([1, 1, 1]))
    assert metric.compute()["war"].item() == 0.0
    metric.reset()
    metric.update(torch.tensor([1, 2]), torch.tensor([1, 2]))
    out = metric.compute()
    assert out["war"].item() == 1.0 and out["uar"].item() == 1.0


def test_empty_confmat_raises() -> None:
    with pytest.raises(ValueError, match="no samples"):
        uar_war_from_confmat(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"\(K, K\)"):
        uar_war_from_confmat(torch.zeros(3, 2))


def test_chance_levels() -> None:
    # 3 classes, class 2 absent from the targets: a constant predictor of class 0 reaches UAR 1/2, WAR 6/10
    cm = torch.tensor([[6, 0, 0], [0, 4, 0], [0, 0, 0]])
    assert chance_levels(cm) == (0.5, 0.6)
    with pytest.raises(ValueError, match="no samples"):
        chance_levels(torch.zeros(2, 2))
