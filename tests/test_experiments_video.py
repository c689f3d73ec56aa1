"""Every video-dataset experiment (AFEW, MMI, BU-3DFE x MSCM, CEFLNet; DFEW x CEFLNet) end to end on a miniature
tree: composed exactly as ``python -m fertrain +experiment=NAME ...`` and run in-process (2 train steps, 2 val/test
batches), shrunk to 32-pixel frames and a few frames per sample so each run takes seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fertrain.data.datasets.afew import make_miniature_afew
from fertrain.data.datasets.bu3dfe import make_miniature_bu3dfe
from fertrain.data.datasets.common import read_folds_csv
from fertrain.data.datasets.dfew import make_miniature_dfew
from fertrain.data.datasets.mmi import make_miniature_mmi
from tests.helpers import run_experiment

SMALL = ["data.image_size=32", "data.datamodule.batch_size=2", "trainer.limit_val_batches=1",
         "trainer.limit_test_batches=1", "callbacks=none"]  # callbacks=none: checkpoints only, no progress bar
FEW_FRAMES = {  # fewer frames per sample than the experiments' own samplers (speed only)
    "mscm": ["data.datamodule.sampler.num_segments=2", "data.datamodule.sampler.frames_per_segment=2"],
    "ceflnet": ["data.ceflnet_sampler.num_clips=2", "data.ceflnet_sampler.frames_per_clip=2"],
}


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("video_trees")
    afew = make_miniature_afew(base / "AFEW", clips_per_class=1, val_clips_per_class=1, num_frames=6)
    # one clip with an unreadable first face frame: skipped (and listed) when the run opts in to skip_corrupt
    (afew / "faces" / "Train_AFEW" / "Happy" / "000000004" / "00000.jpg").write_bytes(b"not a jpeg")
    return {
        "afew": afew,
        "mmi": make_miniature_mmi(base / "MMI", subjects=10, num_frames=6),
        "bu3dfe": make_miniature_bu3dfe(base / "BU-3DFE", subjects=10),
        "dfew": make_miniature_dfew(base / "DFEW", clips_per_class=1, num_frames=6, size=40, folds=(1,)),
    }


CASES = [
    ("afew_mscm", ["data.datamodule.skip_corrupt=true", "data.max_corrupt_frac=0.5"]),
    ("afew_ceflnet", ["data.datamodule.source.source=videos"]),
    ("mmi_mscm", ["data.fold=3"]),
    ("mmi_ceflnet", []),
    ("bu3dfe_mscm", ["data.datamodule.sampler.clip_len=3"]),
    ("bu3dfe_ceflnet", ["data.fold=10"]),
    ("dfew_ceflnet", []),
]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("experiment, extra", CASES, ids=[c[0] for c in CASES])
def test_video_experiment_runs(experiment: str, extra: list[str], trees, tmp_path: Path) -> None:
    dataset, model = experiment.split("_")
    frames = [] if dataset == "bu3dfe" and model == "mscm" else FEW_FRAMES[model]
    summary = run_experiment([f"+experiment={experiment}", f"data.root={trees[dataset]}", *SMALL, *frames, *extra],
                             tmp_path)
    run = Path(summary["run_dir"])
    assert json.loads((run / "summary.json").read_text())["experiment"] == experiment
    for key in ("val_best", "val_last", "test_best", "test_last"):
        assert 0.0 <= summary[key]["uar"] <= 1.0 and 0.0 <= summary[key]["war"] <= 1.0, key
    assert Path(summary["best_ckpt"]).is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    if dataset in ("mmi", "bu3dfe"):  # the k-fold protocol's folds are saved next to the run
        folds = read_folds_csv(run / "folds.csv", 10)
        assert len(folds) == 10 and sorted(folds.values()) == list(range(1, 11))
    if "data.datamodule.skip_corrupt=true" in extra:
        lines = (run / "skipped_samples.csv").read_text().splitlines()
        assert lines[0] == "split,index,video_id,path,reason,detail,found_at"
        assert [line.split(",")[:3] for line in lines[1:]] == [["train", "3", "000000004"]]
    else:
        assert not (run / "skipped_samples.csv").exists()
    assert np.isfinite(summary["test_last"]["uar"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_predict_writes_ceflnet_activation_map(trees, tmp_path: Path) -> None:
    """``fertrain.predict`` on a CEFLNet checkpoint: besides the window probabilities, the activation map over
    each window's clips (CSV + PNG); per window the activations sum to 1 and every clip lies inside its window."""
    import csv

    from fertrain.predict import predict_video

    summary = run_experiment(["+experiment=dfew_ceflnet", f"data.root={trees['dfew']}", *SMALL,
                              *FEW_FRAMES["ceflnet"]], tmp_path)
    video = Path(__file__).resolve().parents[1] / "fertrain" / "assets" / "demo" / "WolfgangLanger_Pexels.mp4"
    out = predict_video(Path(summary["run_dir"]) / "checkpoints" / "last.ckpt", video, tmp_path / "pred",
                        window=48, stride=200)
    windows = list(csv.DictReader(out["csv"].open()))
    rows = list(csv.DictReader(out["activation_csv"].open()))
    assert len(rows) == 2 * len(windows)  # 2 clips per window (FEW_FRAMES)
    for i, window in enumerate(windows):
        mine = [r for r in rows if int(r["window"]) == i]
        assert sum(float(r["activation"]) for r in mine) == pytest.approx(1.0, abs=1e-4)
        for r in mine:
            assert int(window["start_frame"]) <= int(r["first_frame"]) <= int(r["last_frame"]) \
                <= int(window["end_frame"])
    from PIL import Image

    from fertrain.report.plots import ACTIVATION_SIZE, DPI
    assert Image.open(out["activation_png"]).size == tuple(round(v * DPI) for v in ACTIVATION_SIZE)  # the heatmap
