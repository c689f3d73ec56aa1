"""Provider layouts as users have them (issue 14): miniature trees in the exact shipped layouts, with the counts each
gives; the FERPlus split sizes of both label sources pinned from the public files in ``../shared`` (CSV parsing
only)."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fertrain.data.clip_dataset import ClipDataset
from fertrain.data.datamodule import ClipDataModule
from fertrain.data.datasets.afew import AFEW, OFFICIAL_CLASS_COUNTS, OFFICIAL_COUNTS, make_miniature_afew
from fertrain.data.datasets.affectnet import (AffectNet, make_miniature_affectnet, make_miniature_affectnet_npy,
                                              read_affectnet_csv)
from fertrain.data.datasets.dfew import DFEW, make_miniature_dfew
from fertrain.data.datasets.ferplus import FERPlus, make_miniature_ferplus
from fertrain.data.datasets.mmi import MMI, make_miniature_mmi_sessions
from fertrain.data.datasets.rafdb import RAFDB, make_miniature_rafdb
from fertrain.data.records import DatasetError
from fertrain.data.samplers import UniformSampler
from fertrain.data.transforms import build_clip_transform

TF = build_clip_transform(train=False, size=32)


# ------------------------------------------------------------------------------------------------ AFEW 7.0
def test_afew_official_counts_are_the_union_of_the_public_lists():
    # Former-DFER 773/381 + Emotion-FAN 771/381 -> 773/383 (module docstring); per class in the release's folder order
    order = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
    assert [OFFICIAL_CLASS_COUNTS["train"][c] for c in order] == [133, 74, 81, 150, 144, 117, 74]
    assert [OFFICIAL_CLASS_COUNTS["val"][c] for c in order] == [64, 40, 46, 63, 63, 61, 46]
    assert {s: sum(v.values()) for s, v in OFFICIAL_CLASS_COUNTS.items()} == OFFICIAL_COUNTS == {"train": 773,
                                                                                                 "val": 383}


@pytest.fixture(scope="module")
def afew_shipped(tmp_path_factory) -> Path:
    """Train_AFEW/Val_AFEW with capitalised class folders, the organisers' aligned faces, and the extras users find."""
    root = make_miniature_afew(tmp_path_factory.mktemp("afew") / "AFEW", clips_per_class=2, val_clips_per_class=1,
                               num_frames=4, size=32, videos=True, frames=False, aligned=True)
    (root / "Train_AFEW" / "LBPTOP").mkdir()  # other organiser folders: not classes
    (root / "Val_AFEW" / ".DS_Store").write_bytes(b"\x00")
    shutil.copy(root / "Train_AFEW" / "Sad" / "000000011.avi", root / "Val_AFEW" / "Happy" / "000000011.avi")
    return root


def test_afew_as_shipped_counts_extras_and_both_split_ids(afew_shipped):
    ds = AFEW(afew_shipped, source="videos")
    train, val = ds.records("train"), ds.records("val")
    assert (len(train), len(val)) == (14, 8) and ds.records("test") == val
    assert ds.class_counts == {"train": {c: 2 for c in OFFICIAL_CLASS_COUNTS["train"]},
                               "val": {**{c: 1 for c in OFFICIAL_CLASS_COUNTS["val"]}, "Happy": 2}}
    assert sorted(ds.extra_folders) == ["Train_AFEW/AlignedFaces_LBPTOP_Points", "Train_AFEW/LBPTOP",
                                        "Val_AFEW/AlignedFaces_LBPTOP_Points_Val"]
    assert ds.in_both_splits == ["000000011"]
    audit = ds.audit()
    assert [c["ok"] for c in audit["checks"]] == [False] * 4  # a miniature tree is not the release
    assert audit["checks"][0]["found"] == 14 and audit["checks"][0]["expected"] == 773
    assert audit["duplicates"] == ["000000011 (Train and Val)"]
    lower = afew_shipped.parent / "afew_lower"
    shutil.copytree(afew_shipped, lower)
    for name in ("Train_AFEW", "Val_AFEW"):
        (lower / name).rename(lower / name.lower())
    assert len(AFEW(lower, source="videos").records("train")) == 14  # the old lowercase names still work


