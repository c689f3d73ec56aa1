"""Hyperparameter sweeps with Optuna: ``python -m fertrain.sweep [--workers N] +experiment=NAME hparams_search=SPACE
[k=v ...]``.

Each trial composes the training config with Hydra's compose API (the same overrides as ``python -m fertrain``
plus the sampled values), runs :func:`fertrain.train.run` in this process, and returns ``sweep.metric`` (a key of
``summary.json``, by default ``optimized_metric`` = ``val_best.uar``) to Optuna.

- **Search spaces** live in ``conf/hparams_search/<name>.yaml`` (``sweep.params`` mirrors the config tree; each
  leaf has ``type`` float/int/categorical and its bounds or choices, see :func:`check_space`;
  ``sweep.sampler``/``sweep.pruner`` are Optuna objects instantiated by Hydra). Command-line overrides of
  ``sweep.*`` change the sweep, e.g. ``sweep.n_trials=50``.
- **Storage shared by several workers**: by default Optuna's journal file storage
  ``<sweep.dir>/optuna.journal`` (``optuna.storages.JournalStorage(JournalFileBackend(path))``), which Optuna
  recommends for several processes on one machine or on a shared (NFS) file system: every write is one appended
  record under a file lock, there is no schema to create, so any number of workers (``--workers N`` on one
  machine, a Slurm array, several shells) can open the same study at any moment. ``sweep.storage`` may name
  another journal file (``*.journal``/``*.log``) or an RDB URL (``sqlite:///...``, ``postgresql://...``); an
  SQLite database is created under a file lock, because two processes creating its schema at once fail with
  "table ... already exists". A sweep folder that already holds an ``optuna.db`` (older fertrain) keeps using it.
- **Resumable**: ``sweep.n_trials`` is the total number of *finished* trials (complete, pruned or failed) of the
  study, not counting trials whose process was killed: re-running the same command runs only the rest, and
  trial numbers continue. Every running trial records its process (``pid``, ``host``) and a heartbeat
  (``sweep.heartbeat_interval`` seconds). A trial whose process is gone (same host) or whose heartbeat is older
  than ``sweep.grace_period`` is failed (user attribute ``killed``) by the next worker that starts, and a new trial
  with the same parameters is queued that **resumes the killed trial's run from its last checkpoint**
  (``ckpt_path=last`` in ``trial_<killed number>``; at most ``sweep.retry_killed`` times per trial), so a killed
  trial ends with the value an uninterrupted one gives.
- **Failures** do not stop the sweep: an exception in a trial, or a non-finite metric, marks that trial
  ``FAIL`` (the reason is kept as the trial's ``error`` attribute and in ``trials.csv``).
- **Pruning** on the epoch-level val metric (``sweep.prune_on``, default ``val/uar``, in the direction of the
  study) by :class:`OptunaPruning`, a small Lightning callback (optuna-integration's callback imports
  ``lightning.pytorch``, not the ``pytorch_lightning`` package fertrain uses, and reaches into Optuna internals).
- Writes ``<sweep.dir>/trials.csv`` and ``best.json``; each trial's run directory is ``<sweep.dir>/trial_<NNN>``.
- **Exit status**: 0 when a trial completed (the best is printed), 1 when none did, 2 for a bad command line or
  search space (:mod:`fertrain.cli`; one line ``fertrain.sweep: error: ...``).

Why not Hydra's Optuna sweeper (``hydra/sweeper=optuna``): hydra-optuna-sweeper (1.2.0 and 1.3.0 alike) pins
``optuna>=2.10,<3``, whose SQLite/RDB storage predates SQLAlchemy 2 (it needs ``sqlalchemy<2``); pinning both
back would hold every other package of the environment back. This command uses the current Optuna and keeps
Hydra for what it does well (composing configs). With ``--workers N`` it starts N worker processes on the study
(one per GPU: give each its device through ``CUDA_VISIBLE_DEVICES`` or run one command per GPU); the workers may
together run up to N - 1 trials more than ``n_trials`` when they start their last trials at the same moment.
DDP inside a trial is not supported (the pruning callback raises on rank 0 only). A sampler's random stream
starts again in every worker process, so the parameters a sampler proposes depend on how the sweep was split
into processes (enqueued parameters do not).
"""

