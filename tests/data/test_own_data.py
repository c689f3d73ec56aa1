"""Your own data (issue 14): ``data=folder`` and ``data=csv`` train and test end to end on trees built here (composed as
``python -m fertrain data=folder data.root=...`` would, run in-process), a subject-grouped split never puts one
subject in two splits, and the worked example: the shipped real video cut into labelled segments through
``data=csv``."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fertrain.data.datasets.common import assign_splits
from fertrain.data.datasets.csvlist import CSVDataset
from fertrain.data.datasets.folder import FolderDataset, make_class_folders
from fertrain.data.records import DatasetError
from tests.helpers import run_experiment

ASSETS = Path(__file__).resolve().parents[2] / "fertrain" / "assets" / "demo"
TINY = ["model=frame_mean", "data.image_size=32", "data.datamodule.batch_size=2", "data.datamodule.num_workers=0",
        "data.datamodule.sampler.num_segments=2", "callbacks=none", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1"]


# ------------------------------------------------------------------------------------------------ splits
def test_grouped_split_never_puts_a_subject_in_two_splits():
    rng = np.random.default_rng(0)
    subjects = [f"S{s}" for s in rng.integers(0, 23, 400)]
    labels = rng.integers(0, 5, 400).tolist()
    for seed in range(5):
        where = assign_splits(labels, (0.7, 0.15, 0.15), seed, subjects)
        by_subject = {}
        for s, w in zip(subjects, where):
            by_subject.setdefault(s, set()).add(w)
        assert all(len(v) == 1 for v in by_subject.values())
        assert set(where) == {0, 1, 2}
        counts = Counter(where)
        assert 0.5 < counts[0] / 400 < 0.85  # whole subjects: sizes near, not at, the fractions
    assert assign_splits(labels, (0.7, 0.15, 0.15), 3, subjects) == assign_splits(labels, (0.7, 0.15, 0.15), 3,
                                                                                    subjects)
    plain = assign_splits(labels, (0.5, 0.25, 0.25), 0)
    for c in range(5):  # stratified: every class in every split, in proportion
        n = labels.count(c)
        got = Counter(w for w, lab in zip(plain, labels) if lab == c)
        assert abs(got[0] - n / 2) <= 1 and abs(got[1] - n / 4) <= 1


def test_folder_subject_regex_grouping_and_split_level(tmp_path):
    root = make_class_folders(tmp_path / "mine", classes=("happy", "neutral", "sad"), subjects=8, per_subject=2,
                              kind="image", size=16)
    ds = FolderDataset(root, subject_regex=r"^(?P<subject>S\d+)_", seed=1)
    assert ds.class_names == ("happy", "neutral", "sad")
    splits = {s: ds.records(s) for s in ("train", "val", "test")}
    assert sum(map(len, splits.values())) == 48
    subj = {s: {r.subject for r in recs} for s, recs in splits.items()}
    assert not (subj["train"] & subj["val"]) and not (subj["train"] & subj["test"]) and not (subj["val"] & subj["test"])
    (root / "happy" / "noname.png").write_bytes((root / "happy" / "S01_happy_0.png").read_bytes())
    with pytest.raises(DatasetError, match=r"subject_regex .* does not match .*happy/noname\.png"):
        FolderDataset(root, subject_regex=r"^(S\d+)_").records("train")
    given = make_class_folders(tmp_path / "given", subjects=4, per_subject=1, kind="image", size=16, split_level=True)
    ds = FolderDataset(given)
    assert [len(ds.records(s)) for s in ("train", "val", "test")] == [4, 2, 2]
    assert FolderDataset.class_names_of(given) == ("Happy", "Sad") == ds.class_names
    assert {r.subject for r in ds.records("test")} == {None}  # no regex: no subjects


def test_csv_errors_name_the_row_and_column(tmp_path):
    clip = tmp_path / "a.png"
    make_class_folders(tmp_path / "imgs", classes=("x",), subjects=1, per_subject=1, kind="image", size=16)
    (tmp_path / "imgs" / "x" / "S01_x_0.png").rename(clip)
    table = tmp_path / "labels.csv"
    table.write_text("path,label,split\na.png,happy,train\na.png,sad,validate\n")
    with pytest.raises(DatasetError, match=r"labels\.csv: line 3: column split: 'validate' is not train, val or test"):
        CSVDataset(table).records("train")
    table.write_text("path,label,start_frame,end_frame\na.png,happy,0,5\n")
    with pytest.raises(DatasetError, match=r"line 2: .*a\.png is an image; start_frame/end_frame apply to videos"):
        CSVDataset(table).records("train")
    table.write_text("path,label,emotion\na.png,happy,x\n")
    with pytest.raises(DatasetError, match=r"line 1: expected a header with path,label .*\(unknown: \['emotion'\]\)"):
        CSVDataset(table)
    table.write_text("path,label,end_frame,start_frame\nv.mp4,happy,3,9\n")
    with pytest.raises(DatasetError, match=r"line 2: end_frame 3 < start_frame 9"):
        CSVDataset(table).records("train")


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_folder_trains_and_tests_end_to_end_with_a_subject_grouped_split(tmp_path):
    root = make_class_folders(tmp_path / "mine", classes=("Happy", "Sad"), subjects=6, per_subject=2,
                              kind="frames", num_frames=4, size=32)
    summary = run_experiment(["data=folder", f"data.root={root}", "data.subject_regex='^(S\\d+)_'", *TINY], tmp_path)
    run = Path(summary["run_dir"])
    for key in ("val_best", "test_best", "test_last"):
        assert 0.0 <= summary[key]["uar"] <= 1.0
    rows = list(csv.DictReader((run / "splits.csv").read_text().splitlines()))
    assert len(rows) == 24 and {r["label"] for r in rows} == {"Happy", "Sad"}
    where = {}
    for r in rows:
        where.setdefault(r["subject"], set()).add(r["split"])
    assert len(where) == 6 and all(len(v) == 1 for v in where.values())  # one person never in two splits
    assert {r["split"] for r in rows} == {"train", "val", "test"}


def write_demo_segments(folder: Path, window: int = 32) -> Path:
    """The worked example: the shipped real video cut into labelled windows (from its hand-made annotations), split
    by time per label: first 4 windows train, next val, the last 2 test (one person: no subject grouping)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink(ASSETS / "WolfgangLanger_Pexels.mp4", folder / "WolfgangLanger_Pexels.mp4")
    lines = ["path,label,split,start_frame,end_frame"]
    for seg in csv.DictReader((ASSETS / "annotations.csv").read_text().splitlines()):
        starts = list(range(int(seg["start_frame"]), int(seg["end_frame"]) - window + 2, window))
        for k, s in enumerate(starts):
            split = "train" if k < len(starts) - 3 else "val" if k == len(starts) - 3 else "test"
            lines.append(f"{seg['video']},{seg['label']},{split},{s},{s + window - 1}")
    (folder / "segments.csv").write_text("\n".join(lines) + "\n")
    return folder / "segments.csv"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_csv_worked_example_real_video_segments_train_and_test(tmp_path):
    table = write_demo_segments(tmp_path / "demo")
    ds = CSVDataset(table)
    assert ds.class_names == ("happy", "sad")
    assert [len(ds.records(s)) for s in ("train", "val", "test")] == [8, 2, 4]
    rec = ds.records("test")[-1]
    assert rec.num_frames == 32 and rec.start_frame == 422 and rec.video_id == "WolfgangLanger_Pexels.mp4@422-453"
    summary = run_experiment(["data=csv", f"data.csv={table}", *TINY], tmp_path)
    run = Path(summary["run_dir"])
    assert json.loads((run / "summary.json").read_text())["test_last"]["uar"] == summary["test_last"]["uar"]
    back = list(csv.DictReader((run / "splits.csv").read_text().splitlines()))  # readable again by data=csv
    assert len(back) == 14 and back[0]["start_frame"] == "0" and back[0]["end_frame"] == "31"
