"""Speed work of issue 19 that must not change results: the blocked MSCM correlation gives the same bits.

The reference below is the formulation of ``fertrain.models.mscm._LocalCorrelation`` before the blocking
(one block of all frame pairs, a fresh product per displacement), kept verbatim as the oracle.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fertrain.models import mscm
from fertrain.models.mscm import MSCM, correlation_block_pairs, displacements, local_correlation


class _ReferenceCorrelation(torch.autograd.Function):
    """``_LocalCorrelation`` as it was before the blocked formulation (the oracle)."""

    @staticmethod
    def forward(ctx, f1, f2, radius, dilation):
        offsets = displacements(radius, dilation)
        N, C, h, w = f1.shape
        p = radius * dilation
        f2p = F.pad(f2, (p, p, p, p))
        out = f1.new_empty(len(offsets), N, h, w)
        for k, (dy, dx) in enumerate(offsets):
            torch.sum(f1 * f2p[:, :, p + dy : p + dy + h, p + dx : p + dx + w], dim=1, out=out[k])
        ctx.save_for_backward(f1, f2p)
        ctx.offsets, ctx.pad = offsets, p
        return out.permute(1, 0, 2, 3).contiguous()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        f1, f2p = ctx.saved_tensors
        _, _, h, w = f1.shape
        p = ctx.pad
        grad_out = grad_out.contiguous()
        grad_f1, grad_f2p = torch.zeros_like(f1), torch.zeros_like(f2p)
        for k, (dy, dx) in enumerate(ctx.offsets):
            g = grad_out[:, k : k + 1]
            window = (slice(None), slice(None), slice(p + dy, p + dy + h), slice(p + dx, p + dx + w))
            grad_f1.addcmul_(g, f2p[window])
            grad_f2p[window].addcmul_(g, f1)
        return grad_f1, grad_f2p[:, :, p : p + h, p : p + w], None, None


def _fwd_bwd(op, f1: torch.Tensor, f2: torch.Tensor, radius: int, dilation: int, seed: int = 1):
    a, b = f1.detach().clone().requires_grad_(), f2.detach().clone().requires_grad_()
    out = op(a, b, radius, dilation)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    (out * g).sum().backward()
    return out.detach(), a.grad, b.grad


@pytest.mark.parametrize("radius,dilation", [(1, 1), (2, 2), (2, 4), (0, 1), (3, 1)])
@pytest.mark.parametrize("block_bytes", [1, 3000, 1 << 30])  # 1 pair per block, uneven blocks, one block
@pytest.mark.parametrize("shape", [(7, 16, 11, 9), (3, 5, 6, 13)])  # (N pairs, C, h, w)
def test_blocked_correlation_is_bit_identical(monkeypatch, radius: int, dilation: int, block_bytes: int,
                                              shape: tuple[int, int, int, int]) -> None:
    monkeypatch.setattr(mscm, "_CPU_BLOCK_BYTES", block_bytes)
    gen = torch.Generator().manual_seed(radius * 10 + dilation)
    f1 = F.normalize(torch.randn(*shape, generator=gen), dim=1)
    f2 = F.normalize(torch.randn(*shape, generator=gen), dim=1)
    N, C, h, w = shape
    p = radius * dilation
    block = correlation_block_pairs(f1, p)
    assert block == {1: 1, 3000: min(N, max(1, 3000 // (C * (h + 2 * p) * (w + 2 * p) * 4))), 1 << 30: N}[block_bytes]
    got = _fwd_bwd(lambda *a: local_correlation(*a), f1, f2, radius, dilation)
    ref = _fwd_bwd(_ReferenceCorrelation.apply, f1, f2, radius, dilation)
    for name, x, y in zip(("output", "grad f1", "grad f2"), got, ref):
        assert torch.equal(x, y), f"{name} differs (block of {block} pairs): max |diff| {(x - y).abs().max()}"
    # channels_last inputs (trainer.channels_last): the op works on contiguous copies, so the bits stay the same
    cl = _fwd_bwd(lambda a, b, r, d: local_correlation(a.to(memory_format=torch.channels_last),
                                                       b.to(memory_format=torch.channels_last), r, d),
                  f1, f2, radius, dilation)
    assert all(torch.equal(x, y) for x, y in zip(cl, ref))


def test_mscm_logits_and_gradients_unchanged_by_blocking(monkeypatch) -> None:
    """The whole model: logits and every parameter gradient equal those with the reference correlation."""
    x = torch.randn(2, 3, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1, 3])
    results = []
    for op in (local_correlation, lambda f1, f2, r, d=1: _ReferenceCorrelation.apply(f1, f2, r, d)):
        monkeypatch.setattr(mscm, "_CPU_BLOCK_BYTES", 4096)  # several blocks even at this small size
        monkeypatch.setattr(mscm, "local_correlation", op)
        torch.manual_seed(0)
        model = MSCM(num_classes=7).train()
        logits = model(x)
        F.cross_entropy(logits, y).backward()
        results.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (l1, g1), (l2, g2) = results
    assert torch.equal(l1, l2)
    assert g1.keys() == g2.keys() and all(torch.equal(g1[n], g2[n]) for n in g1), \
        [n for n in g1 if not torch.equal(g1[n], g2[n])]


# ------------------------------------------------------------------ trainer.compile / trainer.channels_last
def test_trainer_speed_options_compose_and_apply(tmp_path) -> None:
    """``trainer.compile`` / ``trainer.channels_last`` compose, instantiate the trainer, and act on ``task.net``
    in place: parameters NHWC, forward compiled, state_dict keys unchanged, logits the same as eager."""
    from hydra.utils import instantiate

    from fertrain.utils.acceleration import SpeedOptions, Trainer
    from tests.helpers import compose_config

    cfg = compose_config(["trainer.compile={backend: eager}", "trainer.channels_last=true", "logger=csv"], tmp_path)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    assert isinstance(trainer, Trainer)
    (options,) = [c for c in trainer.callbacks if isinstance(c, SpeedOptions)]
    assert options.compile_kwargs == {"backend": "eager"} and options.channels_last

    class Task(torch.nn.Module):  # stands in for a LightningModule: the callback only reads `.net`
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))

    task = Task()
    x = torch.randn(2, 3, 8, 8)
    eager = task.net(x).detach()
    keys = list(task.net.state_dict())
    options.setup(trainer, task, "fit")
    options.setup(trainer, task, "test")  # a second stage does not compile again
    assert task.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert task.net._compiled_call_impl is not None and list(task.net.state_dict()) == keys
    torch.testing.assert_close(task.net(x), eager, rtol=1e-5, atol=1e-6)


def test_trainer_speed_options_reject_bad_values() -> None:
    from fertrain.utils.acceleration import Trainer

    with pytest.raises(ValueError, match=r"trainer.compile: unknown torch.compile argument\(s\) \['mdoe'\]"):
        Trainer(compile={"mdoe": "max-autotune"}, logger=False)
    with pytest.raises(ValueError, match="trainer.compile='yes'"):
        Trainer(compile="yes", logger=False)
    with pytest.raises(ValueError, match="trainer.channels_last=1"):
        Trainer(channels_last=1, logger=False)
    assert not any(type(c).__name__ == "SpeedOptions" for c in Trainer(logger=False).callbacks)
