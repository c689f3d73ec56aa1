"""Speed work of issue 19 that must not change results.

MSCM's cost volume (``correlation_volume``: batched row matrix products, rows in chunks) against the
per-displacement multiply-and-sum it replaced, kept below as the oracle; and the whole MSCM against its previous
formulation (one correlation per scale, the encoder's input built as ``cat([cost, odd])``, the fusion as a stack).
The values differ only by float rounding (a GEMM sums over channels in its own order): the tolerance is 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fertrain.models import mscm
from fertrain.models.mscm import (
    MSCM,
    MultiScaleCorrelation,
    antisymmetric_part,
    correlation_chunk_rows,
    correlation_volumes,
    displacements,
    local_correlation,
)

TOL = 1e-5  # absolute, on unit-norm features (outputs in [-1, 1]) and unit-scale gradients


class _ReferenceCorrelation(torch.autograd.Function):
    """The per-displacement formulation used before (one multiply-and-sum over C per displacement): the oracle."""

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


def _max_diff(x: torch.Tensor, y: torch.Tensor) -> float:
    return (x - y).abs().max().item()


@pytest.mark.parametrize("radius,dilation", [(1, 1), (2, 2), (2, 4), (0, 1), (3, 1)])
@pytest.mark.parametrize("chunk_bytes", [1, 3000, 1 << 30])  # 1 row per chunk, uneven chunks, one chunk
@pytest.mark.parametrize("shape", [(7, 16, 11, 9), (3, 5, 6, 13), (2, 4, 3, 5)])  # (N pairs, C, h, w)
def test_row_correlation_equals_the_per_displacement_sum(monkeypatch, radius: int, dilation: int, chunk_bytes: int,
                                                         shape: tuple[int, int, int, int]) -> None:
    """Output and both gradients within 1e-5 of the oracle, for any chunking, for displacements larger than the
    map (shape (2, 4, 3, 5) with dilation 4: every row and column shift falls outside) and channels_last inputs."""
    monkeypatch.setattr(mscm, "_CPU_CHUNK_BYTES", chunk_bytes)
    gen = torch.Generator().manual_seed(radius * 10 + dilation)
    f1 = F.normalize(torch.randn(*shape, generator=gen), dim=1)
    f2 = F.normalize(torch.randn(*shape, generator=gen), dim=1)
    N, C, h, w = shape
    rows = correlation_chunk_rows(f1)
    assert rows == {1: 1, 3000: min(N * h, max(1, 3000 // (w * w * 4))), 1 << 30: N * h}[chunk_bytes]
    ref = _fwd_bwd(_ReferenceCorrelation.apply, f1, f2, radius, dilation)
    got = _fwd_bwd(local_correlation, f1, f2, radius, dilation)
    cl = _fwd_bwd(lambda a, b, r, d: local_correlation(a.to(memory_format=torch.channels_last),
                                                       b.to(memory_format=torch.channels_last), r, d),
                  f1, f2, radius, dilation)
    for result in (got, cl):
        for name, x, y in zip(("output", "grad f1", "grad f2"), result, ref):
            assert x.shape == y.shape and _max_diff(x, y) <= TOL, f"{name}: max |diff| {_max_diff(x, y)} ({rows} rows)"
    # an output that is 0 by the zero padding is exactly 0 (first row, displacement (-r*d, 0) reads above the map)
    if radius > 0:
        k = displacements(radius, dilation).index((-radius * dilation, 0))
        assert torch.all(got[0][:, k, 0] == 0)


def test_correlation_volumes_of_a_union_equal_each_scale() -> None:
    """MSCM computes its scales' volumes in one pass over the union of their displacements (49 for the default
    scales, 10 shared); each equals its own ``local_correlation`` (same rows, same products), and the gradients of
    shared displacements add up."""
    gen = torch.Generator().manual_seed(3)
    f1, f2 = (F.normalize(torch.randn(4, 8, 12, 10, generator=gen), dim=1) for _ in range(2))
    scales = mscm.DEFAULT_SCALES
    assert len({o for r, d in scales for o in displacements(r, d)}) == 49
    a, b = f1.clone().requires_grad_(), f2.clone().requires_grad_()
    volumes = correlation_volumes(a, b, [displacements(r, d) for r, d in scales])
    sum(v.sum() * (i + 1) for i, v in enumerate(volumes)).backward()
    for (r, d), volume in zip(scales, volumes):
        assert volume.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(volume, local_correlation(f1, f2, r, d))
    a2, b2 = f1.clone().requires_grad_(), f2.clone().requires_grad_()
    sum(local_correlation(a2, b2, r, d).sum() * (i + 1) for i, (r, d) in enumerate(scales)).backward()
    assert _max_diff(a.grad, a2.grad) <= TOL and _max_diff(b.grad, b2.grad) <= TOL


def test_unit_norm_equals_f_normalize_with_its_gradient() -> None:
    """MSCM's normalisation (hand-written backward) against ``F.normalize``: same values, gradients within 1e-5,
    also for pixels whose feature vector is 0 or shorter than eps (there the gradient is ``g / eps``, no projection)."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 16, 5, 7, generator=gen)
    x[0, :, 0, 0] = 0  # a dead pixel after ReLU
    x[1, :, 2, 3] *= 1e-8  # norm below eps
    g = torch.randn(x.shape, generator=gen)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = mscm.unit_norm(a), F.normalize(b, dim=1, eps=1e-6)
    (ya * g).sum().backward()
    (yb * g).sum().backward()
    assert torch.equal(ya, yb)
    assert _max_diff(a.grad, b.grad) / b.grad.abs().max().item() <= TOL


