"""CAS(ME)^2 and SAMM-LV parsers on miniature workbooks, their policies and errors; windows, LOSO folds,
synthetic_spotting, pooled counts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fertrain.data.datasets.casme2 import WORKBOOK, CASME2LongVideos, make_miniature_casme2, write_casme2_workbook
from fertrain.data.datasets.sammlv import SAMMLongVideos, make_miniature_sammlv, write_sammlv_workbook
from fertrain.data.datasets.synthetic_spotting import SyntheticSpotting
from fertrain.data.records import DatasetError
from fertrain.data.spotting_data import SpottingDataModule, SpottingWindowDataset, WindowSampler
from fertrain.data.transforms import build_clip_transform
from fertrain.spotting.intervals import Interval
from fertrain.tasks.spotting import pool_counts


@pytest.fixture(scope="module")
def casme2_root(tmp_path_factory) -> Path:
    return make_miniature_casme2(tmp_path_factory.mktemp("casme2"), num_frames=40, size=16)


@pytest.fixture(scope="module")
def samm_root(tmp_path_factory) -> Path:
    return make_miniature_sammlv(tmp_path_factory.mktemp("samm"), num_frames=48, size=16)


def _by_id(videos) -> dict:
    return {v.video_id: v for v in videos}


# ------------------------------------------------------------------------------------------ CAS(ME)^2
def test_casme2_rows_and_zero_based_frames(casme2_root: Path) -> None:
    ds = CASME2LongVideos(casme2_root)
    videos = _by_id(ds.videos())
    assert ds.stats["rows"] == 9 and ds.stats["offset_zero_to_apex"] == 3
    assert sorted(videos) == ["15_0101", "15_0401", "15_0502", "16_0101", "16_0401", "19_0101", "19_0401"]
    v = videos["16_0101"]
    assert v.subject == "s16" and v.num_frames == 40 and v.fps == 30.0
    assert v.path.name == "16_0101disgustingteeth"
    # sheet rows (1-based): macro 5..24, micro 30..36
    assert v.intervals == (Interval(4, 23, "macro"), Interval(29, 35, "micro"))
    # offset 0 -> apex 20 (1-based) -> 19
    assert videos["19_0401"].intervals == (Interval(9, 19, "macro"),)
    assert videos["15_0502"].intervals == ()  # unannotated folder, still searched
    assert "15_0502" not in _by_id(CASME2LongVideos(casme2_root, include_unannotated=False).videos())


def test_casme2_offset_zero_policies(casme2_root: Path) -> None:
    dropped = CASME2LongVideos(casme2_root, offset_zero="drop")
    assert sum(len(v.intervals) for v in dropped.videos()) == 6 and dropped.stats["offset_zero_dropped"] == 3
    with pytest.raises(DatasetError, match=r"row 3: offset 0"):
        CASME2LongVideos(casme2_root, offset_zero="error").videos()


def _casme2_copy(src: Path, dst: Path, rows) -> Path:
    shutil.copytree(src / "rawpic", dst / "rawpic")
    write_casme2_workbook(dst / WORKBOOK, rows, [(15, "casme_015", 1), (16, "casme_016", 2), (19, "casme_019", 3)],
                          [("0101", "disgust1"), ("0401", "anger1")])
    return dst


GOOD = (1, "disgust1_1", 5, 12, 24, "4", "disgust", "macro-expression", "disgust")


@pytest.mark.parametrize("bad, message", [
    ((1, "disgust1_2", "five", 12, 24, "4", "x", "macro-expression", "x"), r"row 2: column C \(onset\).*'five'"),
    ((1, "disgust1_2", 30, 31, 20, "4", "x", "micro-expression", "x"), r"row 2: offset 20 < onset 30"),
    ((1, "disgust1_2", 30, 31, 36, "4", "x", "blink", "x"), r"row 2: type 'blink'"),
    ((7, "disgust1_2", 30, 31, 36, "4", "x", "micro-expression", "x"), r"row 2: subject 7"),
    ((1, "fear9_1", 30, 31, 36, "4", "x", "micro-expression", "x"), r"row 2: clip 'fear9_1'"),
])
def test_casme2_malformed_rows_name_workbook_sheet_row(casme2_root: Path, tmp_path: Path, bad, message) -> None:
    root = _casme2_copy(casme2_root, tmp_path, [GOOD, bad])
    with pytest.raises(DatasetError, match=message) as e:
        CASME2LongVideos(root).videos()
    assert WORKBOOK in str(e.value) and "CASFEcode_final" in str(e.value)


def test_casme2_missing_frame_folder_and_workbook(casme2_root: Path, tmp_path: Path) -> None:
    root = _casme2_copy(casme2_root, tmp_path, [GOOD])
    shutil.rmtree(root / "rawpic" / "s15" / "15_0101disgustingteeth")
    with pytest.raises(DatasetError, match=r"row 1: frame folder .*s15/15_0101\* not found"):
        CASME2LongVideos(root).videos()
    with pytest.raises(DatasetError, match="annotation workbook .* not found"):
        CASME2LongVideos(tmp_path, workbook="nope.xlsx").videos()


# ---------------------------------------------------------------------------------------------- SAMM-LV
def test_sammlv_rows_policies_and_zero_based_frames(samm_root: Path) -> None:
    ds = SAMMLongVideos(samm_root)
    videos = _by_id(ds.videos())
    assert ds.workbook.name == "SAMM_LongVideos_V3_Release.xlsx"
    assert ds.stats["rows"] == 9 and ds.stats["apex_missing"] == 3 and ds.stats["onset_zero_to_apex"] == 3
    assert sorted(videos) == ["006_1", "006_2", "006_3", "007_1", "007_2", "008_1", "008_2"]
    v = videos["007_1"]
    assert v.subject == "007" and v.num_frames == 48 and v.fps == 200.0
    # macro 5..30 (1-based); micro onset 40.6 rounded to 41, offset 47
    assert v.intervals == (Interval(4, 29, "macro"), Interval(40, 46, "micro"))
    assert videos["006_2"].intervals == (Interval(11, 29, "macro"),)  # onset 0 -> apex 12 -> 11
    assert videos["006_3"].intervals == ()
    floor = _by_id(SAMMLongVideos(samm_root, fractional="floor").videos())
    assert floor["007_1"].intervals[1] == Interval(39, 46, "micro")
    with pytest.raises(DatasetError, match=r"row 7: column Onset: fractional frame number 40.6"):
        SAMMLongVideos(samm_root, fractional="error").videos()  # 4 legend rows + header: first data row is 6
    dropped = SAMMLongVideos(samm_root, onset_zero="drop")
    assert sum(len(v.intervals) for v in dropped.videos()) == 6 and dropped.stats["onset_zero_dropped"] == 3


@pytest.mark.parametrize("bad, message", [
    ((6, "006_1_2", "1", "x", 15, 30, 1, "Macro", "", ""), r"column Onset: expected a frame number, found 'x'"),
    ((6, "006_1_2", "1", 30, 31, 10, 1, "Macro", "", ""), r"Offset 10 < Onset 30"),
    ((6, "006_1_2", "1", 5, 6, 10, 1, "Mini", "", ""), r"Type 'Mini'"),
    ((6, "006_1_2", "1", 0, -1, 10, 1, "Macro", "", ""), r"Onset 0 .* Apex -1"),
])
def test_sammlv_malformed_rows(samm_root: Path, tmp_path: Path, bad, message) -> None:
    shutil.copytree(samm_root / "SAMM_longvideos", tmp_path / "SAMM_longvideos")
    write_sammlv_workbook(tmp_path / "SAMM_LongVideos_V1_Release.xlsx",
                          [(6, "006_1_1", "1", 5, 15, 30, 26, "Macro", "", ""), bad])
    with pytest.raises(DatasetError, match=message) as e:
        SAMMLongVideos(tmp_path).videos()
    assert "SAMM_LongVideos_V1_Release.xlsx, sheet 'FACS_Movement_Only', row 7" in str(e.value)


def test_sammlv_missing_frame_folder(samm_root: Path, tmp_path: Path) -> None:
    write_sammlv_workbook(tmp_path / "SAMM_LongVideos_V2_Release.xlsx", [(9, "009_1_1", "1", 5, 15, 30, 26, "Macro")])
    with pytest.raises(DatasetError, match=r"row 6: frame folder .*009_1 not found"):
        SAMMLongVideos(tmp_path).videos()


# ------------------------------------------------------------------------------------- windows and folds
def test_window_sampler_covers_every_frame() -> None:
    s = WindowSampler(window=8, stride=3, frame_step=2)
    assert s.num_sampled(25) == 13
    starts = s.starts(25)
    assert starts == [0, 3, 5]  # last window ends on the last sampled frame (12)
    covered = set()
    for a in starts:
        pos, valid = s.positions(a, 25)
        covered |= set(pos[valid].tolist())
    assert covered == set(range(13))
    pos, valid = s.positions(0, 7)  # 4 sampled frames: padded by repeating the last one
    assert pos.tolist() == [0, 1, 2, 3, 3, 3, 3, 3] and valid.tolist() == [True] * 4 + [False] * 4
    assert s.source_frames(pos, 7).tolist() == [0, 2, 4, 6, 6, 6, 6, 6]


def _datamodule(root: Path, **kw) -> SpottingDataModule:
    return SpottingDataModule(CASME2LongVideos(root), WindowSampler(window=8, stride=4),
                              build_clip_transform(True, size=16), build_clip_transform(False, size=16),
                              num_workers=0, batch_size=2, **kw)


def test_loso_folds(casme2_root: Path, samm_root: Path) -> None:
    dm = _datamodule(casme2_root)
    assert dm.folds() == ["s15", "s16", "s19"]
    with pytest.raises(DatasetError, match="LOSO needs a test subject"):
        dm.split_videos("test")
    dm = _datamodule(casme2_root, test_subject="s16", val_subjects=1)
    assert dm.folds() is None
    test, val, train = (dm.split_videos(s) for s in ("test", "val", "train"))
    assert {v.subject for v in test} == {"s16"} and {v.subject for v in val} == {"s19"}
    assert {v.subject for v in train} == {"s15"}
    assert len(test) + len(val) + len(train) == len(dm.videos) == 7
    with pytest.raises(DatasetError, match="test subject 's99'"):
        _datamodule(casme2_root, test_subject="s99").split_videos("test")
    samm = SpottingDataModule(SAMMLongVideos(samm_root), WindowSampler(8, 4), None, None, test_subject=7)
    assert {v.video_id for v in samm.split_videos("test")} == {"007_1", "007_2"}  # 7 matches "007"
    assert samm.split_videos("val") == []


def test_window_dataset_items(casme2_root: Path) -> None:
    dm = _datamodule(casme2_root, test_subject="s15", positive_repeat=3)
    dm.setup("fit")
    train = dm.datasets["train"]
    assert len(train) > sum(len(WindowSampler(8, 4).starts(v.num_frames)) for v in train.videos)  # repeats
    item = dm.datasets["train"][0]
    assert item["video"].shape == (8, 3, 16, 16) and item["labels"].shape == (8,)
    dm.setup("test")
    test = dm.datasets["test"]
    v = test.videos[0]  # 15_0101: macro 4..23, micro 29..35
    labels = [int(test[i]["labels"][j]) for i in range(len(test)) if test.items[i][0] == 0
              for j in range(8) if int(test[i]["positions"][j]) in (3, 4, 23, 24, 29, 36)]
    assert v.video_id == "15_0101" and set(labels) == {0, 1, 2}
    assert v.frame_labels()[[3, 4, 23, 24, 29, 35, 36]].tolist() == [0, 1, 1, 0, 2, 2, 0]
    counts = dm.frame_label_counts()
    assert counts.sum() == sum(x.num_frames for x in dm.split_videos("train")) and counts[1] > counts[2] > 0


# ------------------------------------------------------------------------------------------- synthetic
def test_synthetic_spotting_is_deterministic_and_cached(tmp_path: Path) -> None:
    kw = dict(num_subjects=3, videos_per_subject=1, num_frames=150, size=48, val_subjects=1, test_subjects=1)
    a = SyntheticSpotting(tmp_path / "a", **kw)
    b = SyntheticSpotting(tmp_path / "b", **kw)
    again = SyntheticSpotting(tmp_path / "a", **kw)
    assert a.generated and b.generated and not again.generated
    assert [v.intervals for v in a.videos()] == [v.intervals for v in b.videos()]
    assert np.array_equal(np.load(a.videos()[0].path), np.load(b.videos()[0].path))
    assert [v.split for v in a.videos()] == ["train", "val", "test"]
    for v in a.videos():
        frames = np.load(v.path)
        assert frames.shape == (150, 48, 48, 3) and frames.dtype == np.uint8
        kinds = {iv.kind for iv in v.intervals}
        assert kinds == {"macro", "micro"}
        ends = [(iv.onset, iv.offset) for iv in v.intervals]
        assert all(b0 > a1 for (_, a1), (b0, _) in zip(ends, ends[1:]))  # disjoint, sorted
        # pixels change inside a movement: compare its middle frame with the frame before it
        iv = next(iv for iv in v.intervals if iv.kind == "macro")
        mid = (iv.onset + iv.offset) // 2
        assert np.abs(frames[mid].astype(int) - frames[iv.onset - 1]).max() > 100
    other = SyntheticSpotting(tmp_path / "a", **{**kw, "num_frames": 160})
    assert other.cache_dir != a.cache_dir


def test_pool_counts_sums_before_f1() -> None:
    fold_a = {"macro/tp": 1.0, "macro/fp": 0.0, "macro/fn": 0.0, "micro/tp": 0.0, "micro/fp": 3.0, "micro/fn": 1.0}
    fold_b = {"macro/tp": 0.0, "macro/fp": 1.0, "macro/fn": 3.0, "micro/tp": 1.0, "micro/fp": 0.0, "micro/fn": 0.0}
    out = pool_counts([fold_a, fold_b])
    assert (out["macro/tp"], out["macro/fp"], out["macro/fn"]) == (1.0, 1.0, 3.0)
    assert (out["overall/tp"], out["overall/fp"], out["overall/fn"]) == (2.0, 4.0, 4.0)
    assert out["overall/f1"] == pytest.approx(2 * 2 / (2 * 2 + 4 + 4))  # 2TP / (2TP + FP + FN)
