"""Tests of fertrain.data.transforms: one augmentation per clip, shapes, eval determinism, worker streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Dataset, get_worker_info

from fertrain.data.transforms import ClipTransform, build_clip_transform, seed_worker


def random_image(h: int = 90, w: int = 120, seed: int = 0, high: int = 256) -> np.ndarray:
    """A non-symmetric uint8 (h, w, 3) test image."""
    return np.random.default_rng(seed).integers(0, high, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("shape", [(8, 90, 120, 3), (1, 224, 224, 3), (4, 150, 60, 3)])
def test_shape_dtype_contiguous(train: bool, shape: tuple[int, int, int, int]) -> None:
    transform = build_clip_transform(train, size=56, color_jitter=0.3, rotate_limit=10, seed=0)
    frames = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = transform(frames)
    assert out.shape == (shape[0], 56, 56, 3) and out.dtype == np.uint8 and out.flags.c_contiguous


def test_identical_frames_get_identical_augmentation() -> None:
    transform = build_clip_transform(True, size=48, color_jitter=0.4, rotate_limit=15, seed=1)
    clip = np.stack([random_image()] * 6)
    outputs = [transform(clip) for _ in range(10)]
    for out in outputs:
        assert all(np.array_equal(out[0], out[t]) for t in range(1, 6))
    assert len({o.tobytes() for o in outputs}) == 10, "the clip augmentation should change between calls"


def test_brightness_offset_frames_share_crop_and_flip_geometry() -> None:
    # frames differ only by +20 grey levels per frame, no saturation: a shared crop/flip keeps the offset
    # (bilinear resizing is linear), a per-frame crop would not.
    transform = build_clip_transform(True, size=48, crop_scale=(0.3, 1.0), hflip=0.5, seed=2)
    base = random_image(high=150)
    clip = np.stack([base + 20 * t for t in range(5)]).astype(np.uint8)
    flips = set()
    for _ in range(10):
        out = transform(clip).astype(np.int16)
        for t in range(1, 5):
            assert np.abs(out[t] - out[0] - 20 * t).max() <= 1
        flips.add(out.tobytes())
    assert len(flips) == 10


def test_eval_is_deterministic_and_centre_crops() -> None:
    # left quarter red, right quarter blue, middle green: resizing the shorter side (60 -> 30) and centre
    # cropping 30 of the 60 columns keeps the green middle only.
    frame = np.zeros((60, 120, 3), np.uint8)
    frame[:, :30] = (255, 0, 0)
    frame[:, 30:90] = (0, 255, 0)
    frame[:, 90:] = (0, 0, 255)
    clip = np.stack([frame, random_image(60, 120)])
    a = build_clip_transform(False, size=30)(clip)
    b = build_clip_transform(False, size=30)(clip)
    transform = build_clip_transform(False, size=30)
    assert np.array_equal(a, b) and np.array_equal(transform(clip), transform(clip))
    assert a.shape == (2, 30, 30, 3)
    assert np.all(a[0, :, :, 1] == 255) and np.all(a[0, :, :, [0, 2]] == 0)


def test_eval_resizes_square_face_crop_whole() -> None:
    frame = np.zeros((224, 224, 3), np.uint8)
    frame[:8] = 255  # a bar at the top edge must survive (no border is cut with resize=None)
    out = build_clip_transform(False, size=112)(frame[None])
    assert out[0, :3].min() == 255 and out[0, 5:].max() == 0


def test_seeded_streams_reproducible() -> None:
    clip = np.stack([random_image()] * 2)
    make = lambda seed: build_clip_transform(True, size=32, color_jitter=0.2, seed=seed)  # noqa: E731
    t1, t2, t3 = make(5), make(5), make(6)
    run = lambda t: [t(clip).tobytes() for _ in range(5)]  # noqa: E731
    s1, s2, s3 = run(t1), run(t2), run(t3)
    assert s1 == s2 and s1 != s3
    t1.set_random_seed(5)
    assert run(t1) == s1
    # one shared generator pair for all sub-transforms (no per-transform copies of the same seed)
    gens = {id(op.random_generator) for op in t1.compose.transforms} | {id(t1.compose.random_generator)}
    assert len(gens) == 1


def test_bad_input_raises() -> None:
    transform = build_clip_transform(False, size=16)
    with pytest.raises(ValueError, match=r"uint8 \(T, H, W, C\)"):
        transform(np.zeros((4, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"uint8 \(T, H, W, C\)"):
        transform(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="hflip"):
        build_clip_transform(True, hflip=1.5)
    with pytest.raises(ValueError, match="crop_scale"):
        build_clip_transform(True, crop_scale=(0.9, 0.5))


# ------------------------------------------------------------------------------------- worker random streams
class _AugDataset(Dataset):
    """Every item is the same clip through the train transform; records which worker produced it."""

    def __init__(self, transform: ClipTransform, length: int = 6) -> None:
        self.transform = transform
        self.clip = np.stack([random_image(64, 80)] * 2)
        self.length = length
        self.rng = np.random.default_rng(0)

    def reseed(self, seed: int) -> None:
        self.transform.set_random_seed(seed)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        info = get_worker_info()
        return torch.from_numpy(self.transform(self.clip)), info.id if info is not None else -1


def _two_epochs(worker_init_fn) -> list[list[np.ndarray]]:  # noqa: ANN001
    dataset = _AugDataset(build_clip_transform(True, size=32, color_jitter=0.3))
    loader = DataLoader(
        dataset,
        batch_size=1,
        shuffle=False,
        num_workers=2,
        worker_init_fn=worker_init_fn,
        timeout=60,
        multiprocessing_context="fork",
    )
    epochs = []
    for _ in range(2):
        outputs, workers = [], []
        for clip, worker in loader:
            outputs.append(clip[0].numpy())
            workers.append(int(worker))
        assert workers == [0, 1, 0, 1, 0, 1]  # index i is served by worker i % 2
        epochs.append(outputs)
    return epochs


def test_seed_worker_gives_distinct_streams_per_worker_and_epoch() -> None:
    torch.manual_seed(0)
    epoch1, epoch2 = _two_epochs(seed_worker)
    for i in range(6):
        assert not np.array_equal(epoch1[i], epoch2[i]), f"index {i} got the same augmentation in both epochs"
    for i in (0, 2, 4):  # identical input, k-th draw of worker 0 vs k-th draw of worker 1
        assert not np.array_equal(epoch1[i], epoch1[i + 1]), f"workers 0 and 1 drew the same augmentation ({i})"


@pytest.mark.parametrize("worker_init_fn", [None, pl_worker_init_function], ids=["no_init", "lightning_init"])
def test_without_reseed_workers_and_epochs_repeat_the_same_stream(worker_init_fn) -> None:  # noqa: ANN001
    # The albumentations 2.0.8 trap that seed_worker exists for: Compose's generator is copied into every
    # forked worker, so worker 0 and worker 1 draw the same augmentations, and every epoch repeats them,
    # even with Lightning's per-worker seeding of numpy/random/torch.
    torch.manual_seed(0)
    epoch1, epoch2 = _two_epochs(worker_init_fn)
    for i in (0, 2, 4):
        assert np.array_equal(epoch1[i], epoch1[i + 1])
    for i in range(6):
        assert np.array_equal(epoch1[i], epoch2[i])
    assert not np.array_equal(epoch1[0], epoch1[2]), "the stream itself does advance within a worker"