from __future__ import annotations

import csv
import inspect
import json
import logging
import math
import multiprocessing
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import optuna
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from fertrain.cli import UsageError, guarded
from fertrain.config import config_dir
from fertrain.report.run_record import process_gone
from fertrain.train import metric_value, run

log = logging.getLogger("fertrain.sweep")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# Live trials of this process, by trial number: how OptunaPruning (built from the config by fertrain.train.run)
# finds its trial. Only fertrain.sweep fills it.
_LIVE_TRIALS: dict[int, optuna.Trial] = {}


class SweepError(UsageError):
    """The sweep configuration is unusable (the message names the key and what was expected; exit status 2)."""


class OptunaPruning(pl.Callback):
    """Reports ``monitor`` to the trial after every validation epoch of ``fit`` and prunes when Optuna says so.

    Args:
        trial_number: number of a trial that :func:`run_sweep` is running in this process.
        monitor: epoch-level metric logged by the task (e.g. ``val/uar``); the study's direction applies to it.

    Raises:
        SweepError: no live trial with that number (the callback only works inside ``fertrain.sweep``).
        KeyError: ``monitor`` was not logged (message lists what was).
        optuna.TrialPruned: from ``on_validation_end`` when the pruner prunes the trial.
    """

    def __init__(self, trial_number: int, monitor: str = "val/uar") -> None:
        if trial_number not in _LIVE_TRIALS:
            raise SweepError(f"OptunaPruning(trial_number={trial_number}): no such live trial; the callback is "
                             f"added by fertrain.sweep and cannot be used on its own")
        self.trial = _LIVE_TRIALS[trial_number]
        self.monitor = monitor

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(f"sweep.prune_on={self.monitor!r} was not logged; logged: "
                           f"{sorted(trainer.callback_metrics)}")
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}: {self.monitor}={float(value):.4f}")


