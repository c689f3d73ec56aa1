"""Training entry point: ``python -m fertrain [+experiment=NAME] [key=value ...]`` (a Hydra application).

Compose -> instantiate -> fit -> test the best and the last checkpoint -> (optionally) predict on a video ->
write ``summary.json`` -> return the optimised metric (for sweeps). The run directory is deterministic
(``logs/<experiment_name>/<run_id>``, see ``conf/hydra/default.yaml``), so re-running the same command with
``ckpt_path=last`` resumes from ``<run_dir>/checkpoints/last.ckpt``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fertrain.config import config_dir, register_resolvers
from fertrain.data.records import DatasetError

log = logging.getLogger("fertrain")


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """``None`` -> None; ``"last"`` -> ``<output_dir>/checkpoints/last.ckpt`` if it exists (else None, logged);
    any other value -> that file.

    Raises:
        FileNotFoundError: an explicit checkpoint path does not exist.
    """
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        last = output_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            log.info("resuming from %s", last)
            return str(last)
        log.warning("ckpt_path=last but %s does not exist yet: starting from scratch", last)
        return None
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    return str(path)


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
            best = max(task.val_history, key=lambda e: (e["uar"], -e["epoch"]))
            summary["val_best"] = best
            summary["val_last"] = task.val_history[-1]
            final = {f"{k}/{m}": float(v[m]) for k, v in (("val_best", best), ("val_last", task.val_history[-1]))
                     for m in ("uar", "war", "epoch")}
            for lg in loggers:
                lg.log_metrics(final, step=trainer.global_step)
        summary["epochs"] = trainer.current_epoch
    tests: dict[str, str | None] = {}
    if cfg.test:
        if cfg.train and ckpt_cb is not None:
            tests = {"test_best": ckpt_cb.best_model_path or None, "test_last": ckpt_cb.last_model_path or None}
        else:
            tests = {"test": ckpt}
        for tag, path in tests.items():
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
    if trainer.is_global_zero:
        _write_json(out_dir / "summary.json", summary)
        _print_summary(summary)
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb

        wandb.finish()
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
    """
    try:
        summary = run(cfg)
    except DatasetError as e:
        log.error("dataset error: %s", e)
        raise SystemExit(f"fertrain: dataset error: {e}") from None
    return metric_value(summary, cfg.get("optimized_metric"))


register_resolvers()
