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
from torch.utils.data import DataLoader, default_collate

from fertrain.data.clip_dataset import ClipDataset
from fertrain.data.integrity import LEVELS, SampleCheck, UnusableSampleError, check_sample
from fertrain.data.readers import check_decoder
from fertrain.data.records import SPLITS, ClipRecord, DatasetError, FrameSampler, RecordSource
from fertrain.data.resumable import EpochSampler, ResumableDataLoader
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
            (weight ``1 / n_c``, with replacement, ``len(train)`` draws per epoch, from a generator seeded by
            ``(seed, epoch)``: :class:`fertrain.data.resumable.EpochSampler`): every class is drawn equally often
            in expectation. For heavily imbalanced training sets (AffectNet); val/test unchanged.
        skip_corrupt: the unusable-sample policy (:mod:`fertrain.data.integrity`, "Unusable samples" below). False
            (default): stop with an error naming the file and the problem. True: skip, count per reason, report.
        max_corrupt_frac: with ``skip_corrupt``, stop when more than this fraction of a split's samples is
            unusable (default 0.01 = 1%).
        min_frames: a clip with fewer usable frames is unusable (``too_short``); default 1 (samplers pad shorter
            clips by their documented rule).
        check_level: how deeply :meth:`setup` checks every sample (:func:`fertrain.data.integrity.check_sample`):
            ``"auto"`` (default: ``"exists"``, or ``"structure"`` with ``skip_corrupt``), ``"exists"``,
            ``"structure"`` or ``"decode"``.
        output_dir: where run files go (``folds.csv`` of k-fold protocols, ``skipped_samples.csv``); None: the
            attached trainer's ``default_root_dir`` (fertrain sets it to the run directory); neither: not written.

    Unusable samples (missing, empty, zero-byte, unreadable, a corrupt frame anywhere in the clip, a video or
    folder with fewer frames than indexed, a clip shorter than ``min_frames``; reasons in
    :data:`fertrain.data.integrity.REASONS`) are found in two places:

    - at :meth:`setup`, once per split, in the main process, before any DataLoader worker starts: every record is
      checked at ``check_level`` (threads, ``max(1, num_workers)``; results shared between splits);
    - while reading (``ClipDataset.__getitem__``): what the setup check could not see (a frame that does not
      decode although its markers are intact; a video whose decodable frames are fewer than indexed when the
      setup did not decode it).

    ``skip_corrupt=False``: the first unusable sample stops the run with an
    :class:`~fertrain.data.integrity.UnusableSampleError` naming the split, index, ``video_id``, origin (file and
    row), the file and the problem; at setup all problems of a split are listed at once (5 quoted in full).
    ``skip_corrupt=True``: unusable samples are dropped (at setup from the split; while reading from their batch),
    counted per reason, listed in ``<run_dir>/skipped_samples.csv`` (``split,index,video_id,path,reason,detail,
    found_at``; ``index`` = position in the dataset's own list of the split), reported at the end of every
    epoch, and exposed by :meth:`corrupt_report` (per-reason counts, which fertrain records in ``run.json``) and
    :meth:`corrupt_details`. A truncated video is kept and the sampler draws only from the frames that decode;
    such videos are counted (``truncated``). When more than ``max_corrupt_frac`` of a split is unusable the run
    stops. Setup counts are exact for any ``num_workers`` and the same on every DDP rank; counts found while
    reading are those of this process (under DDP each rank reads its own shard). The counts are saved in
    checkpoints (:meth:`state_dict`), so a resumed run keeps them. Always: a k-fold source's
    :meth:`save_protocol` (e.g. MMI, BU-3DFE) writes its fold list (``folds.csv``) into the run directory.

    Batches (after :meth:`on_after_batch_transfer`): ``video`` float32 ``(B, T, C, H, W)`` normalised,
    ``label`` int64 ``(B,)``, ``index`` int64 ``(B,)``, ``video_id`` list of ``B`` str; ``target`` float32 ``(B, K)``
    when the dataset's records carry soft targets (FERPlus). ``B`` may be smaller than the batch size when a
    sample was dropped while reading (``skip_corrupt``).

    Raises:
        DatasetError: a split is empty, or the configured class names differ from the dataset's.
        UnusableSampleError: an unusable sample under the default policy, or too many under ``skip_corrupt``.
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
        max_corrupt_frac: float = 0.01,
        min_frames: int = 1,
        check_level: str = "auto",
        output_dir: str | None = None,
        decoder: str = "decord",
        augment_on: str = "worker",
    ) -> None:
        super().__init__()
        if not isinstance(skip_corrupt, bool):
            raise DatasetError(f"data.skip_corrupt must be true or false, got {skip_corrupt!r}")
        if isinstance(max_corrupt_frac, bool) or not 0.0 <= float(max_corrupt_frac) <= 1.0:
            raise DatasetError(f"data.max_corrupt_frac must be a fraction in [0, 1], got {max_corrupt_frac!r}")
        if isinstance(min_frames, bool) or not isinstance(min_frames, int) or min_frames < 1:
            raise DatasetError(f"data.min_frames must be an integer >= 1 (frames), got {min_frames!r}")
        if check_level not in ("auto", *LEVELS):
            raise DatasetError(f"data.datamodule.check_level must be one of auto, {', '.join(LEVELS)}; got {check_level!r}")
        check_decoder(decoder)  # in the main process: one clear error before any worker starts
        if augment_on not in ("worker", "device"):
            raise ValueError(f"data.augment_on={augment_on!r}: expected 'worker' or 'device'")
        self.decoder = decoder
        self.augment_on = augment_on
        # device: the train transform keeps crop (and jitter, rotation), the flip moves to on_after_batch_transfer
        pop_flip = getattr(train_transform, "pop_flip", None)
        self.device_hflip = float(pop_flip()) if augment_on == "device" and callable(pop_flip) else 0.0
        self.skip_corrupt = skip_corrupt
        self.max_corrupt_frac = float(max_corrupt_frac)
        self.min_frames = min_frames
        self.check_level = check_level if check_level != "auto" else ("structure" if skip_corrupt else "exists")
        self.output_dir = output_dir
        self._checked: dict[tuple, SampleCheck] = {}  # media key -> setup check result
        self._listed: dict[str, int] = {}  # split -> records listed by the source
        self._unusable: dict[str, dict[int, dict[str, object]]] = {}  # split -> index -> row (setup + reading)
        self._truncated: dict[str, dict[int, dict[str, object]]] = {}  # split -> index -> row (kept, fewer frames)
        self._epoch_counts: dict[str, Counter] = {}  # split -> reason -> samples dropped while reading, this epoch
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

    @property
    def skipped(self) -> list[dict[str, object]]:
        """Rows of ``skipped_samples.csv``: every unusable sample found so far (setup and reading), by split."""
        return [row for split in self._unusable for _, row in sorted(self._unusable[split].items())]

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
                train=train, seed=self.seed, split=split, skip_unusable=self.skip_corrupt, decoder=self.decoder,
            )
            counts = Counter(r.label for r in records)
            per_class = ", ".join(f"{n}={counts.get(i, 0)}" for i, n in enumerate(self.class_names))
            log.info("%s %s: %d samples (%s)", type(self.source).__name__, split, len(records), per_class)
        self._attach_report()
        self._write_run_files()

    def check_media(self, split: str, records: list[ClipRecord]) -> list[ClipRecord]:
        """The setup check of the class docstring; returns the records to use (all, or the usable ones, with the
        frame count of a truncated video lowered to what decodes).

        Raises:
            UnusableSampleError: ``skip_corrupt=False`` and some sample is unusable (all counted, 5 quoted in
                full); or ``skip_corrupt=True`` and more than ``max_corrupt_frac`` of the split is unusable.
        """
        name = type(self.source).__name__
        todo = {_media_key(r): r for r in records if _media_key(r) not in self._checked}
        if todo:
            level, min_frames = self.check_level, self.min_frames
            with ThreadPoolExecutor(max_workers=max(1, self.num_workers)) as pool:
                results = pool.map(lambda r: check_sample(r, level, min_frames), todo.values())
                for key, result in zip(todo, results):
                    self._checked[key] = result
        self._listed[split] = len(records)
        unusable = self._unusable.setdefault(split, {})
        truncated = self._truncated.setdefault(split, {})
        kept: list[ClipRecord] = []
        for i, rec in enumerate(records):
            result = self._checked[_media_key(rec)]
            if not result.usable:
                unusable[i] = _row(split, i, rec, result.reason, result.detail, result.path, "setup")
            elif result.truncated:
                truncated[i] = _row(split, i, rec, "truncated", result.detail, result.path, "setup")
                kept.append(dataclasses.replace(rec, num_frames=result.frames))
            else:
                kept.append(rec)
        problems = [unusable[i] for i in sorted(unusable)]
        if not self.skip_corrupt:
            problems += [truncated[i] for i in sorted(truncated)]
            if problems:
                raise UnusableSampleError(
                    f"{name}: {len(problems)} of {len(records)} '{split}' samples are unusable "
                    f"({_reason_counts(problems)}); first {min(len(problems), _MAX_LISTED)}:\n  "
                    + "\n  ".join(_describe_row(r) for r in problems[:_MAX_LISTED]) + self._hint()
                    + "\nFix or remove them, or set data.skip_corrupt=true to skip, count and report unusable "
                    "samples (the run stops above data.max_corrupt_frac)",
                    str(problems[0]["reason"]), str(problems[0]["path"]))
            return records
        if problems or truncated:
            log.warning("%s %s: skip_corrupt=true skipped %d of %d samples (%s); %d truncated videos kept (the sampler "
                        "draws from their decodable frames); listed in skipped_samples.csv in the run directory",
                        name, split, len(problems), len(records), _reason_counts(problems) or "none", len(truncated))
        self._check_fraction(split)
        return kept

    def data_fingerprint(self) -> dict:
        """:func:`fertrain.data.fingerprint.data_fingerprint` of the samples this datamodule uses (the splits set up,
        after the unusable-sample policy), over the dataset's ``root``: what training records in ``run.json`` and
        the dataset check prints for a clean tree."""
        from fertrain.data.fingerprint import data_fingerprint

        root = getattr(self.source, "root", None)
        return data_fingerprint({split: ds.records for split, ds in self.datasets.items()}, root)

    def _hint(self) -> str:
        hint = getattr(self.source, "layout_hint", None)
        return f"\n{hint()}" if callable(hint) else ""

    # ------------------------------------------------------------------------------------- unusable-sample report
    def corrupt_report(self) -> dict[str, int]:
        """Unusable samples found so far, counted per reason over all splits (what ``run.json`` records as
        ``data.skipped``): ``{reason: samples}`` with the reasons of :data:`fertrain.data.integrity.REASONS` that
        occurred; ``"truncated"`` counts the kept videos with fewer decodable frames than indexed. Empty: none.

        A sample listed in two splits (e.g. ``val`` = ``test``) is counted once per split.
        """
        counts: Counter = Counter()
        for split in self._unusable:
            counts.update(str(r["reason"]) for r in self._unusable[split].values())
        truncated = sum(len(rows) for rows in self._truncated.values())
        if truncated:
            counts["truncated"] += truncated
        return dict(sorted(counts.items()))

    def corrupt_details(self) -> dict[str, object]:
        """The full report: policy, and per split the samples listed, unusable (per reason), their fraction and the
        truncated videos kept; ``skipped_samples_csv`` is the list's path (None when not written)."""
        splits = {}
        for split, listed in self._listed.items():
            rows = list(self._unusable.get(split, {}).values())
            splits[split] = {"listed": listed, "unusable": len(rows),
                             "fraction": round(len(rows) / listed, 6) if listed else 0.0,
                             "reasons": dict(sorted(Counter(str(r["reason"]) for r in rows).items())),
                             "truncated": len(self._truncated.get(split, {}))}
        out = self.run_dir()
        csv_path = out / "skipped_samples.csv" if out is not None and self.skip_corrupt else None
        return {"policy": "skip" if self.skip_corrupt else "error", "max_corrupt_frac": self.max_corrupt_frac,
                "min_frames": self.min_frames, "check_level": self.check_level, "reasons": self.corrupt_report(),
                "splits": splits, "skipped_samples_csv": str(csv_path) if csv_path else None}

    def _check_fraction(self, split: str) -> None:
        listed = self._listed.get(split, 0)
        rows = self._unusable.get(split, {})
        if listed and len(rows) / listed > self.max_corrupt_frac:
            ordered = [rows[i] for i in sorted(rows)]
            raise UnusableSampleError(
                f"{type(self.source).__name__} '{split}': {len(rows)} of {listed} samples "
                f"({100 * len(rows) / listed:.2f}%) are unusable ({_reason_counts(ordered)}), more than "
                f"data.max_corrupt_frac={self.max_corrupt_frac} allows; first {min(len(rows), _MAX_LISTED)}:\n  "
                + "\n  ".join(_describe_row(r) for r in ordered[:_MAX_LISTED])
                + "\nRepair the data (python -m fertrain.data.check lists every problem) or raise "
                "data.max_corrupt_frac knowingly", str(ordered[0]["reason"]), str(ordered[0]["path"]))

    def record_unusable(self, batch: dict) -> None:
        """Take the unusable/truncated samples a batch reports (``_unusable``/``_truncated``, set by
        :func:`collate_usable` in the worker) into the counts; stop when a split passes ``max_corrupt_frac``."""
        for item in batch.pop("_unusable", None) or []:
            split, index = str(item["split"]), int(item["index"])
            rows = self._unusable.setdefault(split, {})
            if index not in rows:
                rec = self.datasets[split].records[index] if split in self.datasets else None
                rows[index] = {**_row(split, index, rec, item["reason"], item["detail"], item["path"], "reading"),
                               "video_id": item["video_id"]}
                log.warning("%s sample %d (video_id %s) unusable while reading, skipped (skip_corrupt=true): %s",
                            split, index, item["video_id"], item["detail"])
            self._epoch_counts.setdefault(split, Counter())[str(item["reason"])] += 1
            self._check_fraction(split)
        for item in batch.pop("_truncated", None) or []:
            split, index = str(item["split"]), int(item["index"])
            rows = self._truncated.setdefault(split, {})
            if index not in rows:
                rows[index] = {"split": split, "index": index, "video_id": item["video_id"], "path": item["path"],
                               "reason": "truncated", "detail": item["detail"], "found_at": "reading"}

    def report_epoch(self, split: str, epoch: int) -> str:
        """One line on the unusable samples of ``split``: dropped while reading this epoch, total so far, kept
        truncated videos; logged (WARNING when there are any) and returned. Rewrites ``skipped_samples.csv``."""
        this_epoch = self._epoch_counts.pop(split, Counter())
        rows = self._unusable.get(split, {})
        line = (f"{type(self.source).__name__} '{split}' epoch {epoch}: unusable samples: "
                f"{sum(this_epoch.values())} dropped while reading this epoch ({_counter_text(this_epoch)}); "
                f"{len(rows)} of {self._listed.get(split, 0)} in total "
                f"({_counter_text(Counter(str(r['reason']) for r in rows.values()))}); "
                f"{len(self._truncated.get(split, {}))} truncated videos kept")
        (log.warning if rows or this_epoch else log.info)(line)
        self._write_run_files()
        return line

    def _attach_report(self) -> None:
        """Add the per-epoch report callback to the attached trainer (once)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or not self.skip_corrupt:
            return
        if not any(isinstance(cb, UnusableSampleReport) for cb in trainer.callbacks):
            trainer.callbacks.append(UnusableSampleReport())

    def state_dict(self) -> dict:
        """Unusable/truncated samples found so far (saved in checkpoints by Lightning)."""
        return {"unusable": self._unusable, "truncated": self._truncated}

    def load_state_dict(self, state_dict: dict) -> None:
        for key, target in (("unusable", self._unusable), ("truncated", self._truncated)):
            for split, rows in (state_dict.get(key) or {}).items():
                target.setdefault(split, {}).update({int(i): row for i, row in rows.items()})

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
            rows = self.skipped + [row for split in self._truncated
                                   for _, row in sorted(self._truncated[split].items())]
            tmp = out / "skipped_samples.csv.tmp"
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(_ROW_FIELDS), extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
            tmp.replace(out / "skipped_samples.csv")

    def _loader(self, split: str, train: bool) -> DataLoader:
        ds = self.datasets[split]
        sampler = None
        trainer = getattr(self, "trainer", None)
        if not train and trainer is not None and trainer.world_size > 1:
            # DistributedSampler pads with duplicates, which skews UAR/WAR: every sample exactly once instead.
            from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

            sampler = UnrepeatedDistributedSampler(ds, num_replicas=trainer.world_size,
                                                   rank=trainer.global_rank, shuffle=False)
        weights = None
        if train and self.class_balanced:  # weight 1 / n_c per sample
            counts = Counter(r.label for r in ds.records)
            weights = torch.tensor([1.0 / counts[r.label] for r in ds.records], dtype=torch.double)
        if train:  # order and augmentation from (seed, epoch, index): exact resume (fertrain.data.resumable)
            world = trainer.world_size if trainer is not None else 1
            sampler = EpochSampler(ds, seed=self.seed, num_replicas=world, weights=weights,
                                   rank=trainer.global_rank if trainer is not None else 0)
        return (ResumableDataLoader if train else DataLoader)(
            ds,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=False,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self._pin_memory(),
            persistent_workers=self.persistent_workers,
            drop_last=train and len(ds) > self.batch_size,
            worker_init_fn=seed_worker,
            collate_fn=collate_usable,
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
        """Count the samples the batch reports as unusable or truncated (:meth:`record_unusable`); then, with
        ``data.augment_on=device``, draw the training batch's flips on the CPU (``_hflip`` bool ``(B,)``)."""
        if "_unusable" in batch or "_truncated" in batch:
            self.record_unusable(batch)
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
_ROW_FIELDS = ("split", "index", "video_id", "path", "reason", "detail", "found_at")


