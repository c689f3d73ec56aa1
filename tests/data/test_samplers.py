"""Tests of fertrain.data.samplers: shapes, bounds, order, determinism, exact indices, short videos."""

from __future__ import annotations

import numpy as np
import pytest

from fertrain.data.samplers import DenseSampler, SegmentSampler, UniformSampler

SAMPLERS = {
    "segment_16x1": lambda: SegmentSampler(16),
    "segment_8x2": lambda: SegmentSampler(8, frames_per_segment=2),
    "segment_4x3_stride3": lambda: SegmentSampler(4, frames_per_segment=3, frame_stride=3),
    "uniform_8": lambda: UniformSampler(8),
    "uniform_1": lambda: UniformSampler(1),
    "dense_8": lambda: DenseSampler(8),
    "dense_4_stride4": lambda: DenseSampler(4, frame_stride=4),
}
NUM_FRAMES = [1, 2, 3, 7, 12, 16, 40, 101, 1000]


@pytest.mark.parametrize("name", SAMPLERS)
def test_shape_dtype_bounds_order(name: str) -> None:
    sampler = SAMPLERS[name]()
    rng = np.random.default_rng(0)
    for n in NUM_FRAMES:
        for train in (False, True):
            for _ in range(20 if train else 1):
                idx = sampler(n, train, rng)
                assert idx.dtype == np.int64 and idx.shape == (sampler.clip_len,), (n, train, idx)
                assert idx.min() >= 0 and idx.max() <= n - 1, (n, train, idx)
                assert np.all(np.diff(idx) >= 0), f"not in temporal order: {n=} {train=} {idx}"


@pytest.mark.parametrize("name", SAMPLERS)
def test_eval_is_deterministic_and_ignores_rng(name: str) -> None:
    sampler = SAMPLERS[name]()
    for n in NUM_FRAMES:
        a = sampler(n, False, np.random.default_rng(1))
        b = sampler(n, False, np.random.default_rng(2))
        c = sampler(n, False, None)
        assert np.array_equal(a, b) and np.array_equal(a, c), n


@pytest.mark.parametrize("name", SAMPLERS)
def test_train_reproducible_with_seed_and_varies(name: str) -> None:
    sampler = SAMPLERS[name]()
    n = 101
    draws_a = [sampler(n, True, rng) for rng in [np.random.default_rng(7)] for _ in range(10)]
    rng = np.random.default_rng(7)
    draws_b = [sampler(n, True, rng) for _ in range(10)]
    assert all(np.array_equal(a, b) for a, b in zip(draws_a, draws_b))
    distinct = {tuple(d) for d in draws_a}
    assert len(distinct) > 1, f"{name}: 10 training draws on {n} frames were all {draws_a[0]}"


def test_segment_centres_exact() -> None:
    # 40 frames in 4 segments of 10 frames: [0, 10), [10, 20), ...; centres at 5, 15, 25, 35.
    assert SegmentSampler(4)(40, False).tolist() == [5, 15, 25, 35]
    # snippet of 3 frames with stride 2 spans 5 frames -> 25 - 5 + 1 = 21 valid starts, 2 segments of 10.5;
    # centres floor(5.25) = 5 and floor(15.75) = 15, then +0, +2, +4.
    assert SegmentSampler(2, frames_per_segment=3, frame_stride=2)(25, False).tolist() == [5, 7, 9, 15, 17, 19]


def test_segment_train_stays_inside_its_segment_and_covers_it() -> None:
    sampler = SegmentSampler(4)
    rng = np.random.default_rng(0)
    draws = np.stack([sampler(40, True, rng) for _ in range(400)])  # (400, 4)
    for k in range(4):
        assert draws[:, k].min() >= 10 * k and draws[:, k].max() <= 10 * k + 9
        assert set(draws[:, k].tolist()) == set(range(10 * k, 10 * k + 10)), "offsets do not cover the segment"


def test_segment_snippets_are_consecutive_frames() -> None:
    idx = SegmentSampler(8, frames_per_segment=2)(160, True, np.random.default_rng(3)).reshape(8, 2)
    assert np.all(idx[:, 1] - idx[:, 0] == 1)
    idx = SegmentSampler(4, frames_per_segment=4, frame_stride=3)(400, False).reshape(4, 4)
    assert np.all(np.diff(idx, axis=1) == 3)


