"""Tests of fertrain.data.samplers.CEFLNetSampler: exact test positions, training draws, short-video padding."""

from __future__ import annotations

import numpy as np
import pytest

from fertrain.data.samplers import CEFLNetSampler

NUM_FRAMES = [1, 2, 12, 40, 74, 75, 76, 89, 90, 100, 104, 105, 300]


def test_defaults_are_the_papers() -> None:
    s = CEFLNetSampler()
    assert (s.num_clips, s.clip_span, s.clip_stride, s.frames_per_clip) == (7, 15, 10, 5)
    assert (s.window, s.train_start_max, s.test_start, s.clip_len) == (75, 29, 15, 35)


@pytest.mark.parametrize("n", NUM_FRAMES)
def test_shape_dtype_bounds_and_order_within_clips(n: int) -> None:
    s = CEFLNetSampler()
    rng = np.random.default_rng(0)
    for train in (False, True):
        for _ in range(20 if train else 1):
            idx = s(n, train, rng)
            assert idx.dtype == np.int64 and idx.shape == (35,), (n, train)
            assert idx.min() >= 0 and idx.max() <= n - 1, (n, train, idx)
            clips = idx.reshape(7, 5)  # clip-major
            assert np.all(np.diff(clips, axis=1) >= 0), f"a clip is out of temporal order: {n=} {train=}\n{clips}"
            assert np.all(np.diff(clips[:, 0]) >= 0), f"clips out of order: {n=} {train=}\n{clips}"


def test_test_positions_exact_on_100_frames() -> None:
    # window start 15 (100 >= 15 + 75); clip c starts 10 c later; every 15 // 5 = 3rd frame of the clip.
    expected = [15 + 10 * c + 3 * j for c in range(7) for j in range(5)]
    assert CEFLNetSampler()(100, False).tolist() == expected


def test_test_start_moves_earlier_only_as_needed() -> None:
    # 80 frames: the window must end by frame 79 -> start min(15, 80 - 75) = 5.
    assert CEFLNetSampler()(80, False).tolist() == [5 + 10 * c + 3 * j for c in range(7) for j in range(5)]
    # 75 frames: start 0; 90 frames: the official start 15 fits exactly (last frame read: 15 + 60 + 12 = 87).
    assert CEFLNetSampler()(75, False)[0] == 0
    assert CEFLNetSampler()(90, False).tolist() == CEFLNetSampler()(1000, False).tolist()


def test_eval_is_deterministic_and_ignores_rng() -> None:
    s = CEFLNetSampler()
    for n in NUM_FRAMES:
        assert np.array_equal(s(n, False, np.random.default_rng(1)), s(n, False, None)), n


def test_train_frames_distinct_inside_the_clip_span_and_start_range() -> None:
    s = CEFLNetSampler()
    rng = np.random.default_rng(0)
    n = 300  # long enough for every start in [0, 29]
    first_frames = set()
    for _ in range(400):
        clips = s(n, True, rng).reshape(7, 5)
        for c in range(7):
            assert len(set(clips[c].tolist())) == 5, f"clip {c} repeats a frame: {clips[c]}"
        # all clips share one window start: clip c's frames lie in [start + 10 c, start + 10 c + 15)
        lo = max(clips[c].max() - 10 * c - 14 for c in range(7))
        hi = min(clips[c].min() - 10 * c for c in range(7))
        assert max(lo, 0) <= min(hi, 29), f"no window start in [0, 29] fits the draws:\n{clips}"
        first_frames.add(int(clips[0, 0]))
    assert len(first_frames) > 20, "the training window start barely moves"


def test_train_offsets_cover_the_clip_span() -> None:
    # with the start fixed (video exactly one window long) the offsets of a clip cover all 15 positions.
    s = CEFLNetSampler()
    rng = np.random.default_rng(1)
    draws = np.stack([s(75, True, rng).reshape(7, 5) for _ in range(200)])  # (200, 7, 5)
    assert set(draws[:, 3].ravel().tolist()) == set(range(30, 45))


def test_train_reproducible_with_seed_and_varies() -> None:
    s = CEFLNetSampler()
    a = [s(120, True, np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(a[0], a[1])
    rng = np.random.default_rng(7)
    assert len({tuple(s(120, True, rng)) for _ in range(10)}) > 1


def test_short_video_is_stretched_over_the_window() -> None:
    # 12 frames (DFEW's shortest clip): window position q reads frame floor(q * 12 / 75).
    s = CEFLNetSampler()
    expected = [((10 * c + 3 * j) * 12) // 75 for c in range(7) for j in range(5)]
    idx = s(12, False)
    assert idx.tolist() == expected
    assert idx[0] == 0 and idx[-1] == 11 and set(idx.tolist()) == set(range(12)), "frames dropped or not reached"
    # training on a short video: still in bounds, in order, from the first to the last part of the video
    rng = np.random.default_rng(0)
    for _ in range(50):
        clips = s(12, True, rng).reshape(7, 5)
        assert clips[0].max() <= (14 * 12) // 75 and clips[6].min() >= (60 * 12) // 75
    assert s(1, False).tolist() == [0] * 35 and s(1, True, rng).tolist() == [0] * 35


def test_scaled_down_config_for_16_frame_clips() -> None:
    # the synthetic_ceflnet experiment: 4 clips x 3 frames, span 6, stride 3, window 15, start 0..1, test start 1
    s = CEFLNetSampler(num_clips=4, clip_span=6, clip_stride=3, frames_per_clip=3, window=15, train_start_max=1,
                       test_start=1)
    assert s.clip_len == 12
    assert s(16, False).tolist() == [1 + 3 * c + 2 * j for c in range(4) for j in range(3)]
    rng = np.random.default_rng(0)
    assert max(int(s(16, True, rng).max()) for _ in range(100)) <= 15


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="frames_per_clip"):
        CEFLNetSampler(frames_per_clip=16)
    with pytest.raises(ValueError, match="window"):
        CEFLNetSampler(window=74)
    with pytest.raises(ValueError, match="train_start_max"):
        CEFLNetSampler(train_start_max=-1)
    with pytest.raises(ValueError, match="num_clips"):
        CEFLNetSampler(num_clips=0)
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        CEFLNetSampler()(0, False)
    with pytest.raises(ValueError, match="rng"):
        CEFLNetSampler()(100, True, None)
