"""Bad input on the video path: each case gives a clear error (file/row, found vs expected) or, with
``skip_corrupt=True``, a counted skip listed in ``<run_dir>/skipped_samples.csv``; short clips are padded, an
over-reporting container is clamped, and a worker's exception surfaces instead of hanging."""

from __future__ import annotations

import csv
import gc
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from fertrain.data.clip_dataset import ClipDataset
from fertrain.data.datamodule import ClipDataModule
from fertrain.data.datasets.afew import AFEW, make_miniature_afew
from fertrain.data.datasets.bu3dfe import BU3DFE, make_miniature_bu3dfe
from fertrain.data.datasets.dfew import DFEW, make_miniature_dfew
from fertrain.data.datasets.mmi import MMI, make_miniature_mmi
from fertrain.data.readers import read_frames
from fertrain.data.records import DatasetError
from fertrain.data.samplers import CEFLNetSampler, SegmentSampler, UniformSampler
from fertrain.data.transforms import build_clip_transform

TF = build_clip_transform(train=False, size=32)


def datamodule(source, out: Path | None = None, sampler=None, num_workers: int = 0, **kwargs) -> ClipDataModule:
    return ClipDataModule(source, sampler or UniformSampler(4), TF, TF, batch_size=2, num_workers=num_workers,
                          output_dir=str(out) if out else None, **kwargs)


def skipped_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "skipped_samples.csv") as f:
        return list(csv.DictReader(f))


def garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def overreport_avi(path: Path, claimed: int) -> None:
    """Make an AVI's stream header (``strh`` dwLength) claim ``claimed`` frames."""
    data = bytearray(path.read_bytes())
    at = data.find(b"strh") + 8 + 32  # chunk id + size, then fccType..dwStart (32 bytes) -> dwLength
    data[at:at + 4] = struct.pack("<I", claimed)
    path.write_bytes(bytes(data))


@pytest.fixture
def afew_root(tmp_path) -> Path:
    return make_miniature_afew(tmp_path / "AFEW", clips_per_class=1, val_clips_per_class=1, num_frames=6)


@pytest.fixture
def mmi_root(tmp_path) -> Path:
    return make_miniature_mmi(tmp_path / "MMI", subjects=10, num_frames=4)


# ------------------------------------------------------------------------------------------- layout errors
@pytest.mark.parametrize("make, expected", [
    (lambda r: AFEW(r), "Train_AFEW/<Class>/<clip>.avi"),
    (lambda r: MMI(r), "labels.csv"),
    (lambda r: BU3DFE(r), "_F2D.bmp"),
])
def test_missing_root_names_it_and_the_layout(tmp_path, make, expected):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as err:
        make(root).records("train")
    assert str(root) in str(err.value) and "does not exist" in str(err.value) and expected in str(err.value)


def test_missing_split_folder_and_label_file(afew_root, mmi_root, tmp_path):
    shutil.rmtree(afew_root / "Val_AFEW")
    shutil.rmtree(afew_root / "faces" / "Val_AFEW")
    with pytest.raises(DatasetError, match=r"val split: no folder 'Val_AFEW' \(any case\).*source\.val_dir"):
        AFEW(afew_root).records("train")
    (mmi_root / "labels.csv").unlink()
    with pytest.raises(DatasetError, match=r"labels\.csv does not exist.*session,subject,label"):
        MMI(mmi_root).records("test")
    dfew = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=1, num_frames=4, size=40, folds=(2,))
    with pytest.raises(DatasetError, match=r"set_1\.csv"):
        DFEW(dfew, fold=1, source="videos")


def test_label_outside_the_class_set(afew_root, mmi_root, tmp_path):
    labels = mmi_root / "labels.csv"
    labels.write_text(labels.read_text() + "999,S001,Neutral\n")  # MMI has 6 classes, no neutral
    with pytest.raises(DatasetError, match=r"labels\.csv: line 62: label 'Neutral' is outside the class set"):
        MMI(mmi_root).records("train")
    (afew_root / "Train_AFEW" / "Contempt").mkdir()  # not an AFEW class: listed and ignored, not a class
    afew = AFEW(afew_root, source="videos")
    assert len(afew.records("train")) == 7 and afew.extra_folders == ["Train_AFEW/Contempt"]
    bu = make_miniature_bu3dfe(tmp_path / "BU", subjects=10)
    shutil.copy(bu / "F0001" / "F0001_AN01WH_F2D.bmp", bu / "F0001" / "F0001_XX01WH_F2D.bmp")
    with pytest.raises(DatasetError, match=r"F0001_XX01WH_F2D\.bmp: expression code 'XX' is outside the class set"):
        BU3DFE(bu).records("train")


