"""The demo's split (conf/data/demo.yaml): interleaved chunks over the whole of both expressions, no test window
sharing a frame with a training window, balanced val and test sets; the demo composes as `python -m fertrain` runs it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hydra.utils import instantiate

from fertrain.data.datasets.demo import DemoVideo, chunk_spans, evenly_spaced
from tests.helpers import compose_config


def test_chunk_spans_interleave_merge_and_gap() -> None:
    # 0..99 in chunks of 16 dealt train, test, train, val: the last partial chunk (96..99) keeps its turn (test)
    assert chunk_spans(0, 99, 16, ("train", "test", "train", "val")) == [
        ("train", 0, 16), ("test", 16, 32), ("train", 32, 48), ("val", 48, 64), ("train", 64, 80), ("test", 80, 96),
        ("train", 96, 100)]
    # consecutive chunks of one split merge; a gap trims train spans next to another split only
    assert chunk_spans(10, 73, 16, ("train", "train", "test")) == [("train", 10, 42), ("test", 42, 58),
                                                                   ("train", 58, 74)]
    assert chunk_spans(10, 73, 16, ("train", "train", "test"), gap=3) == [("train", 10, 39), ("test", 42, 58),
                                                                          ("train", 61, 74)]
    with pytest.raises(ValueError, match="pattern"):
        chunk_spans(0, 10, 4, ("train", "holdout"))
    with pytest.raises(ValueError, match="chunk"):
        chunk_spans(0, 10, 0, ("train",))


def test_evenly_spaced_keeps_ends() -> None:
    assert evenly_spaced(list(range(10)), 4) == [0, 3, 6, 9]
    assert evenly_spaced([1, 2], 5) == [1, 2] and evenly_spaced([1, 2, 3], 1) == [2] and evenly_spaced([1], 0) == []


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoVideo:
    """The demo's dataset exactly as `python -m fertrain` builds it."""
    cfg = compose_config([], tmp_path_factory.mktemp("demo"))
    assert cfg.experiment_name == "demo" and cfg.data.name == "demo"
    return instantiate(cfg.data.datamodule.source)


def frames(records) -> set[int]:
    return {f for r in records for f in range(r.start_frame, r.start_frame + r.num_frames)}


def test_demo_test_windows_share_no_frame_with_training(demo: DemoVideo) -> None:
    train, val, test = (demo.records(s) for s in ("train", "val", "test"))
    assert not frames(test) & frames(train) and not frames(val) & frames(train) and not frames(val) & frames(test)
    # balanced: 12 test and 9 val windows per class; 75 training windows (35 sad, 40 happy)
    assert Counter(r.label for r in test) == {0: 12, 1: 12} and Counter(r.label for r in val) == {0: 9, 1: 9}
    assert Counter(r.label for r in train) == {0: 35, 1: 40}
    assert demo.available["test"] == {0: 12, 1: 12}  # nothing was dropped to balance the test set


def test_demo_test_set_covers_the_whole_of_each_expression(demo: DemoVideo) -> None:
    """Same conditions: the test chunks are spread over the crying (0..225) and the laughing (230..471), each one
    between two training chunks, instead of the last quarter of the video."""
    test_spans = {lab: [(lo, hi) for lab2, s, lo, hi in demo.spans if s == "test" and lab2 == lab] for lab in (0, 1)}
    assert test_spans[0] == [(16, 32), (80, 96), (144, 160), (208, 224)]
    assert test_spans[1] == [(246, 262), (310, 326), (374, 390), (438, 454)]
    train = frames(demo.records("train"))
    for lab, last in ((0, 225), (1, 471)):
        for lo, hi in test_spans[lab]:
            # a training frame right before, and right after unless the segment ends within a window (8 frames)
            assert lo - 1 in train and (hi in train or hi + 8 > last)
    starts = sorted(r.start_frame for r in demo.records("test"))
    assert starts[0] < 226 / 4 and starts[-1] > 230 + 3 * 242 / 4  # from the first to the last quarter


def test_box_crop_applies_the_box_then_the_transform_and_passes_the_seed() -> None:
    import numpy as np

    from fertrain.data.datasets.demo import BoxCrop

    class Recorder:
        size = 5

        def __init__(self) -> None:
            self.seed = None

        def __call__(self, frames):
            self.seen = frames
            return frames[:, :5, :5]

        def set_random_seed(self, seed: int) -> None:
            self.seed = seed

    frames = np.arange(2 * 20 * 30 * 3, dtype=np.uint8).reshape(2, 20, 30, 3)
    rec = Recorder()
    crop = BoxCrop((25, 4, 10, 8), rec)  # x 25..34 runs past the 30-px frame: clamped
    assert crop(frames).shape == (2, 5, 5, 3) and crop.size == 5
    assert np.array_equal(rec.seen, frames[:, 4:12, 25:30])
    crop.set_random_seed(7)
    assert rec.seed == 7
    with pytest.raises(ValueError, match="width, height >= 1"):
        BoxCrop((0, 0, 0, 4), rec)


def test_demo_transforms_see_the_face_box(tmp_path: Path) -> None:
    """Train and eval transforms (and so fertrain.predict, which rebuilds the eval transform) crop the same box."""
    cfg = compose_config([], tmp_path)
    for key in ("train_transform", "eval_transform"):
        t = instantiate(cfg.data.datamodule[key])
        assert t.box == (300, 10, 300, 300) and t.size == cfg.data.image_size == 64