# ----------------------------------------------------------------------------------------------- search space
def _suggest(trial: optuna.Trial, name: str, spec: dict[str, Any]) -> Any:
    kind = spec["type"]
    if kind == "float":
        return trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False),
                                   step=spec.get("step"))
    if kind == "int":
        return trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False),
                                 step=spec.get("step", 1))
    return trial.suggest_categorical(name, list(spec["choices"]))


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested ``sweep.params`` -> ``{"optimizer.lr": spec, ...}``; a spec is a mapping with a ``type`` key."""
    if isinstance(node, dict) and "type" not in node:
        out: dict[str, Any] = {}
        for key, child in node.items():
            out.update(_flatten(child, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def check_space(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """Validate ``cfg.sweep.params`` against the composed config; returns ``{dotted config key: spec}``.

    ``sweep.params`` mirrors the config tree (``optimizer: {lr: {type: float, low: ..., high: ..., log: true}}``),
    so a bound can be overridden on the command line (``sweep.params.optimizer.lr.high=1e-2``) and a key added
    (``+sweep.params.model.dropout={type:float,low:0,high:0.5}``) or removed (``~sweep.params.loss``). A key must
    exist in the training config, or be a constructor argument of a node with ``_target_`` (e.g.
    ``model.dropout``), so a typo fails here rather than in every trial.

    Raises:
        SweepError: no ``sweep`` node or no params; a malformed entry; a key the config does not have.
    """
    if "sweep" not in cfg:
        raise SweepError("no search space: add hparams_search=NAME (one of conf/hparams_search/*.yaml)")
    params = _flatten(OmegaConf.to_container(cfg.sweep.get("params") or {}, resolve=True))
    if not params:
        raise SweepError("sweep.params is empty: nothing to search")
    for name, spec in params.items():
        where = f"sweep.params.{name}"
        if not isinstance(spec, dict) or spec.get("type") not in ("float", "int", "categorical"):
            raise SweepError(f"{where}: expected a mapping with type float|int|categorical, got {spec!r}")
        if spec["type"] == "categorical":
            if not spec.get("choices"):
                raise SweepError(f"{where}: categorical needs a non-empty 'choices' list")
        elif not ("low" in spec and "high" in spec and spec["low"] < spec["high"]):
            raise SweepError(f"{where}: {spec['type']} needs low < high, got {spec!r}")
        parent, _, leaf = name.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if not isinstance(node, DictConfig) or (leaf not in node and not _accepts(node, leaf)):
            raise SweepError(f"{where}: {name!r} is not a key of the composed config (nor an argument of the "
                             f"_target_ of {parent or 'the root'})")
    return params


def _accepts(node: DictConfig, arg: str) -> bool:
    """Whether ``node``'s ``_target_`` takes a keyword argument ``arg`` (True if it cannot be inspected)."""
    if "_target_" not in node:
        return False
    try:
        params = inspect.signature(get_object(str(node._target_))).parameters
    except (ImportError, ValueError, TypeError, AttributeError):
        return True
    return arg in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _override(name: str, value: Any) -> str:
    """A Hydra override that sets or adds ``name`` to ``value`` (strings quoted)."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, (int, float)):
        text = repr(value)
    else:
        text = "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"++{name}={text}"


# ----------------------------------------------------------------------------------------------- the sweep
@dataclass
class SweepResult:
    """Outcome of :func:`run_sweep`: the study and its best value (``None`` if no trial completed)."""

    study: optuna.Study
    best_value: float | None
    sweep_dir: Path


def _normalise(overrides: Sequence[str]) -> list[str]:
    # `hparams_search` is not in train.yaml's defaults, so the group is appended (`+`) like `+experiment=`
    return [f"+{o}" if o.startswith("hparams_search=") else o for o in overrides]


def _compose(overrides: Sequence[str]) -> DictConfig:
    return compose("train", overrides=list(overrides))


def open_storage(sw: DictConfig, sweep_dir: Path) -> tuple[optuna.storages.BaseStorage, str]:
    """The study storage ``sweep.storage`` names (module docstring) and a printable description of it."""
    spec = sw.get("storage")
    if not spec:
        legacy = sweep_dir / "optuna.db"
        journal = sweep_dir / "optuna.journal"
        spec = f"sqlite:///{legacy}" if legacy.is_file() and not journal.exists() else str(journal)
    spec = str(spec)
    if "://" not in spec:  # a journal file
        path = Path(spec).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path))), str(path)
    if spec.startswith("sqlite:///"):  # create the schema under a lock: concurrent creation fails in SQLite
        from filelock import FileLock

        db = Path(spec[len("sqlite:///"):])
        db.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(db) + ".lock"):
            return optuna.storages.RDBStorage(spec), spec
    return optuna.storages.RDBStorage(spec), spec


def _effective_finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Finished trials that count towards ``n_trials`` (a killed trial is replaced by its resumption)."""
    return [t for t in study.get_trials(deepcopy=False, states=FINISHED) if not t.user_attrs.get("killed")]


def fail_killed_trials(study: optuna.Study, grace_period: float, retry: int) -> list[int]:
    """Fail the RUNNING trials whose process is gone (same host) or whose heartbeat is older than
    ``grace_period`` seconds, and queue their resumption (module docstring); returns their numbers.

    Safe with several workers: a trial another worker already failed is skipped (Optuna refuses to change a
    finished trial), so each killed trial is queued once.
    """
    failed = []
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        beat = float(attrs.get("heartbeat", t.datetime_start.timestamp() if t.datetime_start else now))
        gone = process_gone(attrs.get("host"), attrs.get("pid")) or now - beat > grace_period
        if not gone:
            continue
        storage = study._storage
        try:
            storage.set_trial_user_attr(t._trial_id, "killed", True)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except (RuntimeError, ValueError):  # another worker got there first
            continue
        failed.append(t.number)
        origin = attrs.get("resume_of", t.number)
        tries = int(attrs.get("resume_tries", 0)) + 1
        if tries <= retry:
            study.enqueue_trial(dict(t.params), user_attrs={"resume_of": origin, "resume_tries": tries})
            log.warning("trial %d was killed (pid %s on %s): queued its resumption from trial_%03d", t.number,
                        attrs.get("pid"), attrs.get("host"), origin)
        else:
            log.warning("trial %d was killed %d times: not resumed again (sweep.retry_killed=%d)", t.number, tries,
                        retry)
    return failed


