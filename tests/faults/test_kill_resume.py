"""Must show 1: SIGKILL at points drawn at random (fixed seed) -- a training step, a validation batch, the middle of
a checkpoint write, a test batch, between the jobs of a multirun, inside a sweep trial, and a training step right
after a mid-epoch step checkpoint (``checkpoint.every_n_train_steps``) -- and SIGTERM at a training step; then the
same command with ``ckpt_path=last`` (or the same sweep command): the resumed run's ``summary.json`` metrics and its
whole ``csv/metrics.csv`` equal those of one uninterrupted run, byte for byte, on CPU with the same seed.

Every run is the real command line (``python -m fertrain`` / ``python -m fertrain.sweep`` argument handling, Hydra,
:func:`fertrain.train.run`) in a process forked from the test process (``tests/faults/forked.py``: no 10 s import
per process); the kill is the process SIGKILLing itself at the drawn point (``tests/faults/probe.py``), so nothing
races. The network is ``tests/faults/tiny.py`` (BatchNorm, dropout, AdamW: the state a resume must restore).
"""

from __future__ import annotations

import io
import json
import random
import signal
from csv import DictReader
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from fertrain.report.run_record import read_run_record, run_flags
from tests.faults.forked import cli, reference_run
from tests.faults.probe import ENV

EPOCHS = 3  # 2 training batches of 4 clips per epoch, 1 validation batch, 1 test batch
CORE = ["+experiment=synthetic_mscm", "data.datamodule.source.num_train=8", "data.datamodule.source.num_val=4",
        "data.datamodule.source.num_test=4", "data.datamodule.source.num_frames=8", "data.datamodule.source.size=48",
        "data.image_size=48", "data.datamodule.sampler.num_segments=2", "data.datamodule.batch_size=4",
        "data.datamodule.num_workers=0", "trainer.enable_model_summary=false", "~callbacks.rich_progress_bar",
        "model._target_=tests.faults.tiny.TinyVideoNet", "model.dropout=0.3", f"trainer.max_epochs={EPOCHS}",
        "+callbacks.probe._target_=tests.faults.probe.KillAt"]
# the sweep's search space, pinned to the values of the config above: the trial IS the reference run
PINNED = "[{optimizer.lr:0.001,optimizer.weight_decay:0.05,model.dropout:0.3,loss.label_smoothing:0.0}]"

_rng = random.Random(20240613)  # the kill points, drawn once with a fixed seed
TRAIN_STEP = divmod(_rng.randrange(1, 2 * EPOCHS), 2)  # (epoch, batch) after >= 1 optimiser step
VALIDATION = (_rng.randrange(EPOCHS), 0)
CKPT_WRITE = _rng.randrange(EPOCHS)
TEST_TAG = _rng.choice(["test_best", "test_last"])
SWEEP_STEP = (_rng.randrange(1, EPOCHS), _rng.randrange(2))
MID_EPOCH = _rng.randrange(EPOCHS)  # killed in batch 1 of this epoch: batch 0's step checkpoint is the resume point
SIGTERM_AT = divmod(_rng.randrange(2 * EPOCHS - 1), 2)  # not the very last batch (then the stop is in the test)
SINGLE = {  # name: (FERTRAIN_TEST_KILL, extra overrides, exit status of the interrupted run)
    "training-step": (f"train_step:{TRAIN_STEP[0]}:{TRAIN_STEP[1]}", [], -signal.SIGKILL),
    "validation": (f"validation:{VALIDATION[0]}:{VALIDATION[1]}", [], -signal.SIGKILL),
    "checkpoint-write": (f"ckpt_write:{CKPT_WRITE}", [], -signal.SIGKILL),
    "test": (f"test:{TEST_TAG}", [], -signal.SIGKILL),
    "mid-epoch": (f"backward:{MID_EPOCH}:1", ["checkpoint.every_n_train_steps=1"], -signal.SIGKILL),
    "sigterm": (f"sigterm:{SIGTERM_AT[0]}:{SIGTERM_AT[1]}", [], 1),
    "ctrl-c": (f"sigint:{SIGTERM_AT[0]}:{SIGTERM_AT[1]}", [], 130),
}
RUN = Path("logs") / "synthetic_mscm" / "seed42"