def _previous_multiscale_forward(self: MultiScaleCorrelation, f1: torch.Tensor, f2: torch.Tensor,
                                 normalized: bool = False):
    """``MultiScaleCorrelation.forward`` as it was (normalising t and t+1 separately): the oracle for the whole
    model."""
    f1 = F.normalize(f1, dim=1, eps=1e-6)
    f2 = F.normalize(f2, dim=1, eps=1e-6)  # a second time on already normalised maps: the same values
    encoded, descriptors = [], []
    for encoder, (r, d) in zip(self.encoders, self.scales):
        cost = _ReferenceCorrelation.apply(f1, f2, r, d)
        odd = antisymmetric_part(cost)
        descriptors.append(odd.mean(dim=(2, 3)))
        encoded.append(encoder(torch.cat([cost, odd], dim=1)))
    stacked = torch.stack(encoded, dim=1)
    weights = self.fusion.mlp(stacked.mean(dim=(3, 4)).flatten(1)).softmax(dim=1)
    fused = (stacked * weights[:, :, None, None, None]).sum(dim=1)
    return fused, weights, torch.cat(descriptors, dim=1)


def test_mscm_logits_and_gradients_equal_the_previous_formulation(monkeypatch) -> None:
    """The whole model in train mode: logits and every parameter gradient within 1e-5 of the previous formulation
    (per-scale correlation, ``cat([cost, odd])`` into the encoder, stacked fusion); the folded first convolution
    gets the same gradient as the unfolded one, so checkpoints and optimiser states are interchangeable."""
    x = torch.randn(2, 4, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1, 3])
    monkeypatch.setattr(mscm, "_CPU_CHUNK_BYTES", 4096)  # several chunks even at this small size
    results = []
    for forward in (MultiScaleCorrelation.forward, _previous_multiscale_forward):
        monkeypatch.setattr(MultiScaleCorrelation, "forward", forward)
        torch.manual_seed(0)
        model = MSCM(num_classes=7).train()
        logits = model(x)
        F.cross_entropy(logits, y).backward()
        results.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (l1, g1), (l2, g2) = results
    assert _max_diff(l1, l2) <= TOL
    assert g1.keys() == g2.keys()
    worst = {n: _max_diff(g1[n], g2[n]) / max(g2[n].abs().max().item(), 1.0) for n in g1}
    assert max(worst.values()) <= TOL, sorted(worst.items(), key=lambda kv: -kv[1])[:3]
    assert any(g2[n].abs().max() > 0 for n in g2 if n.startswith("correlation.encoders.0.0.0"))


def test_mscm_under_torch_compile_takes_the_plain_ops_path_and_agrees() -> None:
    """``trainer.compile``: while dynamo traces MSCM, the cost volumes and the normalisation run as plain tensor
    ops (no Python ``autograd.Function`` in the graph); logits and gradients within 1e-5 of eager mode."""
    x = torch.randn(2, 3, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 5])
    torch.manual_seed(0)
    eager = MSCM(num_classes=7, dropout=0.0).train()  # train mode (batch statistics), no random dropout
    compiled = MSCM(num_classes=7, dropout=0.0).train()
    compiled.load_state_dict(eager.state_dict())
    calls = []
    original = mscm._RowCorrelation.apply
    mscm._RowCorrelation.apply = lambda *a: calls.append(1) or original(*a)
    try:
        torch._dynamo.reset()
        results = []
        for model, fwd in ((eager, eager), (compiled, torch.compile(compiled, backend="eager", dynamic=False))):
            calls.clear()
            logits = fwd(x)
            F.cross_entropy(logits, y).backward()
            results.append((logits.detach(), {n: p.grad for n, p in model.named_parameters()}, len(calls)))
    finally:
        mscm._RowCorrelation.apply = original
    (l1, g1, n1), (l2, g2, n2) = results
    assert n1 == 1 and n2 == 0  # eager: the row-product function once; compiled: never
    assert _max_diff(l1, l2) <= TOL
    assert max(_max_diff(g1[n], g2[n]) / max(g1[n].abs().max().item(), 1.0) for n in g1) <= TOL


