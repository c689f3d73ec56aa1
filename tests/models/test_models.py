"""Tests of the video models: the shared contract, MSCM's correlation and fusion, complexity (weight loading:
test_weights.py)."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from fertrain.models import MSCM, R3D18, FrameMeanResNet18
from fertrain.models.complexity import count_parameters, gflops_per_clip
from fertrain.models.mscm import (
    AdaptiveScaleFusion,
    MultiScaleCorrelation,
    antisymmetric_part,
    displacements,
    local_correlation,
)

NUM_CLASSES = 5

MODELS = {
    "mscm": lambda: MSCM(num_classes=NUM_CLASSES),
    "mscm_stage2_conv": lambda: MSCM(num_classes=NUM_CLASSES, corr_stage=2, temporal_pool="conv", scales=((1, 1),)),
    "frame_mean_resnet18": lambda: FrameMeanResNet18(num_classes=NUM_CLASSES),
    "r3d18": lambda: R3D18(num_classes=NUM_CLASSES),
}


def _clip(batch: int = 2, frames: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 3, size, size, generator=gen)  # (B, T, C, H, W)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("frames", [4, 1])
def test_contract_shapes(name: str, frames: int) -> None:
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    x = _clip(frames=frames)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
    assert logits.shape == (2, NUM_CLASSES)
    assert feats.shape == (2, model.num_features)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(model.forward_head(feats), logits)
    model.reset_classifier(3)
    with torch.no_grad():
        assert model(x).shape == (2, 3)
    model.reset_classifier(0)
    with torch.no_grad():
        assert model(x).shape == (2, model.num_features)


@pytest.mark.parametrize("name", MODELS)
def test_backward_gives_finite_nonzero_gradients(name: str) -> None:
    torch.manual_seed(0)
    model = MODELS[name]().train()
    loss = F.cross_entropy(model(_clip()), torch.tensor([1, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), "missing or non-finite gradient"
    assert grads["head.weight"].abs().sum() > 0
    if isinstance(model, MSCM):
        corr_grads = {n: g for n, g in grads.items() if n.startswith(("correlation.", "motion_proj."))}
        assert any(n.startswith("correlation.encoders.") for n in corr_grads)
        assert any(n.startswith("correlation.fusion.") for n in corr_grads) or len(model.correlation.scales) == 1
        for n, g in corr_grads.items():
            assert g.abs().sum() > 0, f"zero gradient on correlation-branch parameter {n}"
        # Gradient must also reach the trunk stages that feed the correlation.
        assert grads["backbone.conv1.weight"].abs().sum() > 0


def _naive_correlation(f1: torch.Tensor, f2: torch.Tensor, radius: int, dilation: int) -> torch.Tensor:
    """Per-pixel Python loop, the definition written out: out[n, k, y, x] = <f1[n, :, y, x], f2[n, :, y+dy, x+dx]>."""
    N, C, h, w = f1.shape
    offsets = displacements(radius, dilation)
    out = torch.zeros(N, len(offsets), h, w, dtype=f1.dtype)
    for k, (dy, dx) in enumerate(offsets):
        for y in range(h):
            for x in range(w):
                if 0 <= y + dy < h and 0 <= x + dx < w:
                    out[:, k, y, x] = (f1[:, :, y, x] * f2[:, :, y + dy, x + dx]).sum(1)
    return out


@pytest.mark.parametrize("radius,dilation", [(0, 1), (1, 1), (2, 2), (1, 3)])
def test_local_correlation_matches_definition_and_gradcheck(radius: int, dilation: int) -> None:
    gen = torch.Generator().manual_seed(radius * 10 + dilation)
    f1 = torch.randn(2, 3, 5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    f2 = torch.randn(2, 3, 5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    out = local_correlation(f1, f2, radius, dilation)
    assert out.shape == (2, (2 * radius + 1) ** 2, 5, 7)
    torch.testing.assert_close(out, _naive_correlation(f1.detach(), f2.detach(), radius, dilation))
    assert torch.autograd.gradcheck(lambda a, b: local_correlation(a, b, radius, dilation), (f1, f2))


@pytest.mark.parametrize(
    "scale,shift",
    [((1, 1), (1, -1)), ((1, 1), (0, 1)), ((2, 2), (-4, 2)), ((2, 2), (2, 0)), ((2, 4), (8, -4)), ((3, 1), (-3, 2))],
)
def test_correlation_peak_is_at_the_shift(scale: tuple[int, int], shift: tuple[int, int]) -> None:
    radius, dilation = scale
    dy, dx = shift
    gen = torch.Generator().manual_seed(7)
    f1 = F.normalize(torch.randn(2, 32, 20, 20, generator=gen), dim=1)  # (N, C, h, w), unit vectors per pixel
    f2 = torch.roll(f1, shifts=(dy, dx), dims=(2, 3))  # content at p in f1 is at p + (dy, dx) in f2
    cost = local_correlation(f1, f2, radius, dilation)  # (N, K, h, w)
    m = radius * dilation  # interior: every displacement of the scale lands inside the map, no roll wrap-around
    peak = cost[:, :, m:-m or None, m:-m or None].argmax(dim=1)  # (N, h', w')
    expected = displacements(radius, dilation).index((dy, dx))
    assert (peak == expected).all(), f"correlation peak not at displacement {(dy, dx)}"
    # The peak value is the cosine similarity of a vector with itself.
    torch.testing.assert_close(cost[:, expected, m:-m or None, m:-m or None], torch.ones_like(peak, dtype=cost.dtype))


def test_adaptive_fusion_weights_sum_to_one() -> None:
    torch.manual_seed(0)
    fusion = AdaptiveScaleFusion(channels=8, num_scales=3)
    maps = [torch.randn(4, 8, 6, 6) * (s + 1) for s in range(3)]  # S maps of (N, C, h, w)
    fused, weights = fusion(maps)
    assert fused.shape == (4, 8, 6, 6)
    assert weights.shape == (4, 3)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(4))
    assert not torch.allclose(weights[0], weights[1]), "weights should depend on the input"
    torch.testing.assert_close(fused, sum(weights[:, s, None, None, None] * maps[s] for s in range(3)))
    with pytest.raises(ValueError, match="expected 3 scale maps"):
        fusion(maps[:2])


def test_mscm_motion_weights_and_single_frame() -> None:
    torch.manual_seed(0)
    model = MSCM(num_classes=NUM_CLASSES).eval()
    with torch.no_grad():
        feats = model.backbone.forward_stages(_clip(frames=4).flatten(0, 1), 0, model.corr_stage)  # (B*T, Cs, h, w)
        motion, descriptor, weights = model.motion_features(feats.unflatten(0, (2, 4)))
        assert descriptor.shape == (2, model.correlation.descriptor_dim)
        assert weights.shape == (2, 3, len(model.correlation.scales))
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))
        assert (motion[:, 0] == 0).all() and motion[:, 1:].abs().sum() > 0  # frame 0 has no predecessor
        motion1, descriptor1, weights1 = model.motion_features(feats.unflatten(0, (8, 1)))
        assert (motion1 == 0).all() and (descriptor1 == 0).all() and weights1.shape[1] == 0  # T == 1: no motion


def test_motion_descriptor_is_zero_when_static_and_odd_in_time() -> None:
    torch.manual_seed(0)
    corr = MultiScaleCorrelation(scales=((1, 1), (2, 2)), motion_channels=8).eval()
    f1 = torch.randn(3, 16, 10, 12).relu()  # (N, C, h, w)
    f2 = torch.roll(f1, shifts=(1, 0), dims=(2, 3)) + 0.1 * torch.randn(3, 16, 10, 12).relu()  # moved down 1 px
    with torch.no_grad():
        _, _, static = corr(f1, f1)
        _, _, forward = corr(f1, f2)
        _, _, backward = corr(f2, f1)
    assert static.shape == (3, 4 + 12)
    torch.testing.assert_close(static, torch.zeros_like(static), atol=1e-6, rtol=0)
    torch.testing.assert_close(backward, -forward, atol=1e-6, rtol=0)
    # Downward motion: the cost at (dy, dx) = (1, 0) exceeds the one at (-1, 0); antisymmetric channel of (-1, 0)
    # is cost(-1, 0) - cost(1, 0) < 0 (channel 1 of the first scale: displacement (-1, 0)).
    assert displacements(1, 1)[1] == (-1, 0)
    assert (forward[:, 1] < 0).all()
    cost = torch.arange(9.0).reshape(1, 9, 1, 1)
    torch.testing.assert_close(antisymmetric_part(cost).flatten(), torch.tensor([-8.0, -6.0, -4.0, -2.0]))


def test_frame_mean_is_permutation_invariant_and_mscm_is_not() -> None:
    x = _clip(frames=5, size=48)
    reversed_x = x.flip(dims=(1,))
    torch.manual_seed(0)
    baseline = FrameMeanResNet18(num_classes=NUM_CLASSES).eval()
    torch.manual_seed(0)
    mscm = MSCM(num_classes=NUM_CLASSES).eval()
    with torch.no_grad():
        torch.testing.assert_close(baseline(reversed_x), baseline(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(baseline(x[:, torch.tensor([3, 0, 4, 2, 1])]), baseline(x), atol=1e-5, rtol=1e-5)
        diff = (mscm(reversed_x) - mscm(x)).abs().max()
    assert diff > 1e-4, f"MSCM logits should depend on frame order; max change {diff:.2e}"


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="corr_stage"):
        MSCM(num_classes=2, corr_stage=3)
    with pytest.raises(ValueError, match="temporal_pool"):
        MSCM(num_classes=2, temporal_pool="max")
    with pytest.raises(ValueError, match="radius"):
        MSCM(num_classes=2, scales=((1, 0),))
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        FrameMeanResNet18(num_classes=2)(torch.zeros(2, 3, 64, 64))
    with pytest.raises(ValueError, match="same shape"):
        local_correlation(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5), 1)


def test_complexity() -> None:
    model = FrameMeanResNet18(num_classes=NUM_CLASSES)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    model.head.weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - model.head.weight.numel()
    model.train()
    one, two = gflops_per_clip(model, (1, 3, 64, 64)), gflops_per_clip(model, (2, 3, 64, 64))
    assert model.training, "train mode must be restored"
    assert one > 0
    # Per-frame 2D backbone: FLOPs grow linearly with T (only the tiny head is per clip).
    assert two == pytest.approx(2 * one, rel=1e-3)
    # conv1 alone: 7x7x3 -> 64 at 32x32 outputs, 2 FLOPs per multiply-add.
    assert one > 2 * 7 * 7 * 3 * 64 * 32 * 32 / 1e9
    mscm_flops = gflops_per_clip(MSCM(num_classes=NUM_CLASSES), (2, 3, 64, 64))
    assert mscm_flops > two  # the correlation encoders add convolutions
    with pytest.raises(ValueError, match="clip_shape"):
        gflops_per_clip(model, (3, 64, 64))
