"""Tests of the dataset protocols DFEW (real split files + miniature tree) and DemoVideo (packaged asset)."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pytest

from fertrain.data.datasets.demo import DemoVideo, default_demo_annotations, default_demo_video
from fertrain.data.datasets.dfew import DFEW, make_miniature_dfew
from fertrain.data.records import DatasetError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
REAL_DFEW = SHARED / "data" / "dfew"


def real_dfew(**kwargs) -> DFEW:
    if not (REAL_DFEW / "EmoLabel_DataSplit").is_dir():
        pytest.skip(f"real DFEW split files not found at {REAL_DFEW} (../shared is absent on this machine)")
    return DFEW(REAL_DFEW, check_media=False, frame_counts=REAL_DFEW / "frame_counts.csv", **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# DFEW, real official split files (no media)


@pytest.mark.parametrize("fold, n_train, n_test",
                         [(1, 9356, 2341), (2, 9356, 2341), (3, 9357, 2340), (4, 9358, 2339), (5, 9361, 2336)])
def test_dfew_real_fold_sizes(fold, n_train, n_test):
    ds = real_dfew(fold=fold)
    assert len(ds.records("train")) == n_train
    assert len(ds.records("test")) == n_test
    assert ds.records("val") == ds.records("test")  # DFEW has no val set: papers select on the test fold
    assert not {r.video_id for r in ds.records("train")} & {r.video_id for r in ds.records("test")}


def test_dfew_real_test_folds_cover_every_clip_once_with_official_class_totals():
    test_ids: list[str] = []
    labels: Counter = Counter()
    for fold in range(1, 6):
        ds = real_dfew(fold=fold)
        recs = ds.records("test")
        test_ids += [r.video_id for r in recs]
        labels.update(ds.class_names[r.label] for r in recs)
    assert len(test_ids) == 11697 and len(set(test_ids)) == 11697
    expected = {"Happy": 2445, "Sad": 1894, "Neutral": 2669, "Angry": 2173, "Surprise": 1469, "Disgust": 145,
                "Fear": 902}
    assert dict(labels) == expected


def test_dfew_real_records_follow_the_official_files():
    ds = real_dfew(fold=1)
    recs = {r.video_id: r for r in ds.records("train")}
    with open(REAL_DFEW / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv") as f:
        rows = list(csv.DictReader(f))
    official = {1: "Happy", 2: "Sad", 3: "Neutral", 4: "Angry", 5: "Surprise", 6: "Disgust", 7: "Fear"}
    with open(REAL_DFEW / "frame_counts.csv") as f:
        counts = {int(r["video_name"]): int(r["num_frames"]) for r in csv.DictReader(f)}
    for row in rows[:50]:
        rec = recs[f"{int(row['video_name']):05d}"]
        assert ds.class_names[rec.label] == official[int(row["label"])]
        assert rec.num_frames == counts[int(row["video_name"])]
        assert rec.path == REAL_DFEW / "Clip" / "clip_224x224" / rec.video_id
        assert rec.start_frame == 0


def test_dfew_val_from_train_is_stratified_disjoint_and_deterministic():
    full = real_dfew(fold=2)
    a, b = real_dfew(fold=2, val_from_train=0.1, seed=3), real_dfew(fold=2, val_from_train=0.1, seed=3)
    other = real_dfew(fold=2, val_from_train=0.1, seed=4)
    train, val = a.records("train"), a.records("val")
    assert [r.video_id for r in val] == [r.video_id for r in b.records("val")]
    assert {r.video_id for r in val} != {r.video_id for r in other.records("val")}
    assert not {r.video_id for r in train} & {r.video_id for r in val}
    assert {r.video_id for r in train} | {r.video_id for r in val} == {r.video_id for r in full.records("train")}
    assert a.records("test") == full.records("test")
    per_class = Counter(r.label for r in full.records("train"))
    val_class = Counter(r.label for r in val)
    for c, n in per_class.items():
        assert abs(val_class[c] - 0.1 * n) <= 0.5


# ----------------------------------------------------------------------------------------------------------------
# DFEW, miniature tree with media


def test_miniature_dfew_loads_every_fold(tmp_path):
    root = make_miniature_dfew(tmp_path / "dfew", clips_per_class=3, num_frames=8, size=32)
    all_test: list[str] = []
    for fold in range(1, 6):
        ds = DFEW(root, fold=fold)
        train, test = ds.records("train"), ds.records("test")
        assert len(train) + len(test) == 21
        assert not {r.video_id for r in train} & {r.video_id for r in test}
        for r in train + test:
            assert r.path.is_dir() and r.num_frames == 8 == len(list(r.path.glob("*.jpg")))
            assert ds.class_names[r.label] == ds.class_names[(int(r.video_id) - 1) // 3]  # class-major ids
        all_test += [r.video_id for r in test]
    assert sorted(all_test) == [f"{i:05d}" for i in range(1, 22)]  # each clip in exactly one test fold
    listed = DFEW(root, fold=1, frame_counts=root / "frame_counts.csv")
    assert listed.records("train") == DFEW(root, fold=1).records("train")


def test_miniature_dfew_frames_are_rgb_jpegs_of_the_requested_size(tmp_path):
    from PIL import Image

    root = make_miniature_dfew(tmp_path, clips_per_class=1, num_frames=2, size=40)
    first = sorted((root / "Clip" / "clip_224x224" / "00001").iterdir())[0]
    with Image.open(first) as im:
        assert im.size == (40, 40) and im.mode == "RGB"


def test_dfew_video_source_points_at_video_files(tmp_path):
    root = make_miniature_dfew(tmp_path, clips_per_class=1, num_frames=4)
    videos = root / "Clip" / "original"
    videos.mkdir(parents=True)
    for i in range(1, 8):
        (videos / f"{i:05d}.avi").write_bytes(b"")  # existence is all that is checked with frame_counts
    ds = DFEW(root, fold=1, source="videos", video_ext=".avi", frame_counts=root / "frame_counts.csv")
    recs = ds.records("train") + ds.records("test")
    assert sorted(r.path.name for r in recs) == [f"{i:05d}.avi" for i in range(1, 8)]
    assert all(r.num_frames == 4 for r in recs)


def test_dfew_missing_root_names_the_expected_files(tmp_path):
    with pytest.raises(DatasetError) as err:
        DFEW(tmp_path / "nowhere", fold=3)
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg
    assert "train(single-labeled)/set_3.csv" in msg and "test(single-labeled)/set_3.csv" in msg
    assert "EmoLabel_DataSplit" in msg and "clip_224x224" in msg  # the expected layout


def test_dfew_missing_set_csv_is_named(tmp_path):
    root = make_miniature_dfew(tmp_path, clips_per_class=1, num_frames=2, folds=(1, 2))
    DFEW(root, fold=2)
    with pytest.raises(DatasetError, match=r"missing: .*test\(single-labeled\)/set_4\.csv"):
        DFEW(root, fold=4)


def _dm(source, **kwargs):
    from fertrain.data.datamodule import ClipDataModule
    from fertrain.data.samplers import UniformSampler
    from fertrain.data.transforms import build_clip_transform

    tf = build_clip_transform(train=False, size=32)
    return ClipDataModule(source, UniformSampler(2), tf, tf, num_workers=0, **kwargs)


def test_dfew_rows_pointing_at_missing_folders_are_all_reported(tmp_path):
    root = make_miniature_dfew(tmp_path, clips_per_class=2, num_frames=2)
    for clip in ("00003", "00012"):
        shutil.rmtree(root / "Clip" / "clip_224x224" / clip)
    source = DFEW(root, fold=1)  # missing clips are samples of the unusable-sample policy, not a layout error
    with pytest.raises(DatasetError) as err:
        _dm(source).setup("fit")
    msg = str(err.value)
    assert "2 of 11 'train' samples are unusable (missing=2)" in msg
    # Clip 3 is in test fold 3 (j=2), so in train set_1; clip 12 (j=11) is in test fold 2, so in train set_1.
    assert "video_id 00003" in msg and "video_id 00012" in msg
    assert str(root / "Clip" / "clip_224x224" / "00003") in msg and str(root / "Clip" / "clip_224x224" / "00012") in msg
    assert "DFEW media folder: " in msg and "data.skip_corrupt=true" in msg


def test_dfew_wrong_media_folder_is_a_layout_error_naming_it(tmp_path):
    root = make_miniature_dfew(tmp_path, clips_per_class=1, num_frames=2)
    (root / "Clip" / "clip_224x224").rename(root / "Clip" / "frames")
    with pytest.raises(DatasetError, match=r"(?s)none of the 7 listed clips has a frame folder under "
                                           r".*clip_224x224 \(that folder does not exist; .*Clip holds \['frames'\]\)"):
        DFEW(root, fold=1)


def test_dfew_empty_frame_folder_is_unusable(tmp_path):
    root = make_miniature_dfew(tmp_path, clips_per_class=1, num_frames=2)
    for f in (root / "Clip" / "clip_224x224" / "00001").iterdir():
        f.unlink()
    (root / "Clip" / "clip_224x224" / "00001" / "._00001.jpg").write_bytes(b"\x00\x05AppleDouble")  # not a frame
    with pytest.raises(DatasetError, match=r"(?s)1 of 5 'train' samples are unusable \(empty=1\).*00001 holds no"):
        _dm(DFEW(root, fold=2)).setup("fit")


def _rewrite_csv(path: Path, line_no: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n")


def test_dfew_label_outside_1_to_7_names_file_and_line(tmp_path):
    root = make_miniature_dfew(tmp_path, clips_per_class=1, num_frames=2)
    path = root / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv"
    video_name = path.read_text().splitlines()[1].split(",")[0]
    _rewrite_csv(path, 2, f"{video_name},9")
    with pytest.raises(DatasetError, match=rf"set_1\.csv: line 2: label 9 for video_name {video_name} is outside"):
        DFEW(root, fold=1)


def test_dfew_wrong_header_names_file(tmp_path):
    root = make_miniature_dfew(tmp_path, clips_per_class=1, num_frames=2)
    path = root / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv"
    _rewrite_csv(path, 1, "clip,emotion")
    with pytest.raises(DatasetError, match=r"set_1\.csv: line 1: expected the header 'video_name,label'"):
        DFEW(root, fold=1)


def test_dfew_non_integer_cell_names_file_and_line(tmp_path):
    root = make_miniature_dfew(tmp_path, clips_per_class=1, num_frames=2)
    path = root / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_1.csv"
    _rewrite_csv(path, 3, "00002.mp4,2")
    with pytest.raises(DatasetError, match=r"set_1\.csv: line 3: expected integers"):
        DFEW(root, fold=1)


def test_dfew_clip_missing_from_frame_counts_is_named(tmp_path):
    root = make_miniature_dfew(tmp_path, clips_per_class=1, num_frames=2)
    counts = root / "frame_counts.csv"
    counts.write_text("\n".join(line for line in counts.read_text().splitlines() if not line.startswith("5,")))
    with pytest.raises(DatasetError, match=r"(?s)1 listed clips are missing from frame_counts .*video_name 5$"):
        DFEW(root, fold=1, frame_counts=counts)


@pytest.mark.parametrize("fold", [0, 6, "1"])
def test_dfew_fold_outside_1_to_5_is_rejected(tmp_path, fold):
    root = make_miniature_dfew(tmp_path, clips_per_class=1, num_frames=2)
    with pytest.raises(ValueError, match=r"fold must be an integer in 1\.\.5"):
        DFEW(root, fold=fold)


def test_dfew_unknown_split_is_rejected(tmp_path):
    ds = DFEW(make_miniature_dfew(tmp_path, clips_per_class=1, num_frames=2), fold=1)
    with pytest.raises(ValueError, match="split must be one of"):
        ds.records("validation")


# ----------------------------------------------------------------------------------------------------------------
# DemoVideo, packaged asset

# Hand-computed from annotations.csv (sad 0-225, happy 230-471) with fractions (0.6, 0.2, 0.2):
# sad n=226: 0.6n=135.6 -> 135, 0.8n=180.8 -> 180;  happy n=242: 0.6n=145.2 -> 145, 0.8n=193.6 -> 193.
SPANS = {  # split -> {label: (lo, hi)} half-open frames
    "train": {0: (0, 135), 1: (230, 375)},
    "val": {0: (135, 180), 1: (375, 423)},
    "test": {0: (180, 226), 1: (423, 472)},
}
# Windows of 32: train stride 4 -> (135-32)//4+1 = 26 sad, (145-32)//4+1 = 29 happy;
# eval stride 16 -> val (45-32)//16+1 = 1 sad, (48-32)//16+1 = 2 happy; test (46-32)//16+1 = 1, (49-32)//16+1 = 2.
COUNTS = {"train": {0: 26, 1: 29}, "val": {0: 1, 1: 2}, "test": {0: 1, 1: 2}}


def test_demo_assets_are_found_in_the_package():
    assert default_demo_video().is_file() and default_demo_video().name == "WolfgangLanger_Pexels.mp4"
    assert default_demo_annotations().is_file()


def test_demo_record_counts_match_the_hand_computed_spans():
    ds = DemoVideo()
    assert ds.class_names == ("sad", "happy")
    for split, per_class in COUNTS.items():
        assert Counter(r.label for r in ds.records(split)) == per_class


def test_demo_windows_stay_inside_their_split_span_and_segment():
    ds = DemoVideo()
    with open(default_demo_annotations()) as f:
        segments = {r["label"]: (int(r["start_frame"]), int(r["end_frame"])) for r in csv.DictReader(f)}
    for split in ("train", "val", "test"):
        for r in ds.records(split):
            lo, hi = SPANS[split][r.label]
            assert lo <= r.start_frame and r.start_frame + r.num_frames <= hi  # no window crosses a boundary
            start, end = segments[ds.class_names[r.label]]
            assert start <= r.start_frame and r.start_frame + r.num_frames - 1 <= end
            assert r.num_frames == 32 and r.fps == pytest.approx(23.976)
            assert r.video_id == f"WolfgangLanger_Pexels@{r.start_frame}" and r.path == default_demo_video()


@pytest.mark.parametrize("kwargs", [{}, {"blocks": 2, "split_fractions": (0.5, 0.25, 0.25)}])
def test_demo_split_frame_sets_are_disjoint_and_hold_both_classes(kwargs):
    ds = DemoVideo(window=16, train_stride=2, eval_stride=8, **kwargs)
    frames = {}
    for split in ("train", "val", "test"):
        recs = ds.records(split)
        assert {r.label for r in recs} == {0, 1}
        frames[split] = {f for r in recs for f in range(r.start_frame, r.start_frame + r.num_frames)}
    assert not frames["train"] & frames["val"]
    assert not frames["train"] & frames["test"]
    assert not frames["val"] & frames["test"]


def test_demo_window_longer_than_a_span_is_an_error():
    with pytest.raises(DatasetError, match=r"split 'val' has no 47-frame window of class\(es\) \['sad'\]"):
        DemoVideo(window=47)  # sad val span 45 < 47 <= happy val span 48


def test_demo_unknown_label_and_foreign_video_are_errors(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")  # never decoded here
    ann = tmp_path / "ann.csv"
    ann.write_text("video,start_frame,end_frame,label\nclip.mp4,0,99,sad\nclip.mp4,100,199,angry\n")
    with pytest.raises(DatasetError, match=r"ann\.csv: line 3: label 'angry' is not one of"):
        DemoVideo(video=video, annotations=ann, window=8)
    ann.write_text("video,start_frame,end_frame,label\nother.mp4,0,99,sad\n")
    with pytest.raises(DatasetError, match=r"no row for video 'clip\.mp4'"):
        DemoVideo(video=video, annotations=ann, window=8)
    ann.write_text("video,start_frame,end_frame,label\nclip.mp4,0,99,sad\nclip.mp4,90,199,happy\n")
    with pytest.raises(DatasetError, match=r"overlap"):
        DemoVideo(video=video, annotations=ann, window=8)


def test_demo_custom_video_and_fractions(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    ann = tmp_path / "ann.csv"
    ann.write_text("video,start_frame,end_frame,label\nclip.mp4,0,99,happy\nclip.mp4,100,199,sad\n"
                   "other.mp4,0,5,neutral\n")
    ds = DemoVideo(video=video, annotations=ann, window=10, train_stride=10, eval_stride=10,
                   split_fractions=(0.5, 0.3, 0.2), fps=None)
    # Each 100-frame segment: train [s, s+50) -> 5 windows, val [s+50, s+80) -> 3, test [s+80, s+100) -> 2.
    assert [r.start_frame for r in ds.records("train") if r.label == 1] == [0, 10, 20, 30, 40]
    assert [r.start_frame for r in ds.records("val") if r.label == 0] == [150, 160, 170]
    assert [r.start_frame for r in ds.records("test")] == [80, 90, 180, 190]
    assert all(r.fps is None for r in ds.records("test"))


@pytest.mark.parametrize("kwargs", [{"split_fractions": (0.6, 0.3, 0.3)}, {"split_fractions": (0.5, 0.5)},
                                    {"window": 0}, {"train_stride": 0}])
def test_demo_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        DemoVideo(**kwargs)


def test_demo_missing_video_is_named(tmp_path):
    with pytest.raises(DatasetError, match=r"demo video .*absent\.mp4 does not exist"):
        DemoVideo(video=tmp_path / "absent.mp4")


def test_demo_blocks_interleave_the_splits_in_time():
    ds = DemoVideo(window=16, blocks=2, split_fractions=(0.5, 0.25, 0.25))
    sad = [(split, lo, hi) for lab, split, lo, hi in ds.spans if lab == 0]
    assert [s for s, _, _ in sad] == ["train", "val", "test", "train", "val", "test"]
    assert sad[0][1] == 0 and sad[-1][2] == 226  # the blocks tile the whole segment 0..225
    assert all(a[2] == b[1] for a, b in zip(sad, sad[1:]))  # consecutive, no gaps, no overlaps
    with pytest.raises(ValueError, match="blocks"):
        DemoVideo(blocks=0)