def test_afew_aligned_faces_of_the_organisers(afew_shipped):
    ds = AFEW(afew_shipped, source="aligned_faces")
    train = ds.records("train")
    assert len(train) == 14 and all(r.num_frames == 4 and r.path.parent.name == "Faces" for r in train)
    assert train[0].path == afew_shipped / "Train_AFEW" / "AlignedFaces_LBPTOP_Points" / "Faces" / train[0].video_id
    assert ds.records("val")[0].path.parts[-3] == "AlignedFaces_LBPTOP_Points_Val"
    item = ClipDataset(train[:1], UniformSampler(4), TF, train=False)[0]
    assert item["video"].shape == (4, 3, 32, 32)
    # the same clip ids and labels as the videos
    videos = AFEW(afew_shipped, source="videos").records("train")
    assert [(r.video_id, r.label) for r in train] == [(r.video_id, r.label) for r in videos]


def test_afew_missing_split_names_the_setting(tmp_path):
    root = make_miniature_afew(tmp_path / "AFEW", clips_per_class=1, num_frames=2, size=16, frames=False)
    with pytest.raises(DatasetError, match=r"no folder 'Validation' \(any case\) in .*"
                                           r"data\.datamodule\.source\.val_dir='Validation'.*holds \['Train_AFEW', "
                                           r"'Val_AFEW'\]"):
        AFEW(root, source="videos", val_dir="Validation").records("train")


# ------------------------------------------------------------------------------------------------ AffectNet
def test_affectnet_current_npy_layout_7_and_8_classes_with_extras(tmp_path):
    root = make_miniature_affectnet_npy(tmp_path / "AffectNet", train_per_class=2, test_per_class=1, size=32)
    ds8 = AffectNet(root, extras=["valence", "arousal", "landmarks"])
    assert ds8.layout_used is None and len(ds8.records("train")) == 16 and ds8.layout_used == "npy"
    assert len(ds8.records("test")) == 8 and ds8.records("val") == ds8.records("test")
    assert dict(ds8.dropped["train"]) == {"None": 1, "Uncertain": 1, "No-Face": 1}
    assert Counter(r.label for r in ds8.records("train")) == Counter({c: 2 for c in range(8)})
    ds7 = AffectNet(root, num_classes=7)
    assert len(ds7.records("train")) == 14 and ds7.dropped["train"]["Contempt"] == 2
    rec = ds8.records("test")[0]
    expected_val = float(np.load(root / "val_set" / "annotations" / "0_val.npy"))  # a 0-d numpy string
    assert rec.box is None and rec.extra["valence"] == pytest.approx(expected_val)
    sample = ClipDataset([rec], UniformSampler(1), TF, train=False)[0]
    assert sample["landmarks"].shape == (68, 2) and sample["valence"].dtype.is_floating_point
    numeric = make_miniature_affectnet_npy(tmp_path / "numeric", string_codes=False, size=16)
    assert len(AffectNet(numeric).records("train")) == 16


def test_affectnet_any_pil_image_and_annotation_errors(tmp_path):
    root = make_miniature_affectnet_npy(tmp_path / "AffectNet", train_per_class=1, test_per_class=1, size=24)
    images = root / "train_set" / "images"
    Image.open(images / "0.jpg").save(images / "0.tif")  # the release has .tif and .png images too
    (images / "0.jpg").unlink()
    rec = next(r for r in AffectNet(root).records("train") if r.video_id == "0.tif")
    assert ClipDataset([rec], UniformSampler(1), TF, train=False)[0]["video"].shape == (1, 3, 32, 32)
    (root / "train_set" / "annotations" / "3_exp.npy").unlink()
    with pytest.raises(DatasetError, match=r"(?s)1 images of .*train_set/images have no expression annotation.*"
                                           r"3\.jpg -> expected .*3_exp\.npy"):
        AffectNet(root).records("train")


