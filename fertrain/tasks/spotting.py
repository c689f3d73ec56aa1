"""Spotting task: per-frame classification of windows, stitched into per-video scores, intervals and MEGC F1.

Training: every output of the network's cascade (``net.forward_stages``: ``(S + 1, B, T, K)``; a plain
``net(x) -> (B, T, K)`` is one stage) gets the per-frame cross-entropy (class-weighted, padded frames ignored),
averaged over stages; the cascade-refined stages (``1..S``) also get the temporal smooth loss
(:class:`fertrain.losses.smooth.TemporalSmoothLoss`) with weight ``smooth_weight``.

Validation / test: the softmax of the final stage is averaged over all windows that cover a frame, per video
(windows may come in any order and batch; under DDP the sums are all-reduced), source frames take the score of
their sampled frame, and :func:`fertrain.spotting.postprocess.spot_video` turns the ``(N, 3)`` scores into
intervals, compared with the ground truth by :class:`fertrain.metrics.spotting.SpottingF1` under the evaluation
protocol ``metric.protocol`` (a preset of :mod:`fertrain.spotting.protocols`, default ``fertrain``; named rules
overridden by ``metric.rules``) and, on request, under the protocols ``metric.also`` as well (same proposals). A
frame no window covered (e.g. with ``limit_val_batches``) counts as neutral; the number is logged.

Logged per stage tag (``val``, ``test_best``, ...): ``{tag}/f1`` (overall F1 of ``metric.protocol``, the monitored
metric), ``{tag}/{macro,micro,overall}/{tp,fp,fn,precision,recall,f1}`` and, per protocol of ``metric.also``,
``{tag}/{protocol}/{kind}/{...}``; in training ``train/loss``, ``train/ce``, ``train/smooth`` (epoch means over the
windows, weighted by batch size; their partial sums are saved in checkpoints, so a run resumed mid-epoch logs the same
values as an uninterrupted one), and ``train/loss_step`` per step. The test writes
``<run_dir>/spotting/result_log_<tag>.csv`` (MEGC-style rows under ``metric.protocol``), ``predictions_<tag>.csv``
(every predicted interval) and, with ``plots=true``, one PNG per video ``<run_dir>/spotting/plots/<tag>/<video>.png``
(:func:`fertrain.spotting.plots.plot_spotting_video`: score curve, ground truth, proposals coloured TP/FP, missed
GTs; macro and micro rows), also sent to the active TensorBoard / wandb loggers.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MeanMetric

from fertrain.cli import UsageError
from fertrain.metrics.spotting import SpottingF1, counts_to_metrics, prf
from fertrain.spotting.intervals import KINDS
from fertrain.spotting.postprocess import resolve_threshold, smooth_scores, spot_video
from fertrain.spotting.protocols import PRESETS, resolve_rules
from fertrain.tasks.epoch_state import load_metric_state, metric_state

log = logging.getLogger(__name__)

COUNT_KEYS = ("tp", "fp", "fn")


#: Keys summed when folds are pooled (the last part of ``{prefix}{kind}/{key}``), and the free-standing counts.
SUMMED = ("tp", "fp", "fn", "videos", "dummies")


def pool_counts(results: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Pool ``SpottingF1.compute()`` dicts (folds) by SUMMING TP/FP/FN (and the ``videos``/``dummies``/
    ``quirk_changes`` counts) per protocol prefix and kind, then recomputing precision, recall and F1 (MEGC: F1 of
    the pooled counts, not the mean of per-fold F1s). Keys of the ``metric.also`` protocols (``softnet/macro/tp``)
    are pooled the same way."""
    sums: dict[str, float] = {}
    for r in results:
        for key, v in r.items():
            last = key.rsplit("/", 1)[-1]
            if (last in SUMMED and key.rsplit("/", 2)[-2] in KINDS) or last == "quirk_changes":
                sums[key] = sums.get(key, 0.0) + float(v)
    prefixes = sorted({k[: -len("macro/tp")] for k in sums if k.endswith("macro/tp")} | {""})
    out: dict[str, float] = {}
    for prefix in prefixes:
        block = {k[len(prefix):]: v for k, v in sums.items() if k.startswith(prefix)
                 and (k[len(prefix):].split("/")[0] in KINDS or k[len(prefix):] == "quirk_changes")}
        out.update({prefix + k: v for k, v in counts_to_metrics(block).items()})
    return out


