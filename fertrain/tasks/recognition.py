"""Recognition task: one LightningModule for video (``(B, T, C, H, W)``) and image (``T = 1``) FER.

The network is a plain ``nn.Module`` injected from the model config; this module owns the loss, the optimiser
and scheduler wiring, the epoch-level metrics per stage (``train/``, ``val/``, ``test_best/``, ``test_last/``)
and the run's figures (confusion matrices, learning curves: :mod:`fertrain.report.plots`), which also go to the
image-capable loggers (TensorBoard, Weights & Biases).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric

from fertrain.metrics.recognition import RecognitionMetrics, chance_levels
from fertrain.report import plots
from fertrain.report.model_summary import summary_callbacks
from fertrain.report.summary import print_recognition_summary
from fertrain.tasks.epoch_state import load_metric_state, metric_state

log = logging.getLogger(__name__)


class RecognitionTask(pl.LightningModule):
    """Single-label expression recognition.

    Args:
        net: model with ``forward(x: float (B, T, C, H, W)) -> logits (B, K)``.
        loss: criterion ``(logits (B, K), target (B,)) -> scalar`` (e.g. ``nn.CrossEntropyLoss(label_smoothing=…)``),
            or an embedding loss with ``needs_embeddings = True`` (``(emb (B, D), target) -> scalar`` plus
            ``logits(emb)`` and ``bind_centers(net.class_centers)``, e.g. DMFE's center cosine loss).
        optimizer: partial ``params -> torch.optim.Optimizer`` (Hydra ``_partial_: true``).
        class_names: ``K`` class names in label order (``data.class_names``).
        scheduler: optional partial ``(optimizer, total_steps) -> LRScheduler``, stepped every optimiser step.
        plot_dir: where the PNGs go (default: ``<trainer.default_root_dir>/plots``): ``confusion_<tag>.png`` and
            ``learning_curves.png`` (redrawn after every validation epoch).
        soft_targets: pass the batch's soft ``target`` float ``(B, K)`` to the loss instead of ``label`` (e.g.
            FERPlus vote distributions with ``fertrain.losses.soft_target.SoftTargetLoss``, or
            ``nn.CrossEntropyLoss``, which accepts class probabilities). None (default) follows the loss's
            ``needs_soft_targets`` attribute (False for plain losses: unchanged behaviour). Metrics always use
            ``label``.
        skip_nonfinite_loss: on a non-finite training loss skip the optimiser step that contains the batch (no
            weight update; with ``accumulate_grad_batches > 1`` the whole accumulated step; ``global_step`` and the
            LR schedule still advance), counted in ``skipped_nonfinite``, logged as ``train/skipped_nonfinite`` and
            in ``summary.json``, instead of stopping. Under DDP all ranks skip together. Default False: stop with
            FloatingPointError. An epoch in which EVERY batch was skipped stops the run (FloatingPointError): it
            trained nothing, and its metrics would be empty.

    Logged (epoch level only): ``{stage}/loss``, ``{stage}/uar``, ``{stage}/war`` and ``{stage}/recall/<class>``;
    ``train/loss_step`` per step. ``val_history`` keeps every epoch's val metrics (``epoch``, ``uar``, ``war``,
    ``loss``, and ``train_loss``: the mean training loss of the epoch so far) and is saved in checkpoints, as are
    the training epoch's partial sums (confusion matrix, loss mean, batch counts), so an epoch resumed from a
    mid-epoch or epoch-end checkpoint logs the same ``train/*`` values as an uninterrupted one. ``last_test`` adds
    ``chance_uar``/``chance_war`` (:func:`~fertrain.metrics.recognition.chance_levels`).

    Raises:
        FloatingPointError: a non-finite training loss (message names epoch, global step and batch index), unless
            ``skip_nonfinite_loss``; with it, an epoch whose every batch was skipped.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        class_names: Sequence[str],
        scheduler: Callable[..., Any] | None = None,
        plot_dir: str | None = None,
        soft_targets: bool | None = None,
        skip_nonfinite_loss: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        self.criterion = loss
        self.soft_targets = getattr(loss, "needs_soft_targets", False) if soft_targets is None else soft_targets
        if getattr(loss, "needs_embeddings", False):  # e.g. CenterCosineLoss: trains the model's cosine-head centres
            centers = getattr(net, "class_centers", None)
            if centers is None:
                raise ValueError(f"{type(loss).__name__} trains class centres that {type(net).__name__} has no "
                                 "place for: use a model with a cosine head (e.g. model=dmfe model.head=cosine)")
            loss.bind_centers(centers)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.class_names = tuple(class_names)
        self.plot_dir = plot_dir
        self.skip_nonfinite_loss = skip_nonfinite_loss
        self.skipped_nonfinite = 0  # training batches skipped for a non-finite loss (saved in checkpoints)
        self._drop_optimizer_step = False
        self.train_metrics = RecognitionMetrics(len(self.class_names))
        self.train_loss = MeanMetric()  # epoch mean of the training loss (saved in checkpoints, unlike self.log's)
        self._epoch_batches = 0  # training batches of this epoch, and how many of them were skipped (non-finite)
        self._epoch_skipped = 0
        self.val_metrics = RecognitionMetrics(len(self.class_names))
        self.test_metrics = RecognitionMetrics(len(self.class_names))
        self.val_history: list[dict[str, float]] = []
        self.test_tag = "test"  # set to test_best / test_last by the entry point before each test run
        self.last_test: dict[str, Any] = {}
        self.fertrain_config: dict | None = None  # resolved run config, saved in checkpoints for predict
        self.fertrain_meta: dict | None = None  # {"version", "model_class", "config_hash"}, saved in checkpoints

    # ---------------------------------------------------------------- steps
    def setup(self, stage: str) -> None:
        """Give this process its own metric states (called by Lightning in every process, after any spawn).

        ``ddp_spawn`` sends the module to its processes through ``torch.multiprocessing``, which moves tensors
        into shared memory: all ranks would then update one shared confusion matrix (counts doubled by the sum
        across processes, and increments lost when two ranks add at the same moment). ``reset()`` replaces each
        state with a fresh private tensor. Harmless for one process and for the ``ddp`` launcher.
        """
        for metrics in (self.train_metrics, self.val_metrics, self.test_metrics, self.train_loss):
            metrics.reset()

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """float ``(B, T, C, H, W)`` -> logits ``(B, K)``."""
        return self.net(video)

    def _loss_target(self, batch: dict) -> torch.Tensor:
        """What the loss is computed against: ``label`` int64 ``(B,)``, or ``target`` float ``(B, K)``."""
        if not self.soft_targets:
            return batch["label"]
        if "target" not in batch:
            raise KeyError(f"{type(self.criterion).__name__} trains on soft targets, but the batch has no 'target' "
                           f"(keys: {sorted(batch)}): use a dataset with label distributions (e.g. data=ferplus) "
                           f"or a hard-label loss")
        return batch["target"]

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        if getattr(self.criterion, "needs_embeddings", False):
            emb = self.net.forward_features(batch["video"])  # (B, D)
            loss = self.criterion(emb, self._loss_target(batch))
            logits = self.criterion.logits(emb)  # (B, K) s*cos, no margin: what the metrics see
        else:
            logits = self(batch["video"])  # (B, K)
            loss = self.criterion(logits, self._loss_target(batch))
        if stage == "train" and not torch.isfinite(loss):
            return loss  # training_step stops or skips: keep the batch out of the epoch metrics
        self._metrics(stage).update(logits.detach(), batch["label"])
        if stage == "train":  # logged at the epoch end; its sums are saved in checkpoints (exact after a resume)
            self.train_loss.update(loss.detach(), weight=batch["label"].shape[0])
        else:  # under DDP this is the mean of per-rank means (UAR/WAR are exact: summed confusion matrices)
            self.log(f"{self._tag(stage)}/loss", loss, on_step=False, on_epoch=True,
                     batch_size=batch["label"].shape[0], sync_dist=True)
        return loss

    def _metrics(self, stage: str) -> RecognitionMetrics:
        return getattr(self, f"{stage}_metrics")

    def _tag(self, stage: str) -> str:
        return self.test_tag if stage == "test" else stage

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        bad = not torch.isfinite(loss)
        self._epoch_batches += 1
        if self.skip_nonfinite_loss:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)  # one decision for all DDP ranks
            if bad:
                self.skipped_nonfinite += 1
                self._epoch_skipped += 1
                self._drop_optimizer_step = True
                log.warning("skipping the optimiser step of batch %d, epoch %d (global step %d): non-finite "
                            "training loss (this process: %s); %d skipped so far", batch_idx, self.current_epoch,
                            self.global_step, loss.item(), self.skipped_nonfinite)
            self.log("train/skipped_nonfinite", float(self.skipped_nonfinite), on_step=False, on_epoch=True,
                     reduce_fx="max")
            if bad:
                # Not `return None`: Lightning refuses it under DDP. A zero loss on every parameter gives every rank
                # the same (zero, finite) gradient all-reduce; on_before_optimizer_step then drops the update.
                return sum((p * 0.0).sum() for p in self.parameters() if p.requires_grad)
        if bad:
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at epoch {self.current_epoch}, "
                f"global step {self.global_step}, batch {batch_idx}: lower the learning rate, check the inputs "
                f"(video ids {list(batch['video_id'])[:4]}…), or use precision=32"
            )
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Class probabilities ``(B, K)``."""
        return self(batch["video"]).softmax(dim=-1)

    # ---------------------------------------------------------- epoch ends
    def _epoch_end(self, stage: str) -> dict[str, Any]:
        out = self._metrics(stage).compute()
        self._metrics(stage).reset()
        tag = self._tag(stage)
        # values come from the epoch's confusion matrix, already summed over processes by torchmetrics
        self.log(f"{tag}/uar", out["uar"], prog_bar=True)
        scalars = {f"{tag}/war": out["war"]}
        for name, r in zip(self.class_names, out["recall"]):
            if not math.isnan(float(r)):
                scalars[f"{tag}/recall/{name}"] = r
        self.log_dict(scalars)
        return out

    def on_train_epoch_start(self) -> None:  # not called when Lightning resumes in the middle of an epoch
        self._epoch_batches = self._epoch_skipped = 0

    def on_train_epoch_end(self) -> None:
        if self._epoch_batches and self._epoch_skipped == self._epoch_batches:
            raise FloatingPointError(
                f"every training batch of epoch {self.current_epoch} ({self._epoch_batches} batches, up to global "
                f"step {self.global_step}) had a non-finite loss and was skipped (task.skip_nonfinite_loss=true): "
                "the epoch trained nothing. Lower the learning rate, check the inputs, or use precision=32")
        if self.train_loss.weight.sum() > 0:
            self.log("train/loss", self.train_loss.compute())
        self.train_loss.reset()
        if self.train_metrics.confmat.confmat.sum() == 0:  # no batch in this process's epoch (nothing to log)
            log.info("epoch %d: no training batch was evaluated in this process; train/uar not logged",
                     self.current_epoch)
            self.train_metrics.reset()
            return
        self._epoch_end("train")

    def on_validation_epoch_end(self) -> None:
        out = self._epoch_end("val")
        if self.trainer.sanity_checking:
            return
        entry = {"epoch": int(self.current_epoch), "uar": float(out["uar"]), "war": float(out["war"])}
        loss = self.trainer.callback_metrics.get("val/loss")
        if loss is not None:
            entry["loss"] = float(loss)
        if self.train_loss.weight.sum() > 0:  # validation runs before the training epoch's end: its loss so far
            entry["train_loss"] = float(self.train_loss.compute())
        self.val_history.append(entry)
        self._plot(out, "val_last", f"val epoch {self.current_epoch}")
        self._plot_learning_curves()

    def on_test_epoch_end(self) -> None:
        out = self._epoch_end("test")
        self.last_test = {"uar": float(out["uar"]), "war": float(out["war"]),
                          "recall": {n: float(r) for n, r in zip(self.class_names, out["recall"])},
                          "confmat": out["confmat"].tolist()}
        self.last_test["chance_uar"], self.last_test["chance_war"] = chance_levels(out["confmat"])
        self._plot(out, self.test_tag, self.test_tag)

    def _plot(self, out: dict, name: str, title: str) -> None:
        if self.trainer is None or not self.trainer.is_global_zero:
            return
        chance_uar, _ = chance_levels(out["confmat"])
        path = plots.plot_confusion_matrix(
            out["confmat"], self.class_names, self._plot_root() / f"confusion_{name}.png",
            title=f"{title}: UAR {float(out['uar']):.3f} (chance {chance_uar:.3f})  WAR {float(out['war']):.3f}")
        plots.log_image(self.loggers, f"confusion/{name}", path, step=self.global_step)

    def _plot_root(self) -> Path:
        return Path(self.plot_dir) if self.plot_dir else Path(self.trainer.default_root_dir) / "plots"

    def _plot_learning_curves(self) -> None:
        if self.trainer is None or not self.trainer.is_global_zero or not self.val_history:
            return
        cb = self.trainer.checkpoint_callback
        monitor = str(getattr(cb, "monitor", None) or "val/uar")
        key = monitor.split("/", 1)[1] if monitor.startswith("val/") else monitor
        if any(key not in e for e in self.val_history):
            key = "uar"
        mode = str(getattr(cb, "mode", "max") or "max")
        path = plots.plot_learning_curves(self.val_history, self._plot_root() / "learning_curves.png", key, mode,
                                          title=f"learning curves ({len(self.val_history)} validated epochs)")
        plots.log_image(self.loggers, "learning_curves", path, step=self.global_step)

    print_summary = staticmethod(print_recognition_summary)  # fertrain.train prints the run's table with it

    def configure_callbacks(self) -> list[pl.Callback]:
        """Lightning's model summary without its always-zero FLOPs column (see fertrain/report/model_summary.py)."""
        return summary_callbacks(self.trainer)

    # ---------------------------------------------------------- optimisers
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._drop_optimizer_step:  # skip_nonfinite_loss: no update at all (no momentum, no weight decay)
            optimizer.zero_grad(set_to_none=True)  # torch optimisers skip parameters whose .grad is None
            self._drop_optimizer_step = False

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params=params)
        if self.scheduler_factory is None:
            return optimizer
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["fertrain_val_history"] = list(self.val_history)
        checkpoint["fertrain_skipped_nonfinite"] = self.skipped_nonfinite
        checkpoint["fertrain_train_epoch"] = {
            "batches": self._epoch_batches, "skipped": self._epoch_skipped,
            "confmat": metric_state(self.train_metrics.confmat), "loss": metric_state(self.train_loss)}
        if self.fertrain_config is not None:
            checkpoint["fertrain_config"] = self.fertrain_config
        if self.fertrain_meta is not None:
            checkpoint["fertrain"] = self.fertrain_meta

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.val_history = list(checkpoint.get("fertrain_val_history", []))
        self.skipped_nonfinite = int(checkpoint.get("fertrain_skipped_nonfinite", 0))
        epoch = checkpoint.get("fertrain_train_epoch")
        if epoch:  # the partial sums of the epoch the checkpoint was written in (see the class docstring)
            self._epoch_batches, self._epoch_skipped = int(epoch["batches"]), int(epoch["skipped"])
            load_metric_state(self.train_metrics.confmat, epoch["confmat"])
            load_metric_state(self.train_loss, epoch["loss"])