def test_affectnet_older_csv_layout_null_face_box(tmp_path):
    root = make_miniature_affectnet(tmp_path / "AffectNet", train_per_class=1, test_per_class=1, size=16,
                                    dropped_per_code=0)
    path = root / "Manually_Annotated_file_lists" / "training.csv"
    lines = path.read_text().splitlines()
    cells = lines[1].split(",")
    cells[1] = cells[2] = "NULL"  # as one row of the real training.csv
    path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    rows, dropped = read_affectnet_csv(path, 8, crop=True)
    assert len(rows) == 7 and dropped == Counter({"no_face_box": 1})
    rows, dropped = read_affectnet_csv(path, 8, crop=False)  # pre-cropped faces: the box is not needed
    assert len(rows) == 8 and rows[0][2] is None and not dropped
    ds = AffectNet(root, layout="csv")
    assert ds.dropped == {} and len(ds.records("train")) == 7 and ds.layout_used == "csv"


# ------------------------------------------------------------------------------------------------ FERPlus
@pytest.fixture(scope="module")
def ferplus_public(shared_dir, tmp_path_factory) -> Path:
    """The public label files in the layout users have (images absent: one placeholder PNG, check_media off)."""
    root = tmp_path_factory.mktemp("ferplus")
    src = shared_dir / "data" / "ferplus"
    shutil.copy(src / "fer2013new.csv", root / "fer2013new.csv")
    for folder in ("FER2013Train", "FER2013Valid", "FER2013Test"):
        (root / "data" / folder).mkdir(parents=True)
        shutil.copy(src / "data" / folder / "label.csv", root / "data" / folder / "label.csv")
    Image.new("L", (48, 48)).save(root / "data" / "FER2013Train" / "placeholder.png")
    return root


@pytest.fixture(scope="module")
def ferplus_sizes(ferplus_public) -> dict:
    """``{label_source: FERPlus}`` (majority labels) built from the public files."""
    out = {}
    for source in ("label_csv", "fer2013new"):
        out[source] = FERPlus(ferplus_public, images="png", check_media=False, label_source=source)
        out[source].records("train")
    return out


@pytest.mark.parametrize("source, expected", [
    ("label_csv", {"majority": (25045, 3191, 3137), "probability": 27947, "crossentropy": 27947,
                   "multi_target": 27667}),
    ("fer2013new", {"majority": (25057, 3199, 3153), "probability": 27953, "crossentropy": 27953,
                    "multi_target": 27668}),
])
def test_ferplus_split_sizes_of_each_label_source_from_the_public_files(ferplus_sizes, source, expected):
    ds = ferplus_sizes[source]
    assert tuple(len(ds.records(s)) for s in ("train", "val", "test")) == expected["majority"]
    assert ds.split_sizes() == dict(zip(("train", "val", "test"), expected["majority"]))  # the same rule, counted
    for mode in ("probability", "crossentropy", "multi_target"):
        assert ds.split_sizes(mode)["train"] == expected[mode], mode


def test_ferplus_fer2013new_duplicates_one_record_per_image_and_the_row_counts(ferplus_sizes, ferplus_public):
    ds = ferplus_sizes["fer2013new"]
    for split in ("train", "val", "test"):
        names = [r.video_id for r in ds.records(split)]
        assert len(names) == len(set(names)), split  # one record per image
    # what a row-per-record reader gives (the figures): 25,060 / 3,199 / 3,153; 27,956; 27,671
    assert ds.rows_kept == {"train": 25060, "val": 3199, "test": 3153}
    assert ds.split_sizes(rows=True) == ds.rows_kept
    assert [ds.split_sizes(m, rows=True)["train"] for m in ("probability", "multi_target")] == [27956, 27671]
    assert ferplus_sizes["label_csv"].duplicates == []
    dups = {d["name"]: d for d in ds.duplicates}
    assert sorted(dups) == ["fer0006953.png", "fer0008403.png", "fer0011785.png", "fer0033120.png"]
    assert [n for n, d in dups.items() if d["conflict"]] == ["fer0033120.png"]
    kept = dups["fer0033120.png"]
    assert kept["split"] == "test" and kept["kept"].endswith("fer2013new.csv line 33202")
    assert all(c["ok"] for c in ds.audit()["checks"]) and all(c["ok"] for c in ferplus_sizes["label_csv"].audit()
                                                               ["checks"])  # the release's rows per split
    rec = next(r for r in ds.records("test") if r.video_id == "fer0033120.png")  # the first row: 5 neutral votes
    label_csv = ferplus_sizes["label_csv"]  # label.csv holds the same votes for it
    assert rec.label == next(r for r in label_csv.records("test") if r.video_id == "fer0033120.png").label == 0


