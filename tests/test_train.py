"""End-to-end runs through the real CLI (`python -m fertrain`, `python -m fertrain.predict`, `python -m
fertrain.sweep`): run records, refused reruns, best vs last checkpoints, test-only and predict-only runs, exit codes
and one-line errors. Subprocesses where the interpreter itself matters; elsewhere the same command line runs in a
process forked from the test (``tests/faults/forked.py``) or in this process."""

from __future__ import annotations

import csv
import json
from importlib import metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fertrain.cli import UsageError
from fertrain.data.datasets.dfew import make_miniature_dfew
from fertrain.report.run_record import read_run_record, run_flags
from tests.faults.forked import cli
from tests.helpers import run_experiment

REPO = Path(__file__).resolve().parents[1]
TINY_SYNTH = ["+experiment=synthetic_mscm", "data.datamodule.source.num_train=16", "data.datamodule.source.num_val=8",
              "data.datamodule.source.num_test=8", "data.datamodule.batch_size=4", "data.datamodule.num_workers=0"]


def fertrain(args: list[str], tmp_path: Path, module: str = "fertrain", check: bool = True):
    env = dict(os.environ, WANDB_MODE="offline", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-5000:]}")
    return proc


def test_dfew_mscm_on_miniature_tree(tmp_path: Path) -> None:
    root = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=2, num_frames=6, size=48)
    fertrain(["+experiment=dfew_mscm", f"data.root={root}", "data.fold=2", "debug=limit", "data.image_size=48",
              "data.datamodule.batch_size=4", f"paths.log_dir={tmp_path / 'logs'}", "logger=wandb"], tmp_path)
    run = tmp_path / "logs" / "dfew_mscm" / "fold2_seed42"
    assert list((run / "wandb").glob("offline-run-*")), "wandb (offline) wrote no run"
    summary = json.loads((run / "summary.json").read_text())
    for key in ("val_best", "val_last", "test_best", "test_last"):
        assert 0.0 <= summary[key]["uar"] <= 1.0 and 0.0 <= summary[key]["war"] <= 1.0, key
    assert Path(summary["best_ckpt"]).is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "csv" / "metrics.csv").is_file()
    assert (run / "config_resolved.yaml").is_file() and (run / "plots" / "confusion_test_best.png").is_file()
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/uar", "val/war", "train/loss_step", "val_best/uar", "test_best/uar", "test_last/war"} <= set(header)


