"""Spotting task: per-frame classification of windows, stitched into per-video scores, intervals and MEGC F1.

Training: every output of the network's cascade (``net.forward_stages``: ``(S + 1, B, T, K)``; a plain
``net(x) -> (B, T, K)`` is one stage) gets the per-frame cross-entropy (class-weighted, padded frames ignored),
averaged over stages; the cascade-refined stages (``1..S``) also get the temporal smooth loss
(:class:`fertrain.losses.smooth.TemporalSmoothLoss`) with weight ``smooth_weight``.

Validation / test: the softmax of the final stage is averaged over all windows that cover a frame, per video
(windows may come in any order and batch; under DDP the sums are all-reduced), source frames take the score of
their sampled frame, and :func:`fertrain.spotting.postprocess.spot_video` turns the ``(N, 3)`` scores into
intervals, compared with the ground truth by :class:`fertrain.metrics.spotting.SpottingF1`. A frame no window
covered (e.g. with ``limit_val_batches``) counts as neutral; the number is logged.

Logged per stage tag (``val``, ``test_best``, ...): ``{tag}/f1`` (overall F1, the monitored metric) and
``{tag}/{macro,micro,overall}/{tp,fp,fn,precision,recall,f1}``; in training ``train/loss``, ``train/ce``,
``train/smooth``. The test writes ``<run_dir>/spotting/result_log_<tag>.csv`` (MEGC-style rows) and
``predictions_<tag>.csv`` (every predicted interval).
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

from fertrain.metrics.spotting import SpottingF1, prf
from fertrain.spotting.intervals import KINDS
from fertrain.spotting.postprocess import spot_video

log = logging.getLogger(__name__)

COUNT_KEYS = ("tp", "fp", "fn")


def pool_counts(results: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Pool ``SpottingF1.compute()`` dicts (folds) by SUMMING TP/FP/FN per kind, then recomputing precision,
    recall and F1 (MEGC: F1 of the pooled counts, not the mean of per-fold F1s)."""
    out: dict[str, float] = {}
    total = [0, 0, 0]
    for kind in KINDS:
        c = [int(sum(r.get(f"{kind}/{k}", 0.0) for r in results)) for k in COUNT_KEYS]
        total = [a + b for a, b in zip(total, c)]
        out.update(_block(kind, *c))
    out.update(_block("overall", *total))
    return out


def _block(name: str, tp: int, fp: int, fn: int) -> dict[str, float]:
    p, r, f = prf(tp, fp, fn)
    return {f"{name}/tp": float(tp), f"{name}/fp": float(fp), f"{name}/fn": float(fn), f"{name}/precision": p,
            f"{name}/recall": r, f"{name}/f1": f}


def format_counts(res: Mapping[str, float]) -> str:
    """One line: ``macro F1 0.500 (TP 1, FP 1, FN 1) | micro ... | overall ...``."""
    return " | ".join(f"{k} F1 {res[f'{k}/f1']:.3f} (TP {int(res[f'{k}/tp'])}, FP {int(res[f'{k}/fp'])}, "
                      f"FN {int(res[f'{k}/fn'])})" for k in (*KINDS, "overall"))


def print_spotting_summary(summary: Mapping[str, Any]) -> None:
    """Print a rich table of a spotting run summary (val, test, pooled LOSO) and the plain one-line figures."""
    from rich.console import Console
    from rich.table import Table

    title = f"fertrain · {summary['experiment']} · {summary['run_dir']}"
    if summary.get("folds"):
        title += f" · LOSO, {len(summary['folds'])} folds, counts pooled"
    table = Table(title=title)
    for col in ("stage", "kind", "TP", "FP", "FN", "precision", "recall", "F1"):
        table.add_column(col)
    console = Console()
    for key in ("val", "test"):
        res = summary.get(key)
        if not res:
            continue
        for kind in (*KINDS, "overall"):
            table.add_row(key if kind == "macro" else "", kind, *(str(int(res[f"{kind}/{c}"])) for c in COUNT_KEYS),
                          *(f"{res[f'{kind}/{m}']:.4f}" for m in ("precision", "recall", "f1")))
    console.print(table)
    if summary.get("test"):
        print(f"spotting test: {format_counts(summary['test'])}")


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
        iou_threshold, one_to_one: :class:`fertrain.metrics.spotting.SpottingF1` settings.
        result_dir: where result logs go (default ``<trainer.default_root_dir>/spotting``).

    Raises:
        ValueError: class weights with a loss that is not ``nn.CrossEntropyLoss``, or of the wrong length.
        FloatingPointError: a non-finite training loss.
    """

    summary_fields = ("f1", "epoch")  # what fertrain.train.run logs as val_best/... and val_last/...

    def __init__(self, net: nn.Module, loss: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 class_names: Sequence[str], scheduler: Callable[..., Any] | None = None,
                 smooth_loss: nn.Module | None = None, smooth_weight: float = 0.15,
                 class_weights: str | Sequence[float] | None = "balanced", class_weight_power: float = 0.5,
                 postprocess: Mapping[str, Any] | None = None, iou_threshold: float = 0.5, one_to_one: bool = False,
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
        self.iou_threshold, self.one_to_one = float(iou_threshold), bool(one_to_one)
        self.result_dir = result_dir
        self.ignore_index = int(getattr(loss, "ignore_index", -100))
        self._acc: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.val_history: list[dict[str, float]] = []
        self.test_tag = "test"
        self.last_test: dict[str, Any] = {}
        self.fertrain_config: dict | None = None
        self.fertrain_meta: dict | None = None  # {"version", "model_class", "config_hash"}, saved in checkpoints

    # ---------------------------------------------------------------- set-up
    def setup(self, stage: str) -> None:
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
            self.log("train/smooth", smooth, on_step=False, on_epoch=True, batch_size=labels.shape[0])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss ({loss.item()}) at epoch {self.current_epoch}, "
                                     f"global step {self.global_step}, batch {batch_idx} (videos "
                                     f"{list(batch['video_id'])[:4]}…): lower the learning rate or check the inputs")
        self.log("train/ce", ce, on_step=False, on_epoch=True, batch_size=labels.shape[0])
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=labels.shape[0])
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

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
        metric = SpottingF1(self.iou_threshold, self.one_to_one, sync_on_compute=False)
        preds_all = []
        stats: dict[str, Any] = {}
        for v, scores in zip(videos, self.video_scores(stage)):
            preds = spot_video(scores, {**self.postprocess, "stats": stats})
            metric.update(preds, list(v.intervals), v.video_id)
            preds_all += [(v.video_id, iv) for iv in preds]
        out = metric.compute()
        tag = self._tag(stage)
        self.log(f"{tag}/f1", out["overall/f1"], prog_bar=True)
        self.log_dict({f"{tag}/{k}": v for k, v in out.items()})
        log.info("%s: %s (post-processing: %s)", tag, format_counts(out), stats)
        return out, metric, preds_all

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

    # ------------------------------------------------------- run summary
    def finalize_summary(self, summary: dict[str, Any]) -> None:
        """Add the spotting keys to a run summary (``fertrain.train.run``): ``task``, ``val`` (best epoch's
        counts), ``test`` (the test of the checkpoint selected on val, else of the last weights)."""
        summary["task"] = "spotting"
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
        return {"task": "spotting", "protocol": "loso", "folds": folds, "test": pool_counts(list(folds.values()))}

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
        if self.fertrain_config is not None:
            checkpoint["fertrain_config"] = self.fertrain_config
        if self.fertrain_meta is not None:
            checkpoint["fertrain"] = self.fertrain_meta

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.val_history = list(checkpoint.get("fertrain_val_history", []))