def test_empty_split(afew_root, mmi_root, tmp_path):
    for clip in (afew_root / "Val_AFEW").rglob("*.avi"):
        clip.unlink()
    with pytest.raises(DatasetError, match=r"AFEW val split: no \*\.avi files .*empty split"):
        AFEW(afew_root, source="videos").records("val")
    (mmi_root / "labels.csv").write_text("session,subject,label\n")
    with pytest.raises(DatasetError, match="gives no usable sequence"):
        MMI(mmi_root).records("train")
    dfew = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=1, num_frames=4, size=40, folds=(1,))
    (dfew / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv").write_text("video_name,label\n")
    with pytest.raises(DatasetError, match="split 'test' has no samples"):
        datamodule(DFEW(dfew, fold=1)).setup("test")


# ------------------------------------------------------------------------------------------- missing media
def test_row_pointing_at_a_missing_file_error_then_skip(mmi_root, tmp_path):
    labels = mmi_root / "labels.csv"
    labels.write_text(labels.read_text() + "999,S001,Happy\n")  # line 62, no media; S001 is in fold 1
    with pytest.raises(DatasetError) as err:
        datamodule(MMI(mmi_root, fold=1)).setup("test")
    msg = str(err.value)
    assert "video_id 999 (labels.csv line 62): missing" in msg and str(mmi_root / "faces" / "S001" / "999") in msg
    assert "skip_corrupt=true" in msg
    dm = datamodule(MMI(mmi_root, fold=1), out=tmp_path / "run", skip_corrupt=True, max_corrupt_frac=0.5)
    dm.setup("test")
    rows = skipped_rows(tmp_path / "run")
    assert [(r["split"], r["video_id"], r["reason"]) for r in rows] == [("test", "999", "missing")]
    assert "does not exist" in rows[0]["detail"] and len(dm.datasets["test"]) == 6


def test_missing_face_folder_of_a_listed_video(afew_root):
    shutil.rmtree(afew_root / "faces" / "Train_AFEW" / "Fear")  # videos listed, faces not extracted
    with pytest.raises(DatasetError, match=r"(?s)1 of 7 'train' samples are unusable \(missing=1\).*"
                                           r"Train_AFEW/Fear/\d+\.avi.*faces/Train_AFEW/Fear/\d+ does not exist"):
        datamodule(AFEW(afew_root)).setup("fit")


def test_missing_frame_of_a_bu3dfe_sequence(tmp_path):
    bu = make_miniature_bu3dfe(tmp_path / "BU", subjects=10)
    (bu / "F0001" / "F0001_NE00WH_F2D.bmp").unlink()  # F0001 (fold 1): all 6 sequences start with it
    with pytest.raises(DatasetError, match=r"(?s)6 of 6 'test' samples are unusable .*F0001_NE00WH_F2D\.bmp"):
        datamodule(BU3DFE(bu, fold=1)).setup("test")


# ------------------------------------------------------------------------------------ unreadable media
@pytest.mark.timeout(120)
def test_unreadable_and_truncated_videos_error_or_exact_skip_with_workers(afew_root, tmp_path):
    bad_train = afew_root / "Train_AFEW" / "Happy" / "000000004.avi"
    bad_val = afew_root / "Val_AFEW" / "Sad" / "000000013.avi"  # clips are numbered on, train then val
    garbage(bad_train)
    bad_val.write_bytes(b"")
    with pytest.raises(DatasetError) as err:
        datamodule(AFEW(afew_root, source="videos")).setup("fit")
    assert str(bad_train) in str(err.value) and "unreadable" in str(err.value)
    run = tmp_path / "run"
    dm = datamodule(AFEW(afew_root, source="videos"), out=run, skip_corrupt=True, max_corrupt_frac=0.5, num_workers=2)
    dm.setup("fit")
    dm.setup("test")
    rows = skipped_rows(run)
    # index = position in the split's list (class folders in name order: Happy 4th, Sad 6th); val = test in AFEW
    assert sorted((r["split"], r["index"], r["video_id"], r["path"], r["reason"]) for r in rows) == [
        ("test", "5", "000000013", str(bad_val), "zero_byte"),
        ("train", "3", "000000004", str(bad_train), "unreadable"),
        ("val", "5", "000000013", str(bad_val), "zero_byte")]
    assert dm.corrupt_report() == {"unreadable": 1, "zero_byte": 2}
    seen = [i for batch in dm.val_dataloader() for i in batch["index"].tolist()]  # 2 worker processes
    assert sorted(seen) == list(range(6)) and len(dm.datasets["train"]) == 6


@pytest.mark.timeout(120)
def test_truncated_mp4_read_in_a_worker_raises_clearly(tmp_path):
    root = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=1, num_frames=4, size=40, folds=(1,), videos=True)
    bad = root / "Clip" / "original" / "00001.mp4"  # clip 1 is in the test set of fold 1
    cut_in_half(bad)
    with pytest.raises(DatasetError, match=r"00001\.mp4: no frame count"):  # counting frames opens every video
        datamodule(DFEW(root, fold=1, source="videos")).setup("test")
    # with listed frame counts nothing is opened up front: the worker's read fails, the main process gets it
    source = DFEW(root, fold=1, source="videos", frame_counts=root / "frame_counts.csv")
    dm = datamodule(source, num_workers=2)
    dm.setup("test")
    batches = iter(dm.test_dataloader())
    with pytest.raises(DatasetError, match=r"test sample 0 \(video_id 00001\).*00001\.mp4 cannot be opened") as err:
        for _ in batches:
            pass
    # the traceback holds the iterator: drop both so the workers shut down here, not in a later test (after a
    # worker error PyTorch's shutdown waits out its 5 s join timeout; measured, bounded, no hang)
    del err, batches
    gc.collect()
    dm = datamodule(source, out=tmp_path / "run", skip_corrupt=True, max_corrupt_frac=0.5)
    dm.setup("test")
    assert [r["video_id"] for r in skipped_rows(tmp_path / "run")] == ["00001"]


