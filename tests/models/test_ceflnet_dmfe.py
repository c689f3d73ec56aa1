"""Tests of CEFLNet (fertrain.models.ceflnet) and DMFE (fertrain.models.dmfe): shapes, backward, no NaN, the
activation map, the clip-major layout, T handling, heads (pretrained weights: test_weights.py)."""

from __future__ import annotations


import pytest
import torch

from fertrain.models.ceflnet import CEFLNet
from fertrain.models.complexity import count_parameters
from fertrain.models.dmfe import DMFE

SIZE = 32  # pixels; small frames keep the 35-frame clips fast on CPU


@pytest.fixture(scope="module")
def ceflnet() -> CEFLNet:
    torch.manual_seed(0)
    return CEFLNet(num_classes=7)


def _clips(b: int = 2, t: int = 35, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, t, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------- CEFLNet
def test_ceflnet_shapes_activation_and_backward(ceflnet: CEFLNet) -> None:
    ceflnet.train()
    x = _clips()
    logits, activation = ceflnet.forward_with_activation(x)
    assert logits.shape == (2, 7) and activation.shape == (2, 7)
    assert ceflnet.forward_features(x).shape == (2, ceflnet.num_features) == (2, 512)
    assert torch.isfinite(logits).all() and torch.isfinite(activation).all()
    assert (activation >= 0).all() and torch.allclose(activation.sum(dim=1), torch.ones(2), atol=1e-5)
    ceflnet.zero_grad()
    (logits.logsumexp(1).mean() + activation[:, 0].sum()).backward()
    grads = {n: p.grad for n, p in ceflnet.named_parameters()}
    missing = [n for n, g in grads.items() if g is None]
    assert not missing, f"no gradient for {missing[:5]}"
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert grads["eian.score.weight"].abs().sum() > 0 and grads["encoder.relation.weight"].abs().sum() > 0


def test_ceflnet_wrong_t_raises(ceflnet: CEFLNet) -> None:
    with pytest.raises(ValueError, match=r"T = num_clips \* frames_per_clip = 7 \* 5 = 35.*got T = 16"):
        ceflnet(_clips(t=16))
    with pytest.raises(ValueError, match="B, T, C, H, W"):
        ceflnet(torch.randn(35, 3, SIZE, SIZE))


def test_ceflnet_reads_clip_major_layout_and_is_order_free(ceflnet: CEFLNet) -> None:
    """Frames c*5 .. c*5+4 form clip c: permuting frames inside clips or permuting clips changes nothing (no
    positional encoding, symmetric pooling), moving frames between clips does."""
    ceflnet.eval()
    x = _clips(b=1)
    with torch.no_grad():
        ref, act = ceflnet.forward_with_activation(x)
        within = torch.cat([torch.randperm(5) + 5 * c for c in range(7)])  # shuffle inside each clip
        clip_order = torch.tensor([3, 0, 6, 1, 5, 2, 4])
        across_clips = (clip_order[:, None] * 5 + torch.arange(5)).reshape(-1)  # reorder whole clips
        logits_w = ceflnet(x[:, within])
        logits_c, act_c = ceflnet.forward_with_activation(x[:, across_clips])
        regroup = torch.arange(35).reshape(7, 5).T.reshape(-1)  # frame-major: clips mix frames of all clips
        logits_r = ceflnet(x[:, regroup])
    assert torch.allclose(logits_w, ref, atol=1e-4)
    assert torch.allclose(logits_c, ref, atol=1e-4)
    assert torch.allclose(act_c, act[:, clip_order], atol=1e-5), "the activation map must follow its clip"
    assert not torch.allclose(logits_r, ref, atol=1e-3), "regrouping frames into other clips changed nothing"


def test_ceflnet_other_clip_layout_reset_and_size() -> None:
    net = CEFLNet(num_classes=4, num_clips=4, frames_per_clip=3)
    assert net.clip_len == 12
    logits, activation = net.forward_with_activation(_clips(t=12))
    assert logits.shape == (2, 4) and activation.shape == (2, 4)
    net.reset_classifier(2)
    assert net(_clips(t=12)).shape == (2, 2)
    net.reset_classifier(0)
    assert net(_clips(t=12)).shape == (2, net.head_hidden_size)
    # paper: ~13 M parameters
    assert 12.5e6 < count_parameters(CEFLNet(num_classes=7)) < 13.5e6


# ------------------------------------------------------------------------------------------------------- DMFE
@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_dmfe_image_shapes_and_backward(head: str) -> None:
    torch.manual_seed(0)
    net = DMFE(num_classes=7, head=head, scale=16.0).train()
    x = torch.randn(4, 1, 3, 32, 32)  # images: clips of length 1
    emb = net.forward_features(x)
    logits = net.forward_head(emb)
    assert emb.shape == (4, net.num_features) == (4, 512) and logits.shape == (4, 7)
    assert torch.isfinite(logits).all()
    if head == "cosine":
        assert logits.abs().max() <= 16.0 + 1e-4 and net.class_centers is net.head.weight
    else:
        assert net.class_centers is None
    logits.logsumexp(1).mean().backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert all(grads[f"attention.{i}.gamma"].abs().sum() > 0 for i in range(3)), "channel attention is not trained"


def test_dmfe_averages_frame_embeddings_over_t() -> None:
    net = DMFE(num_classes=3).eval()
    x = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        clip = net.forward_features(x)
        frames = torch.stack([net.forward_features(x[:, t : t + 1]) for t in range(3)], dim=1)  # (B, T, D)
    assert torch.allclose(clip, frames.mean(dim=1), atol=1e-5)


def test_dmfe_options_and_errors() -> None:
    net = DMFE(num_classes=7, tap_stages=(1, 4), tap_dim=32, embed_dim=64, head="cosine")
    assert net.num_features == 64 and net(torch.randn(2, 1, 3, 32, 32)).shape == (2, 7)
    net.reset_classifier(3)
    assert net(torch.randn(2, 1, 3, 32, 32)).shape == (2, 3) and net.class_centers.shape == (3, 64)
    with pytest.raises(ValueError, match="tap_stages"):
        DMFE(num_classes=7, tap_stages=(3, 2))
    with pytest.raises(ValueError, match="tap_stages"):
        DMFE(num_classes=7, tap_stages=(0, 4))
    with pytest.raises(ValueError, match="head"):
        DMFE(num_classes=7, head="arcface")
    with pytest.raises(ValueError, match="B, T, C, H, W"):
        DMFE(num_classes=7)(torch.randn(2, 3, 32, 32))


def test_ceflnet_cannot_tell_a_16_frame_video_from_its_reverse() -> None:
    """With the synthetic_ceflnet sampler (symmetric under reversal of 16 frames) and an order-free network, a video
    and its reverse give the same logits: why CEFLNet stays at <= 0.5 UAR on synthetic_motion (up = reversed down)."""
    from fertrain.data.samplers import CEFLNetSampler

    sampler = CEFLNetSampler(num_clips=4, clip_span=6, clip_stride=3, frames_per_clip=3, window=15,
                             train_start_max=1, test_start=1)
    net = CEFLNet(num_classes=4, num_clips=4, frames_per_clip=3).eval()
    video = torch.randn(16, 3, SIZE, SIZE)
    idx = torch.from_numpy(sampler(16, False))
    with torch.no_grad():
        forward = net(video[idx][None])
        backward = net(video.flip(0)[idx][None])
        other = net(torch.randn(16, 3, SIZE, SIZE)[idx][None])
    assert torch.allclose(forward, backward, atol=1e-4)
    assert not torch.allclose(forward, other, atol=1e-3)
