"""Spotting data: long annotated videos, fixed-length windows slid over them, and the Lightning datamodule.

Data path (one layout per stage, as in :mod:`fertrain.data.records`)::

    SpottingVideo --WindowSampler--> window starts (sampled-frame positions) --reader--> uint8 (T, H, W, C)
        --transform--> uint8 (T, h, w, C) --dataset--> uint8 tensor (T, C, h, w) + per-frame labels (T,)
        --collate--> (B, T, ...) --datamodule.on_after_batch_transfer--> float (B, T, C, h, w) normalised

Temporal subsampling (our choice, for high-frame-rate sources such as SAMM-LV at 200 fps): a video of ``N``
frames is seen as ``n = ceil(N / frame_step)`` *sampled* frames, sampled frame ``p`` being source frame
``p * frame_step``. Windows are ``window`` sampled frames long; eval windows start every ``stride`` sampled frames
and the last window ends on the last sampled frame (a video shorter than a window is padded by repeating its last
frame; padded positions have ``valid = False``). The task averages the per-frame scores of overlapping windows and
gives source frame ``f`` the score of sampled frame ``f // frame_step``.

Per-frame labels (our choice): 0 ``neutral`` (outside every annotated interval), 1 ``macro``, 2 ``micro``; where a
macro and a micro interval overlap the frame is ``micro`` (the rarer kind).

Protocols: ``"loso"`` (leave one subject out: ``test_subject``'s videos are the test set, ``val_subjects`` other
subjects (the next ones in sorted order, cyclically) the validation set, the rest the training set; with
``test_subject=None`` the datamodule only lists the folds (:meth:`SpottingDataModule.folds`) and
:func:`fertrain.train.run` trains one model per fold) or ``"split"`` (each video's own ``split`` attribute).
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from fertrain.data.clip_dataset import SeededDataset
from fertrain.data.datamodule import IMAGENET_MEAN, IMAGENET_STD, normalize_video
from fertrain.data.readers import list_frame_files, read_frames
from fertrain.data.records import SPLITS, DatasetError
from fertrain.data.resumable import EpochSampler, ResumableDataLoader
from fertrain.data.transforms import seed_worker
from fertrain.spotting.intervals import AnnotationRow, Interval

log = logging.getLogger(__name__)

#: Per-frame classes of every spotting dataset (label map, our choice): index = label.
SPOTTING_CLASS_NAMES: tuple[str, ...] = ("neutral", "macro", "micro")
_KIND_LABEL = {"macro": 1, "micro": 2}


@dataclass(frozen=True)
class SpottingVideo:
    """One long video and its ground-truth expression intervals.

    Attributes:
        path: frame folder (``*.jpg``/``*.png`` in natural order) or ``.npy`` uint8 ``(N, H, W, 3)``.
        video_id: the dataset's name for the video (e.g. CAS(ME)^2 ``"15_0101"``, SAMM-LV ``"006_1"``).
        subject: subject id (LOSO folds), e.g. ``"s15"`` or ``"006"``.
        num_frames: ``N``, frames of the video.
        fps: frame rate (frames per second).
        intervals: ground truth, 0-based inclusive frames (:class:`fertrain.spotting.intervals.Interval`).
        split: ``"train"``/``"val"``/``"test"`` for datasets with a fixed split (protocol ``"split"``), else None.
        annotations: the raw rows of the annotation sheet (:class:`fertrain.spotting.intervals.AnnotationRow`), before
            the reader's "not annotated" policies, for the evaluation protocols' ground-truth policies
            (:mod:`fertrain.spotting.protocols`); empty for datasets without a sheet (synthetic).
    """

    path: Path
    video_id: str
    subject: str
    num_frames: int
    fps: float
    intervals: tuple[Interval, ...] = ()
    split: str | None = None
    annotations: tuple[AnnotationRow, ...] = ()

    def frame_labels(self) -> np.ndarray:
        """int64 ``(N,)`` per-frame labels (0 neutral, 1 macro, 2 micro; micro wins where both)."""
        labels = np.zeros(self.num_frames, np.int64)
        for kind in ("macro", "micro"):
            for iv in self.intervals:
                if iv.kind == kind:
                    labels[iv.onset:min(iv.offset, self.num_frames - 1) + 1] = _KIND_LABEL[kind]
        return labels


def natural_key(text: str) -> tuple:
    """Sort key with numbers compared as numbers (``"s9" < "s15"``, ``"006" < "010"``)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", str(text)))