# ------------------------------------------------------------------------------------ short and over-long claims
def test_short_clip_is_padded_by_the_sampler_rule(tmp_path):
    root = make_miniature_mmi(tmp_path / "MMI", subjects=10, num_frames=2)
    rec = MMI(root).records("test")[0]
    frames = read_frames(rec.path, np.arange(2))
    sampler = CEFLNetSampler()  # 7 clips x 5 frames from a 75-frame window; N = 2 < 75: window stretched
    item = ClipDataset([rec], sampler, build_clip_transform(train=False, size=40), train=False)[0]
    assert item["video"].shape == (35, 3, 40, 40)
    positions = (np.arange(7)[:, None] * 10 + np.arange(5)[None, :] * 3).reshape(-1)
    assert np.array_equal(sampler(2, False), positions * 2 // 75)  # the documented rule
    got = item["video"].permute(0, 2, 3, 1).numpy()
    assert np.array_equal(got, frames[positions * 2 // 75])
    seg = ClipDataset([rec], SegmentSampler(8, 2), TF, train=True)[0]  # random training draw: no crash either
    assert seg["video"].shape == (16, 3, 32, 32)


def test_overreporting_container_stops_by_default_and_is_drawn_from_decodable_frames_when_skipping(afew_root,
                                                                                                       tmp_path):
    clip = afew_root / "Train_AFEW" / "Angry" / "000000001.avi"  # 6 frames
    overreport_avi(clip, 30)
    rec = next(r for r in AFEW(afew_root, source="videos").records("train") if r.path == clip)
    assert rec.num_frames == 30  # the container's claim
    sampler = UniformSampler(8)
    with pytest.raises(DatasetError, match=r"truncated: video .*000000001\.avi: 30 frames indexed .* only 6 decode"):
        ClipDataset([rec], sampler, build_clip_transform(train=False, size=40), train=False)[0]
    item = ClipDataset([rec], sampler, build_clip_transform(train=False, size=40), train=False, skip_unusable=True)[0]
    real = read_frames(clip, np.arange(6))
    assert np.array_equal(item["video"].permute(0, 2, 3, 1).numpy(), real[sampler(6, False)])  # no repeated tail
    assert item["_truncated"]["path"] == str(clip)
    dm = datamodule(AFEW(afew_root, source="videos"), out=tmp_path / "run", skip_corrupt=True)
    dm.setup("fit")  # skip_corrupt checks at "structure": the video is decoded once and its count corrected
    fixed = next(r for r in dm.datasets["train"].records if r.path == clip)
    rows = skipped_rows(tmp_path / "run")
    assert fixed.num_frames == 6 and [(r["video_id"], r["reason"]) for r in rows] == [("000000001", "truncated")]
    assert dm.corrupt_report() == {"truncated": 1}
