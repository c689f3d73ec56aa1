"""One generic map-style dataset for every video (and, as clips of length 1, image) dataset.

It composes the stages and adds nothing of its own: a record says *what*, the sampler *when*, the reader *how*
(opened inside ``__getitem__``, so each DataLoader worker opens its own decoder after the fork), the transform
augments all frames of a clip identically.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from fertrain.data.readers import read_frames
from fertrain.data.records import ClipRecord, FrameSampler


class ClipDataset(Dataset):
    """Map-style dataset of clips with an exact ``__len__`` (= number of records).

    Args:
        records: the split's records (see :class:`~fertrain.data.records.ClipRecord`).
        sampler: frame sampler; called with ``train`` to pick random (train) or deterministic (eval) indices.
        transform: callable uint8 ``(T, H, W, C)`` -> uint8 ``(T, h, w, C)`` (the same augmentation on every frame);
            must have ``set_random_seed(seed)`` for per-worker reseeding.
        train: random temporal sampling and augmentation if True.
        seed: initial seed of the sampler RNG and the transform (reseeded per worker by
            :func:`fertrain.data.transforms.seed_worker`).

    ``__getitem__(i)`` returns a dict: ``video`` uint8 tensor ``(T, C, h, w)`` (0..255, RGB), ``label`` int64 scalar,
    ``index`` int64 scalar (= i), ``video_id`` str.

    Raises (from ``__getitem__``):
        fertrain.data.records.DatasetError: the media file is missing, unreadable or empty (names the file).
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        sampler: FrameSampler,
        transform: Callable[[np.ndarray], np.ndarray],
        train: bool,
        seed: int = 0,
    ) -> None:
        self.records = list(records)
        self.sampler = sampler
        self.transform = transform
        self.train = train
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Reseed the temporal-sampling RNG and the augmentation stream (called once per DataLoader worker)."""
        self.rng = np.random.default_rng(seed)
        if hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(seed)

    def __len__(self) -> int:
        return len(self.records)

    def frame_indices(self, i: int) -> np.ndarray:
        """Absolute frame indices (0-based, decoded order) that sample ``i`` reads: int64 ``(T,)``."""
        rec = self.records[i]
        return self.sampler(rec.num_frames, self.train, self.rng) + rec.start_frame

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        frames = read_frames(rec.path, self.frame_indices(i))  # (T, H, W, C) uint8
        frames = self.transform(frames)  # (T, h, w, C) uint8
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()  # (T, C, h, w)
        return {"video": video, "label": torch.tensor(rec.label, dtype=torch.long),
                "index": torch.tensor(i, dtype=torch.long), "video_id": rec.video_id}