def _block(name: str, tp: int, fp: int, fn: int) -> dict[str, float]:
    p, r, f = prf(tp, fp, fn)
    return {f"{name}/tp": float(tp), f"{name}/fp": float(fp), f"{name}/fn": float(fn), f"{name}/precision": p,
            f"{name}/recall": r, f"{name}/f1": f}


def format_counts(res: Mapping[str, float], prefix: str = "") -> str:
    """One line: ``macro F1 0.500 (TP 1, FP 1, FN 1) | micro ... | overall ...`` (keys ``{prefix}{kind}/...``)."""
    return " | ".join(f"{k} F1 {res[f'{prefix}{k}/f1']:.3f} (TP {int(res[f'{prefix}{k}/tp'])}, FP "
                      f"{int(res[f'{prefix}{k}/fp'])}, FN {int(res[f'{prefix}{k}/fn'])})" for k in (*KINDS, "overall"))


def print_spotting_summary(summary: Mapping[str, Any]) -> None:
    """Print a rich table of a spotting run summary (val, test, pooled LOSO) and the plain one-line figures."""
    from rich.console import Console
    from rich.table import Table

    metric = summary.get("metric") or {}
    protocol = metric.get("protocol", "fertrain")
    title = f"fertrain · {summary['experiment']} · {summary['run_dir']} · evaluator {protocol}"
    if summary.get("folds"):
        title += f" · LOSO, {len(summary['folds'])} folds, counts pooled"
    table = Table(title=title)
    for col in ("stage", "protocol", "kind", "TP", "FP", "FN", "precision", "recall", "F1"):
        table.add_column(col)
    console = Console()
    for key in ("val", "test"):
        res = summary.get(key)
        if not res:
            continue
        for name, prefix in [(protocol, "")] + [(a, f"{a}/") for a in metric.get("also", [])]:
            if f"{prefix}macro/tp" not in res:
                continue
            for kind in (*KINDS, "overall"):
                table.add_row(key if kind == "macro" and not prefix else "", name if kind == "macro" else "", kind,
                              *(str(int(res[f"{prefix}{kind}/{c}"])) for c in COUNT_KEYS),
                              *(f"{res[f'{prefix}{kind}/{m}']:.4f}" for m in ("precision", "recall", "f1")))
    console.print(table)
    if summary.get("test"):
        print(f"spotting test ({protocol}): {format_counts(summary['test'])}")
        for a in metric.get("also", []):
            if f"{a}/macro/tp" in summary["test"]:
                print(f"spotting test ({a}): {format_counts(summary['test'], f'{a}/')}")
        if summary["test"].get("quirk_changes"):
            print(f"MEGC2020 quirks changed the counts of {int(summary['test']['quirk_changes'])} (video, kind) units "
                  f"(summary.json: test.quirk_changes)")


