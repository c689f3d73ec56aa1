"""Training entry point: ``python -m fertrain [+experiment=NAME] [key=value ...]`` (a Hydra application).

Compose -> check the run directory -> instantiate -> fit -> test the best and the last checkpoint -> (optionally)
predict on a video -> write ``summary.json`` and ``run.json`` -> return the optimised metric (for sweeps).

**One run, one directory, one record.** The run directory is deterministic (``logs/<experiment_name>/<run_id>``,
see ``conf/hydra/default.yaml``). Every run writes ``run.json`` (:mod:`fertrain.report.run_record`) when it starts
(status ``running``) and when it ends (``finished``, ``debug``, ``failed`` or ``killed``). Before anything is
written, :func:`check_run_dir` compares the directory's record with this run:

- another config hash: refused (exit 2), listing the differing keys and the two ways forward (another
  ``run_id``/``experiment_name``, or ``ckpt_path=last`` with the existing run's config);
- the same config and ``ckpt_path=last``: resumed from ``<run_dir>/checkpoints/last.ckpt`` (or the newest
  ``hpc_ckpt_*.ckpt``); a finished run is not run again (its summary is returned);
- the same config without ``ckpt_path=last`` in a directory that already holds checkpoints or a summary: refused;
- a run still in progress (same host, live process): refused;
- a finished debug run, run again as a debug run (any config): replaced.

A test-only run (``train=false ckpt_path=PATH``) runs in ``<run_dir>/eval/<checkpoint>-<hash>`` with a record of
kind ``test``, and never touches the training run's ``summary.json``, ``metrics.csv`` or record.

Resuming is exact on CPU with the same seed (:mod:`fertrain.resume`): the resumed run's numbers equal the
uninterrupted run's.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import hydra
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from fertrain import __version__
from fertrain.checkpoint_io import CheckpointError, check_checkpoint, describe_checkpoint
from fertrain.cli import UsageError, run_guarded
from fertrain.config import config_dir, register_resolvers
from fertrain.data.records import DatasetError
from fertrain.overrides import check_overrides
from fertrain.report import run_record as rr
from fertrain.resume import (ExactResume, LastCheckpoint, Preempted, Preemption, ResumableCSVLogger,
                             checkpoint_log_rows)

log = logging.getLogger("fertrain")


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """``None`` -> None; ``"last"`` -> the newest of ``<output_dir>/checkpoints/last.ckpt`` and Lightning's Slurm
    requeue checkpoints ``<output_dir>/hpc_ckpt_*.ckpt`` (None, logged, if there is none); any other value -> that file.

    Raises:
        FileNotFoundError: an explicit checkpoint path does not exist.
    """
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        last = output_dir / "checkpoints" / "last.ckpt"
        # Lightning's Slurm auto-requeue (SIGUSR1) saves <output_dir>/hpc_ckpt_<n>.ckpt mid-epoch: take the newest
        found = [p for p in (last, *output_dir.glob("hpc_ckpt_*.ckpt")) if p.is_file()]
        if found:
            newest = max(found, key=lambda p: p.stat().st_mtime)
            log.info("resuming from %s", newest)
            return str(newest)
        log.warning("ckpt_path=last but %s does not exist yet: starting from scratch", last)
        return None
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    return str(path)


# set by an external launcher that started the processes itself (srun, torchrun / torch.distributed.run)
EXTERNAL_LAUNCHER_ENV = ("SLURM_NTASKS", "LOCAL_RANK", "WORLD_SIZE")
_SUBPROCESS_STRATEGIES = ("ddp", "fsdp", "deepspeed")  # Lightning starts their other ranks by re-running sys.argv


def _num_devices(devices: Any, accelerator: Any) -> int | None:
    """Processes per node that ``Trainer(devices=...)`` asks for; None = "all available" (``auto`` / ``-1``)."""
    if isinstance(devices, (list, tuple, ListConfig)):
        return len(devices)
    text = str(devices).strip()
    if text in ("auto", "-1"):
        return 1 if str(accelerator) == "cpu" else None
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    return int(text)


def check_multirun_ddp(trainer_cfg: DictConfig, multirun: bool, environ: Mapping[str, str] = os.environ) -> None:
    """Refuse Lightning-launched multi-process training inside a Hydra multirun on one machine.

    Lightning's ``ddp`` (also ``fsdp``/``deepspeed``, and ``auto`` with several devices) starts ranks 1..N-1 by
    re-running ``sys.argv``: inside ``python -m fertrain -m ...`` every new process replays the whole sweep.
    Allowed when an external launcher started the processes (any of ``EXTERNAL_LAUNCHER_ENV`` set: ``srun``,
    the submitit Slurm launcher, ``torchrun``) and for ``ddp_spawn``. Source: Lightning's
    ``_SubprocessScriptLauncher`` (https://lightning.ai/docs/pytorch/stable/accelerators/gpu_intermediate.html).

    Raises:
        ValueError: multirun and a subprocess-launched strategy with more than one device (or several nodes), with
            no external launcher; the message names the trainer keys and the alternatives.
    """
    if not multirun or any(k in environ for k in EXTERNAL_LAUNCHER_ENV):
        return
    strategy = trainer_cfg.get("strategy", "auto")
    if isinstance(strategy, (dict, DictConfig)):
        target = str(strategy.get("_target_", "")).rsplit(".", 1)[-1].lower()
        subprocess_launched = (target.replace("strategy", "") in _SUBPROCESS_STRATEGIES
                               and strategy.get("start_method", "popen") == "popen")
        name = strategy.get("_target_")
    else:
        name = str(strategy)
        subprocess_launched = (name in ("auto", "None") or name.split("_")[0] in _SUBPROCESS_STRATEGIES) and not any(
            w in name for w in ("spawn", "fork", "notebook"))
    devices = _num_devices(trainer_cfg.get("devices", "auto"), trainer_cfg.get("accelerator", "auto"))
    num_nodes = int(trainer_cfg.get("num_nodes", 1) or 1)
    if subprocess_launched and (devices is None or devices > 1 or num_nodes > 1):
        raise ValueError(
            f"trainer.strategy={name} with trainer.devices={trainer_cfg.get('devices')} "
            f"(num_nodes={num_nodes}) inside a Hydra multirun (-m): Lightning would start the other ranks by "
            "re-running this command, which replays the whole sweep in every process. Run one job per GPU instead "
            "(trainer=gpu with hydra/launcher=joblib or hydra/launcher=slurm), use an external launcher "
            "(srun: scripts/slurm/train.sbatch; torchrun), or drop -m for a single DDP run."
        )


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def _interrupted(err: BaseException) -> bool:
    """A KeyboardInterrupt, or the ``SystemExit(1)`` Lightning raises after handling one (it is the context)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__context__
    return False


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """Instantiate the datamodule and the task (network, loss, optimiser, scheduler) from a composed config.

    Raises:
        DatasetError: the dataset is missing or malformed.
        UsageError: a setting cannot be used, e.g. ``WeightsError`` (pretrained weights that do not load).
        Both are unwrapped from Hydra's InstantiationException, so the user sees the constructor's own message
        first and the CLI maps it to its exit status (fertrain.cli).
    """
    def make(node: Any, **kwargs: Any) -> Any:
        try:
            return instantiate(node, **kwargs)
        except InstantiationException as e:
            cause = e.__cause__
            while cause is not None and not isinstance(cause, (DatasetError, UsageError)):
                cause = cause.__cause__
            if cause is not None:
                raise cause from None
            raise

    datamodule = make(cfg.data.datamodule)
    task = make(
        cfg.task,
        net=make(cfg.model),
        loss=make(cfg.loss),
        optimizer=make(cfg.optimizer),
        scheduler=make(cfg.scheduler) if cfg.get("scheduler") else None,
    )
    return datamodule, task


# ------------------------------------------------------------------------------------------------ run directory
def _has_state(out_dir: Path) -> list[str]:
    """What in ``out_dir`` belongs to a run that got somewhere: checkpoints, a summary."""
    found = [p.name for p in sorted((out_dir / "checkpoints").glob("*.ckpt"))] if (out_dir / "checkpoints").is_dir() \
        else []
    found += [p.name for p in sorted(out_dir.glob("hpc_ckpt_*.ckpt"))]
    if (out_dir / "summary.json").is_file():
        found.append("summary.json")
    return found


def check_run_dir(out_dir: Path, resolved: Mapping[str, Any], ckpt_path: str | None, kind: str,
                  rank_zero: bool = True, debug: bool = False) -> dict[str, Any] | None:
    """Decide whether this run may use ``out_dir`` (see the module docstring); returns the existing record to
    continue (None for a new directory).

    A finished *debug* run (status ``debug``) is replaced by a new debug run without ``ckpt_path=last``, whatever
    its config: its checkpoints and summary are deleted first (debug runs never count as results, and iterating
    on ``debug=limit`` must not need a new ``run_id`` each time).

    Raises:
        UsageError: another config hash (message lists the differing keys and the ways forward); a record of
            another kind (a test-only run pointed at a training run); the run already holds checkpoints or a summary
            and ``ckpt_path`` is not ``last``; the run is still in progress in a live process on this host; an
            unreadable ``run.json``.
    """
    try:
        previous = rr.read_run_record(out_dir)
    except ValueError as err:
        raise UsageError(f"{err}; move it away or choose another run_id") from None
    state = _has_state(out_dir)
    ways = (f"either give this run its own directory (run_id=NAME or experiment_name=NAME), or continue the "
            f"existing run with its own config and ckpt_path=last")
    if previous is None:
        if state and ckpt_path != "last":
            raise UsageError(f"{out_dir} already holds a run without a run record ({', '.join(state[:4])}): "
                             f"{ways}")
        return None
    if debug and kind == "train" and ckpt_path != "last" and previous.get("status") == "debug":
        for stale in state:
            for path in (out_dir / "checkpoints" / stale, out_dir / stale):
                if path.is_file() and rank_zero:
                    path.unlink()
        log.info("%s: replacing the earlier debug run", out_dir)
        return None
    if previous.get("kind") != kind:
        raise UsageError(f"{out_dir} holds a {previous.get('kind')} run; a {kind} run never writes into it: "
                         f"{ways}")
    new_hash = rr.config_hash(resolved)
    if previous.get("config_hash") != new_hash:
        diff = rr.config_diff(previous.get("config") or {}, resolved)
        listing = "\n  ".join(diff) or "(the hashed parts differ)"
        raise UsageError(f"{out_dir} already holds a run with another configuration "
                         f"({str(previous.get('config_hash'))[:19]}, this command {new_hash[:19]}). Differing keys "
                         f"(existing -> this command):\n  {listing}\nTo go on, {ways}")
    status = rr.effective_status(previous)
    if status == "running" and rank_zero and previous.get("host") == socket.gethostname() \
            and previous.get("pid") != os.getpid():
        raise UsageError(f"{out_dir} is in use: the run is in progress in process {previous.get('pid')} on "
                         f"{previous.get('host')} (started {previous.get('started_at')}); wait for it or stop it")
    if kind == "train" and ckpt_path != "last" and state:
        raise UsageError(f"{out_dir} already holds this run (status {status}; {', '.join(state[:4])}). Continue or "
                         "re-test it with ckpt_path=last, or start a separate run with run_id=NAME")
    return previous


def _make_run_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UsageError(f"cannot write the run directory {out_dir}: {err.strerror or err}; set paths.log_dir (or "
                         "FERTRAIN_ROOT) to a writable folder") from None


def debug_reasons(cfg: DictConfig) -> list[str]:
    """Why this run is a debug run (``run.json`` status ``debug``): the ``debug`` config group, ``fast_dev_run``,
    ``overfit_batches``, or ``limit_*_batches`` other than 1.0 (a fraction below 1 or a batch count)."""
    reasons = []
    try:
        from hydra.core.hydra_config import HydraConfig

        choice = HydraConfig.get().runtime.choices.get("debug")
        if choice and choice != "null":
            reasons.append(f"debug={choice}")
    except ValueError:  # not under @hydra.main (compose API: sweeps, tests)
        pass
    tr = cfg.get("trainer") or {}
    if tr.get("fast_dev_run"):
        reasons.append(f"trainer.fast_dev_run={tr.get('fast_dev_run')}")
    if tr.get("overfit_batches"):
        reasons.append(f"trainer.overfit_batches={tr.get('overfit_batches')}")
    for split in ("train", "val", "test"):
        value = tr.get(f"limit_{split}_batches")
        if value is not None and not (isinstance(value, float) and value == 1.0):
            if not (isinstance(value, float) and value >= 1.0):
                reasons.append(f"trainer.limit_{split}_batches={value}")
    return reasons


def _overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


def data_record(datamodule: Any) -> dict[str, Any]:
    """The ``data`` block of ``run.json``: the fingerprint of the samples of every split set up so far
    (:func:`fertrain.data.fingerprint.data_fingerprint`) and the skipped samples per reason, read from what the
    datamodule exposes: ``corrupt_report()`` (``{reason: samples}``; with ``corrupt_details()`` as ``unusable``),
    else ``skipped_counts``, else its ``skipped`` rows."""
    from fertrain.data.fingerprint import data_fingerprint

    out: dict[str, Any] = {"fingerprint": None, "splits": None, "skipped": None}
    datasets = getattr(datamodule, "datasets", None) or {}
    records = {split: list(ds.records) for split, ds in datasets.items() if hasattr(ds, "records")}
    if records:
        source = getattr(datamodule, "source", None)
        try:
            out.update(data_fingerprint(records, getattr(source, "root", None)))
        except (AttributeError, TypeError, ValueError) as err:  # records without the fingerprinted fields
            out["fingerprint_error"] = f"{type(err).__name__}: {err}"
    counts = getattr(datamodule, "skipped_counts", None)
    if callable(getattr(datamodule, "corrupt_report", None)):
        counts = datamodule.corrupt_report()
        if callable(getattr(datamodule, "corrupt_details", None)):
            out["unusable"] = datamodule.corrupt_details()
    if counts is None and isinstance(getattr(datamodule, "skipped", None), list):
        counts = dict(Counter(str(row.get("reason", "unknown")).split(":")[0] for row in datamodule.skipped))
    if counts is not None:
        out["skipped"] = dict(counts) if isinstance(counts, Mapping) else counts
    return out


class _RunRecorder(pl.Callback):
    """Puts the data fingerprint into ``run.json`` once the splits are set up (fit and test), rank 0 only."""

    def __init__(self, out_dir: Path, record: dict[str, Any] | None) -> None:
        self.out_dir, self.record = out_dir, record

    def _update(self, trainer: pl.Trainer) -> None:
        if self.record is not None and trainer.is_global_zero and trainer.datamodule is not None:
            rr.update_run_record(self.out_dir, self.record, data=data_record(trainer.datamodule))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._update(trainer)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._update(trainer)


def _ckpt_info(path: str | None) -> dict[str, Any] | None:
    if not path or not Path(path).is_file():
        return None
    info = describe_checkpoint(path)
    return {k: info[k] for k in ("path", "bytes", "epoch", "global_step", "config_hash", "weights_only")}


# ------------------------------------------------------------------------------------------------ the run
def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and/or test as the config says; returns the run summary (also written to ``summary.json``).

    Raises:
        UsageError: the run directory holds another run or is not writable; a wrong-type override
            (see :func:`check_run_dir`, :func:`fertrain.overrides.check_overrides`).
        fertrain.checkpoint_io.CheckpointError: the checkpoint to resume or test does not fit the run.
        fertrain.data.records.DatasetError: the dataset root or files are missing or malformed.
        FloatingPointError: the training loss became non-finite.
        fertrain.resume.Preempted: stopped by SIGTERM/SIGUSR1 after saving the state.
    """
    os.environ.setdefault("WANDB_MODE", "offline")
    out_dir = Path(cfg.paths.output_dir)
    overrides = _overrides()
    check_overrides(cfg, overrides)
    _make_run_dir(out_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    kind = "train" if cfg.train else "test"
    zero = rank_zero_only.rank == 0
    ckpt_arg = cfg.get("ckpt_path")
    debug = debug_reasons(cfg)
    previous = check_run_dir(out_dir, resolved, ckpt_arg if kind == "train" else "last", kind, rank_zero=zero,
                             debug=bool(debug))
    if previous is not None and kind == "train" and ckpt_arg == "last" and previous.get("status") in (
            "finished", "debug") and (out_dir / "summary.json").is_file():
        log.info("%s: this run already finished (status %s); nothing to resume", out_dir, previous["status"])
        summary = json.loads((out_dir / "summary.json").read_text())
        if zero:
            _print_any_summary(summary)
        return summary

    if zero:
        tmp = out_dir / "config_resolved.yaml.tmp"
        tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
        tmp.replace(out_dir / "config_resolved.yaml")
    ckpt = resolve_ckpt_path(ckpt_arg, out_dir)
    record = None
    if zero:
        record = rr.start_run_record(
            out_dir, kind=kind, experiment=cfg.get("experiment_name"), run_id=cfg.get("run_id"), config=resolved,
            overrides=overrides, seed=cfg.get("seed"), device=rr.device_info(cfg.trainer), debug=debug,
            resumed_from=ckpt if kind == "train" else None, previous=previous)
    try:
        try:
            summary = _run(cfg, resolved, out_dir, ckpt, record)
        except SIGTERMException as err:  # Lightning's SIGTERM exit (a SystemExit, status 0): a stop, not a success
            raise Preempted("stopped by SIGTERM (Lightning's handler, at an epoch end); run the same command with "
                            "ckpt_path=last to continue from the last checkpoint") from err
    except Preempted as err:
        if record is not None:
            rr.finish_run_record(out_dir, record, "killed", error=str(err))
        raise
    except BaseException as err:
        if _interrupted(err):  # Ctrl-C: a stop like SIGTERM's, not a failure of the run; exit status 130 (SIGINT)
            message = ("interrupted (Ctrl-C / SIGINT); run the same command with ckpt_path=last to continue from the "
                       "last checkpoint")
            if record is not None:
                rr.finish_run_record(out_dir, record, "killed", error=message)
            print(f"fertrain: error: {message}", file=sys.stderr)
            raise SystemExit(130) from None
        if record is not None:
            from fertrain.cli import explain

            rr.finish_run_record(out_dir, record, "failed", error=f"{type(err).__name__}: {explain(err)[1]}"[:2000])
        raise
    if record is not None:
        rr.finish_run_record(out_dir, record, "debug" if debug else "finished",
                             checkpoints=summary.get("checkpoints"),
                             source_checkpoint=summary.get("source_checkpoint"))
    return summary


def _run(cfg: DictConfig, resolved: dict[str, Any], out_dir: Path, ckpt: str | None,
         record: dict[str, Any] | None) -> dict[str, Any]:
    pl.seed_everything(cfg.seed, workers=True)
    datamodule, task = build(cfg)
    folds = datamodule.folds() if callable(getattr(datamodule, "folds", None)) else None
    if folds:  # leave-one-subject-out with data.subject=null: one run per fold, here (spotting)
        return _run_folds(cfg, folds, type(task), out_dir)
    chash = rr.config_hash(resolved)
    task.fertrain_config = resolved  # stored in every checkpoint (read by predict)
    task.fertrain_meta = {"version": __version__, "config_hash": chash, "model_class": str(cfg.model._target_),
                          "run_dir": str(out_dir.resolve())}
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    callbacks += [ExactResume(int(cfg.seed)), Preemption(str(out_dir / "checkpoints")), _RunRecorder(out_dir, record)]
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    best_cb = next((c for c in trainer.checkpoint_callbacks if not isinstance(c, LastCheckpoint)), None)
    last_cb = next((c for c in trainer.checkpoint_callbacks if isinstance(c, LastCheckpoint)), None)

    kind = "train" if cfg.train else "test"
    summary: dict[str, Any] = {"experiment": cfg.experiment_name, "run_dir": str(out_dir), "kind": kind}
    # what the pretrained load did (file, sha256, loaded/total tensors), beside the numbers it produced
    summary["weights"] = getattr(getattr(task, "net", None), "weights_report", None)
    source = None
    if ckpt:  # before Lightning loads it: one message for a file that does not fit
        resume = kind == "train"
        source = check_checkpoint(ckpt, task, model_class=str(cfg.model._target_),
                                  config_hash=chash if resume else None,
                                  fertrain_version=__version__ if resume else None)
    rows: dict[str, int] = {}
    if kind == "train" and ckpt:  # rows of metrics.csv written before that checkpoint (fertrain.resume)
        rows = checkpoint_log_rows(torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True))
    for lg in loggers:
        if isinstance(lg, ResumableCSVLogger):
            key = os.path.relpath(lg.log_dir, out_dir)
            if kind == "test" or not ckpt:
                lg.resume_at(0)  # a fresh start: nothing of an earlier attempt stays
            elif key in rows:
                lg.resume_at(rows[key])
        if not ckpt or kind == "test":
            lg.log_hyperparams(resolved)

    if cfg.train:
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt)
        if task.val_history:
            m, sign = _monitored(cfg)
            if all(m in e for e in task.val_history):
                best = max(task.val_history, key=lambda e: (sign * e[m], -e["epoch"]))
            else:  # monitored key not in the history (any logged val metric): the best checkpoint's epoch
                best_epoch = (_ckpt_info(best_cb.best_model_path) or {}).get("epoch") if best_cb else None
                best = next((e for e in task.val_history if e["epoch"] == best_epoch), task.val_history[-1])
            summary["val_best"] = best
            summary["val_last"] = task.val_history[-1]
            final = {f"{k}/{f}": float(v[f]) for k, v in (("val_best", best), ("val_last", task.val_history[-1]))
                     for f in getattr(task, "summary_fields", ("uar", "war", "epoch")) if f in v}
            for lg in loggers:
                lg.log_metrics(final, step=trainer.global_step)
        summary["epochs"] = trainer.current_epoch
        summary["skipped_nonfinite"] = int(getattr(task, "skipped_nonfinite", 0))  # task.skip_nonfinite_loss
    tests: dict[str, str | None] = {}
    if cfg.test:
        if cfg.train:
            tests = {"test_best": (best_cb.best_model_path or None) if best_cb else None,
                     "test_last": (last_cb.last_model_path or None) if last_cb else None}
        else:
            tests = {"test": ckpt}
        for tag, path in tests.items():
            if tag == "test_best" and not path and tests.get("test_last"):
                log.info("test_best: no best checkpoint (no validation ran); test_last tests the final weights")
                continue
            if cfg.train and not path:
                log.warning("%s: no checkpoint was written; testing the weights in memory", tag)
            task.test_tag = tag
            trainer.test(task, datamodule=datamodule, ckpt_path=path, verbose=False)
            info = _ckpt_info(path)
            summary[tag] = {k: v for k, v in task.last_test.items() if k != "confmat"} | {
                "ckpt": path, "ckpt_epoch": info["epoch"] if info else None}
    if cfg.train:
        summary["best_ckpt"] = (best_cb.best_model_path or None) if best_cb else None
        summary["last_ckpt"] = (last_cb.last_model_path or None) if last_cb else None
        summary["checkpoints"] = {name: _ckpt_info(summary[f"{name}_ckpt"]) for name in ("best", "last")}
    elif source is not None:
        summary["source_checkpoint"] = {k: source[k] for k in ("path", "bytes", "epoch", "global_step",
                                                               "config_hash", "model_class", "fertrain_version")}

    video = cfg.get("predict_video")
    if video and trainer.is_global_zero:
        from fertrain.predict import predict_video

        use = summary.get("best_ckpt") or summary.get("last_ckpt") or ckpt
        if use:
            dm_cfg = cfg.data.datamodule
            res = predict_video(use, video, out_dir / "predict",
                                batch_size=dm_cfg.get("eval_batch_size") or dm_cfg.batch_size,
                                cache_dir=cfg.data.get("cache_dir"),  # data.faces: reuse the run's extracted faces
                                labels=cfg.data.get("predict_labels"))  # labelled segments shaded on the timeline
            summary["predict"] = {k: str(v) for k, v in res.items()}
    if callable(getattr(task, "finalize_summary", None)):
        task.finalize_summary(summary)  # task-specific keys (spotting: task, val, test)
    if trainer.is_global_zero:
        for lg in loggers:
            lg.save()
        _write_json(out_dir / "summary.json", summary)
        getattr(task, "print_summary", _print_summary)(summary)
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb

        wandb.finish()
    return summary


def _monitored(cfg: DictConfig) -> tuple[str, int]:
    """The ``val_history`` entry key of ``cfg.monitor.key`` (``"val/uar"`` -> ``"uar"``) and the sign for ``max``."""
    mon = cfg.get("monitor") or {}
    key = str(mon.get("key", "val/uar"))
    return key.split("/", 1)[1] if key.startswith("val/") else key, (-1 if mon.get("mode", "max") == "min" else 1)


def _run_folds(cfg: DictConfig, folds: list[str], task_cls: type, out_dir: Path) -> dict[str, Any]:
    """Leave-one-subject-out inside one run: :func:`run` once per fold (``data.subject=<fold>``, run directory
    ``<out_dir>/folds/<fold>``, so ``ckpt_path=last`` resumes each fold), then ``task_cls.pool_folds`` (counts
    summed over folds, e.g. spotting TP/FP/FN) into the summary."""
    fold_summaries: dict[str, dict[str, Any]] = {}
    for fold in folds:
        fold_cfg = copy.deepcopy(cfg)
        with open_dict(fold_cfg):
            fold_cfg.data.subject = fold
            fold_cfg.paths.output_dir = str(out_dir / "folds" / str(fold))
            fold_cfg.predict_video = None
        log.info("LOSO fold %s (%d/%d)", fold, len(fold_summaries) + 1, len(folds))
        fold_summaries[str(fold)] = run(fold_cfg)
    summary: dict[str, Any] = {"experiment": cfg.experiment_name, "run_dir": str(out_dir)}
    summary.update(task_cls.pool_folds(fold_summaries))
    summary["fold_dirs"] = {f: s["run_dir"] for f, s in fold_summaries.items()}
    _write_json(out_dir / "summary.json", summary)
    getattr(task_cls, "print_summary", _print_summary)(summary)
    return summary


def _print_any_summary(summary: dict[str, Any]) -> None:
    """Print a summary read back from ``summary.json`` (recognition or spotting)."""
    if summary.get("task") == "spotting":
        from fertrain.tasks.spotting import print_spotting_summary

        print_spotting_summary(summary)
    else:
        _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"fertrain · {summary['experiment']} · {summary['run_dir']}")
    for col in ("stage", "epoch", "UAR", "WAR", "checkpoint"):
        table.add_column(col)
    for key in ("val_best", "val_last", "test_best", "test_last", "test"):
        if key in summary:
            s = summary[key]
            table.add_row(key, str(s.get("epoch", "")), f"{s['uar']:.4f}", f"{s['war']:.4f}",
                          Path(s["ckpt"]).name if s.get("ckpt") else "")
    Console().print(table)


def metric_value(summary: dict[str, Any], key: str | None) -> float | None:
    """Look up a dotted key such as ``"val_best.uar"`` in the summary (the value returned to sweepers)."""
    if not key:
        return None
    node: Any = summary
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"optimized_metric={key!r}: {part!r} not in the run summary (keys: {list(node)})")
        node = node[part]
    return float(node)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    check_multirun_ddp(cfg.trainer, multirun)
    try:
        summary = run(cfg)
    except Exception as err:
        if multirun:  # Hydra names the failing job's overrides, then the error is printed once
            raise
        # single run: passes Hydra's job runner without its "Error executing job with overrides" line
        raise PassThrough(err) from err
    if not cfg.train or summary.get("kind") == "test":
        return None  # a test-only run has no validation metric to optimise
    return metric_value(summary, cfg.get("optimized_metric"))


class PassThrough(BaseException):
    """Carries an error of a single run past Hydra's job runner (which catches ``Exception``) to
    :func:`fertrain.cli.run_guarded`, so it is printed once."""


def main() -> float | None:
    """``python -m fertrain`` / the ``fertrain`` script: the Hydra app; returns ``cfg.optimized_metric`` from the
    summary (``None`` if unset or for a test-only run).

    Exit status (:mod:`fertrain.cli`): 0 success; 1 runtime failure (non-finite loss, checkpoint write failed,
    stopped by SIGTERM/SIGUSR1, ...); 2 usage or configuration error (unknown or wrong-type override, missing
    dataset, unusable checkpoint, run directory holding another run, unwritable output folder); 130 interrupted by
    Ctrl-C (run.json status ``killed``; resume with ``ckpt_path=last``). Every error is printed once as
    ``fertrain: error: <message>``.
    """
    return run_guarded("fertrain", _hydra_main)


register_resolvers()
