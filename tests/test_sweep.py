"""``python -m fertrain.sweep``: search spaces compose, pruning on the val metric, a failing trial does not stop the
sweep and a rerun continues the numbering, the storage is shared safely by 2 workers while a reader polls it, a
killed trial is failed as killed and resumed, and the exit codes. (A trial SIGKILLed mid-training and resumed to
the uninterrupted value: ``tests/faults/test_kill_resume.py``.)"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from optuna.trial import TrialState

from fertrain.config import config_dir
from fertrain.sweep import SweepError, check_space, run_sweep

CONF = config_dir()
# a tiny synthetic_motion run: 8 training clips of 8 frames, 2 sampled frames at 32 px, batches of 4, 2 steps,
# no test and no checkpoints, the tiny network of tests/faults (a trial's cost is then mostly Lightning's set-up)
TINY = ["+experiment=synthetic_mscm", "hparams_search=synthetic_mscm_optuna",
        "data.datamodule.source.num_train=8", "data.datamodule.source.num_val=4",
        "data.datamodule.source.num_test=4", "data.datamodule.source.num_frames=8",
        "data.datamodule.source.size=48", "data.image_size=32", "data.datamodule.sampler.num_segments=2",
        "data.datamodule.batch_size=4", "debug=limit", "test=false", "callbacks=none", "~callbacks.model_checkpoint",
        "~callbacks.last_checkpoint", "+trainer.enable_checkpointing=false", "trainer.enable_model_summary=false",
        "model._target_=tests.faults.tiny.TinyVideoNet"]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _paths(tmp_path: Path) -> list[str]:
    return [f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={tmp_path / 'cache'}"]


@pytest.mark.parametrize("experiment,space", [("synthetic_mscm", "synthetic_mscm_optuna"),
                                              ("synthetic_frame_mean", "synthetic_mscm_optuna"),
                                              ("dfew_mscm", "dfew_mscm_optuna")])
def test_search_spaces_compose(experiment: str, space: str) -> None:
    assert (CONF / "hparams_search" / f"{space}.yaml").is_file()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"+experiment={experiment}", f"+hparams_search={space}"])
    params = check_space(cfg)
    assert "optimizer.lr" in params and cfg.sweep.metric == "val_best.uar"
    assert cfg.sweep.dir.endswith(f"{experiment}/sweeps/{cfg.sweep.study_name}")


def test_bad_search_space_fails_before_any_trial(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="no search space: add hparams_search=NAME"):
        run_sweep(["+experiment=synthetic_mscm", *_paths(tmp_path)])
    with pytest.raises(SweepError, match="'optimizer.lrr' is not a key of the composed config"):
        run_sweep([*TINY, *_paths(tmp_path), "+sweep.params.optimizer.lrr={type:float,low:0.1,high:0.2}"])
    with pytest.raises(SweepError, match=r"sweep.params.optimizer.lr: float needs low < high"):
        run_sweep([*TINY, *_paths(tmp_path), "sweep.params.optimizer.lr.low=1.0"])
    with pytest.raises(SweepError, match=re.escape("model.dropout: expected a mapping with type float|int|")):
        run_sweep([*TINY, *_paths(tmp_path), "sweep.params.model.dropout.type=uniform"])
    assert not list((tmp_path / "logs").rglob("trial_*")), "no trial may start with a bad search space"


def test_pruning_on_the_epoch_level_val_metric(tmp_path: Path) -> None:
    """A pruner that prunes any val/uar below 1.1 after a warm-up epoch stops the trial at epoch 1 of 3."""
    result = run_sweep([*TINY, *_paths(tmp_path), "trainer.max_steps=-1", "trainer.max_epochs=3",
                        "trainer.limit_train_batches=1",
                        "sweep.n_trials=1", "sweep.pruner._target_=optuna.pruners.ThresholdPruner",
                        "~sweep.pruner.n_startup_trials", "+sweep.pruner.lower=1.1", "sweep.pruner.n_warmup_steps=1"])
    (trial,) = result.study.trials
    assert trial.state == TrialState.PRUNED, (trial.state, trial.user_attrs)
    assert sorted(trial.intermediate_values) == [0, 1]  # reported after epochs 0 and 1, pruned before epoch 2
    assert all(0.0 <= v <= 1.0 for v in trial.intermediate_values.values())
    assert result.best_value is None and '"pruned": 1' in (result.sweep_dir / "best.json").read_text()


def test_nan_and_exceptions_fail_trials_and_a_rerun_continues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast, with a stand-in for fertrain.train.run: a NaN metric and an exception each fail one trial without
    stopping the sweep; the same command with a larger n_trials continues the numbering in the same storage."""
    import fertrain.sweep as sweep_module

    seen: list[float] = []

    def fake_run(cfg):
        seen.append(cfg.optimizer.lr)  # the sampled value reached the composed config
        if len(seen) == 2:
            return {"val_best": {"uar": float("nan"), "war": 0.5}}
        if len(seen) == 3:
            raise RuntimeError("CUDA out of memory (simulated)")
        return {"val_best": {"uar": 0.1 * len(seen), "war": 0.5}}

    monkeypatch.setattr(sweep_module, "run", fake_run)
    args = [*TINY, *_paths(tmp_path), "sweep.prune_on=null"]
    first = run_sweep([*args, "sweep.n_trials=4"])
    states = [t.state for t in first.study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert "non-finite val_best.uar" in first.study.trials[1].user_attrs["error"]
    assert "out of memory" in first.study.trials[2].user_attrs["error"]
    assert first.best_value == pytest.approx(0.4) and seen == [t.params["optimizer.lr"] for t in first.study.trials]

    again = run_sweep([*args, "sweep.n_trials=4"])  # nothing left to do
    assert len(again.study.trials) == 4 and len(seen) == 4
    more = run_sweep([*args, "sweep.n_trials=6"])
    assert [t.number for t in more.study.trials] == [0, 1, 2, 3, 4, 5] and len(seen) == 6
    assert more.best_value == pytest.approx(0.6)
    rows = (more.sweep_dir / "trials.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[2].startswith("1,FAIL,")




@pytest.mark.slow
def test_two_workers_share_one_study_while_a_reader_polls_it(tmp_path: Path) -> None:
    """``fertrain.sweep --workers 2``: two processes run the trials of one journal-file study; the first trial waits
    until the second worker has taken a trial (so they overlap for sure). Meanwhile this test reads the study again
    and again: trial numbers stay unique and contiguous, no trial goes back to RUNNING once finished."""
    from tests.faults.forked import start
    from tests.faults.probe import WAIT_ENV

    sweep_dir = tmp_path / "logs" / "synthetic_mscm" / "sweeps" / "synthetic_mscm_optuna"
    journal = sweep_dir / "optuna.journal"
    args = ["--workers", "2", *TINY, *_paths(tmp_path), "sweep.n_trials=4", "sweep.prune_on=null", "+callbacks.probe._target_=tests.faults.probe.KillAt"]
    pid = start(args, tmp_path, tmp_path / "sweep.log", module="fertrain.sweep", env={WAIT_ENV: f"{journal}:2"})
    finished: dict[int, TrialState] = {}
    polls, status = 0, None
    while status is None:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:  # it ended: read the study one last time below
            status = os.waitstatus_to_exitcode(raw)
        if journal.exists():
            storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
            if storage.get_all_studies():
                trials = optuna.load_study(study_name="synthetic_mscm_optuna", storage=storage).trials
                assert [t.number for t in trials] == list(range(len(trials)))
                for t in trials:
                    assert finished.get(t.number, t.state) == t.state, "a finished trial never changes state"
                    if t.state.is_finished():
                        finished[t.number] = t.state
                polls += 1
        if status is None:
            time.sleep(0.3)
    log = (tmp_path / "sweep.log").read_text()
    assert status == 0 and polls > 0, log[-3000:]
    assert "fertrain.sweep: error" not in log and '"best"' in log, log[-3000:]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="synthetic_mscm_optuna", storage=storage).trials
    assert 4 <= len(trials) <= 5 and all(t.state == TrialState.COMPLETE for t in trials)  # <= n + workers - 1
    assert len({t.user_attrs["pid"] for t in trials}) == 2, "both workers ran trials"
    assert pid in {t.user_attrs["pid"] for t in trials}
    rows = (sweep_dir / "trials.csv").read_text().splitlines()
    assert len(rows) == len(trials) + 1


def test_sqlite_url_still_works_and_its_schema_is_created_once(tmp_path: Path) -> None:
    """``sweep.storage=sqlite:///...``: four processes open a fresh database at the same moment (they wait for a
    start file); the schema is created under a file lock, so none fails with "table ... already exists"."""
    from omegaconf import OmegaConf

    from fertrain.sweep import open_storage

    url = f"sqlite:///{tmp_path / 'study.db'}"
    go = tmp_path / "go"
    pids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:  # child: open the storage and the study as a sweep worker does
            code = 1
            try:
                while not go.exists():
                    time.sleep(0.01)
                storage, _ = open_storage(OmegaConf.create({"storage": url}), tmp_path)
                optuna.create_study(study_name="s", storage=storage, load_if_exists=True)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    go.write_text("")
    assert [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids] == [0, 0, 0, 0]
    assert optuna.load_study(study_name="s", storage=url).trials == []