def test_missing_dataset_root_gives_one_clear_error(tmp_path: Path) -> None:
    """The real interpreter: exit status 2, the dataset's message once, no traceback."""
    proc = fertrain(["+experiment=dfew_mscm", f"data.root={tmp_path / 'nowhere'}", "debug=limit"], tmp_path,
                    check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    err = proc.stderr
    assert err.count("fertrain: error: ") == 1 and "EmoLabel_DataSplit" in err and str(tmp_path / "nowhere") in err
    assert "Traceback" not in err and "EmoLabel_DataSplit" not in proc.stdout, "printed once, on stderr"


def test_demo_pipeline_and_predict_cli(tmp_path: Path, demo_faces: Path, capsys: pytest.CaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The default (no experiment) job on the embedded real video, shrunk: it trains, tests and predicts on the
    aligned faces of the face pipeline (the session's face cache, reused, not extracted again); then the predict
    CLI on its checkpoint with its own window and stride."""
    import numpy as np

    import fertrain.preprocess.pipeline
    from fertrain.predict import main as predict_main

    def no_extraction(*args, **kwargs):
        raise AssertionError("the face pipeline ran again instead of reusing the cached faces")

    # training, its predict step and the predict CLI must all reuse the faces the fixture extracted
    monkeypatch.setattr(fertrain.preprocess.pipeline, "FacePipeline", no_extraction)
    # predict_window=236: the run's predict step (stride = window // 2) covers the video with 3 windows
    summary = run_experiment([f"data.cache_dir={demo_faces}", "data.image_size=32", "data.datamodule.batch_size=4",
                              "data.predict_window=236", "predict_video=${data.predict_video}"], tmp_path)
    run = Path(summary["run_dir"])
    assert summary["experiment"] == "demo" and run == tmp_path / "logs" / "demo" / "seed42" and "test_best" in summary
    record = read_run_record(run)
    assert {s: v["samples"] for s, v in record["data"]["splits"].items()} == {"train": 75, "val": 18, "test": 24}
    assert record["config"]["data"]["faces"] == {"size": 80}
    # the windows read the aligned faces: the frame array in the cache, 80 x 80 px per frame
    frames = np.load(next(demo_faces.glob("WolfgangLanger_Pexels-faces-*.npy")), mmap_mode="r")
    assert frames.shape == (472, 80, 80, 3) and frames.dtype == np.uint8 and frames[::50].std() > 10
    rows = list(csv.DictReader(Path(summary["predict"]["csv"]).open()))
    assert [(int(r["start_frame"]), int(r["end_frame"])) for r in rows] == [(0, 235), (118, 353), (236, 471)]
    for r in rows:
        assert float(r["p_sad"]) + float(r["p_happy"]) == pytest.approx(1.0, abs=1e-3) and r["pred"] in ("sad", "happy")
    assert Path(summary["predict"]["png"]).is_file()
    made = json.loads(Path(summary["predict"]["json"]).read_text())
    assert made["faces"]["mode"] == "face crops" and made["faces"]["options"]["size"] == 80
    assert made["faces"]["no_face_frames"] == 0 and made["windows_classified"] == 3
    assert made["labels"].endswith("annotations.csv")  # the demo's labelled segments, shaded on the timeline
    from PIL import Image

    from fertrain.report.plots import DPI, TIMELINE_SIZE
    assert Image.open(summary["predict"]["png"]).size == tuple(round(v * DPI) for v in TIMELINE_SIZE)

    # the predict CLI (its own argument parsing, in this process): window/stride, time columns, faces
    out = tmp_path / "pred"
    assert predict_main([f"ckpt={run / 'checkpoints' / 'last.ckpt'}", f"video={REPO}/fertrain/assets/demo/"
                         "WolfgangLanger_Pexels.mp4", "window=48", "stride=200", f"out_dir={out}",
                         f"cache_dir={demo_faces}"]) == 0
    assert "csv:" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "WolfgangLanger_Pexels_windows.csv").open()))
    assert [r["start_frame"] for r in rows] == ["0", "200", "400", "424"]  # the last window covers the tail
    assert rows[-1]["end_frame"] == "471" and rows[1]["end_frame"] == "247"
    assert float(rows[1]["start_s"]) == pytest.approx(200 / 23.976, abs=1e-3)
    assert float(rows[1]["end_s"]) == pytest.approx(248 / 23.976, abs=1e-3)
    made = json.loads((out / "WolfgangLanger_Pexels_predict.json").read_text())
    assert (made["window"], made["stride"], made["windows"]) == (48, 200, 4)
    assert made["faces"]["mode"] == "face crops" and made["faces"]["reason"].startswith("the run's data.faces")


# ---------------------------------------------------------------------------------------------------- run integrity
TINY = ["+experiment=synthetic_mscm", "data.datamodule.source.num_train=8", "data.datamodule.source.num_val=4",
        "data.datamodule.source.num_test=4", "data.datamodule.source.num_frames=8", "data.datamodule.source.size=48",
        "data.image_size=48", "data.datamodule.sampler.num_segments=2", "data.datamodule.batch_size=4",
        "data.datamodule.num_workers=0", "trainer.enable_model_summary=false", "~callbacks.rich_progress_bar",
        "model._target_=tests.faults.tiny.TinyVideoNet"]
RUN = Path("logs") / "synthetic_mscm" / "seed42"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return [f"paths.cache_dir={tmp_path_factory.mktemp('cache')}"]


def test_best_and_last_checkpoints_hold_different_epochs(tmp_path: Path, cache: list[str]) -> None:
    """Must show 2: the monitored val metric peaks at epoch 1 of 4; test_best tests epoch 1's weights and
    test_last epoch 4's, shown by the checkpoint contents (epoch, step and tensors inside the files). With
    save_top_k=1 Lightning rewrote last.ckpt only when the metric improved, so both were epoch 1."""
    summary = run_experiment([*TINY, *cache, "trainer.max_epochs=4", "+callbacks.peak._target_=tests.faults.probe."
                              "PeakFirst", "monitor.key=val/probe", "monitor.name=probe",
                              "checkpoint.best_weights_only=true"], tmp_path, fast=False)
    best = torch.load(summary["test_best"]["ckpt"], map_location="cpu", weights_only=False)
    last = torch.load(summary["test_last"]["ckpt"], map_location="cpu", weights_only=False)
    assert Path(summary["test_last"]["ckpt"]).name == "last.ckpt"
    assert (best["epoch"], best["global_step"], last["epoch"], last["global_step"]) == (0, 2, 3, 8)
    assert (summary["test_best"]["ckpt_epoch"], summary["test_last"]["ckpt_epoch"]) == (0, 3)
    assert (summary["val_best"]["epoch"], summary["val_last"]["epoch"]) == (0, 3)
    changed = [k for k in best["state_dict"] if not torch.equal(best["state_dict"][k], last["state_dict"][k])]
    assert "net.conv.weight" in changed and "net.head.weight" in changed, "different weights in the two files"
    # checkpoint.best_weights_only: the best file holds no optimiser state; sizes are reported
    assert "optimizer_states" not in best and "optimizer_states" in last
    sizes = summary["checkpoints"]
    assert sizes["best"]["weights_only"] and not sizes["last"]["weights_only"]
    assert 0 < sizes["best"]["bytes"] < sizes["last"]["bytes"] == Path(summary["last_ckpt"]).stat().st_size
    record = read_run_record(summary["run_dir"])
    assert record["checkpoints"] == sizes and record["status"] == "finished"


def test_rerun_with_another_config_is_refused_and_the_record_is_complete(tmp_path: Path, cache: list[str]) -> None:
    """Must show 3: run.json has every field; the same run dir with a changed override is refused, naming the
    differing keys and the two ways forward; the same config without ckpt_path=last is refused; with it, a
    finished run is not run again. A debug run is flagged, and replaced by the next debug run."""
    summary = run_experiment([*TINY, *cache, "trainer.max_epochs=1"], tmp_path, fast=False)
    run_dir = Path(summary["run_dir"])
    record = read_run_record(run_dir)
    for key in ("schema", "kind", "status", "experiment", "run_id", "run_dir", "config", "config_hash", "overrides",
                "git", "versions", "device", "seed", "data", "started_at", "ended_at", "error", "attempts"):
        assert key in record, key
    assert (record["kind"], record["status"], record["seed"], record["error"]) == ("train", "finished", 42, None)
    assert run_flags(record) == [] and record["debug"] == []
    assert record["config_hash"].startswith("sha256:") and len(record["config_hash"]) == 71
    assert record["git"]["commit"] and isinstance(record["git"]["dirty"], bool)
    assert record["versions"]["torch"] == metadata.version("torch") and record["versions"]["fertrain"] == "0.1.0"
    assert record["device"]["accelerator"] == "cpu" and record["device"]["precision"] == "32-true"
    assert record["data"]["fingerprint"].startswith("sha256:")
    assert {s: v["samples"] for s, v in record["data"]["splits"].items()} == {"train": 8, "val": 4, "test": 4}
    assert record["started_at"] <= record["ended_at"] and [a["status"] for a in record["attempts"]] == ["finished"]

    with pytest.raises(UsageError) as err:
        run_experiment([*TINY, *cache, "trainer.max_epochs=1", "optimizer.lr=0.01", "data.datamodule.batch_size=2"],
                       tmp_path, fast=False)
    text = str(err.value)
    assert f"{run_dir} already holds a run with another configuration" in text
    assert "data.datamodule.batch_size: 4 -> 2" in text and "optimizer.lr: 0.001 -> 0.01" in text
    assert "run_id=NAME" in text and "ckpt_path=last" in text
    with pytest.raises(UsageError, match="already holds this run .*Continue or re-test it with ckpt_path=last"):
        run_experiment([*TINY, *cache, "trainer.max_epochs=1"], tmp_path, fast=False)
    stamp = (run_dir / "summary.json").stat().st_mtime_ns
    assert run_experiment([*TINY, *cache, "trainer.max_epochs=1", "ckpt_path=last"], tmp_path, fast=False) == summary
    assert (run_dir / "summary.json").stat().st_mtime_ns == stamp, "a finished run is not run again"
    assert read_run_record(run_dir) == record

    debug = run_experiment([*TINY, *cache, "run_id=dbg"], tmp_path)  # debug=limit
    record = read_run_record(debug["run_dir"])
    assert record["status"] == "debug" and run_flags(record) == ["debug"], "a debug run is flagged where read"
    assert record["debug"] == ["trainer.limit_train_batches=2", "trainer.limit_val_batches=2",
                               "trainer.limit_test_batches=2"]
    again = run_experiment([*TINY, *cache, "run_id=dbg", "optimizer.lr=0.01"], tmp_path)
    assert read_run_record(again["run_dir"])["config"]["optimizer"]["lr"] == 0.01, "a debug run is replaced"


def test_test_only_run_writes_its_own_record_and_never_the_training_runs(tmp_path: Path, cache: list[str]) -> None:
    """``train=false ckpt_path=...``: tested in <run>/eval/<ckpt>-<hash>, exit 0 (it used to overwrite the training
    run's summary.json and metrics.csv, then fail with a KeyError on optimized_metric)."""
    args = [*TINY, *cache, f"paths.log_dir={tmp_path / 'logs'}", "trainer.max_epochs=1"]
    assert cli(args, tmp_path, tmp_path / "train.log") == 0, (tmp_path / "train.log").read_text()[-3000:]
    run_dir = tmp_path / RUN
    before = {f: (run_dir / f).read_bytes() for f in ("summary.json", "run.json", "csv/metrics.csv",
                                                       ".hydra/config.yaml")}
    last = run_dir / "checkpoints" / "last.ckpt"
    rc = cli([*args, "train=false", f"ckpt_path={last}"], tmp_path, tmp_path / "test.log")
    assert rc == 0, (tmp_path / "test.log").read_text()[-3000:]
    assert {f: (run_dir / f).read_bytes() for f in before} == before, "the training run is untouched"
    (eval_dir,) = (run_dir / "eval").iterdir()
    assert eval_dir.name.startswith("last-")
    record = read_run_record(eval_dir)
    assert (record["kind"], record["status"]) == ("test", "finished")
    assert record["source_checkpoint"]["path"] == str(last) and record["source_checkpoint"]["epoch"] == 0
    summary = json.loads((eval_dir / "summary.json").read_text())
    assert summary["kind"] == "test" and summary["test"]["ckpt"] == str(last) and 0 <= summary["test"]["uar"] <= 1
    # a truncated checkpoint: one line naming the file, exit 2
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(last.read_bytes()[:1000])
    assert cli([*args, "train=false", f"ckpt_path={cut}"], tmp_path, tmp_path / "cut.log") == 2
    err = (tmp_path / "cut.log").read_text()
    assert f"fertrain: error: checkpoint {cut} (1000 bytes) cannot be read: it is truncated" in err
    assert err.count("fertrain: error:") == 1 and "Traceback" not in err


def test_predict_only_run_has_its_own_record(tmp_path: Path, cache: list[str]) -> None:
    import cv2
    import numpy as np

    summary = run_experiment([*TINY, *cache], tmp_path)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (48, 48))
    for i in range(12):
        writer.write(np.full((48, 48, 3), 20 * i, np.uint8))
    writer.release()
    out = tmp_path / "pred"
    args = [f"ckpt={summary['last_ckpt']}", f"video={video}", "window=8", "stride=4"]
    assert cli([*args, f"out_dir={out}"], tmp_path, tmp_path / "p.log", module="fertrain.predict") == 0, \
        (tmp_path / "p.log").read_text()[-3000:]
    record = read_run_record(out)
    assert (record["kind"], record["status"], record["ckpt_path"]) == ("predict", "finished", summary["last_ckpt"])
    assert Path(record["outputs"]["csv"]).is_file()
    run_dir = Path(summary["run_dir"])
    before = (run_dir / "run.json").read_bytes()
    assert cli([*args, f"out_dir={run_dir}"], tmp_path, tmp_path / "p2.log", module="fertrain.predict") != 0
    assert "is the record of a train run; a predict run writes its own record elsewhere" in \
        (tmp_path / "p2.log").read_text()
    assert (run_dir / "run.json").read_bytes() == before


CLI_ERRORS = [  # (overrides, exit status, the one error line must contain)
    (["trainer.max_epochz=3"], 2, "unknown config key 'trainer.max_epochz' (override trainer.max_epochz=...)"),
    (["trainer.max_epochs=abc"], 2, "trainer.max_epochs=abc: expected int or null (argument max_epochs of "
                                    "fertrain.acceleration.Trainer), got str 'abc'"),
    (["monitor.mode=up"], 2, "monitor.mode=up: expected one of 'min', 'max' (fertrain's config), got str 'up'"),
    (["model.dropout=1.5"], 2, "model: cannot build tests.faults.tiny.TinyVideoNet: ValueError: dropout "
                                "probability"),
    (["paths.log_dir={tmp}/a_file/logs"], 2, "cannot create the run directory {tmp}/a_file/logs"),
    (["loss._target_=tests.test_fault_tolerance.NonFiniteAt", "+loss.nan_calls=[1]"], 1,
     "non-finite training loss (nan) at epoch 0, global step 1, batch 1"),
]


@pytest.mark.parametrize("extra, status, message", CLI_ERRORS, ids=[c[0][0].split("=")[0] for c in CLI_ERRORS])
def test_cli_errors_exit_codes_and_one_line(extra: list[str], status: int, message: str, tmp_path: Path,
                                            cache: list[str]) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    extra = [e.format(tmp=tmp_path) for e in extra]
    rc = cli([*TINY, *cache, "debug=limit", f"paths.log_dir={tmp_path / 'logs'}", *extra], tmp_path,
             tmp_path / "out.log")
    out = (tmp_path / "out.log").read_text()
    assert rc == status, out[-3000:]
    assert out.count("fertrain: error: ") == 1 and message.format(tmp=tmp_path) in out, out[-2000:]
    assert "Traceback" not in out


def test_sweep_exit_codes(tmp_path: Path, cache: list[str]) -> None:
    """fertrain.sweep: 2 for a bad command line or search space, 1 when no trial completed, one line each."""
    base = [*TINY, *cache, "debug=limit", f"paths.log_dir={tmp_path / 'logs'}", "hparams_search=synthetic_mscm_optuna",
            "sweep.prune_on=null", "~callbacks.model_checkpoint", "~callbacks.last_checkpoint",
            "+trainer.enable_checkpointing=false", "test=false"]
    cases = [([*base, "sweep.params.optimizer.lr.low=1.0"], 2, "sweep.params.optimizer.lr: float needs low < high"),
             (["--workers", "zero", *base], 2, "--workers 'zero': expected a whole number >= 1"),
             ([*base, "sweep.n_trials=1", "sweep.enqueue=[{model.dropout:1.5}]"], 1, None)]
    for i, (args, status, message) in enumerate(cases):
        log = tmp_path / f"sweep{i}.log"
        assert cli(args, tmp_path, log, module="fertrain.sweep") == status, log.read_text()[-3000:]
        text = log.read_text()
        if message:
            assert text.count("fertrain.sweep: error: ") == 1 and message in text and "Traceback" not in text
    report = json.loads(next((tmp_path / "logs").rglob("best.json")).read_text())
    assert report["trials"]["fail"] == 1 and report["best"] is None


def test_dataloader_worker_error_is_reported_once_with_its_own_message() -> None:
    """PyTorch re-raises a worker's exception with the worker's traceback inside the message; the CLI prints the
    original message once, naming the worker (exit 1: a sample failed while training read it; the same error at
    dataset set-up is exit 2)."""
    from torch.utils.data import DataLoader, Dataset

    from fertrain.cli import explain
    from fertrain.data.records import DatasetError

    class Broken(Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int):
            raise DatasetError(f"train sample {i}: /data/clip_{i}.mp4 is empty (0 bytes)\nexpected a video file")

    with pytest.raises(DatasetError) as err:
        next(iter(DataLoader(Broken(), num_workers=1)))
    assert "Traceback" in str(err.value)  # what PyTorch gives
    code, message = explain(err.value)
    assert code == 1 and message == ("train sample 0: /data/clip_0.mp4 is empty (0 bytes)\nexpected a video file "
                                     "(in DataLoader worker 0)")


def test_multirun_job_folders_are_short_and_stable() -> None:
    from fertrain.config import job_dir

    long = ",".join(f"model.some_option_{i}=value_{i}" for i in range(40))  # > 255 characters as a folder name
    assert job_dir(7, long) == job_dir(7, long) and len(job_dir(7, long)) == 12 and job_dir(7, long).startswith("007-")
    assert job_dir(7, long) != job_dir(7, long + "x")