# ------------------------------------------------------------------ trainer.compile / trainer.channels_last
def test_trainer_speed_options_compose_and_apply(tmp_path) -> None:
    """``trainer.compile`` / ``trainer.channels_last`` compose, instantiate the trainer, and act on ``task.net``
    in place: parameters NHWC, forward compiled, state_dict keys unchanged, logits the same as eager."""
    from hydra.utils import instantiate

    from fertrain.acceleration import SpeedOptions, Trainer
    from tests.helpers import compose_config

    cfg = compose_config(["trainer.compile={backend: eager}", "trainer.channels_last=true", "logger=csv"], tmp_path)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    assert isinstance(trainer, Trainer)
    (options,) = [c for c in trainer.callbacks if isinstance(c, SpeedOptions)]
    assert options.compile_kwargs == {"dynamic": False, "backend": "eager"} and options.channels_last

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
    from fertrain.acceleration import Trainer

    with pytest.raises(ValueError, match=r"trainer.compile: unknown torch.compile argument\(s\) \['mdoe'\]"):
        Trainer(compile={"mdoe": "max-autotune"}, logger=False)
    with pytest.raises(ValueError, match="trainer.compile='yes'"):
        Trainer(compile="yes", logger=False)
    with pytest.raises(ValueError, match="trainer.channels_last=1"):
        Trainer(channels_last=1, logger=False)
    assert not any(type(c).__name__ == "SpeedOptions" for c in Trainer(logger=False).callbacks)


# -------------------------------------------------------------------------------------- the loader's hot path
import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
from torch.utils.data import default_collate  # noqa: E402

from fertrain.data import readers  # noqa: E402
from fertrain.data.transforms import build_clip_transform, flip_draws, hflip_clips  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "fertrain" / "assets" / "demo" / "WolfgangLanger_Pexels.mp4"


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("shape", [(6, 64, 64, 3), (3, 45, 70, 3), (2, 40, 30, 3)])
def test_fast_transform_path_equals_albumentations(train: bool, shape: tuple[int, ...]) -> None:
    """The ClipTransform fast path gives albumentations' pixels and keeps its random stream in step."""
    fast, reference = (build_clip_transform(train, size=24, seed=7) for _ in range(2))
    assert fast._plan is not None
    reference._plan = None  # albumentations' own Compose
    rng = np.random.default_rng(0)
    for _ in range(12):
        clip = rng.integers(0, 256, shape, dtype=np.uint8)
        a, b = fast(clip), reference(clip)
        assert a.shape == b.shape == (shape[0], 24, 24, 3) and a.flags.c_contiguous and np.array_equal(a, b)
    assert build_clip_transform(True, size=24, color_jitter=0.2)._plan is None  # other pipelines: albumentations


def test_decode_size_never_upsamples_a_crop() -> None:
    assert build_clip_transform(False, size=112).decode_size == 112  # eval: SmallestMaxSize(112)
    # train: the smallest crop of scale 0.8, ratio 3/4 is 0.775 of the frame's shorter side -> 145 px needed
    assert build_clip_transform(True, size=112).decode_size == 145
    assert build_clip_transform(True, size=112, resize=128).decode_size == 128


