"""The Lightning datamodule for clip (and image) datasets, and the one place where frames are normalised."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from fertrain.data.clip_dataset import ClipDataset
from fertrain.data.records import SPLITS, ClipRecord, DatasetError, FrameSampler, RecordSource
from fertrain.data.transforms import seed_worker

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_video(video: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(..., C, H, W)`` in 0..255 -> float32 ``(..., C, H, W)`` normalised per channel.

    This is the only place where fertrain turns pixels into model inputs: ``x = (v / 255 - mean) / std``.
    """
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=video.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=video.device).view(-1, 1, 1)
    return (video.float().div_(255.0) - mean_t) / std_t


class ClipDataModule(pl.LightningDataModule):
    """Builds the train/val/test :class:`~fertrain.data.clip_dataset.ClipDataset` of one dataset protocol.

    Args:
        source: the dataset protocol (e.g. :class:`fertrain.data.datasets.dfew.DFEW`), giving records per split.
        sampler: frame sampler shared by all splits (random in train, deterministic in val/test).
        train_transform: clip transform for training (random augmentation).
        eval_transform: clip transform for val/test/predict (deterministic).
        class_names: the class names the run was configured with (``data.class_names``); must equal
            ``source.class_names`` (guards against a config pointing at another label map).
        batch_size: clips per batch *per device* (the global batch is ``batch_size x devices x nodes``).
        eval_batch_size: clips per val/test batch per device (default: ``batch_size``).
        num_workers: DataLoader worker processes per device.
        mean, std: per-channel normalisation of 0..1 RGB values.
        pin_memory, persistent_workers: passed to the DataLoader.
        seed: seed of the main-process sampler/augmentation streams (workers are reseeded per worker and epoch).

    Batches (after :meth:`on_after_batch_transfer`): ``video`` float32 ``(B, T, C, H, W)`` normalised,
    ``label`` int64 ``(B,)``, ``index`` int64 ``(B,)``, ``video_id`` list of ``B`` str.

    Raises:
        DatasetError: a split is empty, or the configured class names differ from the dataset's.
    """

    def __init__(
        self,
        source: RecordSource,
        sampler: FrameSampler,
        train_transform: Callable[[np.ndarray], np.ndarray],
        eval_transform: Callable[[np.ndarray], np.ndarray],
        class_names: Sequence[str] | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.source = source
        self.sampler = sampler
        self.train_transform = train_transform
        self.eval_transform = eval_transform
        if class_names is not None and tuple(class_names) != tuple(source.class_names):
            raise DatasetError(
                f"data.class_names {list(class_names)} differ from {type(source).__name__}.class_names "
                f"{list(source.class_names)}: the label map is defined by the dataset module"
            )
        self.class_names = tuple(source.class_names)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.seed = seed
        self.datasets: dict[str, ClipDataset] = {}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split_records(self, split: str) -> list[ClipRecord]:
        """Records of ``split``, checked: non-empty and labels inside the class set.

        Raises:
            DatasetError: empty split, or a label outside ``[0, num_classes - 1]``.
        """
        records = self.source.records(split)
        name = type(self.source).__name__
        if not records:
            raise DatasetError(f"{name}: split '{split}' has no samples; check the dataset root and split files")
        bad = [r for r in records if not 0 <= r.label < self.num_classes]
        if bad:
            raise DatasetError(
                f"{name}: {len(bad)} '{split}' records have a label outside 0..{self.num_classes - 1}, "
                f"first: {bad[0]}"
            )
        return records

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, SPLITS) if stage else SPLITS:
            if split in self.datasets:
                continue
            records = self.split_records(split)
            train = split == "train"
            self.datasets[split] = ClipDataset(
                records, self.sampler, self.train_transform if train else self.eval_transform,
                train=train, seed=self.seed,
            )
            counts = Counter(r.label for r in records)
            per_class = ", ".join(f"{n}={counts.get(i, 0)}" for i, n in enumerate(self.class_names))
            log.info("%s %s: %d samples (%s)", type(self.source).__name__, split, len(records), per_class)

    def _loader(self, split: str, train: bool) -> DataLoader:
        ds = self.datasets[split]
        sampler = None
        trainer = getattr(self, "trainer", None)
        if not train and trainer is not None and trainer.world_size > 1:
            # DistributedSampler pads with duplicates, which skews UAR/WAR: every sample exactly once instead.
            from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

            sampler = UnrepeatedDistributedSampler(ds, num_replicas=trainer.world_size,
                                                   rank=trainer.global_rank, shuffle=False)
        return DataLoader(
            ds,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            drop_last=train and len(ds) > self.batch_size,
            worker_init_fn=seed_worker,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Normalise ``video`` on the device: uint8 ``(B, T, C, H, W)`` -> float32 ``(B, T, C, H, W)``."""
        if batch["video"].dtype == torch.uint8:
            batch["video"] = normalize_video(batch["video"], self.mean, self.std)
        return batch