class _Heartbeat:
    """Records this process in the trial (``pid``, ``host``) and refreshes ``heartbeat`` every ``interval`` s."""

    def __init__(self, trial: optuna.Trial, interval: float) -> None:
        self.trial, self.interval = trial, max(1.0, float(interval))
        self._stop = threading.Event()
        for key, value in (("pid", os.getpid()), ("host", socket.gethostname()), ("heartbeat", time.time())):
            trial.set_user_attr(key, value)
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.trial.set_user_attr("heartbeat", time.time())
            except Exception:  # noqa: BLE001 - the trial may have finished meanwhile
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def run_sweep(overrides: Sequence[str]) -> SweepResult:
    """Run (or resume, or join) the Optuna study that ``overrides`` describe; see the module docstring.

    Raises:
        SweepError: no or malformed search space.
    """
    overrides = _normalise(overrides)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        base = _compose(overrides)
        space = check_space(base)
        sw = base.sweep
        sweep_dir = Path(sw.dir).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        storage, where = open_storage(sw, sweep_dir)
        retry = int(sw.get("retry_killed") or 0)
        study = optuna.create_study(
            study_name=str(sw.study_name), storage=storage, direction=str(sw.direction), load_if_exists=True,
            sampler=instantiate(sw.sampler) if sw.get("sampler") else None,
            pruner=instantiate(sw.pruner) if sw.get("pruner") else optuna.pruners.NopPruner(),
        )
        fail_killed_trials(study, float(sw.grace_period), retry)
        if not study.trials and sw.get("enqueue"):
            for params in OmegaConf.to_container(sw.enqueue, resolve=True):
                study.enqueue_trial(params)
        n_trials = int(sw.n_trials)
        log.info("study %s in %s: %d of %d trials finished", sw.study_name, where,
                 len(_effective_finished(study)), n_trials)
        metric, prune_on = str(sw.metric), str(sw.get("prune_on") or "")

        def objective(trial: optuna.Trial) -> float:
            beat = _Heartbeat(trial, float(sw.heartbeat_interval))
            params = {name: _suggest(trial, name, spec) for name, spec in space.items()}
            resume_of = trial.user_attrs.get("resume_of")
            run_dir = sweep_dir / f"trial_{(trial.number if resume_of is None else int(resume_of)):03d}"
            trial.set_user_attr("run_dir", str(run_dir))
            extra = [_override(k, v) for k, v in params.items()] + [f"paths.output_dir={run_dir}"]
            if resume_of is not None:
                extra.append("ckpt_path=last")
            if prune_on:
                extra += ["++callbacks.optuna_pruning._target_=fertrain.sweep.OptunaPruning",
                          f"++callbacks.optuna_pruning.trial_number={trial.number}",
                          f"++callbacks.optuna_pruning.monitor={prune_on}"]
            _LIVE_TRIALS[trial.number] = trial
            try:
                summary = run(_compose(overrides + extra))
                value = metric_value(summary, metric)
            except optuna.TrialPruned:
                raise
            except Exception as e:
                trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:1000])
                raise
            finally:
                _LIVE_TRIALS.pop(trial.number, None)
                beat.stop()
            if value is None or not math.isfinite(value):
                trial.set_user_attr("error", f"non-finite {metric} = {value}")
                raise FloatingPointError(f"trial {trial.number}: {metric} = {value} is not finite")
            return value

        preempted: list[BaseException] = []

        def stop_on_preemption(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            if preempted:
                study.stop()

        objective_guarded = _preemption_aware(objective, study, preempted)
        while True:  # one trial at a time: other workers may be adding trials to the same study
            fail_killed_trials(study, float(sw.grace_period), retry)
            finished = len(_effective_finished(study))
            running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if finished >= n_trials and not running:
                break
            if finished + running < n_trials:
                study.optimize(objective_guarded, n_trials=1, catch=(Exception,), gc_after_trial=True,
                               callbacks=[stop_on_preemption])
                if preempted:
                    raise preempted[0]
                continue
            time.sleep(1.0)  # the remaining trials run in other workers: wait for them (or find them killed)
    return _finish(study, sweep_dir, metric)


def _preemption_aware(objective: Any, study: optuna.Study, preempted: list[BaseException]) -> Any:
    """A trial stopped by SIGTERM/SIGUSR1 (:class:`fertrain.resume.Preempted`, its state saved) is failed as
    ``killed`` and its resumption queued at once; the sweep process then stops (exit status 1)."""
    from fertrain.resume import Preempted

    def wrapped(trial: optuna.Trial) -> float:
        try:
            return objective(trial)
        except Preempted as err:
            preempted.append(err)
            trial.set_user_attr("killed", True)
            origin = trial.user_attrs.get("resume_of", trial.number)
            study.enqueue_trial(dict(trial.params), user_attrs={
                "resume_of": origin, "resume_tries": int(trial.user_attrs.get("resume_tries", 0))})
            raise

    return wrapped


def _finish(study: optuna.Study, sweep_dir: Path, metric: str) -> SweepResult:
    trials = study.get_trials(deepcopy=False)
    names = sorted({k for t in trials for k in t.params})
    tmp = sweep_dir / "trials.csv.tmp"
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["number", "state", "value", *names, "error", "run_dir"])
        for t in trials:
            writer.writerow([t.number, t.state.name, "" if t.value is None else t.value,
                             *[t.params.get(n, "") for n in names], t.user_attrs.get("error", ""),
                             t.user_attrs.get("run_dir", "")])
    tmp.replace(sweep_dir / "trials.csv")
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    best = None
    if counts["complete"]:
        bt = study.best_trial
        best = {"number": bt.number, "value": bt.value, "params": bt.params, "run_dir": bt.user_attrs.get("run_dir")}
    report = {"study_name": study.study_name, "metric": metric, "direction": study.direction.name.lower(),
              "trials": counts, "best": best}
    (sweep_dir / "best.json").write_text(json.dumps(report, indent=2))
    return SweepResult(study, None if best is None else float(best["value"]), sweep_dir)