class SpottingTask(pl.LightningModule):
    """Expression spotting on windows of long videos (module docstring).

    Args:
        net: ``forward_stages(x (B, T, C, H, W)) -> (S + 1, B, T, K)`` (or ``forward -> (B, T, K)``).
        loss: per-frame criterion ``(logits (N, K), target (N,)) -> scalar``; an ``nn.CrossEntropyLoss`` (its
            ``ignore_index`` marks padded frames; its ``weight`` is set from ``class_weights``).
        optimizer: partial ``params -> Optimizer``.
        class_names: ``K`` per-frame classes (``neutral, macro, micro``).
        scheduler: optional partial ``(optimizer, total_steps) -> LRScheduler`` (stepped per optimiser step).
        smooth_loss: temporal smooth loss module (None: none).
        smooth_weight: its weight (MS-TCN uses 0.15).
        class_weights: ``"balanced"`` (``(n / (K n_k)) ** class_weight_power`` from the training frames, our
            choice), a list of ``K`` weights, or None (unweighted).
        class_weight_power: exponent of the balanced weights (0.5: square-root balancing).
        postprocess: :func:`fertrain.spotting.postprocess.spot_video` config (thresholds, lengths, per kind).
        metric: the evaluation: ``{"protocol": preset name, "also": [preset names], "rules": {rule: value}}``
            (:mod:`fertrain.spotting.protocols`; ``rules`` override the main protocol's named rules).
        iou_threshold, one_to_one: shortcuts for ``metric.rules.iou_threshold`` and ``metric.protocol=one_to_one``
            (None: not set).
        plots: write (and log) one spotting plot per test video.
        result_dir: where result logs go (default ``<trainer.default_root_dir>/spotting``).

    Raises:
        ValueError: class weights with a loss that is not ``nn.CrossEntropyLoss``, or of the wrong length.
        fertrain.cli.UsageError: an unknown protocol or rule in ``metric`` (named).
        FloatingPointError: a non-finite training loss.
    """

    summary_fields = ("f1", "epoch")  # what fertrain.train.run logs as val_best/... and val_last/...

    def __init__(self, net: nn.Module, loss: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 class_names: Sequence[str], scheduler: Callable[..., Any] | None = None,
                 smooth_loss: nn.Module | None = None, smooth_weight: float = 0.15,
                 class_weights: str | Sequence[float] | None = "balanced", class_weight_power: float = 0.5,
                 postprocess: Mapping[str, Any] | None = None, metric: Mapping[str, Any] | None = None,
                 iou_threshold: float | None = None, one_to_one: bool | None = None, plots: bool = True,
                 result_dir: str | None = None) -> None:
        super().__init__()
        self.net = net
        self.criterion = loss
        self.class_names = tuple(class_names)
        if isinstance(class_weights, (list, tuple, Sequence)) and not isinstance(class_weights, str):
            class_weights = [float(w) for w in class_weights]
            if len(class_weights) != len(self.class_names):
                raise ValueError(f"class_weights has {len(class_weights)} values for {len(self.class_names)} classes")
        if class_weights is not None:
            if not isinstance(loss, nn.CrossEntropyLoss):
                raise ValueError(f"class_weights need an nn.CrossEntropyLoss, got {type(loss).__name__}")
            self.criterion.weight = torch.ones(len(self.class_names))  # a buffer: saved in checkpoints
        self.class_weights = class_weights
        self.class_weight_power = float(class_weight_power)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.smooth_loss = smooth_loss
        self.smooth_weight = float(smooth_weight)
        if isinstance(postprocess, DictConfig):
            postprocess = OmegaConf.to_container(postprocess, resolve=True)
        self.postprocess = dict(postprocess or {"threshold": 0.5})
        if isinstance(metric, DictConfig):
            metric = OmegaConf.to_container(metric, resolve=True)
        self.metric_cfg = self._check_metric(dict(metric or {}), iou_threshold, one_to_one)
        self.plots = bool(plots)
        self.result_dir = result_dir
        self.ignore_index = int(getattr(loss, "ignore_index", -100))
        self._acc: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        # epoch means of the training losses (saved in checkpoints, unlike self.log's accumulators)
        self.train_means = nn.ModuleDict({k: MeanMetric() for k in ("loss", "ce", "smooth")})
        self.val_history: list[dict[str, float]] = []
        self._last_scores: dict[str, np.ndarray] = {}
        self.test_tag = "test"
        self.last_test: dict[str, Any] = {}
        self.fertrain_config: dict | None = None
        self.fertrain_meta: dict | None = None  # {"version", "model_class", "config_hash"}, saved in checkpoints

    @staticmethod
    def _check_metric(cfg: dict[str, Any], iou_threshold: float | None, one_to_one: bool | None) -> dict[str, Any]:
        """Validate ``metric`` (protocol, also, rules) once, at construction: a bad name fails before training."""
        unknown = sorted(set(cfg) - {"protocol", "also", "rules"})
        if unknown:
            raise UsageError(f"metric: unknown keys {unknown}; expected protocol, also, rules")
        protocol = "one_to_one" if one_to_one else str(cfg.get("protocol") or "fertrain")
        rules = {k: v for k, v in dict(cfg.get("rules") or {}).items() if v is not None}  # null = the preset's
        if isinstance(rules.get("ground_truth"), Mapping):
            rules["ground_truth"] = {k: v for k, v in rules["ground_truth"].items() if v is not None}
            if not rules["ground_truth"]:
                del rules["ground_truth"]
        if iou_threshold is not None:
            rules["iou_threshold"] = float(iou_threshold)
        also = [str(a) for a in (cfg.get("also") or [])]
        try:
            main = resolve_rules(protocol, rules)
            for a in also:
                resolve_rules(a)
        except ValueError as e:
            raise UsageError(str(e)) from None
        also = [a for a in dict.fromkeys(also) if a != protocol]
        return {"protocol": protocol, "also": also, "rules": rules, "name": main.name}

    def metrics(self) -> dict[str, SpottingF1]:
        """Fresh metrics: the main protocol under key ``""`` and each ``metric.also`` protocol under its name."""
        out = {"": SpottingF1(protocol=self.metric_cfg["protocol"], rules=self.metric_cfg["rules"],
                              sync_on_compute=False)}
        for a in self.metric_cfg["also"]:
            out[a] = SpottingF1(protocol=a, sync_on_compute=False)
        return out

    def metric_summary(self) -> dict[str, Any]:
        """What ``summary.json`` records about the evaluation (protocol, its rules and source, the others)."""
        main = resolve_rules(self.metric_cfg["protocol"], self.metric_cfg["rules"])
        return {"protocol": main.name, "also": list(self.metric_cfg["also"]), "rules": main.describe(),
                "also_rules": {a: PRESETS[a].describe() for a in self.metric_cfg["also"]}}

    # ---------------------------------------------------------------- set-up
    def setup(self, stage: str) -> None:
        for mean in self.train_means.values():  # private states in every process (ddp_spawn shares them otherwise)
            mean.reset()
        if stage != "fit" or self.class_weights is None:
            return
        if self.class_weights == "balanced":
            counts = torch.as_tensor(self.trainer.datamodule.frame_label_counts(), dtype=torch.float64)
            w = (counts.sum() / (len(counts) * counts.clamp(min=1))) ** self.class_weight_power
            w = w / w.mean()
        else:
            w = torch.as_tensor(self.class_weights, dtype=torch.float64)
        self.criterion.weight.copy_(w.float())
        log.info("spotting class weights %s", dict(zip(self.class_names, [round(float(x), 3) for x in w])))

    # ---------------------------------------------------------------- steps
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """float ``(B, T, C, H, W)`` -> final per-frame logits ``(B, T, K)``."""
        return self.net(video)

    def stages(self, video: torch.Tensor) -> torch.Tensor:
        """All cascade outputs ``(S + 1, B, T, K)`` (one stage for a network without ``forward_stages``)."""
        f = getattr(self.net, "forward_stages", None)
        return f(video) if f is not None else self.net(video)[None]

    def _ce(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean over stages of the per-frame criterion; logits ``(S, B, T, K)``, labels ``(B, T)``."""
        K = logits.shape[-1]
        return torch.stack([self.criterion(s.reshape(-1, K).float(), labels.reshape(-1)) for s in logits]).mean()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self.stages(batch["video"])  # (S+1, B, T, K)
        labels = batch["labels"].masked_fill(~batch["valid"], self.ignore_index)
        ce = self._ce(out, labels)
        loss = ce
        if self.smooth_loss is not None and self.smooth_weight > 0:
            smooth = self.smooth_loss(out[1:] if out.shape[0] > 1 else out, batch["valid"])
            loss = ce + self.smooth_weight * smooth
            self.train_means["smooth"].update(smooth.detach(), weight=labels.shape[0])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss ({loss.item()}) at epoch {self.current_epoch}, "
                                     f"global step {self.global_step}, batch {batch_idx} (videos "
                                     f"{list(batch['video_id'])[:4]}…): lower the learning rate or check the inputs")
        self.train_means["ce"].update(ce.detach(), weight=labels.shape[0])
        self.train_means["loss"].update(loss.detach(), weight=labels.shape[0])
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        for name, mean in self.train_means.items():
            if mean.weight.sum() > 0:
                self.log(f"train/{name}", mean.compute())
            mean.reset()

    def _eval_step(self, batch: dict, stage: str) -> None:
        logits = self.stages(batch["video"])[-1]  # (B, T, K)
        labels = batch["labels"].masked_fill(~batch["valid"], self.ignore_index)
        self.log(f"{self._tag(stage)}/loss", self._ce(logits[None], labels), on_step=False, on_epoch=True,
                 batch_size=labels.shape[0], sync_dist=True)
        probs = logits.detach().float().softmax(-1).cpu().double()  # (B, T, K)
        videos = self._split_dataset(stage).videos
        sampler = self.trainer.datamodule.sampler
        for b in range(probs.shape[0]):
            vi = int(batch["video_index"][b])
            if vi not in self._acc:
                n = sampler.num_sampled(videos[vi].num_frames)
                self._acc[vi] = (torch.zeros(n, probs.shape[-1], dtype=torch.float64), torch.zeros(n, dtype=torch.float64))
            s, c = self._acc[vi]
            m = batch["valid"][b].cpu()
            pos = batch["positions"][b].cpu()[m]
            s.index_add_(0, pos, probs[b][m])
            c.index_add_(0, pos, torch.ones(len(pos), dtype=torch.float64))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Per-frame class probabilities ``(B, T, K)`` of the final stage."""
        return self(batch["video"]).softmax(dim=-1)

    # ---------------------------------------------------------- epoch ends
    def _tag(self, stage: str) -> str:
        return self.test_tag if stage == "test" else stage

    def _split_dataset(self, stage: str):
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "datasets"):
            raise RuntimeError("SpottingTask needs a SpottingDataModule (trainer.fit/test(..., datamodule=...))")
        return dm.datasets[stage]

    def video_scores(self, stage: str) -> list[np.ndarray]:
        """Stitched per-frame scores of every video of the split: float64 ``(N_v, K)`` each (consumes the sums)."""
        videos = self._split_dataset(stage).videos
        sampler = self.trainer.datamodule.sampler
        out, uncovered = [], 0
        for i, v in enumerate(videos):
            n = sampler.num_sampled(v.num_frames)
            s, c = self._acc.get(i, (torch.zeros(n, len(self.class_names), dtype=torch.float64),
                                     torch.zeros(n, dtype=torch.float64)))
            if self.trainer.world_size > 1:  # every rank saw some windows: sum them (same order on all ranks)
                s = self.trainer.strategy.reduce(s.to(self.device), reduce_op="sum").cpu()
                c = self.trainer.strategy.reduce(c.to(self.device), reduce_op="sum").cpu()
            mean = s / c.clamp(min=1)[:, None]
            mean[c == 0] = torch.tensor([1.0] + [0.0] * (len(self.class_names) - 1), dtype=torch.float64)
            uncovered += int((c == 0).sum())
            idx = np.minimum(np.arange(v.num_frames) // sampler.frame_step, n - 1)
            out.append(mean.numpy()[idx])
        self._acc = {}
        if uncovered:
            log.info("%s: %d sampled frames were covered by no window (scored neutral)", stage, uncovered)
        return out

    def _evaluate(self, stage: str) -> tuple[dict[str, float], SpottingF1, list[tuple[str, Any]]]:
        videos = self._split_dataset(stage).videos
        metrics = self.metrics()
        preds_all = []
        stats: dict[str, Any] = {}
        scores_all = self.video_scores(stage)
        for v, scores in zip(videos, scores_all):
            preds = spot_video(scores, {**self.postprocess, "stats": stats})
            for m in metrics.values():
                m.update_video(preds, v)
            preds_all += [(v.video_id, iv) for iv in preds]
        out = metrics[""].compute()
        for name, m in metrics.items():
            if name:
                out.update({f"{name}/{k}": val for k, val in m.compute().items()})
        tag = self._tag(stage)
        self.log(f"{tag}/f1", out["overall/f1"], prog_bar=True)
        self.log_dict({f"{tag}/{k}": v for k, v in out.items()})
        log.info("%s (%s): %s (post-processing: %s)", tag, metrics[""].protocol, format_counts(out), stats)
        for name in metrics:
            if name:
                log.info("%s (%s): %s", tag, name, format_counts(out, f"{name}/"))
        self._last_scores = dict(zip((v.video_id for v in videos), scores_all))
        return out, metrics[""], preds_all

    def on_validation_epoch_end(self) -> None:
        out, _, _ = self._evaluate("val")
        if self.trainer.sanity_checking:
            return
        entry = {"epoch": int(self.current_epoch), "f1": float(out["overall/f1"]), **out}
        loss = self.trainer.callback_metrics.get("val/loss")
        if loss is not None:
            entry["loss"] = float(loss)
        self.val_history.append(entry)

    def on_test_epoch_end(self) -> None:
        out, metric, preds = self._evaluate("test")
        self.last_test = dict(out)
        if self.trainer.is_global_zero:
            root = Path(self.result_dir) if self.result_dir else Path(self.trainer.default_root_dir) / "spotting"
            metric.write_result_log(root / f"result_log_{self.test_tag}.csv")
            with open(root / f"predictions_{self.test_tag}.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["video", "kind", "onset", "offset", "score"])
                w.writerows([vid, iv.kind, iv.onset, iv.offset, f"{iv.score:.4f}"] for vid, iv in preds)
            if self.plots:
                self.write_plots(metric, root / "plots" / self.test_tag)

    def write_plots(self, metric: SpottingF1, folder: Path) -> list[Path]:
        """One spotting plot per evaluated video (:func:`fertrain.spotting.plots.plot_spotting_video`) into
        ``folder``, each also logged to the active TensorBoard / wandb loggers as ``<tag>/spotting/<video>``."""
        from fertrain.spotting.plots import log_image, plot_spotting_video

        videos = {v.video_id: v for v in self._split_dataset("test").videos}
        written = []
        for video_id, _subject, results in metric.details:
            v = videos[video_id]
            scores = self._last_scores.get(video_id)
            curves, thresholds = {}, {}
            if scores is not None:
                for kind, col in (("macro", 1), ("micro", 2)):
                    cfg = {**self.postprocess, **(self.postprocess.get(kind) or {})}
                    curves[kind] = smooth_scores(scores[:, col], int(cfg.get("smooth", 1) or 1))
                    thresholds[kind] = resolve_threshold(curves[kind], cfg.get("threshold", 0.5))
            png = plot_spotting_video(folder / f"{video_id}.png", video_id, v.num_frames, curves, results,
                                      thresholds=thresholds, fps=v.fps, protocol=metric.protocol,
                                      title=f"{self.test_tag} · subject {v.subject}")
            log_image(self.trainer.loggers, f"{self.test_tag}/spotting/{video_id}", png, self.global_step)
            written.append(png)
        log.info("%s: %d spotting plots in %s", self.test_tag, len(written), folder)
        return written

    # ------------------------------------------------------- run summary
    def finalize_summary(self, summary: dict[str, Any]) -> None:
        """Add the spotting keys to a run summary (``fertrain.train.run``): ``task``, ``val`` (best epoch's
        counts), ``test`` (the test of the checkpoint selected on val, else of the last weights)."""
        summary["task"] = "spotting"
        summary["metric"] = self.metric_summary()
        if summary.get("val_best"):
            summary["val"] = summary["val_best"]
        for key in (("test_best",) if summary.get("val_best") else ()) + ("test_last",):
            if summary.get(key):  # a test-only run (train=false) already has summary["test"]
                summary["test"] = summary[key]
                summary["test_source"] = key
                break

    @staticmethod
    def pool_folds(fold_summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Summary keys of a LOSO run from its folds' summaries: ``folds`` {subject: test counts} and ``test``
        (counts summed over folds, then F1)."""
        folds = {s: dict(fs["test"]) for s, fs in fold_summaries.items() if fs.get("test")}
        metric = next((fs["metric"] for fs in fold_summaries.values() if fs.get("metric")), None)
        out = {"task": "spotting", "protocol": "loso", "folds": folds, "test": pool_counts(list(folds.values()))}
        if metric is not None:
            out["metric"] = metric
        return out

    print_summary = staticmethod(print_spotting_summary)

    # ---------------------------------------------------------- optimisers
    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params=params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["fertrain_val_history"] = list(self.val_history)
        checkpoint["fertrain_train_epoch"] = {k: metric_state(m) for k, m in self.train_means.items()}
        if self.fertrain_config is not None:
            checkpoint["fertrain_config"] = self.fertrain_config
        if self.fertrain_meta is not None:
            checkpoint["fertrain"] = self.fertrain_meta

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.val_history = list(checkpoint.get("fertrain_val_history", []))
        for name, saved in checkpoint.get("fertrain_train_epoch", {}).items():  # the epoch's partial sums
            load_metric_state(self.train_means[name], saved)
