"""The unusable-sample policy (issue 13, "Bad data during training"): every case stops the run by default with one
error naming the file and the problem, and with ``skip_corrupt=true`` is skipped, counted per reason, reported every
epoch and in ``corrupt_report()``, with a stop above ``max_corrupt_frac``. Miniature trees of 32-40 px clips."""

from __future__ import annotations

import csv
import logging
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from fertrain.data.clip_dataset import ClipDataset
from fertrain.data.datamodule import ClipDataModule, UnusableSampleReport
from fertrain.data.datasets.afew import AFEW, make_miniature_afew
from fertrain.data.datasets.affectnet import AffectNet, make_miniature_affectnet_npy
from fertrain.data.datasets.dfew import DFEW, make_miniature_dfew
from fertrain.data.integrity import REASONS, UnusableSampleError, check_sample
from fertrain.data.readers import count_frame_files, list_frame_files, read_frames
from fertrain.data.records import ClipRecord, DatasetError
from fertrain.data.samplers import UniformSampler
from fertrain.data.transforms import build_clip_transform

TF = build_clip_transform(train=False, size=32)
FRAMES = Path("Clip") / "clip_224x224"


def dm_of(source, out: Path | None = None, clip_len: int = 4, batch_size: int = 2, **kwargs) -> ClipDataModule:
    kwargs.setdefault("num_workers", 0)
    return ClipDataModule(source, UniformSampler(clip_len), TF, TF, batch_size=batch_size,
                          output_dir=str(out) if out else None, **kwargs)


def rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "skipped_samples.csv").read_text().splitlines()))


@pytest.fixture
def dfew(tmp_path) -> Path:
    """7 clips x 4 frames (40 px); fold 1: train = clips 2,3,4,5,7 (5), test = clips 1, 6."""
    return make_miniature_dfew(tmp_path / "DFEW", clips_per_class=1, num_frames=4, size=40, folds=(1,))


def frame(root: Path, clip: str, t: int) -> Path:
    return root / FRAMES / clip / f"{t:05d}.jpg"


def garble(root: Path, clip: str) -> None:
    """Every frame of the clip: JPEG start/end markers around garbage (passes the structure check, does not decode)."""
    for f in (root / FRAMES / clip).glob("*.jpg"):
        f.write_bytes(b"\xff\xd8" + bytes(200) + b"\xff\xd9")


# ---------------------------------------------------------------------------------------- setup: each reason
def test_missing_clip_does_not_abort_the_dataset_and_follows_the_policy(dfew, tmp_path):
    shutil.rmtree(dfew / FRAMES / "00003")
    source = DFEW(dfew, fold=1)  # the constructor no longer aborts on a missing clip
    with pytest.raises(UnusableSampleError) as err:
        dm_of(source).setup("fit")
    assert "missing" in str(err.value) and str(dfew / FRAMES / "00003") in str(err.value)
    assert err.value.reason == "missing"
    dm = dm_of(DFEW(dfew, fold=1), tmp_path / "run", skip_corrupt=True, max_corrupt_frac=0.5)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 4 and dm.corrupt_report() == {"missing": 1}
    assert [(r["split"], r["video_id"], r["reason"]) for r in rows(tmp_path / "run")] == [("train", "00003", "missing")]