def metrics(summary: dict) -> dict:
    """The numbers of a summary (checkpoint paths reduced to file names: the runs live in different folders)."""
    out = {k: summary[k] for k in ("epochs", "skipped_nonfinite")}
    for key in ("val_best", "val_last", "test_best", "test_last"):
        out[key] = {k: (Path(v).name if k == "ckpt" else v) for k, v in summary[key].items()}
    return out


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One uninterrupted run: the reference every resumed run must equal."""
    root = tmp_path_factory.mktemp("faults")
    cache, run_dir = reference_run(CORE, root, RUN)
    return {"root": root, "cache": cache, "summary": json.loads((run_dir / "summary.json").read_text()),
            "csv": (run_dir / "csv" / "metrics.csv").read_text()}


def _assert_same_as_reference(run_dir: Path, shared: dict) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    assert metrics(summary) == metrics(shared["summary"])
    csv = (run_dir / "csv" / "metrics.csv").read_text()
    assert csv == shared["csv"], "metrics.csv differs from the uninterrupted run's"
    rows = list(DictReader(io.StringIO(csv)))
    for key in ("val/uar", "train/uar", "train/loss"):
        assert sorted(int(r["epoch"]) for r in rows if r.get(key)) == list(range(EPOCHS)), f"{key}: every epoch once"


@pytest.mark.slow
@pytest.mark.parametrize("point", list(SINGLE), ids=[f"{k}[{v[0]}]" for k, v in SINGLE.items()])
def test_kill_then_resume_equals_uninterrupted(point: str, shared: dict, tmp_path: Path) -> None:
    spec, extra, status = SINGLE[point]
    args = [*CORE, *shared["cache"], f"paths.log_dir={tmp_path / 'logs'}", *extra]
    run_dir = tmp_path / RUN
    last = run_dir / "checkpoints" / "last.ckpt"
    rc = cli(args, tmp_path, tmp_path / "killed.log", env={ENV: spec})
    log = (tmp_path / "killed.log").read_text()
    assert rc == status, log[-3000:]
    record = read_run_record(run_dir)
    assert not (run_dir / "summary.json").exists() or point == "test"
    if point == "sigterm":  # the state after that step (or epoch) was saved, one line said so, record: killed
        epoch, batch = SIGTERM_AT
        if batch == 0:  # mid-epoch: the state after the step is saved at once
            step = 2 * epoch + 1
            where, state = f"epoch {epoch}, global step {step}", f"the training state is in {last.resolve()}"
        else:  # the epoch's last batch: the epoch-end save, then the stop at the next epoch's start
            step = 2 * epoch + 2
            where, state = f"epoch {epoch + 1}, global step {step}", f"{last.resolve()} holds the last saved state"
        assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == step
        message = f"fertrain: error: stopped by SIGTERM at {where}; {state}: run the same command with ckpt_path=last"
        assert message in log and log.count("fertrain: error:") == 1 and "Traceback" not in log
        assert record["status"] == "killed" and "SIGTERM" in record["error"]
    elif point == "ctrl-c":  # Lightning handles the KeyboardInterrupt and exits; the record says what happened
        assert "fertrain: error: interrupted (Ctrl-C / SIGINT)" in log and log.count("fertrain: error:") == 1
        assert record["status"] == "killed" and "Ctrl-C" in record["error"] and "Traceback" not in log
    else:
        assert record["status"] == "running" and run_flags(record) == ["killed"], "a dead 'running' run is killed"
    if point == "checkpoint-write":  # killed half way through a write: the file in place is still a whole one
        assert list((run_dir / "checkpoints").glob("*.tmp")), "the write was interrupted"
        if CKPT_WRITE == 0:
            assert not last.exists()
        else:
            assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == CKPT_WRITE - 1
    if point == "mid-epoch":  # the resume point is one step into the epoch, with the DataLoader's position
        state = torch.load(last, map_location="cpu", weights_only=False)
        assert (state["epoch"], state["global_step"]) == (MID_EPOCH, 2 * MID_EPOCH + 1)
        assert state["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": MID_EPOCH, "batches": 1}]

    rc = cli([*args, "ckpt_path=last"], tmp_path, tmp_path / "resumed.log")
    assert rc == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    _assert_same_as_reference(run_dir, shared)
    record = read_run_record(run_dir)
    assert record["status"] == "finished" and [a["status"] for a in record["attempts"]] == ["killed", "finished"]
    assert run_flags(record) == []


@pytest.mark.slow
def test_multirun_killed_between_jobs_resumes_the_rest(shared: dict, tmp_path: Path) -> None:
    """Two jobs whose configs differ only in a key that does not change results: the process dies when job 2
    starts; the same multirun with ckpt_path=last skips the finished job and runs the other."""
    args = ["-m", *CORE, *shared["cache"], f"paths.log_dir={tmp_path / 'logs'}",
            "trainer.enable_model_summary=false,true"]
    rc = cli(args, tmp_path, tmp_path / "killed.log", env={ENV: "fit_start:2"})
    assert rc == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    jobs = sorted((tmp_path / "logs" / "synthetic_mscm" / "multirun").glob("0*"))
    assert [j.name[:4] for j in jobs] == ["000-", "001-"] and all(len(j.name) == 12 for j in jobs)
    assert read_run_record(jobs[0])["status"] == "finished" and run_flags(read_run_record(jobs[1])) == ["killed"]
    first = (jobs[0] / "summary.json").read_text()

    rc = cli([*args, "ckpt_path=last"], tmp_path, tmp_path / "resumed.log")
    assert rc == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    assert (jobs[0] / "summary.json").read_text() == first, "the finished job was not run again"
    for job in jobs:
        _assert_same_as_reference(job, shared)
    assert "trainer.enable_model_summary=True" in read_run_record(jobs[1])["overrides"]  # as Hydra formats it


def _study(sweep_dir: Path) -> optuna.Study:
    journal = optuna.storages.journal.JournalFileBackend(str(sweep_dir / "optuna.journal"))
    return optuna.load_study(study_name="synthetic_mscm_optuna", storage=optuna.storages.JournalStorage(journal))


@pytest.mark.slow
def test_sweep_trial_killed_then_resumed_from_its_checkpoint(shared: dict, tmp_path: Path) -> None:
    """A one-trial sweep whose trial is the reference run: SIGKILL inside the trial; the same sweep command fails
    the trial as killed, queues its resumption, and the resumed trial gives the uninterrupted value."""
    args = [*CORE, *shared["cache"], f"paths.log_dir={tmp_path / 'logs'}", "hparams_search=synthetic_mscm_optuna",
            "sweep.n_trials=1", "sweep.prune_on=null", f"sweep.enqueue={PINNED}"]
    rc = cli(args, tmp_path, tmp_path / "killed.log", module="fertrain.sweep",
             env={ENV: f"train_step:{SWEEP_STEP[0]}:{SWEEP_STEP[1]}"})
    assert rc == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    sweep_dir = tmp_path / "logs" / "synthetic_mscm" / "sweeps" / "synthetic_mscm_optuna"
    (before,) = _study(sweep_dir).trials
    assert before.state == TrialState.RUNNING

    rc = cli(args, tmp_path, tmp_path / "resumed.log", module="fertrain.sweep")
    assert rc == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    killed, resumed = _study(sweep_dir).trials
    assert (killed.state, killed.user_attrs["killed"]) == (TrialState.FAIL, True)
    assert resumed.state == TrialState.COMPLETE and resumed.user_attrs["resume_of"] == 0
    assert resumed.params == killed.params and resumed.user_attrs["run_dir"] == str(sweep_dir / "trial_000")
    assert resumed.value == shared["summary"]["val_best"]["uar"]
    _assert_same_as_reference(sweep_dir / "trial_000", shared)
    assert json.loads((sweep_dir / "best.json").read_text())["trials"]["complete"] == 1