def test_uniform_grid_exact() -> None:
    # 9 frames, 5 samples: spacing (9 - 1) / (5 - 1) = 2 frames, first and last frame included.
    assert UniformSampler(5)(9, False).tolist() == [0, 2, 4, 6, 8]
    # a single frame is the centre of the segment: (11 - 1) / 2 = 5
    assert UniformSampler(1)(11, False).tolist() == [5]


def test_uniform_train_jitter_within_half_interval() -> None:
    sampler, n, t = UniformSampler(5), 101, 5
    step = (n - 1) / (t - 1)  # 25 frames between grid points
    rng = np.random.default_rng(0)
    draws = np.stack([sampler(n, True, rng) for _ in range(300)])
    grid = np.arange(t) * step
    assert np.all(np.abs(draws - grid) <= step / 2 + 0.5)  # jitter of +-d/2, then rounding
    assert len(set(draws[:, 2].tolist())) > 10, "the middle frame never moves"


def test_dense_window_exact_and_random_start() -> None:
    # 4 frames, stride 3: span 10 frames; 20 frames leave 10 free frames -> centred start 5.
    assert DenseSampler(4, frame_stride=3)(20, False).tolist() == [5, 8, 11, 14]
    rng = np.random.default_rng(0)
    starts = {int(DenseSampler(4, frame_stride=3)(20, True, rng)[0]) for _ in range(300)}
    assert starts == set(range(11)), "training start must cover 0..N-span"


def test_single_frame_video() -> None:
    for name, make in SAMPLERS.items():
        sampler = make()
        for train in (False, True):
            idx = sampler(1, train, np.random.default_rng(0))
            assert idx.tolist() == [0] * sampler.clip_len, name


def test_short_videos_padding_rules() -> None:
    # fewer frames than clip_len: dense repeats the last frame ...
    assert DenseSampler(4)(2, False).tolist() == [0, 1, 1, 1]
    # ... uniform repeats frames evenly (positions 0, 1/3, 2/3, 1 rounded half up) ...
    assert UniformSampler(4)(2, False).tolist() == [0, 0, 1, 1]
    # ... segment: 8 segments on 3 frames -> segment length 3/8; centres floor((k + 0.5) * 3 / 8)
    expected = [int(np.floor((k + 0.5) * 3 / 8)) for k in range(8)]
    assert SegmentSampler(8)(3, False).tolist() == expected
    assert set(expected) == {0, 1, 2}  # every available frame is used, none dropped


def test_stride_beyond_the_end_is_clamped() -> None:
    # dense window of span (4 - 1) * 10 + 1 = 31 frames on 15 frames: 0, 10, then the last frame (14) twice
    for train in (False, True):
        assert DenseSampler(4, frame_stride=10)(15, train, np.random.default_rng(0)).tolist() == [0, 10, 14, 14]
    # snippets of span 31 on 20 frames: both snippets start at 0 -> 0, 10, 19, 19 each, merged in order
    assert SegmentSampler(2, 4, frame_stride=10)(20, False).tolist() == [0, 0, 10, 10, 19, 19, 19, 19]


def test_overlapping_snippets_stay_in_temporal_order() -> None:
    # 8x2 on 12 frames (DFEW's shortest clip): 11 starts in segments of 1.375 frames; centres
    # floor(0.6875 + 1.375 k) = 0, 2, 3, 4, 6, 7, 8, 10; snippets (s, s + 1) overlap, output is sorted.
    starts = [int(np.floor((k + 0.5) * 11 / 8)) for k in range(8)]
    expected = sorted(s + j for s in starts for j in (0, 1))
    assert SegmentSampler(8, 2)(12, False).tolist() == expected


@pytest.mark.parametrize("bad", [0, -3])
def test_empty_video_raises(bad: int) -> None:
    for make in SAMPLERS.values():
        with pytest.raises(ValueError, match="num_frames must be >= 1"):
            make()(bad, False, None)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="num_segments"):
        SegmentSampler(0)
    with pytest.raises(ValueError, match="frame_stride"):
        DenseSampler(4, frame_stride=0)
    with pytest.raises(ValueError, match="clip_len"):
        UniformSampler(2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rng"):
        SegmentSampler(4)(40, True, None)
    with pytest.raises(ValueError, match="num_frames must be an integer"):
        DenseSampler(4)(10.0, False, None)  # type: ignore[arg-type]
