"""Tests of the SyntheticMotion generator and its cached dataset (small sizes, generated in tmp_path)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from fertrain.data.datasets import synthetic_motion as sm
from fertrain.data.datasets.synthetic_motion import SyntheticMotion, make_sequence
from fertrain.data.records import DatasetError

SMALL = dict(num_train=8, num_val=4, num_test=4, num_frames=10, size=48)


def centroid_rows(mask: np.ndarray) -> np.ndarray:
    """Row centroid (pixels) of each frame's coverage mask, (T, H, W) -> (T,)."""
    rows = np.arange(mask.shape[1]) + 0.5
    return (mask.sum(axis=2) * rows).sum(axis=1) / mask.sum(axis=(1, 2))


@pytest.mark.parametrize("amplitude", ["subtle", "large"])
def test_down_sequence_is_the_up_sequence_reversed(amplitude):
    up = make_sequence(np.random.default_rng(7), amplitude, "up")
    down = make_sequence(np.random.default_rng(7), amplitude, "down")
    assert up.frames.shape == (16, 64, 64, 3) and up.frames.dtype == np.uint8
    np.testing.assert_array_equal(down.frames, up.frames[::-1])
    np.testing.assert_array_equal(down.part_mask, up.part_mask[::-1])
    assert down.amplitude_px == up.amplitude_px
    assert not np.array_equal(down.frames, up.frames)
    # Order-free statistics cannot tell them apart: identical per-pixel temporal sums (exact, integer).
    np.testing.assert_array_equal(up.frames.astype(np.int64).sum(0), down.frames.astype(np.int64).sum(0))


def test_make_sequence_is_deterministic_per_rng_state():
    a = make_sequence(np.random.default_rng(3), "large", "up")
    b = make_sequence(np.random.default_rng(3), "large", "up")
    c = make_sequence(np.random.default_rng(4), "large", "up")
    np.testing.assert_array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("amplitude, lo, hi", [("subtle", 1.0, 2.0), ("large", 6.0, 10.0)])
def test_displacement_of_the_moving_part_is_in_range(amplitude, lo, hi):
    for seed in range(12):
        for direction, sign in (("up", 1.0), ("down", -1.0)):
            seq = make_sequence(np.random.default_rng(seed), amplitude, direction)
            c = centroid_rows(seq.part_mask)
            moved_up = c[0] - c[-1]  # rows grow downwards
            assert lo <= seq.amplitude_px <= hi
            assert sign * moved_up == pytest.approx(seq.amplitude_px, abs=0.1)
            assert lo - 0.1 <= sign * moved_up <= hi + 0.1


def test_motion_is_rest_then_move_then_rest_and_only_the_mouth_changes():
    for seed in range(6):
        seq = make_sequence(np.random.default_rng(seed), "subtle", "up")
        first, last = seq.motion_frames
        m = seq.part_mask
        assert 1 <= first and last <= len(m) - 2
        for t in range(first):
            np.testing.assert_array_equal(m[t], m[0])
        for t in range(last, len(m)):
            np.testing.assert_array_equal(m[t], m[-1])
        assert not np.array_equal(m[first], m[last])
        # A 1-2 px motion is visible above the noise where the mouth coverage changed, and nothing else moves.
        diff = np.abs(seq.frames[0].astype(np.float32) - seq.frames[-1]).mean(axis=2)  # (H, W)
        changed = np.abs(m[0] - m[-1]) > 0.5
        assert changed.any() and diff[changed].mean() > 4 * sm.NOISE_STD
        still = np.abs(m[0] - m[-1]) == 0
        assert diff[still].mean() < 2 * sm.NOISE_STD


def test_make_sequence_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="amplitude"):
        make_sequence(rng, "medium", "up")
    with pytest.raises(ValueError, match="direction"):
        make_sequence(rng, "large", "left")
    with pytest.raises(ValueError, match="num_frames >= 8"):
        make_sequence(rng, "large", "up", num_frames=4)


