"""The dataset check (``python -m fertrain.data.check``): a broken miniature DFEW tree (missing clip, corrupt JPEG,
extra clip, a clip with fewer frames than ``frame_counts.csv``) is named problem by problem and exits 1; a tree with
the real split files (``../shared``) passes with the official fold sizes; the fingerprint is training's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fertrain.data.check import main, run_check
from fertrain.data.datasets.dfew import DFEW, make_miniature_dfew
from fertrain.data.fingerprint import data_fingerprint

FRAMES = Path("Clip") / "clip_224x224"


def break_tree(root: Path) -> dict[str, Path]:
    """The four problems of the issue, on a miniature DFEW tree (7 clips of 4 frames; frame_counts.csv says 4)."""
    missing = root / FRAMES / "00003"
    shutil.rmtree(missing)
    corrupt = root / FRAMES / "00005" / "00002.jpg"
    corrupt.write_bytes(corrupt.read_bytes()[:100])  # cut: no end-of-image marker
    extra = root / FRAMES / "20001"  # not a DFEW clip number (the release has 1..16372)
    shutil.copytree(root / FRAMES / "00001", extra)
    short = root / FRAMES / "00006"
    (short / "00004.jpg").unlink()  # 3 frames, frame_counts.csv: 4
    return {"missing": missing, "corrupt": corrupt, "extra": extra, "short": short}


def test_broken_miniature_tree_every_problem_named_and_exit_1(tmp_path, capsys):
    root = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=1, num_frames=4, size=40)
    bad = break_tree(root)
    args = ["data=dfew", f"data.root={root}", f"data.frame_counts={root / 'frame_counts.csv'}",
            f"paths.log_dir={tmp_path / 'logs'}", "--workers", "2"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert f"missing: {bad['missing']} " in out
    assert f"corrupt_frame: {bad['corrupt']} " in out and "no JPEG end-of-image marker" in out
    assert f"truncated: {bad['short']} " in out and "4 frames indexed (from frame 0) but only 3 exist" in out
    assert f"extra: {bad['extra']} (not in the protocol)" in out
    assert "protocol: fold 1 train/test clips: DIFFERS (expected [9356, 2341], found [5, 2])" in out
    assert "verdict: the tree DIFFERS from the protocol (3 problems" in out
    report = json.loads((tmp_path / "logs" / "data_check" / "dfew" / "data_report.json").read_text())
    assert report["problem_counts"] == {"corrupt_frame": 1, "missing": 1, "truncated": 1}
    assert report["extra"] == [str(bad["extra"])] and not report["ok"]
    md = (tmp_path / "logs" / "data_check" / "dfew" / "data_report.md").read_text()
    assert "DIFFERS from the protocol" in md and str(bad["corrupt"]) in md


def test_fingerprint_is_the_one_training_records(tmp_path):
    root = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=1, num_frames=3, size=32, folds=(1,))
    report, _ = run_check(["data=dfew", f"data.root={root}", f"paths.log_dir={tmp_path}"], progress=False)
    source = DFEW(root, fold=1)
    expected = data_fingerprint({s: source.records(s) for s in ("train", "val", "test")}, root)
    assert report["fingerprint"] == expected
    from fertrain.data.datamodule import ClipDataModule
    from fertrain.data.samplers import UniformSampler

    dm = ClipDataModule(source, UniformSampler(2), lambda x: x, lambda x: x, num_workers=0)
    dm.setup()
    assert dm.data_fingerprint() == expected  # what training records in run.json


def test_cache_resumes_and_sees_a_changed_file(tmp_path):
    root = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=1, num_frames=3, size=32, folds=(1,))
    args = ["data=dfew", f"data.root={root}", f"paths.log_dir={tmp_path}"]
    first, out = run_check(args, progress=False)
    assert first["samples_checked"]["checked"] == 7 and (out / ".check_cache.jsonl").is_file()
    again, _ = run_check(args, progress=False)
    assert again["samples_checked"]["checked"] == 0 and again["samples_checked"]["cached"] == 7
    frame = root / FRAMES / "00002" / "00002.jpg"
    frame.write_bytes(b"\xff\xd8" + bytes(300) + b"\xff\xd9")  # markers intact, does not decode
    os.utime(frame, ns=(1, 1))
    third, _ = run_check(args, progress=False)
    assert third["samples_checked"]["checked"] == 1
    assert [(p["video_id"], p["reason"]) for p in third["problems"]] == [("00002", "corrupt_frame")]
    quick, _ = run_check([*args, "paths.log_dir=" + str(tmp_path / "q")], quick=True, progress=False)
    assert quick["problems"] == [] and quick["mode"] == "quick (headers)"  # headers cannot see it


def test_usage_errors_exit_2_with_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    res = subprocess.run([sys.executable, "-m", "fertrain.data.check", "data=dfew",
                          f"data.root={tmp_path / 'nowhere'}", f"paths.log_dir={tmp_path}"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith("fertrain.data.check: error: DFEW root")


@pytest.fixture(scope="module")
def official_tree(shared_dir, tmp_path_factory) -> Path:
    """The real DFEW split files with one 16-px frame per listed clip (11,697 folders, hard links)."""
    import csv
    import io

    import numpy as np

    root = tmp_path_factory.mktemp("dfew_official") / "DFEW"
    shutil.copytree(shared_dir / "data" / "dfew" / "EmoLabel_DataSplit", root / "EmoLabel_DataSplit")
    ids = sorted({int(r["video_name"]) for p in (root / "EmoLabel_DataSplit").rglob("set_*.csv")
                  for r in csv.DictReader(p.read_text().splitlines())})
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buf, "JPEG")
    proto = root / "proto.jpg"
    proto.write_bytes(buf.getvalue())
    for v in ids:
        folder = root / FRAMES / f"{v:05d}"
        folder.mkdir(parents=True)
        os.link(proto, folder / "00001.jpg")
    (root / "frame_counts.csv").write_text("video_name,num_frames\n" + "".join(f"{v},1\n" for v in ids))
    return root


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_official_split_files_pass_then_each_break_is_found(official_tree, tmp_path):
    args = ["data=dfew", f"data.root={official_tree}", f"data.frame_counts={official_tree / 'frame_counts.csv'}",
            f"paths.log_dir={tmp_path}"]
    clean, _ = run_check(args, quick=True, workers=2, progress=False)
    assert clean["ok"], (clean["problems"][:3], [c for c in clean["protocol"]["checks"] if not c["ok"]])
    assert [c["found"] for c in clean["protocol"]["checks"][:5]] == [[9356, 2341], [9356, 2341], [9357, 2340],
                                                                      [9358, 2339], [9361, 2336]]
    assert clean["splits"]["train"]["samples"] == 9356 and clean["splits"]["test"]["samples"] == 2341
    shutil.rmtree(official_tree / FRAMES / "00010")
    (official_tree / FRAMES / "00012" / "00001.jpg").unlink()
    (official_tree / FRAMES / "00012" / "00001.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")
    shutil.copytree(official_tree / FRAMES / "00001", official_tree / FRAMES / "extra_clip")
    shutil.copytree(official_tree / FRAMES / "00002", official_tree / FRAMES / "16373")
    broken, _ = run_check(args, quick=True, workers=2, progress=False)  # the cache re-checks what changed
    assert broken["samples_checked"]["checked"] <= 2 and not broken["ok"]
    assert sorted((p["video_id"], p["reason"]) for p in broken["problems"]) == [("00010", "missing"),
                                                                                ("00012", "corrupt_frame")]
    assert broken["extra"] == [str(official_tree / FRAMES / "16373"), str(official_tree / FRAMES / "extra_clip")]
