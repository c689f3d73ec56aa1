"""The Lightning datamodule for clip (and image) datasets, and the one place where frames are normalised."""

from __future__ import annotations

import csv
import dataclasses
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from fertrain.data.clip_dataset import ClipDataset
from fertrain.data.readers import check_decoder, check_readable
from fertrain.data.records import SPLITS, ClipRecord, DatasetError, FrameSampler, RecordSource
from fertrain.data.transforms import flip_draws, hflip_clips, seed_worker

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
        pin_memory: page-locked batches; None (default): on when training on a CUDA device.
        persistent_workers: passed to the DataLoader.
        decoder: video decoder ``data.decoder``: ``decord`` (default), ``torchcodec`` or ``pyav``
            (:data:`fertrain.data.readers.VIDEO_DECODERS`; checked here, in the main process).
        augment_on: ``data.augment_on``: ``"worker"`` (default: the whole train transform runs in the DataLoader
            workers) or ``"device"``: the train transform's horizontal flip moves onto the device, after the batch
            transfer, before normalisation (which is always on the device). Each training clip is mirrored with
            the transform's flip probability, decided by a hash of ``(seed, epoch, sample index)``
            (:func:`fertrain.data.transforms.flip_draws`): the same distribution as the worker path (tested), and
            the same draws when a run resumes.
        seed: seed of the main-process sampler/augmentation streams (workers are reseeded per worker and epoch).
        class_balanced: draw training samples with probability inversely proportional to their class frequency
            (``torch.utils.data.WeightedRandomSampler``, weight ``1 / n_c``, with replacement, ``len(train)``
            draws per epoch, from torch's global RNG, seeded by ``seed_everything``): every class is drawn
            equally often in expectation. For heavily imbalanced training sets (AffectNet); val/test unchanged.
        skip_corrupt: what to do with samples whose media is missing or unreadable (see "Media checks" below).
            False (default): raise. True: skip them, counted, logged and listed in ``<run_dir>/skipped_samples.csv``.
        output_dir: where run files go (``folds.csv`` of k-fold protocols, ``skipped_samples.csv``); None: the
            attached trainer's ``default_root_dir`` (fertrain sets it to the run directory); neither: not written.

    Media checks (in :meth:`setup`, once per split, in the main process, before any DataLoader worker starts):

    - ``skip_corrupt=False``: a cheap check of every record (its file/folder, or every ``frame_files`` entry,
      exists; ``num_frames >= 1``); all problems are raised at once in one DatasetError naming the split, index,
      ``video_id``, ``origin`` (file and row) and path. A file that exists but cannot be decoded raises when it is
      first read (from the DataLoader worker, re-raised in the main process), naming the file and the sample.
    - ``skip_corrupt=True``: every record is validated by
      :func:`fertrain.data.readers.check_readable` (count the frames that really decode, decode the first and last
      frame of the segment; threads, ``max(1, num_workers)``). Failing records are dropped from the split and
      written to ``<run_dir>/skipped_samples.csv`` (``split,index,video_id,path,reason``; ``index`` = position in
      the dataset's own list of the split) and counted in a warning; an over-reported ``num_frames`` is lowered to
      the decodable count. Because this happens once, before the workers fork, the counts are exact for any
      ``num_workers`` and identical on every DDP rank (files are written by global rank 0). The sample ``index``
      in batches is then the position in the kept list. A split with nothing left raises.
    - Always: a k-fold source's :meth:`save_protocol` (e.g. MMI, BU-3DFE) writes its fold list (``folds.csv``)
      into the run directory.

    Batches (after :meth:`on_after_batch_transfer`): ``video`` float32 ``(B, T, C, H, W)`` normalised,
    ``label`` int64 ``(B,)``, ``index`` int64 ``(B,)``, ``video_id`` list of ``B`` str; ``target`` float32 ``(B, K)``
    when the dataset's records carry soft targets (FERPlus).

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
        pin_memory: bool | None = None,
        persistent_workers: bool = False,
        seed: int = 0,
        class_balanced: bool = False,
        skip_corrupt: bool = False,
        output_dir: str | None = None,
        decoder: str = "decord",
        augment_on: str = "worker",
    ) -> None:
        super().__init__()
        check_decoder(decoder)  # in the main process: one clear error before any worker starts
        if augment_on not in ("worker", "device"):
            raise ValueError(f"data.augment_on={augment_on!r}: expected 'worker' or 'device'")
        self.decoder = decoder
        self.augment_on = augment_on
        # device: the train transform keeps crop (and jitter, rotation), the flip moves to on_after_batch_transfer
        pop_flip = getattr(train_transform, "pop_flip", None)
        self.device_hflip = float(pop_flip()) if augment_on == "device" and callable(pop_flip) else 0.0
        self.skip_corrupt = skip_corrupt
        self.output_dir = output_dir
        self.skipped: list[dict[str, object]] = []  # rows of skipped_samples.csv
        self._validated: dict[tuple, tuple[int, str | None]] = {}  # media key -> (decodable frames, reason)
        self._protocol_saved = False
        self.source = source
        self.class_balanced = class_balanced
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
            records = self.check_media(split, self.split_records(split))
            train = split == "train"
            self.datasets[split] = ClipDataset(
                records, self.sampler, self.train_transform if train else self.eval_transform,
                train=train, seed=self.seed, split=split, decoder=self.decoder,
            )
            counts = Counter(r.label for r in records)
            per_class = ", ".join(f"{n}={counts.get(i, 0)}" for i, n in enumerate(self.class_names))
            log.info("%s %s: %d samples (%s)", type(self.source).__name__, split, len(records), per_class)
        self._write_run_files()

    def check_media(self, split: str, records: list[ClipRecord]) -> list[ClipRecord]:
        """The media checks of the class docstring; returns the records to use (all, or the readable ones).

        Raises:
            DatasetError: ``skip_corrupt=False`` and some media is missing or has no frames (all listed, at most 5
                quoted in full); or ``skip_corrupt=True`` and no record of the split is readable.
        """
        name = type(self.source).__name__
        if not self.skip_corrupt:
            problems = [(i, r, why) for i, r in enumerate(records) if (why := _missing_media(r))]
            if problems:
                listing = "\n  ".join(_describe(split, i, r, why) for i, r, why in problems[:_MAX_LISTED])
                raise DatasetError(
                    f"{name}: {len(problems)} of {len(records)} '{split}' samples have missing or empty media; first "
                    f"{min(len(problems), _MAX_LISTED)}:\n  {listing}\nSet data.datamodule.skip_corrupt=true to skip "
                    "(and list) such samples instead")
            return records
        todo = [r for r in records if _media_key(r) not in self._validated]
        with ThreadPoolExecutor(max_workers=max(1, self.num_workers)) as pool:
            for rec, result in zip(todo, pool.map(_validate, todo)):
                self._validated[_media_key(rec)] = result
        kept: list[ClipRecord] = []
        for i, rec in enumerate(records):
            n, reason = self._validated[_media_key(rec)]
            if reason is not None:
                self.skipped.append({"split": split, "index": i, "video_id": rec.video_id, "path": str(rec.path),
                                     "reason": reason})
                continue
            kept.append(rec if rec.num_frames == n else dataclasses.replace(rec, num_frames=n))
        dropped = len(records) - len(kept)
        if dropped:
            log.warning("%s %s: skip_corrupt=true skipped %d of %d samples (unreadable or missing media; listed in "
                        "skipped_samples.csv in the run directory)", name, split, dropped, len(records))
        if not kept:
            first = self.skipped[-1]
            raise DatasetError(f"{name}: all {len(records)} '{split}' samples are unreadable (skip_corrupt=true), "
                               f"e.g. {first['path']}: {first['reason']}")
        return kept

    def run_dir(self) -> Path | None:
        """Where run files go: ``output_dir``, else the attached trainer's ``default_root_dir``, else None."""
        if self.output_dir:
            return Path(self.output_dir)
        trainer = getattr(self, "trainer", None)
        return Path(trainer.default_root_dir) if trainer is not None else None

    def _write_run_files(self) -> None:
        """``folds.csv`` (k-fold sources) and ``skipped_samples.csv`` (skip_corrupt) into :meth:`run_dir`."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None and not trainer.is_global_zero:
            return
        out = self.run_dir()
        if out is None:
            if self.skip_corrupt or hasattr(self.source, "save_protocol"):
                log.info("no run directory (output_dir unset, no trainer): folds/skipped-sample lists not written")
            return
        if hasattr(self.source, "save_protocol") and not self._protocol_saved:
            for path in self.source.save_protocol(out):
                log.info("%s: wrote %s", type(self.source).__name__, path)
            self._protocol_saved = True
        if self.skip_corrupt:
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "skipped_samples.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["split", "index", "video_id", "path", "reason"])
                writer.writeheader()
                writer.writerows(self.skipped)

    def _loader(self, split: str, train: bool) -> DataLoader:
        ds = self.datasets[split]
        sampler = None
        trainer = getattr(self, "trainer", None)
        if not train and trainer is not None and trainer.world_size > 1:
            # DistributedSampler pads with duplicates, which skews UAR/WAR: every sample exactly once instead.
            from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

            sampler = UnrepeatedDistributedSampler(ds, num_replicas=trainer.world_size,
                                                   rank=trainer.global_rank, shuffle=False)
        if train and self.class_balanced:  # weight 1 / n_c per sample (Lightning wraps it for DDP)
            counts = Counter(r.label for r in ds.records)
            weights = torch.tensor([1.0 / counts[r.label] for r in ds.records], dtype=torch.double)
            sampler = torch.utils.data.WeightedRandomSampler(weights, num_samples=len(ds), replacement=True)
        return DataLoader(
            ds,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self._pin_memory(),
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

    def _pin_memory(self) -> bool:
        """``pin_memory``; None (default) = True when training on a CUDA device (page-locked batches copy to the
        GPU asynchronously), else False."""
        if self.pin_memory is not None:
            return bool(self.pin_memory)
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return getattr(trainer.strategy.root_device, "type", "cpu") == "cuda"
        return torch.cuda.is_available()

    def _training(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.training

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """``data.augment_on=device``: draw the training batch's flips on the CPU (``_hflip`` bool ``(B,)``)."""
        if self.device_hflip > 0 and self._training() and isinstance(batch, dict) and "index" in batch:
            batch["_hflip"] = torch.from_numpy(
                flip_draws(batch["index"].numpy(), self.device_hflip, self.seed, self.trainer.current_epoch))
        return batch

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Normalise ``video`` on the device: uint8 ``(B, T, C, H, W)`` -> float32 ``(B, T, C, H, W)``; with
        ``data.augment_on=device`` training clips are first mirrored left-right where ``_hflip`` says so."""
        flips = batch.pop("_hflip", None) if isinstance(batch, dict) else None
        if flips is not None:
            batch["video"] = hflip_clips(batch["video"], flips)
        if batch["video"].dtype == torch.uint8:
            batch["video"] = normalize_video(batch["video"], self.mean, self.std)
        return batch


# ------------------------------------------------------------------------------------------------- media checks
_MAX_LISTED = 5


def _media_key(rec: ClipRecord) -> tuple:
    return (rec.frame_files or str(rec.path), rec.start_frame, rec.num_frames)


def _describe(split: str, i: int, rec: ClipRecord, why: str) -> str:
    where = f" ({rec.origin})" if rec.origin else ""
    return f"{split} #{i} video_id {rec.video_id}{where}: {why}"


def _missing_media(rec: ClipRecord) -> str | None:
    """Why a record's media is unusable by a cheap check (existence, frame count), or None."""
    if rec.frame_files is not None:
        missing = [str(p) for p in rec.frame_files if not Path(p).is_file()]
        if missing:
            return f"frame file(s) missing: expected {', '.join(missing)}"
    elif not Path(rec.path).exists():
        return f"missing: expected {rec.path}"
    if rec.num_frames < 1:
        return (f"no frames counted in {rec.path} (an empty frame folder, or a video that cannot be opened or whose "
                "container states no frame count)")
    return None


def _validate(rec: ClipRecord) -> tuple[int, str | None]:
    """``(decodable frames of the segment, None)`` or ``(0, reason)``; never raises (skip_corrupt only)."""
    why = _missing_media(rec) if rec.num_frames >= 1 else None
    if why is not None:
        return 0, why
    try:
        listed = rec.num_frames if rec.num_frames >= 1 else None
        return check_readable(rec.frame_files or rec.path, rec.start_frame, listed), None
    except Exception as err:  # noqa: BLE001 - the user opted in to skipping; the reason is recorded
        return 0, f"{type(err).__name__}: {err}"