def test_dataset_is_deterministic_balanced_and_paired(tmp_path):
    a = SyntheticMotion(tmp_path / "a", seed=0, **SMALL)
    b = SyntheticMotion(tmp_path / "b", seed=0, **SMALL)
    c = SyntheticMotion(tmp_path / "c", seed=1, **SMALL)
    assert a.class_names == ("subtle_up", "subtle_down", "large_up", "large_down")
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        recs = a.records(split)
        assert Counter(r.label for r in recs) == {k: n // 4 for k in range(4)}
        assert [r.video_id for r in recs] == [f"{split}_{i:05d}" for i in range(n)]
        arrays = [np.load(r.path) for r in recs]
        for r, x, rb, rc in zip(recs, arrays, b.records(split), c.records(split)):
            assert x.shape == (10, 48, 48, 3) and x.dtype == np.uint8 and r.num_frames == 10
            np.testing.assert_array_equal(x, np.load(rb.path))
            assert not np.array_equal(x, np.load(rc.path))
        for i in range(0, n, 2):  # pairs: (up, down) of one realisation
            assert a.class_names[recs[i].label].endswith("_up") and a.class_names[recs[i + 1].label].endswith("_down")
            assert recs[i].label + 1 == recs[i + 1].label
            np.testing.assert_array_equal(arrays[i + 1], arrays[i][::-1])
            np.testing.assert_array_equal(arrays[i].astype(np.int64).sum(0), arrays[i + 1].astype(np.int64).sum(0))
    train_ids = {np.load(r.path).tobytes() for r in a.records("train")}
    assert not train_ids & {np.load(r.path).tobytes() for r in a.records("test")}


def test_second_construction_reuses_the_cache(tmp_path, monkeypatch):
    first = SyntheticMotion(tmp_path, **SMALL)
    assert first.generated and first.cache_dir.parent == tmp_path
    stamps = {p: p.stat().st_mtime_ns for p in first.cache_dir.rglob("*")}
    calls = []
    monkeypatch.setattr(sm, "make_sequence", lambda *a, **k: calls.append(1))
    second = SyntheticMotion(tmp_path, **SMALL)
    assert not second.generated and calls == []
    assert {p: p.stat().st_mtime_ns for p in second.cache_dir.rglob("*")} == stamps
    assert second.records("train") == first.records("train")


def test_other_parameters_get_another_cache_folder(tmp_path):
    a = SyntheticMotion(tmp_path, **SMALL)
    b = SyntheticMotion(tmp_path, **{**SMALL, "num_test": 8})
    assert a.cache_dir != b.cache_dir and b.generated
    assert len(b.records("test")) == 8


def test_interrupted_generation_leaves_no_cache(tmp_path, monkeypatch):
    real = sm.make_sequence
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the user stopped it mid-way
        return real(*args, **kwargs)

    monkeypatch.setattr(sm, "make_sequence", failing)
    with pytest.raises(KeyboardInterrupt):
        SyntheticMotion(tmp_path, **SMALL)
    assert list(tmp_path.iterdir()) == []  # neither a partial cache folder nor a temporary folder
    monkeypatch.setattr(sm, "make_sequence", real)
    assert SyntheticMotion(tmp_path, **SMALL).generated


def test_damaged_cache_is_reported_not_silently_used(tmp_path):
    ds = SyntheticMotion(tmp_path, **SMALL)
    ds.records("val")[1].path.unlink()
    with pytest.raises(DatasetError, match=r"index\.csv: line \d+: .*val/00001\.npy is missing; delete"):
        SyntheticMotion(tmp_path, **SMALL)


@pytest.mark.parametrize("kwargs", [{"num_train": 6}, {"num_frames": 4}, {"size": 32}])
def test_dataset_rejects_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        SyntheticMotion(tmp_path, **{**SMALL, **kwargs})