def _worker(overrides: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s")
    try:
        run_sweep(overrides)
    except Exception as err:  # noqa: BLE001 - the parent reports the study; this worker's error once
        from fertrain.cli import explain

        print(f"fertrain.sweep worker {os.getpid()}: error: {explain(err)[1]}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


@guarded("fertrain.sweep")
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fertrain.sweep [--workers N] OVERRIDES``; exit status 0 with a best value, 1 if no trial
    completed, 2 on a bad command line or search space."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    workers = 1
    if "--workers" in args or any(a.startswith("--workers=") for a in args):
        i = next(i for i, a in enumerate(args) if a.startswith("--workers"))
        value = args[i].split("=", 1)[1] if "=" in args[i] else (args[i + 1] if i + 1 < len(args) else "")
        del args[i: i + (1 if "=" in args[i] else 2)]
        if not value.isdigit() or int(value) < 1:
            raise UsageError(f"--workers {value!r}: expected a whole number >= 1 (worker processes on this machine)")
        workers = int(value)
    unknown = [a for a in args if a.startswith("--")]
    if unknown:
        raise UsageError(f"unknown option {unknown[0]!r}: options are --workers N and -h; everything else is a "
                         "config override (key=value)")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s")
    procs = []
    if workers > 1:
        check_space_only(args)  # a bad search space fails here, once, before any worker starts
        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        procs = [ctx.Process(target=_worker, args=(args,), name=f"sweep-worker-{i}") for i in range(1, workers)]
        for p in procs:
            p.start()
    result = run_sweep(args)
    for p in procs:
        p.join()
    if procs:  # the study as all workers left it
        result = _finish(result.study, result.sweep_dir, json.loads((result.sweep_dir / "best.json").read_text())
                         ["metric"])
    report = json.loads((result.sweep_dir / "best.json").read_text())
    print(json.dumps(report, indent=2))
    print(f"trials: {result.sweep_dir / 'trials.csv'}")
    return 0 if result.best_value is not None else 1


def check_space_only(overrides: Sequence[str]) -> None:
    """Compose the sweep config and check its search space (raises :class:`SweepError`), without running."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        check_space(_compose(_normalise(overrides)))


if __name__ == "__main__":
    # Run the imported module's main, not this `__main__` copy: OptunaPruning (instantiated from the config by
    # `fertrain.sweep.OptunaPruning`) must see the same _LIVE_TRIALS as run_sweep.
    from fertrain.sweep import main as _main

    raise SystemExit(_main())
