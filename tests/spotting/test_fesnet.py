"""FESNet shapes, gradients and first-frame discrepancy; the temporal smooth loss on hand-made examples."""

from __future__ import annotations

import math

import pytest
import torch

from fertrain.losses.smooth import TemporalSmoothLoss
from fertrain.models.fesnet import FESNet

TINY = dict(widths=(8, 8, 16), token_grid=4, heads=2, scales=(1, 2), stages=2, layers_per_stage=1)


def test_fesnet_shapes() -> None:
    torch.manual_seed(0)
    net = FESNet(num_classes=3, **TINY).eval()
    x = torch.randn(2, 6, 3, 32, 32)
    assert net(x).shape == (2, 6, 3)
    stages = net.forward_stages(x)
    assert stages.shape == (1 + 2, 2, 6, 3)  # LSDM proposals + 2 cascade stages
    assert torch.equal(stages[-1], net(x))
    assert net.forward_features(x).shape == (2, 6, net.num_features) and net.num_features == 16
    assert net(torch.randn(1, 4, 3, 48, 40)).shape == (1, 4, 3)  # any input size (adaptive token grid)


def test_fesnet_discrepancy_to_first_frame() -> None:
    """Frame 0 has zero discrepancy whatever the input; a static window has the same features on every frame."""
    torch.manual_seed(0)
    net = FESNet(**TINY).eval()
    a, b = torch.randn(1, 5, 3, 32, 32), torch.randn(1, 5, 3, 32, 32)
    fa, fb = net.forward_features(a), net.forward_features(b)
    assert torch.allclose(fa[:, 0], fb[:, 0], atol=1e-6)
    assert not torch.allclose(fa[:, 1:], fb[:, 1:], atol=1e-3)
    static = a[:, :1].expand(1, 5, 3, 32, 32)
    fs = net.forward_features(static)
    assert torch.allclose(fs, fs[:, :1].expand_as(fs), atol=1e-5)


def test_fesnet_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    net = FESNet(**TINY).train()
    x = torch.randn(2, 6, 3, 32, 32)
    out = net.forward_stages(x)  # (S+1, B, T, K)
    target = torch.randint(0, 3, (2, 6))
    loss = sum(torch.nn.functional.cross_entropy(s.reshape(-1, 3), target.reshape(-1)) for s in out)
    loss = loss + TemporalSmoothLoss()(out[1:])
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert net.lsdm.backbone[0].weight.grad.abs().sum() > 0  # through attention and the discrepancy
    assert net.stages[-1].out.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs", [dict(stages=0), dict(widths=(8, 8)), dict(widths=(8, 8, 10), heads=4),
                                    dict(scales=(0,))])
def test_fesnet_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FESNet(**{**TINY, **kwargs})


def _example() -> torch.Tensor:
    # frames: p = (.5, .5), (.75, .25), (.75, .25)
    return torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [math.log(3.0), 0.0]]], requires_grad=True)


def test_smooth_loss_hand_made_value() -> None:
    d1, d2 = math.log(0.75 / 0.5), math.log(0.5 / 0.25)  # |delta log p| from frame 0 to 1, per class
    logits = _example()
    # 2 pairs x 2 classes; the second pair has no change
    assert TemporalSmoothLoss()(logits).item() == pytest.approx((d1 ** 2 + d2 ** 2) / 4, rel=1e-6)
    assert TemporalSmoothLoss(tau=0.5)(logits).item() == pytest.approx((d1 ** 2 + 0.5 ** 2) / 4, rel=1e-6)
    mask = torch.tensor([[True, True, False]])  # only the pair (0, 1) counts
    assert TemporalSmoothLoss()(logits, mask).item() == pytest.approx((d1 ** 2 + d2 ** 2) / 2, rel=1e-6)
    stacked = torch.stack([logits, torch.zeros_like(logits)])  # (S=2, B, T, K): mean over stages
    assert TemporalSmoothLoss()(stacked).item() == pytest.approx((d1 ** 2 + d2 ** 2) / 8, rel=1e-6)
    assert TemporalSmoothLoss()(torch.zeros(2, 5, 3)).item() == 0.0
    assert TemporalSmoothLoss()(logits[:, :1]).item() == 0.0  # one frame: no pair


def test_smooth_loss_detaches_previous_frame() -> None:
    logits = _example()
    TemporalSmoothLoss()(logits[:, :2]).backward()
    assert torch.all(logits.grad[0, 0] == 0) and logits.grad[0, 1].abs().sum() > 0
    logits = _example()
    TemporalSmoothLoss(detach_previous=False)(logits[:, :2]).backward()
    assert logits.grad[0, 0].abs().sum() > 0


def test_smooth_loss_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        TemporalSmoothLoss(tau=0)
    with pytest.raises(ValueError):
        TemporalSmoothLoss()(torch.zeros(4, 3))
    with pytest.raises(ValueError):
        TemporalSmoothLoss()(torch.zeros(1, 4, 3), torch.ones(1, 3, dtype=torch.bool))