@pytest.mark.parametrize("damage, reason", [
    ("empty_folder", "empty"),
    ("zero_byte_frame", "zero_byte"),
    ("truncated_middle_frame", "corrupt_frame"),
    ("garbage_first_frame", "corrupt_frame"),
    ("fewer_frames_than_listed", "truncated"),
])
def test_frame_folder_damage_is_found_at_setup_with_its_reason(dfew, tmp_path, damage, reason):
    clip = dfew / FRAMES / "00004"
    if damage == "empty_folder":
        for f in clip.iterdir():
            f.unlink()
    elif damage == "zero_byte_frame":
        frame(dfew, "00004", 3).write_bytes(b"")
    elif damage == "truncated_middle_frame":  # a JPEG cut in half, anywhere in the clip
        data = frame(dfew, "00004", 2).read_bytes()
        frame(dfew, "00004", 2).write_bytes(data[: len(data) // 2])
    elif damage == "garbage_first_frame":
        frame(dfew, "00004", 1).write_bytes(b"not a jpeg at all" * 10)
    else:
        frame(dfew, "00004", 4).unlink()  # frame_counts.csv still says 4
    source = DFEW(dfew, fold=1, frame_counts=dfew / "frame_counts.csv")
    with pytest.raises(UnusableSampleError) as err:  # default policy, checked at the structure level
        dm_of(source, check_level="structure").setup("fit")
    assert err.value.reason == reason and "00004" in str(err.value)
    dm = dm_of(DFEW(dfew, fold=1, frame_counts=dfew / "frame_counts.csv"), tmp_path / "run", skip_corrupt=True,
               max_corrupt_frac=0.5)
    dm.setup("fit")
    assert dm.corrupt_report() == {reason: 1}
    kept = {r.video_id: r.num_frames for r in dm.datasets["train"].records}
    if reason == "truncated":  # kept: the sampler draws from the 3 frames that exist
        assert kept["00004"] == 3
    else:
        assert "00004" not in kept and len(kept) == 4


def test_truncated_middle_frame_stops_the_default_run_when_read(dfew):
    data = frame(dfew, "00001", 3).read_bytes()
    frame(dfew, "00001", 3).write_bytes(data[: len(data) // 3])
    dm = dm_of(DFEW(dfew, fold=1))  # default level "exists": nothing opened at setup
    dm.setup("test")
    with pytest.raises(UnusableSampleError, match=r"test sample 0 \(video_id 00001\): corrupt_frame: frame "
                                                  r".*00001/00003\.jpg cannot be decoded.*data\.skip_corrupt=true"):
        next(iter(dm.test_dataloader()))


def test_frame_that_passes_the_markers_but_does_not_decode_is_dropped_while_reading(dfew, tmp_path):
    bad = frame(dfew, "00002", 2)
    bad.write_bytes(b"\xff\xd8" + bytes(range(256)) * 4 + b"\xff\xd9")  # start/end markers, garbage inside
    assert check_sample(ClipRecord(bad.parent, 0, "00002", 4), "structure").usable
    assert check_sample(ClipRecord(bad.parent, 0, "00002", 4), "decode").reason == "corrupt_frame"
    dm = dm_of(DFEW(dfew, fold=1), tmp_path / "run", skip_corrupt=True, max_corrupt_frac=0.5, batch_size=5)
    dm.setup("fit")  # structure level: not caught here (one batch of all 5 train clips: no drop_last)
    assert dm.corrupt_report() == {}
    seen = []
    for batch in dm.train_dataloader():
        batch = dm.on_before_batch_transfer(batch, 0)
        assert "_unusable" not in batch and batch["video"].shape[0] == len(batch["index"])
        seen += batch["video_id"]
    assert sorted(seen) == ["00003", "00004", "00005", "00007"]
    assert dm.corrupt_report() == {"corrupt_frame": 1}
    dm.report_epoch("train", 0)
    (row,) = rows(tmp_path / "run")
    assert (row["video_id"], row["reason"], row["found_at"]) == ("00002", "corrupt_frame", "reading")


def test_decode_level_finds_it_at_setup(dfew):
    frame(dfew, "00002", 2).write_bytes(b"\xff\xd8" + bytes(range(256)) * 4 + b"\xff\xd9")
    with pytest.raises(UnusableSampleError, match=r"corrupt_frame: frame .*00002/00002\.jpg cannot be decoded"):
        dm_of(DFEW(dfew, fold=1), check_level="decode").setup("fit")


def test_clip_shorter_than_min_frames_is_too_short(dfew, tmp_path):
    for t in (3, 4):
        frame(dfew, "00005", t).unlink()
    with pytest.raises(UnusableSampleError, match=r"too_short: .*00005: 2 usable frames, fewer than min_frames=3"):
        dm_of(DFEW(dfew, fold=1), min_frames=3).setup("fit")
    dm = dm_of(DFEW(dfew, fold=1), min_frames=3, skip_corrupt=True, max_corrupt_frac=0.5)
    dm.setup("fit")
    assert dm.corrupt_report() == {"too_short": 1}
    dm_of(DFEW(dfew, fold=1)).setup("fit")  # min_frames=1 (default): padded by the sampler, usable


def test_hidden_and_appledouble_files_are_never_frames(dfew):
    clip = dfew / FRAMES / "00001"
    (clip / "._00001.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble resource fork")
    (clip / ".00009.jpg").write_bytes(b"hidden")
    assert count_frame_files(clip) == 4 and [p.name for p in list_frame_files(clip)][0] == "00001.jpg"
    assert read_frames(clip, np.arange(4)).shape == (4, 40, 40, 3)
    source = DFEW(dfew, fold=1)
    assert next(r for r in source.records("test") if r.video_id == "00001").num_frames == 4
    dm = dm_of(source, check_level="decode")
    dm.setup("test")  # the AppleDouble files are not checked as frames either
    assert dm.corrupt_report() == {}


# ---------------------------------------------------------------------------------------- videos and images
def _overreport_avi(path: Path, claimed: int) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(b"strh") + 8 + 32  # dwLength of the stream header
    data[at:at + 4] = struct.pack("<I", claimed)
    path.write_bytes(bytes(data))


@pytest.fixture
def afew(tmp_path) -> Path:
    return make_miniature_afew(tmp_path / "AFEW", clips_per_class=1, val_clips_per_class=1, num_frames=6,
                               frames=False)


@pytest.mark.parametrize("damage, reason", [("garbage", "unreadable"), ("zero_byte", "zero_byte")])
def test_unopenable_and_zero_byte_videos(afew, tmp_path, damage, reason):
    clip = afew / "Train_AFEW" / "Fear" / "000000003.avi"
    clip.write_bytes(b"" if damage == "zero_byte" else np.random.default_rng(0).bytes(4096))
    with pytest.raises(UnusableSampleError) as err:
        dm_of(AFEW(afew, source="videos")).setup("fit")
    assert err.value.reason == reason and str(clip) in str(err.value)
    dm = dm_of(AFEW(afew, source="videos"), tmp_path / "run", skip_corrupt=True, max_corrupt_frac=0.5)
    dm.setup("fit")
    assert dm.corrupt_report() == {reason: 1} and len(dm.datasets["train"]) == 6


def test_truncated_video_read_draws_only_from_decodable_frames_and_is_counted(afew, tmp_path):
    clip = afew / "Train_AFEW" / "Angry" / "000000001.avi"
    _overreport_avi(clip, 40)  # the container says 40, 6 decode
    dm = dm_of(AFEW(afew, source="videos"), clip_len=6, batch_size=7)
    dm.setup("fit")  # default level "exists": the container's count is believed until the video is read
    with pytest.raises(UnusableSampleError, match=r"truncated: video .*000000001\.avi: 40 frames indexed .*only 6"):
        for _ in dm.train_dataloader():
            pass
    dm = dm_of(AFEW(afew, source="videos"), tmp_path / "run", clip_len=6, skip_corrupt=True, check_level="exists",
               batch_size=7)  # one batch of all 7 (no drop_last)
    dm.setup("fit")
    for batch in dm.train_dataloader():
        batch = dm.on_before_batch_transfer(batch, 0)
    assert dm.corrupt_report() == {"truncated": 1}  # kept, counted
    rec = next(r for r in dm.datasets["train"].records if r.path == clip)
    assert rec.num_frames == 40  # as listed; the sampler is given the 6 that decode
    item = ClipDataset([rec], UniformSampler(6), lambda x: x, train=False, skip_unusable=True)[0]
    assert torch.equal(item["video"].permute(0, 2, 3, 1), torch.from_numpy(read_frames(clip, np.arange(6))))
    assert item["_truncated"]["index"] == 0


def test_zero_byte_and_unreadable_images(tmp_path):
    root = make_miniature_affectnet_npy(tmp_path / "AffectNet", train_per_class=2, test_per_class=1, size=32)
    images = root / "val_set" / "images"
    (images / "0.jpg").write_bytes(b"")
    (images / "1.jpg").write_bytes(b"GIF89a broken")
    dm = dm_of(AffectNet(root), clip_len=1, skip_corrupt=True, max_corrupt_frac=0.5)
    dm.setup("test")
    assert dm.corrupt_report() == {"unreadable": 1, "zero_byte": 1} and len(dm.datasets["test"]) == 6
    with pytest.raises(UnusableSampleError, match=r"zero_byte: .*0\.jpg is empty \(0 bytes\)"):
        dm_of(AffectNet(root), clip_len=1, check_level="structure").setup("test")


# ---------------------------------------------------------------------------------------- the stop and the report
def test_more_than_max_corrupt_frac_stops_with_the_counts(dfew):
    shutil.rmtree(dfew / FRAMES / "00003")  # 1 of 5 train samples = 20%
    with pytest.raises(UnusableSampleError, match=r"(?s)'train': 1 of 5 samples \(20\.00%\) are unusable "
                                                  r"\(missing=1\), "
                                                  r"more than data\.max_corrupt_frac=0\.01.*00003"):
        dm_of(DFEW(dfew, fold=1), skip_corrupt=True).setup("fit")
    dm_of(DFEW(dfew, fold=1), skip_corrupt=True, max_corrupt_frac=0.2).setup("fit")  # 20% allowed: runs


def test_dropped_while_reading_past_the_fraction_stops(dfew, tmp_path):
    for clip in ("00002", "00003"):
        garble(dfew, clip)
    dm = dm_of(DFEW(dfew, fold=1), skip_corrupt=True, max_corrupt_frac=0.3, clip_len=1, batch_size=5)
    dm.setup("fit")
    with pytest.raises(UnusableSampleError, match=r"'train': 2 of 5 samples \(40\.00%\) are unusable "
                                                  r"\(corrupt_frame=2\)"):
        for batch in dm.train_dataloader():
            dm.on_before_batch_transfer(batch, 0)


def test_a_batch_of_only_unusable_samples_names_them(dfew):
    garble(dfew, "00001")
    dm = ClipDataModule(DFEW(dfew, fold=1), UniformSampler(1), TF, TF, batch_size=1, num_workers=0,
                        skip_corrupt=True, max_corrupt_frac=1.0)
    dm.setup("test")
    with pytest.raises(UnusableSampleError, match=r"every sample of a batch of 1 is unusable \(test #0 .*00001: "
                                                  r"corrupt_frame\)"):
        next(iter(dm.test_dataloader()))


class _Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 7)

    def training_step(self, batch, i):
        return torch.nn.functional.cross_entropy(self.lin(batch["video"].float().mean((1, 3, 4))), batch["label"])

    def validation_step(self, batch, i):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_report_at_every_epoch_end_counts_survive_a_checkpoint(dfew, tmp_path, caplog):
    shutil.rmtree(dfew / FRAMES / "00003")
    garble(dfew, "00005")
    dm = dm_of(DFEW(dfew, fold=1), skip_corrupt=True, max_corrupt_frac=0.5, clip_len=1, batch_size=4)
    trainer = pl.Trainer(max_epochs=2, default_root_dir=tmp_path / "run", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    with caplog.at_level(logging.INFO, logger="fertrain.data.datamodule"):
        trainer.fit(_Tiny(), datamodule=dm)
    assert any(isinstance(cb, UnusableSampleReport) for cb in trainer.callbacks)
    lines = [r.getMessage() for r in caplog.records if "unusable samples:" in r.getMessage()]
    train_lines = [m for m in lines if "'train' epoch" in m]
    assert len(train_lines) == 2 and "1 dropped while reading this epoch (corrupt_frame=1)" in train_lines[1]
    assert "2 of 5 in total (corrupt_frame=1, missing=1)" in train_lines[1]
    assert dm.corrupt_report() == {"corrupt_frame": 1, "missing": 1}
    assert sorted((r["video_id"], r["reason"]) for r in rows(tmp_path / "run")) == [
        ("00003", "missing"), ("00005", "corrupt_frame")]
    details = dm.corrupt_details()
    assert details["splits"]["train"] == {"listed": 5, "unusable": 2, "fraction": 0.4,
                                          "reasons": {"corrupt_frame": 1, "missing": 1}, "truncated": 0}
    resumed = dm_of(DFEW(dfew, fold=1), skip_corrupt=True)
    resumed.load_state_dict(dm.state_dict())  # Lightning saves/restores this with the checkpoint
    assert resumed.corrupt_report() == dm.corrupt_report()


def test_policy_arguments_are_checked(dfew):
    with pytest.raises(DatasetError, match=r"data\.max_corrupt_frac must be a fraction in \[0, 1\], got 2"):
        dm_of(DFEW(dfew, fold=1), max_corrupt_frac=2)
    with pytest.raises(DatasetError, match=r"data\.min_frames must be an integer >= 1"):
        dm_of(DFEW(dfew, fold=1), min_frames=0)
    with pytest.raises(DatasetError, match=r"data\.datamodule\.check_level must be one of auto, exists, structure, decode"):
        dm_of(DFEW(dfew, fold=1), check_level="deep")
    assert set(REASONS) == {"missing", "empty", "zero_byte", "unreadable", "corrupt_frame", "truncated", "too_short"}


def test_both_config_keys_set_the_policy(tmp_path):
    from tests.helpers import compose_config

    new = compose_config(["data=dfew", "data.skip_corrupt=true", "data.max_corrupt_frac=0.05"], tmp_path)
    old = compose_config(["data=dfew", "data.datamodule.skip_corrupt=true"], tmp_path)
    assert new.data.datamodule.skip_corrupt is True and new.data.datamodule.max_corrupt_frac == 0.05
    assert old.data.datamodule.skip_corrupt is True and old.data.datamodule.max_corrupt_frac == 0.01


def test_clip_dataset_skip_returns_a_marked_sample(dfew):
    rec = ClipRecord(dfew / FRAMES / "99999", 0, "99999", 4, origin="nowhere line 1")
    ds = ClipDataset([rec], UniformSampler(2), TF, train=False, split="test", skip_unusable=True)
    item = ds[0]
    assert item["unusable"] == "missing" and item["video_id"] == "99999" and "does not exist" in item["detail"]
    with pytest.raises(UnusableSampleError, match=r"test sample 0 \(video_id 99999, listed at nowhere line 1\): "
                                                  r"missing"):
        ClipDataset([rec], UniformSampler(2), TF, train=False, split="test")[0]