def test_ferplus_label_csv_is_the_default_and_its_format_is_checked(tmp_path):
    root = make_miniature_ferplus(tmp_path / "FERPlus", per_class=1, duplicate=True, pixels=False)
    ds = FERPlus(root)
    assert ds.label_source == "label_csv" and [len(ds.records(s)) for s in ("train", "val", "test")] == [8, 8, 8]
    assert ds.records("train")[0].origin.endswith("FER2013Train/label.csv line 1")
    dup = FERPlus(root, label_source="fer2013new")
    assert len(dup.records("test")) == 8 and [(d["name"], d["conflict"]) for d in dup.duplicates] == [
        ("fer0000024.png", True)]
    label = root / "data" / "FER2013Valid" / "label.csv"
    label.write_text("Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
                     + label.read_text())
    with pytest.raises(DatasetError, match=r"FER2013Valid/label\.csv: line 1: expected a box .*a header\? "
                                           r"label\.csv has none"):
        FERPlus(root).records("train")


# ------------------------------------------------------------------------------------------------ RAF-DB
def test_rafdb_duplicate_lines_are_counted_and_reported(tmp_path):
    root = make_miniature_rafdb(tmp_path / "basic", train_per_class=1, test_per_class=1, size=16)
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    lines = label_file.read_text().splitlines()
    label_file.write_text("\n".join(lines + [lines[0], lines[-1]]) + "\n")
    subset = tmp_path / "occlusion_list.txt"
    subset.write_text("test_0001.jpg\ntest_0002.jpg\ntest_0001.jpg\ntest_0003_aligned.jpg\n")
    ds = RAFDB(root, test_subset=subset)
    assert len(ds.records("train")) == 7 and [r.video_id for r in ds.records("test")] == ["test_0001", "test_0002",
                                                                                          "test_0003"]
    assert len(ds.duplicates) == 3
    assert ds.duplicates[0].endswith("line 15: train_00001.jpg (first at line 1)")
    assert ds.duplicates[2].endswith("occlusion_list.txt: line 3: test_0001 (first at line 1)")
    label_file.write_text("\n".join(lines + ["train_00001.jpg 7"]) + "\n")
    with pytest.raises(DatasetError, match=r"line 15: train_00001\.jpg is listed twice with different labels"):
        RAFDB(root).records("train")


# ------------------------------------------------------------------------------------------------ DFEW
def test_dfew_doubled_frame_folder_is_found(tmp_path, caplog):
    root = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=1, num_frames=3, size=16, folds=(1,))
    frames = root / "Clip" / "clip_224x224"
    inner = root / "Clip" / "tmp"
    frames.rename(inner)
    frames.mkdir()
    inner.rename(frames / "clip_224x224")  # Clip/clip_224x224/clip_224x224/<id>/
    with caplog.at_level("INFO", logger="fertrain.data.datasets.dfew"):
        ds = DFEW(root, fold=1)
    assert ds.nested and ds.records("test")[0].path == frames / "clip_224x224" / "00001"
    assert "doubled folder" in caplog.text and "doubled folder found automatically" in ds.layout_hint()
    assert ds.records("train")[0].num_frames == 3