def _media_key(rec: ClipRecord) -> tuple:
    return (rec.frame_files or str(rec.path), rec.start_frame, rec.num_frames)


def _row(split: str, i: int, rec: ClipRecord | None, reason: str | None, detail: str, path: str,
         found_at: str) -> dict[str, object]:
    where = f" ({rec.origin})" if rec is not None and rec.origin else ""
    return {"split": split, "index": i, "video_id": rec.video_id if rec is not None else "", "path": path,
            "reason": reason, "detail": detail, "found_at": found_at, "origin": where.strip(" ()")}


def _describe_row(row: dict[str, object]) -> str:
    where = f" ({row['origin']})" if row.get("origin") else ""
    return f"{row['split']} #{row['index']} video_id {row['video_id']}{where}: {row['reason']}: {row['detail']}"


def _counter_text(counts: Counter) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"


def _reason_counts(rows: list[dict[str, object]]) -> str:
    return _counter_text(Counter(str(r["reason"]) for r in rows))


def collate_usable(samples: list[dict]) -> dict:
    """DataLoader ``collate_fn``: drop the samples :class:`ClipDataset` marked unusable (``skip_corrupt``), collate
    the rest with PyTorch's default collate, and report the dropped and truncated ones in the batch's
    ``_unusable``/``_truncated`` lists (taken out by :meth:`ClipDataModule.on_before_batch_transfer`).

    Raises:
        UnusableSampleError: every sample of the batch is unusable (a batch cannot be empty); names them all.
    """
    bad = [s for s in samples if "unusable" in s]
    good = [s for s in samples if "unusable" not in s]
    truncated = [s.pop("_truncated") for s in good if "_truncated" in s]
    if not good:
        listing = "; ".join(f"{s['split']} #{s['index']} {s['path']}: {s['unusable']}" for s in bad)
        raise UnusableSampleError(f"every sample of a batch of {len(bad)} is unusable ({listing}); a batch cannot be "
                                  "empty: repair the data (python -m fertrain.data.check) or use a larger batch",
                                  str(bad[0]["unusable"]), str(bad[0]["path"]))
    batch = default_collate(good)
    if bad:
        batch["_unusable"] = [{"split": s["split"], "index": s["index"], "video_id": s["video_id"],
                               "path": s["path"], "reason": s["unusable"], "detail": s["detail"]} for s in bad]
    if truncated:
        batch["_truncated"] = truncated
    return batch


class UnusableSampleReport(pl.Callback):
    """Reports unusable samples at the end of every train/val/test epoch (:meth:`ClipDataModule.report_epoch`);
    added to the trainer by :class:`ClipDataModule` when ``skip_corrupt`` is on."""

    def _report(self, trainer: pl.Trainer, split: str) -> None:
        dm = getattr(trainer, "datamodule", None)
        if isinstance(dm, ClipDataModule) and not trainer.sanity_checking:
            dm.report_epoch(split, trainer.current_epoch)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, "train")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, "test")