def _asymmetric_clips(n: int) -> np.ndarray:
    """uint8 ``(n, 2, 8, 8, 3)``: every clip differs from its mirror image (brightness grows left to right)."""
    ramp = np.arange(8, dtype=np.uint8)[None, None, :, None] * 20
    noise = np.random.default_rng(1).integers(0, 10, (n, 2, 8, 8, 3), dtype=np.uint8)
    return ramp + noise


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_device_flip_has_the_worker_flip_distribution(p: float) -> None:
    """data.augment_on=device: the share of mirrored clips matches the worker path's (two-proportion z-test over
    1200 clips, |z| < 4), both are near p, and the device draws are reproducible and change with the epoch."""
    n = 1200
    clips = _asymmetric_clips(n)
    worker = build_clip_transform(True, size=8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=p, seed=3)
    worker_flipped = np.array([not np.array_equal(worker(c), c) for c in clips])
    device_tf = build_clip_transform(True, size=8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=p, seed=3)
    assert device_tf.pop_flip() == p
    assert all(np.array_equal(device_tf(c), c) for c in clips[:50]), "no flip is left in the worker"
    video = torch.from_numpy(clips.transpose(0, 1, 4, 2, 3).copy())  # (B, T, C, H, W) as collated
    draws = torch.from_numpy(flip_draws(np.arange(n), p, seed=42, epoch=0))
    out = hflip_clips(video, draws)
    device_flipped = (out != video).flatten(1).any(1).numpy()
    assert np.array_equal(device_flipped, draws.numpy()) and torch.equal(out[draws], video[draws].flip(-1))
    k1, k2 = worker_flipped.sum(), device_flipped.sum()
    pooled = (k1 + k2) / (2 * n)
    z = (k1 - k2) / n / np.sqrt(2 * pooled * (1 - pooled) / n)
    assert abs(z) < 4, (k1, k2, z)
    for k in (k1, k2):  # each within 4 binomial standard deviations of n p
        assert abs(k - n * p) < 4 * np.sqrt(n * p * (1 - p)), (k, n * p)
    assert np.array_equal(flip_draws(np.arange(n), p, 42, 0), draws.numpy())
    assert 0.3 < (flip_draws(np.arange(n), p, 42, 1) != draws.numpy()).mean() < 0.7, "a new epoch, new draws"


def test_frame_listing_is_cached_and_refreshed_when_the_folder_changes(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "clip"
    folder.mkdir()
    for i in range(1, 4):
        PIL.Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i:05d}.jpg", quality=100)
    calls = []
    real = readers._frame_names
    monkeypatch.setattr(readers, "_frame_names", lambda f: calls.append(f) or real(f))
    first = readers.read_frames(folder, np.array([0, 2]))
    readers.read_frames(folder, np.array([1]))
    assert len(calls) == 1 and readers.count_frames(folder) == 3 and len(calls) == 1, "one listing per folder"
    PIL.Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(folder / "00004.jpg", quality=100)
    import os
    os.utime(folder, ns=(1, folder.stat().st_mtime_ns + 10**9))  # coarse-timestamp file systems: force a change
    assert readers.count_frames(folder) == 4 and len(calls) == 2, "a changed folder is listed again"
    assert int(readers.read_frames(folder, np.array([3]))[0].mean()) in range(195, 206)
    assert first.shape == (2, 8, 8, 3)


@pytest.mark.parametrize("decoder", ["torchcodec", "pyav"])
def test_optional_video_decoders_read_the_same_frames_as_decord(decoder: str) -> None:
    try:
        readers.check_decoder(decoder)
    except readers.DatasetError as err:
        pytest.skip(f"{decoder} is not usable here: {err}")
    idx = np.array([3, 3, 0, 40, 25])  # repeats, any order
    got = readers.read_frames(DEMO, idx, decoder=decoder)
    assert got.shape == (5, 360, 640, 3) and got.flags.c_contiguous
    assert np.array_equal(got, readers.read_frames(DEMO, idx))


def test_unknown_or_missing_decoder_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="data.decoder='ffmpeg': expected one of decord, torchcodec, pyav"):
        readers.check_decoder("ffmpeg")


def test_lean_samples_collate_to_the_same_batch(tmp_path: Path) -> None:
    from fertrain.data.clip_dataset import ClipDataset
    from fertrain.data.records import ClipRecord
    from fertrain.data.samplers import UniformSampler

    records = []
    for k in range(2):
        folder = tmp_path / f"{k:05d}"
        folder.mkdir()
        for i in range(1, 6):
            PIL.Image.fromarray(np.full((40, 40, 3), 30 * i + k, np.uint8)).save(folder / f"{i:05d}.jpg", quality=95)
        records.append(ClipRecord(path=folder, label=k + 3, video_id=f"{k:05d}", num_frames=5))
    ds = ClipDataset(records, UniformSampler(4), build_clip_transform(False, size=20), train=False)
    assert ds.read_options == {"reduce_to": 20, "decoder": "decord", "as_list": True}
    frames = readers.read_frames(records[0].path, np.array([4, 0, 0, 2]), reduce_to=20, as_list=True)
    assert isinstance(frames, list) and len(frames) == 4 and frames[1] is frames[2], "repeats share one array"
    stacked = readers.read_frames(records[0].path, np.array([4, 0, 0, 2]), reduce_to=20)
    assert np.array_equal(np.stack(frames), stacked)
    tf_list, tf_array = (build_clip_transform(True, size=16, seed=1) for _ in range(2))
    assert np.array_equal(tf_list(frames), tf_array(stacked)), "a frame list transforms like the stacked clip"
    sample = ds[0]
    assert sample["video"].shape == (4, 3, 20, 20) and isinstance(sample["label"], int)
    batch = default_collate([ds[0], ds[1]])
    assert batch["video"].shape == (2, 4, 3, 20, 20) and batch["video"].dtype == torch.uint8
    assert batch["video"].is_contiguous() and torch.equal(batch["video"][0], sample["video"])
    assert batch["label"].dtype == torch.int64 and batch["label"].tolist() == [3, 4]
    assert batch["index"].tolist() == [0, 1] and batch["video_id"] == ["00000", "00001"]


