"""Static-image datasets (RAF-DB, AffectNet, FERPlus): label protocols, image pipeline, soft targets, bad input."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fertrain.data.clip_dataset import ClipDataset
from fertrain.data.datamodule import ClipDataModule
from fertrain.data.datasets.affectnet import AffectNet, make_miniature_affectnet
from fertrain.data.datasets.ferplus import FERPlus, ferplus_label, make_miniature_ferplus, process_votes
from fertrain.data.datasets.rafdb import RAFDB, make_miniature_rafdb
from fertrain.data.images import crop_box, parse_fer2013_pixels, read_image
from fertrain.data.readers import read_frames
from fertrain.data.records import ClipRecord, DatasetError
from fertrain.data.resumable import EpochSampler
from fertrain.data.samplers import UniformSampler
from fertrain.losses.soft_target import SoftTargetLoss
from fertrain.models.baselines import ResNet18Image
from fertrain.tasks.recognition import RecognitionTask


def identity(frames: np.ndarray) -> np.ndarray:
    return frames


def dataset(records: list[ClipRecord]) -> ClipDataset:
    return ClipDataset(records, UniformSampler(1), identity, train=False)


# ------------------------------------------------------------------------------------------------ images
def test_read_image_grey_png_and_jpeg(tmp_path: Path) -> None:
    from PIL import Image

    grey = np.arange(48 * 40, dtype=np.uint32).reshape(40, 48).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (1, 40, 48, 3) and out.dtype == np.uint8
    assert (out[0, :, :, 0] == grey).all() and (out[0, :, :, 2] == grey).all()  # grey replicated
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # red
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    frames = read_frames(tmp_path / "c.jpg", np.array([0]))  # the reader's image-file branch
    assert frames.shape == (1, 20, 30, 3) and frames[0, ..., 0].mean() > 180 and frames[0, ..., 2].mean() < 30
    assert read_frames(tmp_path / "c.jpg", np.array([0, 0, 0])).shape == (3, 20, 30, 3)


def test_crop_box_clamps_and_rejects(tmp_path: Path) -> None:
    frames = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(1, 10, 12, 3)
    assert crop_box(frames, (2, 3, 4, 5)).shape == (1, 5, 4, 3)
    assert (crop_box(frames, (2, 3, 4, 5)) == frames[:, 3:8, 2:6]).all()
    assert crop_box(frames, (-5, 8, 100, 100)).shape == (1, 2, 12, 3)  # clamped to the image
    with pytest.raises(DatasetError, match=r"img\.jpg.*does not overlap the 12x10"):
        crop_box(frames, (20, 0, 5, 5), "img.jpg")


def test_fer2013_pixels() -> None:
    values = np.arange(2304) % 256
    assert (parse_fer2013_pixels(" ".join(map(str, values)), "x") == values.reshape(48, 48)).all()
    with pytest.raises(DatasetError, match="fer2013.csv: line 7: expected 2304.*found 3"):
        parse_fer2013_pixels("1 2 3", "fer2013.csv: line 7")
    with pytest.raises(DatasetError, match="0..255"):
        parse_fer2013_pixels(" ".join(["300"] * 2304), "row")


# ------------------------------------------------------------------------------------------------ RAF-DB
def test_rafdb_label_order_and_splits(tmp_path: Path) -> None:
    root = make_miniature_rafdb(tmp_path / "basic", train_per_class=2, test_per_class=1, size=32)
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    # official 1..7 = Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral
    label_file.write_text(label_file.read_text().replace("train_00001.jpg 1", "train_00001.jpg 4"))
    ds = RAFDB(root)
    train, val, test = ds.records("train"), ds.records("val"), ds.records("test")
    assert (len(train), len(test)) == (14, 7) and val == test  # no official val set: val = test
    names = {r.video_id: ds.class_names[r.label] for r in train + test}
    assert names["train_00001"] == "Happiness" and names["train_00003"] == "Fear" and names["test_0007"] == "Neutral"
    assert train[0].path == root / "Image" / "aligned" / "train_00001_aligned.jpg" and train[0].num_frames == 1
    assert train[0].origin.endswith("list_patition_label.txt line 1")
    carved = RAFDB(root, val_from_train=0.5, seed=1)
    # round(0.5 * n_c) per class: Surprise 1 of 1, Happiness 2 of 3, the others 1 of 2
    assert len(carved.records("val")) == 8 and len(carved.records("train")) == 6
    assert not {r.video_id for r in carved.records("val")} & {r.video_id for r in carved.records("train")}
    assert {r.label for r in carved.records("val")} == set(range(7))  # stratified
    sample = dataset(test)[0]
    assert sample["video"].shape == (1, 3, 32, 32) and sample["video"].dtype == torch.uint8 and "target" not in sample


def test_rafdb_test_subset(tmp_path: Path) -> None:
    root = make_miniature_rafdb(tmp_path / "basic", size=16)
    subset = tmp_path / "occlusion_list.txt"
    subset.write_text("# occlusion\ntest_0002_aligned.jpg 2\n\ntest_0005.jpg\n")
    ds = RAFDB(root, test_subset=subset)
    assert [r.video_id for r in ds.records("test")] == ["test_0002", "test_0005"]
    assert len(ds.records("val")) == 7  # val keeps the whole test set
    subset.write_text("test_0002.jpg\ntest_0999.jpg\n")
    with pytest.raises(DatasetError, match=r"occlusion_list\.txt: 1 listed images are not test images.*line 2"):
        RAFDB(root, test_subset=subset).records("test")


def test_rafdb_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="RAF-DB root .*nope does not exist"):
        RAFDB(tmp_path / "nope").records("train")
    root = make_miniature_rafdb(tmp_path / "basic", size=16)
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    good = label_file.read_text()
    label_file.unlink()
    with pytest.raises(DatasetError, match=r"list_patition_label\.txt does not exist"):
        RAFDB(root).records("train")
    label_file.write_text(good.replace("train_00003.jpg 2", "train_00003.jpg 8"))
    with pytest.raises(DatasetError, match=r"list_patition_label\.txt: line 3: label 8 of train_00003\.jpg is outside"):
        RAFDB(root).records("train")
    label_file.write_text(good.replace("train_00003.jpg 2", "train_00003.jpg"))
    with pytest.raises(DatasetError, match="line 3: expected '<image name> <label>'"):
        RAFDB(root).records("train")
    label_file.write_text("".join(line + "\n" for line in good.splitlines() if line.startswith("train")))
    with pytest.raises(DatasetError, match="lists no test_\\* image"):
        RAFDB(root).records("train")
    label_file.write_text(good)
    (root / "Image" / "aligned" / "test_0004_aligned.jpg").unlink()  # a missing image: the unusable-sample policy
    dm = ClipDataModule(RAFDB(root), UniformSampler(1), identity, identity, num_workers=0)
    with pytest.raises(DatasetError, match=r"(?s)1 of 7 'test' samples are unusable \(missing=1\).*test_0004 "
                                           r"\(.*list_patition_label\.txt line 18\): missing: "
                                           r".*test_0004_aligned\.jpg"):
        dm.setup("test")


def test_corrupt_image_error_or_counted_skip(tmp_path: Path) -> None:
    root = make_miniature_rafdb(tmp_path / "basic", size=16)
    bad = root / "Image" / "aligned" / "test_0003_aligned.jpg"
    bad.write_bytes(b"\x00garbage bytes, not an image" * 4)
    test = RAFDB(root).records("test")
    with pytest.raises(DatasetError, match=r"test_0003_aligned\.jpg cannot be decoded"):
        dataset(test)[2]
    # opt-in: the datamodule's skip_corrupt validates every image once, drops and counts the unreadable one
    dm = ClipDataModule(RAFDB(root), UniformSampler(1), identity, identity, batch_size=2, num_workers=0,
                        skip_corrupt=True, max_corrupt_frac=0.5)
    dm.setup("test")
    assert len(dm.datasets["test"]) == 6 and "test_0003" not in [r.video_id for r in dm.datasets["test"].records]
    assert [(s["split"], s["video_id"], s["reason"]) for s in dm.skipped] == [("test", "test_0003", "unreadable")]


# ------------------------------------------------------------------------------------------------ AffectNet
def test_affectnet_7_vs_8_and_dropped_codes(tmp_path: Path) -> None:
    root = make_miniature_affectnet(tmp_path / "AffectNet", train_per_class=2, test_per_class=1, size=32,
                                    dropped_per_code=2)
    ds8 = AffectNet(root, num_classes=8)
    assert len(ds8.records("train")) == 16 and len(ds8.records("test")) == 8
    assert ds8.records("val") == ds8.records("test")
    assert dict(ds8.dropped["train"]) == {"None": 2, "Uncertain": 2, "No-Face": 2}
    assert dict(ds8.dropped["test"]) == {"None": 2, "Uncertain": 2, "No-Face": 2}
    ds7 = AffectNet(root, num_classes=7)
    assert ds7.class_names == ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger")
    assert len(ds7.records("train")) == 14 and dict(ds7.dropped["train"]) == {"Contempt": 2, "None": 2,
                                                                              "Uncertain": 2, "No-Face": 2}
    by_code = {int(r.video_id.split("/")[0]): ds8.class_names[r.label] for r in ds8.records("train")}
    assert by_code == {0: "Neutral", 1: "Happy", 2: "Sad", 3: "Surprise", 4: "Fear", 5: "Disgust", 6: "Anger",
                       7: "Contempt"}
    # the face box (4, 4, 24, 24) is cropped before the transform; the background (value 20) is cut off
    sample = dataset(ds8.records("test"))[0]
    assert sample["video"].shape == (1, 3, 24, 24) and sample["video"].float().mean() > 60
    assert dataset(AffectNet(root, crop=False).records("test"))[0]["video"].shape == (1, 3, 32, 32)


def test_affectnet_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="AffectNet root"):
        AffectNet(tmp_path / "nope").records("train")
    root = make_miniature_affectnet(tmp_path / "AffectNet", size=16, dropped_per_code=1)
    lists = root / "Manually_Annotated_file_lists"
    good = (lists / "validation.csv").read_text()
    (lists / "validation.csv").unlink()
    with pytest.raises(DatasetError, match=r"validation\.csv not found"):
        AffectNet(root).records("test")
    lines = good.splitlines()
    bad_code = lines[:2] + [lines[2].rsplit(",", 3)[0] + ",11,0.1,0.1"] + lines[3:]
    (lists / "validation.csv").write_text("\n".join(bad_code) + "\n")
    with pytest.raises(DatasetError, match=r"validation\.csv: line 3: expression 11 is outside the official 0\.\.10"):
        AffectNet(root).records("test")
    (lists / "validation.csv").write_text("\n".join(lines[:1] + [l for l in lines[1:] if int(l.split(",")[-3]) >= 8]))
    with pytest.raises(DatasetError, match=r"validation\.csv lists no image of the 8 classes.*No-Face"):
        AffectNet(root).records("test")
    (lists / "validation.csv").write_text(good)
    missing = lines[1].split(",")[0]
    (root / "Manually_Annotated_Images" / missing).unlink()  # a missing image: the unusable-sample policy
    dm = ClipDataModule(AffectNet(root), UniformSampler(1), identity, identity, num_workers=0)
    with pytest.raises(DatasetError, match=f"(?s)validation\\.csv line 2\\): missing: .*{missing} does not exist"):
        dm.setup("test")
    with pytest.raises(ValueError, match="7 .* or 8"):
        AffectNet(root, num_classes=6)


def test_class_balanced_sampler_draws_classes_equally(tmp_path: Path) -> None:
    # 1 image of each of 7 classes except Neutral with 15: a plain shuffle draws Neutral 15/21 of the time
    root = make_miniature_affectnet(tmp_path / "AffectNet", train_per_class=1, size=16, dropped_per_code=0)
    extra = root / "Manually_Annotated_file_lists" / "training.csv"
    lines = extra.read_text().splitlines()
    for k in range(14):
        name = f"0/extra_{k}.jpg"
        images = root / "Manually_Annotated_Images"
        shutil.copy(images / lines[1].split(",")[0], images / name)
        lines.append(",".join([name] + lines[1].split(",")[1:]))
    extra.write_text("\n".join(lines) + "\n")
    dm = ClipDataModule(AffectNet(root, num_classes=7), UniformSampler(1), identity, identity, num_workers=0,
                        batch_size=7, class_balanced=True)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, EpochSampler) and loader.sampler.weights is not None  # seeded per epoch
    labels = []
    for epoch in range(100):
        loader.sampler.set_epoch(epoch)
        labels += [dm.datasets["train"].records[i].label for i in loader.sampler]
    labels = torch.tensor(labels)
    share = torch.bincount(labels, minlength=7).float() / len(labels)
    assert share[0] < 0.2 and share.min() > 0.09  # ~1/7 each instead of 15/21 Neutral


# ------------------------------------------------------------------------------------------------ FERPlus
@pytest.mark.parametrize(
    "votes, expected",
    [
        # neutral 4, happiness 3, surprise 2 (sadness 1 vote is zeroed): S = 9
        ([4, 3, 2, 1, 0, 0, 0, 0, 0, 0], {"majority": "no_agreement", "crossentropy": (0, [4 / 7, 3 / 7]),
                                          "probability": (0, [4 / 7, 3 / 7]), "multi_target": (0, [4 / 7, 3 / 7])}),
        # three-way tie of 3 votes: all three taken at once
        ([3, 3, 3, 1, 0, 0, 0, 0, 0, 0], {"majority": "no_agreement", "crossentropy": (0, [1 / 3, 1 / 3, 1 / 3]),
                                          "multi_target": (0, [1 / 3, 1 / 3, 1 / 3])}),
        # neutral 5, happiness 2, surprise 2, unknown 1 (zeroed): S = 9; multi_target's 30% rule keeps neutral alone
        ([5, 2, 2, 0, 0, 0, 0, 0, 1, 0], {"majority": (0, [1]), "crossentropy": (0, [5 / 9, 2 / 9, 2 / 9]),
                                          "multi_target": (0, [1])}),
        # neutral ties with unknown (5/5): CE leaves unknown out and keeps 5 of 10 (not > half); multi_target keeps
        # both, the first maximum is neutral
        ([5, 0, 0, 0, 0, 0, 0, 0, 5, 0], {"majority": "no_agreement", "crossentropy": "no_agreement",
                                          "multi_target": (0, [1])}),
        ([2, 0, 0, 0, 0, 0, 0, 0, 6, 2], {"majority": "unknown", "crossentropy": "unknown", "multi_target": "unknown"}),
        ([2, 0, 0, 0, 0, 0, 0, 0, 2, 6], {"majority": "not_face", "crossentropy": "not_face"}),
        ([0, 0, 0, 0, 0, 0, 0, 8, 2, 0], {"majority": (7, [0, 0, 0, 0, 0, 0, 0, 1]),
                                          "crossentropy": (7, [0, 0, 0, 0, 0, 0, 0, 1])}),  # contempt
        # four emotions taken (4, then three ties of 2): more than 3 -> no agreement
        ([4, 2, 2, 2, 0, 0, 0, 0, 0, 0], {"crossentropy": "no_agreement", "multi_target": "no_agreement"}),
        ([1] * 10, {"majority": "no_agreement", "crossentropy": "no_agreement", "multi_target": "no_agreement"}),
    ],
)
def test_ferplus_label_modes_known_answers(votes: list[int], expected: dict) -> None:
    for mode, want in expected.items():
        got = ferplus_label(votes, mode)
        if isinstance(want, str):
            assert got == want, (mode, got)
        else:
            label, target = got
            assert label == want[0], (mode, got)
            assert np.allclose(target, want[1] + [0.0] * (8 - len(want[1])), atol=1e-9), (mode, got)
            assert math.isclose(sum(target), 1.0)
    dist, _ = process_votes(votes, "majority")
    assert dist.shape == (10,) and math.isclose(dist.sum(), 1.0)


def test_ferplus_dataset_pixels_png_and_dropped_counts(tmp_path: Path) -> None:
    root = make_miniature_ferplus(tmp_path / "FERPlus", per_class=1)
    png = FERPlus(root, images="png", label_source="fer2013new")
    pixels = FERPlus(root, images="pixels", cache_dir=tmp_path / "cache", label_source="fer2013new")
    for split in ("train", "val", "test"):
        assert len(png.records(split)) == 8 and [r.label for r in png.records(split)] == list(range(8))
        assert dict(png.dropped[split]) == {"no_image": 1, "no_agreement": 1, "unknown": 1, "not_face": 1}
    a, b = dataset(png.records("test")), dataset(pixels.records("test"))
    assert pixels.records("test")[0].path.suffix == ".npy"
    for i in (0, 7):
        sa, sb = a[i], b[i]
        assert sa["video"].shape == (1, 3, 48, 48) and torch.equal(sa["video"], sb["video"])
        assert sa["target"].dtype == torch.float32 and sa["target"].shape == (8,) and int(sa["target"].argmax()) == i
    # multi_target keeps the no-agreement row of train (two emotions with 3 votes each), val/test stay majority
    multi = FERPlus(root, label_mode="multi_target", images="png", label_source="fer2013new")
    assert len(multi.records("train")) == 9 and multi.dropped["train"]["no_agreement"] == 0
    assert np.allclose(multi.records("train")[8].target, [0.5, 0.5, 0, 0, 0, 0, 0, 0])
    assert len(multi.records("test")) == 8


def test_ferplus_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="FERPlus root"):
        FERPlus(tmp_path / "nope").records("train")
    root = make_miniature_ferplus(tmp_path / "FERPlus", per_class=1, png=False)
    good = (root / "fer2013new.csv").read_text()
    (root / "fer2013new.csv").unlink()
    with pytest.raises(DatasetError, match=r"fer2013new\.csv does not exist"):
        FERPlus(root, label_source="fer2013new").records("train")
    lines = good.splitlines()
    (root / "fer2013new.csv").write_text("\n".join(lines[:3] + [lines[3].replace(",7,", ",-7,", 1)] + lines[4:]))
    with pytest.raises(DatasetError, match=r"fer2013new\.csv: line 4: vote counts must be finite and >= 0"):
        FERPlus(root, cache_dir=tmp_path / "c", label_source="fer2013new").records("train")
    (root / "fer2013new.csv").write_text("\n".join(l for l in lines if not l.startswith("PrivateTest")))
    with pytest.raises(DatasetError, match="has 36 image rows but .* has 24"):
        FERPlus(root, cache_dir=tmp_path / "c", label_source="fer2013new").records("train")
    (root / "fer2013new.csv").write_text(good)
    (root / "fer2013.csv").unlink()
    with pytest.raises(DatasetError, match=r"neither FER2013Train/Valid/Test PNG folders .* nor the FER2013 pixel"):
        FERPlus(root).records("train")
    root = make_miniature_ferplus(tmp_path / "F2", per_class=1, pixels=False)
    (root / "data" / "FER2013Test" / "fer0000030.png").unlink()  # a missing image: the unusable-sample policy
    dm = ClipDataModule(FERPlus(root), UniformSampler(1), identity, identity, num_workers=0)
    with pytest.raises(DatasetError, match=r"(?s)'test' samples are unusable \(missing=1\).*fer0000030\.png"):
        dm.setup("test")
    # an empty split: every PrivateTest row without agreement
    rows = (root / "fer2013new.csv").read_text().splitlines()
    rows = [r if not r.startswith("PrivateTest") else ",".join(r.split(",")[:2] + ["1"] * 10) for r in rows]
    (root / "fer2013new.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DatasetError, match="no FER2013Test image of the fer2013new labels is left for 'test'"):
        FERPlus(root, check_media=False, label_source="fer2013new").records("test")


# ------------------------------------------------------------------------------------------------ losses
def test_soft_target_loss_formulas() -> None:
    logits = torch.tensor([[0.0, math.log(2.0), 0.0, math.log(4.0)]])  # softmax = [1, 2, 1, 4] / 8
    p = [1 / 8, 2 / 8, 1 / 8, 4 / 8]
    t = torch.tensor([[0.25, 0.75, 0.0, 0.0]])
    ce = -(0.25 * math.log(p[0]) + 0.75 * math.log(p[1]))
    assert math.isclose(SoftTargetLoss("crossentropy")(logits, t).item(), ce, rel_tol=1e-6)
    assert math.isclose(SoftTargetLoss("majority")(logits, t).item(), ce, rel_tol=1e-6)
    # multi_target: -log max_k t'_k p_k, t' = 1 on classes 0, 1 and eps elsewhere -> -log max(p0, p1, eps * p3)
    assert math.isclose(SoftTargetLoss("multi_target")(logits, t).item(), -math.log(p[1]), rel_tol=1e-5)
    pld = SoftTargetLoss("probability")
    drawn = {round(pld(logits, t).item(), 5) for _ in range(50)}  # training mode: one label drawn per step
    assert drawn == {round(-math.log(p[0]), 5), round(-math.log(p[1]), 5)}
    pld.eval()
    assert math.isclose(pld(logits, t).item(), ce, rel_tol=1e-6)  # eval: the expectation
    with pytest.raises(ValueError, match="float targets"):
        SoftTargetLoss()(logits, torch.tensor([1]))


def test_task_passes_soft_target_to_the_loss() -> None:
    net = ResNet18Image(num_classes=4)
    opt = lambda params: torch.optim.SGD(params, lr=0.1)  # noqa: E731
    task = RecognitionTask(net, SoftTargetLoss("crossentropy"), opt, ["a", "b", "c", "d"])
    assert task.soft_targets
    batch = {"video": torch.randn(2, 1, 3, 32, 32), "label": torch.tensor([0, 1]),
             "target": torch.tensor([[1.0, 0, 0, 0], [0, 0.5, 0.5, 0]]), "video_id": ["x", "y"]}
    net.eval()
    with torch.no_grad():
        logp = net(batch["video"]).log_softmax(1)
        want = -(batch["target"] * logp).sum(1).mean()
        assert torch.allclose(task._step(dict(batch), "val"), want, atol=1e-5)
        del batch["target"]
        with pytest.raises(KeyError, match="no 'target'"):
            task._step(batch, "val")
    plain = RecognitionTask(net, torch.nn.CrossEntropyLoss(), opt, ["a", "b", "c", "d"])
    assert not plain.soft_targets  # default unchanged: labels
    with pytest.raises(ValueError, match="T=3"):
        net(torch.randn(1, 3, 3, 32, 32))
