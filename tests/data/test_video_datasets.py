"""AFEW, MMI, BU-3DFE and DFEW-from-videos on miniature trees: layouts, label maps by name, folds, media reading."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from fertrain.data.clip_dataset import ClipDataset
from fertrain.data.datamodule import ClipDataModule
from fertrain.data.datasets.afew import AFEW, make_miniature_afew
from fertrain.data.datasets.bu3dfe import BU3DFE, make_miniature_bu3dfe
from fertrain.data.datasets.common import (CANONICAL_6, CANONICAL_7, canonical_name, map_by_name, read_folds_csv,
                                           subject_folds)
from fertrain.data.datasets.dfew import DFEW, DFEW_CLASS_NAMES, make_miniature_dfew
from fertrain.data.datasets.mmi import MMI, make_miniature_mmi
from fertrain.data.readers import read_frames
from fertrain.data.records import DatasetError
from fertrain.data.samplers import UniformSampler
from fertrain.data.transforms import build_clip_transform


def datamodule(source, out: Path | None = None, **kwargs) -> ClipDataModule:
    tf = build_clip_transform(train=False, size=32)
    return ClipDataModule(source, UniformSampler(4), tf, tf, batch_size=2, num_workers=0,
                          output_dir=str(out) if out else None, **kwargs)


# ------------------------------------------------------------------------------------------------ label maps
def test_canonical_order_and_names():
    assert CANONICAL_7 == ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
    assert CANONICAL_6 == CANONICAL_7[:6]  # 6-class indices equal the 7-class ones
    assert [canonical_name(n) for n in ("anger", "Happiness", "SU", "ne", "bored")] == [
        "Angry", "Happy", "Surprise", "Neutral", None]


def test_map_by_name_across_datasets():
    # DFEW (official order) -> AFEW (canonical): every class by name
    mapped = map_by_name(np.arange(7), DFEW_CLASS_NAMES, AFEW.class_names)
    assert [AFEW.class_names[j] for j in mapped] == list(DFEW_CLASS_NAMES)
    # AFEW -> MMI: Neutral has no MMI class
    with pytest.raises(ValueError, match="Neutral"):
        map_by_name([6], AFEW.class_names, MMI.class_names)
    assert map_by_name([6, 3], AFEW.class_names, MMI.class_names, missing=-1).tolist() == [-1, 3]
    with pytest.raises(ValueError, match="0..6"):
        map_by_name([7], AFEW.class_names, MMI.class_names)


# ------------------------------------------------------------------------------------------------ folds
def test_subject_folds_round_robin_and_stable():
    subjects = [f"S{i}" for i in range(1, 13)]
    folds = subject_folds(subjects, 10)
    assert folds["S1"] == 1 and folds["S2"] == 2 and folds["S10"] == 10 and folds["S11"] == 1  # natural order
    assert subject_folds(list(reversed(subjects)) + subjects, 10) == folds  # order and repeats do not matter
    with pytest.raises(DatasetError, match="at least 10 subjects"):
        subject_folds(subjects[:9], 10)


# ------------------------------------------------------------------------------------------------ AFEW
def test_afew_frames_and_videos_agree(tmp_path):
    root = make_miniature_afew(tmp_path / "AFEW", clips_per_class=2, val_clips_per_class=1, num_frames=5)
    frames, videos = AFEW(root, source="frames"), AFEW(root, source="videos")
    for ds in (frames, videos):
        assert len(ds.records("train")) == 14 and len(ds.records("val")) == 7
        assert ds.records("val") == ds.records("test")  # test labels are private: val = test
    rec_f, rec_v = frames.records("train")[0], videos.records("train")[0]
    assert rec_f.video_id == rec_v.video_id and rec_f.num_frames == rec_v.num_frames == 5
    assert rec_v.path.suffix == ".avi" and rec_f.path.is_dir() and rec_v.fps == pytest.approx(25.0)
    # class folder name -> canonical index (the folders are in alphabetical order, the labels are not)
    for ds in (frames, videos):
        for r in ds.records("train"):
            assert AFEW.class_names[r.label] == Path(r.origin).parent.name
    # the same frames, up to JPEG vs Motion-JPEG compression
    a = read_frames(rec_f.path, np.arange(5)).astype(float)
    b = read_frames(rec_v.path, np.arange(5)).astype(float)
    assert a.shape == b.shape == (5, 40, 40, 3) and np.abs(a - b).mean() < 6


def test_afew_frames_without_video_tree_lists_the_frame_folders(tmp_path):
    root = make_miniature_afew(tmp_path / "AFEW", clips_per_class=1, videos=False)
    ds = AFEW(root, source="frames")
    assert len(ds.records("train")) == 7 and all(r.path.is_dir() for r in ds.records("train"))
    assert Counter(r.label for r in ds.records("train")) == Counter(range(7))


# ------------------------------------------------------------------------------------------------ MMI
def test_mmi_subject_independent_folds_cover_every_sequence_once(tmp_path):
    root = make_miniature_mmi(tmp_path / "MMI", subjects=11, num_frames=3)
    seen: list[str] = []
    for k in range(1, 11):
        ds = MMI(root, fold=k)
        train, test = ds.records("train"), ds.records("test")
        assert not {r.subject for r in train} & {r.subject for r in test}
        assert ds.records("val") == test and len(train) + len(test) == 66
        seen += [r.video_id for r in test]
    assert sorted(seen) == sorted(str(i) for i in range(1, 67))
    labels = {r.video_id: MMI.class_names[r.label] for r in MMI(root).records("train") + MMI(root).records("test")}
    with open(root / "labels.csv") as f:
        assert labels == {row["session"]: row["label"] for row in csv.DictReader(f)}


def test_mmi_folds_written_to_run_dir_and_reused(tmp_path):
    root = make_miniature_mmi(tmp_path / "MMI", subjects=10, num_frames=3)
    dm = datamodule(MMI(root, fold=4), out=tmp_path / "run")
    dm.setup("fit")
    written = read_folds_csv(tmp_path / "run" / "folds.csv", 10)
    assert written == subject_folds([f"S{i:03d}" for i in range(1, 11)], 10)
    # a user fold list: swap two subjects' folds, and the test split follows it
    custom = tmp_path / "my_folds.csv"
    custom.write_text("subject,fold\n" + "".join(f"{s},{11 - k}\n" for s, k in written.items()))
    test = MMI(root, fold=4, folds=custom).records("test")
    assert {r.subject for r in test} == {s for s, k in written.items() if k == 7}


def test_mmi_reads_videos_too(tmp_path):
    root = make_miniature_mmi(tmp_path / "MMI", subjects=10, num_frames=4, videos=True, frames=False)
    rec = MMI(root, source="videos").records("test")[0]
    assert rec.path.suffix == ".avi" and rec.num_frames == 4
    item = ClipDataset([rec], UniformSampler(4), build_clip_transform(train=False, size=32), train=False)[0]
    assert item["video"].shape == (4, 3, 32, 32)


# ------------------------------------------------------------------------------------------------ BU-3DFE
def test_bu3dfe_sequences_neutral_to_level4(tmp_path):
    root = make_miniature_bu3dfe(tmp_path / "BU", subjects=10, size=40)
    ds = BU3DFE(root, fold=1)
    train, test = ds.records("train"), ds.records("test")
    assert len(train) + len(test) == 60 and len(test) == 6  # 1 subject x 6 expressions in fold 1
    assert not {r.subject for r in train} & {r.subject for r in test}
    for r in test:
        names = [p.name for p in r.frame_files]
        code = r.video_id.split("_")[1]
        assert names == [f"{r.subject}_NE00WH_F2D.bmp"] + [f"{r.subject}_{code}0{lv}WH_F2D.bmp" for lv in range(1, 5)]
        assert canonical_name(code) == BU3DFE.class_names[r.label]
    # frames read in order: neutral first, and the expression grows with the level (distance from neutral)
    frames = read_frames(test[0].frame_files, np.arange(5)).astype(float)
    dist = np.abs(frames - frames[0]).mean(axis=(1, 2, 3))
    assert dist[0] == 0 and np.all(np.diff(dist) > 0)


# ------------------------------------------------------------------------------------------------ DFEW videos
def test_dfew_video_files_read_by_decord(tmp_path):
    import decord  # after torch (conftest)

    root = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=1, num_frames=6, size=40, videos=True)
    mp4 = root / "Clip" / "original" / "00001.mp4"
    vr = decord.VideoReader(str(mp4), ctx=decord.cpu(0), num_threads=1)
    assert len(vr) == 6 and vr.get_batch([0, 5]).asnumpy().shape == (2, 40, 40, 3)  # decord itself, no fallback
    del vr
    ds = DFEW(root, fold=1, source="videos")
    rec = ds.records("test")[0]
    assert rec.path == root / "Clip" / "original" / f"{rec.video_id}.mp4" and rec.num_frames == 6
    frames = read_frames(rec.path, np.arange(6)).astype(float)
    jpegs = read_frames(root / "Clip" / "clip_224x224" / rec.video_id, np.arange(6)).astype(float)
    assert np.abs(frames - jpegs).mean() < 6  # same content as the frame folder, up to compression


def test_dfew_video_config_composes(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from fertrain.config import config_dir

    root = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=1, num_frames=4, size=40, videos=True)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["data=dfew_video", f"data.root={root}", f"paths.output_dir={tmp_path}",
                                          "data.datamodule.num_workers=0"])
    dm = instantiate(cfg.data.datamodule)
    assert dm.source.source == "videos" and dm.class_names == DFEW_CLASS_NAMES
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["video"].dtype == torch.uint8 and batch["video"].shape[1:] == (16, 3, 112, 112)