def test_datamodule_flips_training_batches_on_the_device_only(tmp_path: Path) -> None:
    """augment_on=device: the train transform loses its flip; training batches get the flip_draws flips before
    normalisation, evaluation batches none; pin_memory follows the device."""
    from types import SimpleNamespace

    from fertrain.data.datamodule import ClipDataModule, normalize_video
    from fertrain.data.samplers import UniformSampler

    source = SimpleNamespace(class_names=("a", "b"), records=lambda split: [])
    train_tf = build_clip_transform(True, size=8, hflip=0.5, seed=0)
    dm = ClipDataModule(source, UniformSampler(2), train_tf, build_clip_transform(False, size=8), batch_size=4,
                        num_workers=0, seed=5, augment_on="device")
    assert dm.device_hflip == 0.5 and all(t.p == 0.0 for t in train_tf.compose.transforms if "Flip" in type(t).__name__)
    assert dm._pin_memory() is torch.cuda.is_available()
    video = torch.from_numpy(_asymmetric_clips(16).transpose(0, 1, 4, 2, 3).copy())
    index = torch.arange(16)
    for training in (True, False):
        dm.trainer = SimpleNamespace(training=training, current_epoch=2)
        batch = dm.on_before_batch_transfer({"video": video.clone(), "index": index}, 0)
        out = dm.on_after_batch_transfer(batch, 0)["video"]
        flips = torch.from_numpy(flip_draws(index.numpy(), 0.5, 5, 2)) if training else torch.zeros(16, dtype=bool)
        assert "_hflip" not in batch and 0 < flips.sum() < 16 or not training
        assert torch.equal(out, normalize_video(hflip_clips(video, flips), dm.mean, dm.std))
    with pytest.raises(ValueError, match="data.augment_on='gpu': expected 'worker' or 'device'"):
        ClipDataModule(source, UniformSampler(2), train_tf, train_tf, augment_on="gpu")


@pytest.mark.parametrize("shape,dtype", [((4, 5, 7, 3), np.uint8), ((2, 3, 3, 1), np.uint8), ((1, 6, 4, 4), np.uint8),
                                         ((3, 4, 5, 6), np.uint8), ((2, 3, 4, 3), np.float32)])
def test_channels_first_is_the_transposed_clip(shape: tuple[int, ...], dtype: type) -> None:
    from fertrain.data.transforms import channels_first

    clip = np.random.default_rng(0).integers(0, 256, shape).astype(dtype)
    for frames in (clip, clip[:, ::-1, ::2]):  # contiguous and strided input
        out = channels_first(frames)
        assert out.dtype == frames.dtype and out.flags.c_contiguous
        assert np.array_equal(out, frames.transpose(0, 3, 1, 2))


def test_worker_samples_collate_into_contiguous_batches(tmp_path: Path) -> None:
    """The sample's video is a C-contiguous (T, C, h, w) tensor (``channels_first``) and the collate's
    shared-memory stack in a worker gives the same contiguous batch as the main process (0 workers)."""
    from torch.utils.data import DataLoader

    from fertrain.data.clip_dataset import ClipDataset
    from fertrain.data.records import ClipRecord
    from fertrain.data.samplers import UniformSampler

    folder = tmp_path / "00001"
    folder.mkdir()
    for i in range(1, 5):
        PIL.Image.fromarray(np.random.default_rng(i).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(
            folder / f"{i:05d}.jpg", quality=95)
    ds = ClipDataset([ClipRecord(path=folder, label=1, video_id="00001", num_frames=4)] * 4, UniformSampler(3),
                     build_clip_transform(False, size=16), train=False)
    assert ds[0]["video"].is_contiguous() and ds[0]["video"].shape == (3, 3, 16, 16)
    main = next(iter(DataLoader(ds, batch_size=4, num_workers=0)))["video"]
    worker = next(iter(DataLoader(ds, batch_size=4, num_workers=1)))["video"]
    assert main.is_contiguous() and worker.is_contiguous() and torch.equal(main, worker)