def first_frame_number(folder: Path) -> int:
    """The number in the name of a frame folder's first frame (``img1.jpg`` -> 1, ``006_1_0001.jpg`` -> 1).

    Annotation sheets give frame numbers as in the file names; ``number - first_frame_number`` is the 0-based
    index into the sorted folder.

    Raises:
        DatasetError: the folder is missing or empty, or the first file name has no number.
    """
    first = list_frame_files(folder)[0]
    digits = re.findall(r"\d+", first.stem)
    if not digits:
        raise DatasetError(f"frame folder {folder}: first frame {first.name!r} has no frame number in its name")
    return int(digits[-1])


def count_kinds(videos: Sequence[SpottingVideo]) -> dict[str, int]:
    """Number of ground-truth intervals per kind over ``videos``."""
    c = Counter(iv.kind for v in videos for iv in v.intervals)
    return {"macro": c.get("macro", 0), "micro": c.get("micro", 0)}


class WindowSampler:
    """Index arithmetic of windows over a video (no I/O).

    Args:
        window: sampled frames per window ``T`` (``clip_len``).
        stride: eval window step, sampled frames (windows overlap when ``stride < window``).
        train_stride: training window step (default ``stride``); training starts are jittered by up to
            ``+-train_stride // 2`` (our choice).
        frame_step: temporal subsampling: sampled frame ``p`` is source frame ``p * frame_step``.

    Raises:
        ValueError: a value < 1.
    """

    def __init__(self, window: int = 16, stride: int = 8, train_stride: int | None = None,
                 frame_step: int = 1) -> None:
        for name, v in (("window", window), ("stride", stride), ("frame_step", frame_step),
                        ("train_stride", train_stride or 1)):
            if int(v) < 1:
                raise ValueError(f"WindowSampler.{name} must be >= 1, got {v}")
        self.window, self.stride, self.frame_step = int(window), int(stride), int(frame_step)
        self.train_stride = int(train_stride or stride)
        self.clip_len = self.window

    def num_sampled(self, num_frames: int) -> int:
        """``ceil(num_frames / frame_step)``: sampled frames of a video of ``num_frames`` frames."""
        return max(1, math.ceil(num_frames / self.frame_step))

    def starts(self, num_frames: int, train: bool = False) -> list[int]:
        """Window starts (sampled positions) covering every sampled frame; the last window ends on the last one."""
        n = self.num_sampled(num_frames)
        last = max(0, n - self.window)
        step = self.train_stride if train else self.stride
        starts = list(range(0, last + 1, step))
        if starts[-1] != last:
            starts.append(last)
        return starts

    def positions(self, start: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Sampled positions int64 ``(T,)`` of the window at ``start`` (clamped to the last) and ``valid`` bool
        ``(T,)`` (False on padding)."""
        n = self.num_sampled(num_frames)
        pos = start + np.arange(self.window, dtype=np.int64)
        return np.minimum(pos, n - 1), pos < n

    def source_frames(self, positions: np.ndarray, num_frames: int) -> np.ndarray:
        """Source frame indices int64 of sampled ``positions`` (clamped to ``num_frames - 1``)."""
        return np.minimum(positions * self.frame_step, num_frames - 1)

    def __repr__(self) -> str:
        return (f"WindowSampler(window={self.window}, stride={self.stride}, train_stride={self.train_stride}, "
                f"frame_step={self.frame_step})")


class SpottingWindowDataset(SeededDataset):
    """Map-style dataset of windows over long videos.

    Args:
        videos: the split's videos.
        sampler: the window arithmetic.
        transform: uint8 ``(T, H, W, C)`` -> uint8 ``(T, h, w, C)``, the same on every frame of a window.
        train: training starts (``train_stride``, jittered) and random augmentation if True.
        positive_repeat: training only: windows that overlap an annotated interval appear this many times per
            epoch (class balance, our choice); 1 = no repetition.
        seed: seed of the jitter stream and the transform (reseeded per worker).
        reduce_to: passed to :func:`fertrain.data.readers.read_frames` (reduced-scale JPEG decoding).

    ``__getitem__(i)`` returns ``video`` uint8 ``(T, C, h, w)``, ``labels`` int64 ``(T,)`` (per-frame class),
    ``valid`` bool ``(T,)``, ``positions`` int64 ``(T,)`` (sampled positions), ``video_index`` int64 (index into
    ``videos``), ``video_id`` str.

    Raises (from ``__getitem__``):
        DatasetError: a frame file is missing or unreadable (names it).
    """

    def __init__(self, videos: Sequence[SpottingVideo], sampler: WindowSampler,
                 transform: Callable[[np.ndarray], np.ndarray], train: bool, positive_repeat: int = 1,
                 seed: int = 0, reduce_to: int | None = None) -> None:
        self.videos = list(videos)
        self.sampler = sampler
        self.transform = transform
        self.train = train
        self.reduce_to = reduce_to
        self.labels = [v.frame_labels() for v in self.videos]
        self.items: list[tuple[int, int]] = []
        for vi, v in enumerate(self.videos):
            for s in sampler.starts(v.num_frames, train=train):
                pos, _ = sampler.positions(s, v.num_frames)
                positive = bool(self.labels[vi][sampler.source_frames(pos, v.num_frames)].any())
                self.items += [(vi, s)] * (max(1, int(positive_repeat)) if train and positive else 1)
        self.seed = seed
        self.reseed(seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        vi, start = self.items[i]
        v = self.videos[vi]
        rng = self.rng_for(i)  # per (seed, epoch, index) in training: exact resume (fertrain.data.resumable)
        if self.train and self.sampler.train_stride > 1:
            half = self.sampler.train_stride // 2
            last = max(0, self.sampler.num_sampled(v.num_frames) - self.sampler.window)
            start = int(np.clip(start + rng.integers(-half, half + 1), 0, last))
        pos, valid = self.sampler.positions(start, v.num_frames)
        frames = self.sampler.source_frames(pos, v.num_frames)
        clip = self.transform(read_frames(v.path, frames, reduce_to=self.reduce_to))  # (T, h, w, C)
        return {
            "video": torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2),  # (T, C, h, w)
            "labels": torch.from_numpy(self.labels[vi][frames]),
            "valid": torch.from_numpy(valid),
            "positions": torch.from_numpy(pos),
            "video_index": torch.tensor(vi, dtype=torch.int64),
            "video_id": v.video_id,
        }


class SpottingDataModule(pl.LightningDataModule):
    """Windows of long videos for spotting, with a leave-one-subject-out or a fixed split.

    Args:
        source: dataset protocol with ``videos() -> list[SpottingVideo]`` and ``class_names``.
        sampler: the :class:`WindowSampler`.
        train_transform, eval_transform: window transforms (``build_clip_transform``).
        class_names: must equal ``source.class_names`` (``data.class_names``).
        protocol: ``"loso"`` or ``"split"`` (module docstring).
        test_subject: LOSO: the held-out subject (``None``: :meth:`folds` lists them; the entry point loops).
            Matched as a string, or as a number when both are numeric (``6`` matches ``"006"``).
        val_subjects: LOSO: how many other subjects form the validation set (0: no validation; our default, as
            MEGC protocols train for a fixed number of epochs).
        positive_repeat: training windows that overlap an interval are repeated this many times per epoch.
        reduce_to: frame folders: decode JPEGs at reduced scale, shorter side >= this (pixels; None: full size).
        batch_size, eval_batch_size, num_workers, mean, std, pin_memory, persistent_workers, seed: as
            :class:`fertrain.data.datamodule.ClipDataModule`.

    Batches (after :meth:`on_after_batch_transfer`): ``video`` float32 ``(B, T, C, h, w)``, ``labels`` int64
    ``(B, T)``, ``valid`` bool ``(B, T)``, ``positions`` int64 ``(B, T)``, ``video_index`` int64 ``(B,)``,
    ``video_id`` list of ``B`` str.

    Raises:
        DatasetError: class names differ; unknown protocol; unknown test subject; an empty train or test split.
    """

    def __init__(self, source, sampler: WindowSampler, train_transform: Callable, eval_transform: Callable,
                 class_names: Sequence[str] | None = None, protocol: str = "loso",
                 test_subject: str | int | None = None, val_subjects: int = 0, positive_repeat: int = 1,
                 batch_size: int = 8, eval_batch_size: int | None = None, num_workers: int = 2,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 pin_memory: bool = False, persistent_workers: bool = False, seed: int = 0,
                 reduce_to: int | None = None) -> None:
        super().__init__()
        if class_names is not None and tuple(class_names) != tuple(source.class_names):
            raise DatasetError(f"data.class_names {list(class_names)} differ from {type(source).__name__}."
                               f"class_names {list(source.class_names)}")
        if protocol not in ("loso", "split"):
            raise DatasetError(f"spotting protocol must be 'loso' or 'split', got {protocol!r}")
        self.source, self.sampler = source, sampler
        self.train_transform, self.eval_transform = train_transform, eval_transform
        self.class_names = tuple(source.class_names)
        self.protocol = protocol
        self.test_subject = None if test_subject in (None, "", "null") else test_subject
        self.val_subjects = int(val_subjects)
        self.positive_repeat = int(positive_repeat)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers = num_workers
        self.mean, self.std = tuple(mean), tuple(std)
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.seed = seed
        self.reduce_to = reduce_to
        self.videos: list[SpottingVideo] = list(source.videos())
        if not self.videos:
            raise DatasetError(f"{type(source).__name__}: no videos found")
        self.datasets: dict[str, SpottingWindowDataset] = {}
        self._splits: dict[str, list[SpottingVideo]] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subjects(self) -> list[str]:
        """Subjects in natural order."""
        return sorted({v.subject for v in self.videos}, key=natural_key)

    def folds(self) -> list[str] | None:
        """LOSO with no ``test_subject``: every subject (one fold each); otherwise None (a single run)."""
        if self.protocol == "loso" and self.test_subject is None:
            return self.subjects()
        return None

    def _match_subject(self, wanted: str | int) -> str:
        subjects = self.subjects()
        for s in subjects:
            if str(wanted) == s or (str(wanted).isdigit() and s.isdigit() and int(wanted) == int(s)):
                return s
        raise DatasetError(f"{type(self.source).__name__}: test subject {wanted!r} is not one of the "
                           f"{len(subjects)} subjects {subjects}")

    def split_videos(self, split: str) -> list[SpottingVideo]:
        """The videos of ``split`` (``"train"``, ``"val"`` or ``"test"``); ``"val"`` may be empty.

        Raises:
            DatasetError: LOSO without a test subject, an unknown subject, an empty train or test split.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if self._splits is None:
            self._splits = self._make_splits()
        return list(self._splits[split])

    def _make_splits(self) -> dict[str, list[SpottingVideo]]:
        name = type(self.source).__name__
        if self.protocol == "split":
            out = {s: [v for v in self.videos if v.split == s] for s in SPLITS}
        else:
            if self.test_subject is None:
                raise DatasetError(f"{name}: LOSO needs a test subject (data.subject=...), or let fertrain.train.run "
                                   f"loop over all {len(self.subjects())} folds")
            test = self._match_subject(self.test_subject)
            subjects = self.subjects()
            i = subjects.index(test)
            others = subjects[i + 1:] + subjects[:i]
            val = set(others[:self.val_subjects])
            out = {"test": [v for v in self.videos if v.subject == test],
                   "val": [v for v in self.videos if v.subject in val],
                   "train": [v for v in self.videos if v.subject != test and v.subject not in val]}
        for s in ("train", "test"):
            if not out[s]:
                raise DatasetError(f"{name}: the {s} split has no videos (protocol {self.protocol!r}, "
                                   f"test subject {self.test_subject!r})")
        for s in SPLITS:
            k = count_kinds(out[s])
            log.info("%s %s: %d videos, %d frames, %d macro + %d micro intervals", name, s, len(out[s]),
                     sum(v.num_frames for v in out[s]), k["macro"], k["micro"])
        return out

    def frame_label_counts(self) -> np.ndarray:
        """int64 ``(K,)``: training frames per class, at the sampled frame rate (for class weights)."""
        counts = np.zeros(self.num_classes, np.int64)
        for v in self.split_videos("train"):
            labels = v.frame_labels()[:: self.sampler.frame_step]
            counts += np.bincount(labels, minlength=self.num_classes)[: self.num_classes]
        return counts

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, SPLITS) if stage else SPLITS:
            if split in self.datasets:
                continue
            train = split == "train"
            self.datasets[split] = SpottingWindowDataset(
                self.split_videos(split), self.sampler, self.train_transform if train else self.eval_transform,
                train=train, positive_repeat=self.positive_repeat if train else 1, seed=self.seed,
                reduce_to=self.reduce_to)

    def _loader(self, split: str, train: bool) -> DataLoader:
        ds = self.datasets[split]
        if train:  # order and jitter from (seed, epoch, index): exact resume (fertrain.data.resumable)
            trainer = getattr(self, "trainer", None)
            sampler = EpochSampler(ds, seed=self.seed, num_replicas=trainer.world_size if trainer else 1,
                                   rank=trainer.global_rank if trainer else 0)
            return ResumableDataLoader(ds, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                                       pin_memory=self.pin_memory, persistent_workers=self.persistent_workers,
                                       drop_last=len(ds) > self.batch_size, worker_init_fn=seed_worker)
        return DataLoader(ds, batch_size=self.batch_size if train else self.eval_batch_size, shuffle=train,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.persistent_workers, drop_last=train and len(ds) > self.batch_size,
                          worker_init_fn=seed_worker)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader | list:
        if not self.datasets.get("val") or len(self.datasets["val"]) == 0:
            return []  # no validation subjects: Lightning skips the validation loop
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Normalise ``video`` on the device: uint8 ``(B, T, C, h, w)`` -> float32."""
        if batch["video"].dtype == torch.uint8:
            batch["video"] = normalize_video(batch["video"], self.mean, self.std)
        return batch


# ------------------------------------------------------------------ workbook helpers (CAS(ME)^2, SAMM-LV)
FRACTIONAL_POLICIES = ("round", "floor", "error")


def open_workbook(path: Path, layout: str):
    """Open an ``.xlsx`` annotation workbook read-only with openpyxl (cell values, not formulas).

    Raises:
        DatasetError: the file is missing or not a readable xlsx workbook (``layout`` is quoted in the message).
    """
    import openpyxl

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"annotation workbook {path} not found; expected layout:\n{layout}")
    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises zipfile/KeyError/InvalidFileException for non-xlsx files
        raise DatasetError(f"{path}: not a readable .xlsx workbook ({type(e).__name__}: {e})") from None


def parse_frame(value, where: str, column: str, fractional: str = "error") -> tuple[int, bool]:
    """A frame-number cell -> ``(int, was_fractional)``.

    Args:
        value: the cell value (int, float or numeric string).
        where: ``"<workbook>, sheet '<name>', row <n>"`` for messages.
        column: the column's name, for messages.
        fractional: what to do with a non-integer number: ``"round"`` (to nearest), ``"floor"``, ``"error"``.

    Raises:
        DatasetError: an empty or non-numeric cell, or a fractional one under ``fractional="error"``.
    """
    if fractional not in FRACTIONAL_POLICIES:
        raise ValueError(f"fractional policy must be one of {FRACTIONAL_POLICIES}, got {fractional!r}")
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise DatasetError(f"{where}: column {column}: expected a frame number, found an empty cell")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: column {column}: expected a frame number, found {value!r}") from None
    if not math.isfinite(x):
        raise DatasetError(f"{where}: column {column}: expected a finite frame number, found {value!r}")
    if x == int(x):
        return int(x), False
    if fractional == "error":
        raise DatasetError(f"{where}: column {column}: fractional frame number {value!r} (set the dataset's "
                           f"fractional policy to 'round' or 'floor' to accept it)")
    return (int(math.floor(x + 0.5)) if fractional == "round" else int(math.floor(x))), True
