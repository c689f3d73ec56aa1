"""The demo's split (conf/data/demo.yaml): interleaved chunks over the whole of both expressions, no test window
sharing a frame with a training window, balanced val and test sets; the windows read the aligned faces of the face
pipeline (a frame without a face fails loudly); the demo composes as `python -m fertrain` runs it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fertrain.data.datasets.demo import DemoVideo, chunk_spans, default_demo_video, evenly_spaced
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
def demo(tmp_path_factory: pytest.TempPathFactory, demo_faces: Path) -> DemoVideo:
    """The demo's dataset exactly as `python -m fertrain` builds it (faces from the session's face cache)."""
    cfg = compose_config([f"data.cache_dir={demo_faces}"], tmp_path_factory.mktemp("demo"))
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


def test_demo_windows_read_the_aligned_faces_of_the_face_pipeline(demo: DemoVideo, demo_faces: Path) -> None:
    """Every record reads the frame array of the cached faces (80 x 80 px, frame indices as in the video), and
    every frame of every window has a face."""
    report = demo.face_report
    assert report["frames"] == report["frames_with_face"] == 472 and report["no_face_spans"] == []
    assert report["options"]["size"] == 80 and report["options"]["align"] == "similarity"
    array = Path(report["array"])
    assert array.parent == demo_faces and array.name.startswith("WolfgangLanger_Pexels-faces-")
    assert {r.path for s in ("train", "val", "test") for r in demo.records(s)} == {array}
    frames = np.load(array, mmap_mode="r")
    assert frames.shape == (472, 80, 80, 3) and frames.dtype == np.uint8
    assert min(frames[i].std() for i in range(0, 472, 25)) > 10  # a face in each, not a blank frame


def test_demo_transforms_and_predict_see_the_faces_training_saw(tmp_path: Path, demo: DemoVideo) -> None:
    """Train and eval transforms work on the aligned face (no box), and fertrain.predict, which rebuilds the eval
    transform and the face options from the checkpoint's config, extracts the same faces."""
    from fertrain.predict import face_plan
    from fertrain.preprocess import FaceOptions

    cfg = compose_config([], tmp_path)
    assert cfg.data.cache_dir == str(tmp_path / "cache" / "faces")  # under paths.cache_dir
    for key, train in (("train_transform", True), ("eval_transform", False)):
        t = instantiate(cfg.data.datamodule[key])
        out = t(np.zeros((4, 80, 80, 3), dtype=np.uint8))
        assert out.shape == (4, 64, 64, 3) and t.size == cfg.data.image_size == 64
    options, why = face_plan(OmegaConf.to_container(cfg.data, resolve=True))
    assert options == FaceOptions.from_dict(demo.face_report["options"]) and "face crops" in why


def _faces_without(faces, frames: slice | None = None, no_face: slice | None = None):
    """A copy of ``faces`` (a FaceVideo) cut to ``frames`` and without a face in ``no_face``."""
    import dataclasses

    track = faces.track
    arrays = {k: getattr(track, k)[frames or slice(None)].copy() for k in
              ("boxes", "landmarks", "scores", "detected", "has_face", "raw_detected", "faces_in_frame")}
    if no_face is not None:
        arrays["has_face"][no_face] = False
    return dataclasses.replace(faces, frames=faces.frames[frames or slice(None)],
                               track=dataclasses.replace(track, **arrays))


def test_a_window_with_a_frame_without_a_face_fails_and_is_counted(tmp_path: Path, demo_faces: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No silent use of a no-face frame: the windows that hold one are counted per split and the spans named; a
    window past the last decoded frame fails the same way."""
    import fertrain.preprocess
    from fertrain.data.records import DatasetError
    from fertrain.preprocess import extract_faces

    real = extract_faces(default_demo_video(), {"size": 80}, cache_dir=demo_faces)  # the session's cache
    fake = {"faces": None}
    monkeypatch.setattr(fertrain.preprocess, "extract_faces", lambda *a, **k: fake["faces"])
    kwargs = dict(window=8, chunk=16, eval_stride=4, train_stride=2, balance_eval=True, faces={"size": 80},
                  cache_dir=tmp_path)
    # no face in frames 100..109: they are in the 5 train windows 96..103, 98..105, ..., 104..111
    fake["faces"] = _faces_without(real, no_face=slice(100, 110))
    with pytest.raises(DatasetError) as err:
        DemoVideo(**kwargs)
    msg = str(err.value)
    assert "no-face spans [[100, 109]]" in msg and "train 5 of 75 (first at frame 96)" in msg, msg
    assert "): train 5 of 75 (first at frame 96). A frame without a face is no face sample: shorten" in msg  # only
    # the last 12 annotated frames were not decoded: the 5 windows of the last train span 454..469 run past 459
    fake["faces"] = _faces_without(real, frames=slice(0, 460))
    with pytest.raises(DatasetError, match=r"\(460 decoded frames; no-face spans \[\], 0-based inclusive\): "
                                           r"train 5 of 75 \(first at frame 454\)\."):
        DemoVideo(**kwargs)
    with pytest.raises(ValueError, match="cache_dir"):
        DemoVideo(faces={"size": 80})