def test_dfew_16_frame_set_and_original_videos_in_part_folders(tmp_path):
    root = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=1, num_frames=4, size=40, folds=(1,), videos=True)
    shutil.copytree(root / "Clip" / "clip_224x224", root / "Clip" / "clip_224x224_16f")
    ds = DFEW(root, fold=1, frames_dir="Clip/clip_224x224_16f")
    assert ds.records("test")[0].path == root / "Clip" / "clip_224x224_16f" / "00001"
    original = root / "Clip" / "original"
    for k, video in enumerate(sorted(original.glob("*.mp4"))):  # part_1 .. part_2, names not zero-padded
        part = original / f"part_{k % 2 + 1}"
        part.mkdir(exist_ok=True)
        video.rename(part / f"{int(video.stem)}.mp4")
    ds = DFEW(root, fold=1, source="videos", frame_counts=root / "frame_counts.csv")
    paths = {r.video_id: r.path for r in ds.records("train") + ds.records("test")}
    assert len(paths) == 7 and paths["00001"] == original / "part_1" / "1.mp4"
    assert paths["00002"] == original / "part_2" / "2.mp4" and not ds.duplicates
    shutil.copy(original / "part_1" / "1.mp4", original / "part_2" / "1.mp4")
    assert DFEW(root, fold=1, source="videos", frame_counts=root / "frame_counts.csv").duplicates == [
        f"video_name 1: {original / 'part_1' / '1.mp4'} and {original / 'part_2' / '1.mp4'}"]


# ------------------------------------------------------------------------------------------------ MMI
def test_mmi_sessions_as_downloaded(tmp_path):
    root = make_miniature_mmi_sessions(tmp_path / "MMI", subjects=10, num_frames=3, size=40, no_emotion=1,
                                       other_emotion=1)
    ds = MMI(root, fold=1, source="videos")
    train, test = ds.records("train"), ds.records("test")
    assert (len(train), len(test)) == (54, 6) and ds.layout_used == "sessions"
    assert dict(ds.dropped) == {"no_emotion": 10, "other_emotion": 10}
    assert {r.subject for r in test} == {"1"} and not {r.subject for r in train} & {"1"}
    assert [MMI.class_names[r.label] for r in test] == ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise"]
    assert test[3].origin.endswith("Sessions/4/S001-004.xml") and test[0].path.name == "S001-001.avi"
    written = ds.save_protocol(tmp_path / "run")
    rows = list(csv.DictReader(written[1].read_text().splitlines()))
    assert len(rows) == 60 and rows[0] == {"session": "1", "subject": "1", "label": "Angry", "fold": "1",
                                           "path": "Sessions/1/S001-001.avi"}


def test_mmi_labels_csv_overrides_and_missing_subject_is_counted(tmp_path):
    root = make_miniature_mmi_sessions(tmp_path / "MMI", subjects=10, classes=("Happy", "Sad"), num_frames=2,
                                       size=40, no_emotion=0)
    xml = root / "Sessions" / "1" / "session.xml"
    xml.write_text(xml.read_text().replace('  <subject id="1" />\n', ""))
    ds = MMI(root, fold=1, source="videos")
    ds.records("train")
    assert ds.dropped["no_subject"] == 1
    (root / "labels.csv").write_text("session,subject,label\n1,1,Surprise\n")  # the user's correction
    fixed = MMI(root, fold=1, source="videos")
    rec = next(r for r in fixed.records("test") if r.video_id == "1")
    assert MMI.class_names[rec.label] == "Surprise" and rec.subject == "1" and rec.origin == "labels.csv line 2"
    assert fixed.dropped["no_subject"] == 0
    (root / "labels.csv").write_text("session,subject,label\n999,1,Sad\n")
    with pytest.raises(DatasetError, match=r"labels\.csv: 1 sessions are not folders of .*Sessions, e\.g\. \['999'\]"):
        MMI(root, fold=1, source="videos").records("train")


def test_mmi_sessions_train_through_the_datamodule(tmp_path):
    root = make_miniature_mmi_sessions(tmp_path / "MMI", subjects=10, classes=("Happy", "Sad"), num_frames=3,
                                       size=40, no_emotion=0, frames=True)
    dm = ClipDataModule(MMI(root, fold=2, source="frames"), UniformSampler(3), TF, TF, num_workers=0,
                        output_dir=str(tmp_path / "run"))
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert batch["video"].shape == (2, 3, 3, 32, 32)
    assert (tmp_path / "run" / "sessions.csv").is_file() and (tmp_path / "run" / "folds.csv").is_file()
