"""Hyperparameter sweeps with Optuna: ``python -m fertrain.sweep +experiment=NAME hparams_search=SPACE [k=v ...]``.

Each trial composes the training config with Hydra's compose API (the same overrides as ``python -m fertrain``
plus the sampled values), runs :func:`fertrain.train.run` in this process, and returns ``sweep.metric`` (a key of
``summary.json``, by default ``optimized_metric`` = ``val_best.uar``) to Optuna.

- **Search spaces** live in ``conf/hparams_search/<name>.yaml`` (``sweep.params`` mirrors the config tree; each
  leaf has ``type`` float/int/categorical and its bounds or choices, see :func:`check_space`;
  ``sweep.sampler``/``sweep.pruner`` are Optuna objects instantiated by Hydra). Command-line overrides of
  ``sweep.*`` change the sweep, e.g. ``sweep.n_trials=50``.
- **Resumable**: trials are stored in SQLite (``<sweep.dir>/optuna.db``, ``load_if_exists``). ``sweep.n_trials``
  is the total number of *finished* trials (complete, pruned or failed) of the study: re-running the same command
  after an interruption runs only the rest, and trial numbers continue. A trial whose process was killed stays
  ``RUNNING`` until its heartbeat is older than ``sweep.grace_period`` seconds, then it is marked failed
  (Optuna's heartbeat); ``sweep.retry_killed=N`` re-queues its parameters up to N times.
- **Failures** do not stop the sweep: an exception in a trial, or a non-finite metric, marks that trial
  ``FAIL`` (the reason is kept as the trial's ``error`` attribute and in ``trials.csv``).
- **Pruning** on the epoch-level val metric (``sweep.prune_on``, default ``val/uar``, in the direction of the
  study) by :class:`OptunaPruning`, a small Lightning callback (optuna-integration's callback imports
  ``lightning.pytorch``, not the ``pytorch_lightning`` package fertrain uses, and reaches into Optuna internals).
- Writes ``<sweep.dir>/trials.csv`` and ``best.json``; each trial's run directory is ``<sweep.dir>/trial_<NNN>``.

Why not Hydra's Optuna sweeper (``hydra/sweeper=optuna``): hydra-optuna-sweeper (1.2.0 and 1.3.0 alike) pins
``optuna>=2.10,<3``, whose SQLite/RDB storage predates SQLAlchemy 2 (it needs ``sqlalchemy<2``); pinning both
back would hold every other package of the environment back. This command uses the current Optuna and keeps
Hydra for what it does well (composing configs). Trials run one after another in this process; run several
``fertrain.sweep`` processes on the same ``sweep.storage`` (e.g. one per GPU or Slurm job) to parallelise.
DDP inside a trial is not supported (the pruning callback raises on rank 0 only).
"""

from __future__ import annotations

import csv
import inspect
import json
import logging
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import optuna
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from fertrain.config import config_dir
from fertrain.train import metric_value, run

log = logging.getLogger("fertrain.sweep")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# Live trials of this process, by trial number: how OptunaPruning (built from the config by fertrain.train.run)
# finds its trial. Only fertrain.sweep fills it.
_LIVE_TRIALS: dict[int, optuna.Trial] = {}


class SweepError(RuntimeError):
    """The sweep configuration is unusable (the message names the key and what was expected)."""


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


def run_sweep(overrides: Sequence[str]) -> SweepResult:
    """Run (or resume) the Optuna study that ``overrides`` describe; see the module docstring.

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
        url = sw.get("storage") or f"sqlite:///{sweep_dir / 'optuna.db'}"
        retry = int(sw.get("retry_killed") or 0)
        with warnings.catch_warnings():  # the heartbeat is marked experimental (stable since Optuna 2.9)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url, heartbeat_interval=int(sw.heartbeat_interval), grace_period=int(sw.grace_period),
                failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=retry) if retry else None,
            )
        study = optuna.create_study(
            study_name=str(sw.study_name), storage=storage, direction=str(sw.direction), load_if_exists=True,
            sampler=instantiate(sw.sampler) if sw.get("sampler") else None,
            pruner=instantiate(sw.pruner) if sw.get("pruner") else optuna.pruners.NopPruner(),
        )
        with warnings.catch_warnings():  # fail_stale_trials is marked experimental (stable since Optuna 2.9)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # trials of a killed earlier process, after their grace
        if not study.trials:
            for params in OmegaConf.to_container(sw.enqueue, resolve=True) if sw.get("enqueue") else []:
                study.enqueue_trial(params)
        n_trials = int(sw.n_trials)
        done = len(study.get_trials(deepcopy=False, states=FINISHED))
        log.info("study %s in %s: %d of %d trials finished", sw.study_name, url, done, n_trials)
        metric, prune_on = str(sw.metric), str(sw.get("prune_on") or "")

        def objective(trial: optuna.Trial) -> float:
            params = {name: _suggest(trial, name, spec) for name, spec in space.items()}
            run_dir = sweep_dir / f"trial_{trial.number:03d}"
            trial.set_user_attr("run_dir", str(run_dir))
            extra = [_override(k, v) for k, v in params.items()] + [f"paths.output_dir={run_dir}"]
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
            if value is None or not math.isfinite(value):
                trial.set_user_attr("error", f"non-finite {metric} = {value}")
                raise FloatingPointError(f"trial {trial.number}: {metric} = {value} is not finite")
            return value

        if done < n_trials:
            stop = optuna.study.MaxTrialsCallback(n_trials, states=FINISHED)
            study.optimize(objective, n_trials=n_trials - done, catch=(Exception,), callbacks=[stop],
                           gc_after_trial=True)
    return _finish(study, sweep_dir, metric)


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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fertrain.sweep``; exit status 0 with a best value, 1 if no trial completed, 2 on a bad config."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s")
    try:
        result = run_sweep(args)
    except SweepError as e:
        print(f"fertrain.sweep: {e}", file=sys.stderr)
        return 2
    report = json.loads((result.sweep_dir / "best.json").read_text())
    print(json.dumps(report, indent=2))
    print(f"trials: {result.sweep_dir / 'trials.csv'}")
    return 0 if result.best_value is not None else 1


if __name__ == "__main__":
    # Run the imported module's main, not this `__main__` copy: OptunaPruning (instantiated from the config by
    # `fertrain.sweep.OptunaPruning`) must see the same _LIVE_TRIALS as run_sweep.
    from fertrain.sweep import main as _main

    raise SystemExit(_main())
