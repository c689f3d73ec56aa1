"""Training entry point: ``python -m fertrain [+experiment=NAME] [key=value ...]`` (a Hydra application).

Compose -> instantiate -> fit -> test the best and the last checkpoint -> (optionally) predict on a video ->
write ``summary.json`` -> return the optimised metric (for sweeps). The run directory is deterministic
(``logs/<experiment_name>/<run_id>``, see ``conf/hydra/default.yaml``), so re-running the same command with
``ckpt_path=last`` resumes from ``<run_dir>/checkpoints/last.ckpt``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import hydra
import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from fertrain.config import config_dir, register_resolvers
from fertrain.data.records import DatasetError

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


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """Instantiate the datamodule and the task (network, loss, optimiser, scheduler) from a composed config.

    Raises:
        DatasetError: the dataset is missing or malformed (unwrapped from Hydra's InstantiationException, so the
            user sees the dataset's own message first).
    """
    try:
        datamodule = instantiate(cfg.data.datamodule)
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, DatasetError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise
    net = instantiate(cfg.model)
    task = instantiate(
        cfg.task,
        net=net,
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )
    return datamodule, task


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and/or test as the config says; returns the run summary (also written to ``summary.json``).

    Raises:
        fertrain.data.records.DatasetError: the dataset root or files are missing or malformed.
        FloatingPointError: the training loss became non-finite.
    """
    os.environ.setdefault("WANDB_MODE", "offline")
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    tmp = out_dir / "config_resolved.yaml.tmp"
    tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
    tmp.replace(out_dir / "config_resolved.yaml")

    pl.seed_everything(cfg.seed, workers=True)
    datamodule, task = build(cfg)
    folds = datamodule.folds() if callable(getattr(datamodule, "folds", None)) else None
    if folds:  # leave-one-subject-out with data.subject=null: one run per fold, here (spotting)
        return _run_folds(cfg, folds, type(task), out_dir)
    task.fertrain_config = resolved  # stored in every checkpoint (see on_save_checkpoint below)
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    for lg in loggers:
        lg.log_hyperparams(resolved)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)

    summary: dict[str, Any] = {"experiment": cfg.experiment_name, "run_dir": str(out_dir)}
    ckpt = resolve_ckpt_path(cfg.get("ckpt_path"), out_dir)
    ckpt_cb = trainer.checkpoint_callback
    if cfg.train:
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt)
        if task.val_history:
            m, sign = _monitored(cfg)
            best = max(task.val_history, key=lambda e: (sign * e[m], -e["epoch"]))
            summary["val_best"] = best
            summary["val_last"] = task.val_history[-1]
            final = {f"{k}/{m}": float(v[m]) for k, v in (("val_best", best), ("val_last", task.val_history[-1]))
                     for m in getattr(task, "summary_fields", ("uar", "war", "epoch"))}
            for lg in loggers:
                lg.log_metrics(final, step=trainer.global_step)
        summary["epochs"] = trainer.current_epoch
        summary["skipped_nonfinite"] = int(getattr(task, "skipped_nonfinite", 0))  # task.skip_nonfinite_loss
    tests: dict[str, str | None] = {}
    if cfg.test:
        if cfg.train and ckpt_cb is not None:
            tests = {"test_best": ckpt_cb.best_model_path or None, "test_last": ckpt_cb.last_model_path or None}
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
            summary[tag] = {k: v for k, v in task.last_test.items() if k != "confmat"} | {"ckpt": path}
    if ckpt_cb is not None:
        summary["best_ckpt"] = ckpt_cb.best_model_path or None
        summary["last_ckpt"] = ckpt_cb.last_model_path or None

    video = cfg.get("predict_video")
    if video and trainer.is_global_zero:
        from fertrain.predict import predict_video

        use = summary.get("best_ckpt") or summary.get("last_ckpt")
        if use:
            dm_cfg = cfg.data.datamodule
            res = predict_video(use, video, out_dir / "predict",
                                batch_size=dm_cfg.get("eval_batch_size") or dm_cfg.batch_size)
            summary["predict"] = {k: str(v) for k, v in res.items()}
    if callable(getattr(task, "finalize_summary", None)):
        task.finalize_summary(summary)  # task-specific keys (spotting: task, val, test)
    if trainer.is_global_zero:
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
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``cfg.optimized_metric`` from the summary (``None`` if unset).

    A dataset problem ends the program with exit status 2 and the dataset's message (no stack trace).

    Raises:
        ValueError: Lightning-launched DDP inside a multirun (see :func:`check_multirun_ddp`).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    check_multirun_ddp(cfg.trainer, HydraConfig.get().mode == RunMode.MULTIRUN)
    try:
        summary = run(cfg)
    except DatasetError as e:
        log.error("dataset error: %s", e)
        raise SystemExit(f"fertrain: dataset error: {e}") from None
    return metric_value(summary, cfg.get("optimized_metric"))


register_resolvers()
