"""One generic map-style dataset for every video (and, as clips of length 1, image) dataset.

It composes the stages and adds nothing of its own: a record says *what*, the sampler *when*, the reader *how*
(opened inside ``__getitem__``, so each DataLoader worker opens its own decoder after the fork), the transform
augments all frames of a clip identically.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from fertrain.data.images import crop_box
from fertrain.data.readers import read_frames
from fertrain.data.records import ClipRecord, DatasetError, FrameSampler
from fertrain.data.transforms import ClipTransform


class SeededDataset(Dataset):
    """Base of the map-style datasets with their own random streams: a numpy ``rng`` (``self.rng``) and the
    transform's augmentation stream; the subclass sets ``self.transform`` and calls :meth:`reseed` in its constructor.
    """

    transform: Callable[[np.ndarray], np.ndarray]

    def reseed(self, seed: int) -> None:
        """Reseed ``self.rng`` (temporal sampling, window jitter) and the transform's augmentation stream (called once
        per DataLoader worker by :func:`fertrain.data.transforms.seed_worker`)."""
        self.rng = np.random.default_rng(seed)
        if hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(seed)


class ClipDataset(SeededDataset):
    """Map-style dataset of clips with an exact ``__len__`` (= number of records).

    Args:
        records: the split's records (see :class:`~fertrain.data.records.ClipRecord`).
        sampler: frame sampler; called with ``train`` to pick random (train) or deterministic (eval) indices.
        transform: callable uint8 ``(T, H, W, C)`` -> uint8 ``(T, h, w, C)`` (the same augmentation on every frame);
            must have ``set_random_seed(seed)`` for per-worker reseeding.
        train: random temporal sampling and augmentation if True.
        seed: initial seed of the sampler RNG and the transform (reseeded per worker by
            :func:`fertrain.data.transforms.seed_worker`).
        split: split name quoted in error messages (``"train"``, ...).
        decoder: video decoder, ``data.decoder`` (:data:`fertrain.data.readers.VIDEO_DECODERS`).

    ``__getitem__(i)`` returns a dict: ``video`` uint8 tensor ``(T, C, h, w)`` (0..255, RGB), ``label`` int,
    ``index`` int (= i), ``video_id`` str (collated into int64 ``(B,)`` tensors and a list); plus ``target`` float32
    ``(K,)`` when the record has a soft target. A record's face ``box`` crops the decoded frames before the
    transform. JPEG frames are decoded at reduced DCT scale where no crop of the transform gets upsampled
    (``ClipTransform.decode_size``; full size when records carry face boxes, which are in full-size pixels).

    Raises (from ``__getitem__``):
        fertrain.data.records.DatasetError: the media file is missing, unreadable or empty (names the file, the
            split, the sample index, the ``video_id`` and the record's ``origin``). Frames come from
            ``record.frame_files`` when set, else ``record.path``. Inside a DataLoader worker the error is re-raised
            in the main process by PyTorch (no hang).
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        sampler: FrameSampler,
        transform: Callable[[np.ndarray], np.ndarray],
        train: bool,
        seed: int = 0,
        split: str = "",
        decoder: str = "decord",
    ) -> None:
        self.records = list(records)
        # how frames are read: JPEG frames at reduced DCT scale down to the transform's decode_size; video decoder
        has_box = any(r.box is not None for r in self.records)
        reduce_to = None if has_box else getattr(transform, "decode_size", None)
        as_list = not has_box and isinstance(transform, ClipTransform)  # frames go to the transform unstacked
        self.read_options = {"reduce_to": reduce_to, "decoder": decoder, "as_list": as_list}
        self.split = split
        self.sampler = sampler
        self.transform = transform
        self.train = train
        self.reseed(seed)

    def __len__(self) -> int:
        return len(self.records)

    def frame_indices(self, i: int) -> np.ndarray:
        """Absolute frame indices (0-based, decoded order) that sample ``i`` reads: int64 ``(T,)``."""
        rec = self.records[i]
        return self.sampler(rec.num_frames, self.train, self.rng) + rec.start_frame

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        try:
            frames = read_frames(rec.frame_files or rec.path, self.frame_indices(i), **self.read_options)  # (T,H,W,C)
        except DatasetError as err:  # say which sample, and how to skip unreadable ones
            where = f", listed at {rec.origin}" if rec.origin else ""
            raise DatasetError(f"{self.split or 'dataset'} sample {i} (video_id {rec.video_id}{where}): {err}. "
                               "To skip unreadable samples instead, set data.datamodule.skip_corrupt=true "
                               "(validated once at setup, listed in <run_dir>/skipped_samples.csv)") from err
        if rec.box is not None:  # face box (e.g. AffectNet), before any augmentation
            frames = crop_box(frames, rec.box, rec.path)
        frames = self.transform(frames)  # (T, h, w, C) uint8
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (T, C, h, w) view
        if get_worker_info() is None:  # in a worker the default collate copies the view into a contiguous batch
            video = video.contiguous()
        # lean sample: plain ints (the default collate makes the int64 (B,) tensors), no per-sample tensors
        sample = {"video": video, "label": int(rec.label), "index": int(i), "video_id": rec.video_id}
        if rec.target is not None:  # soft target (e.g. FERPlus vote distribution), float32 (K,)
            sample["target"] = torch.tensor(rec.target, dtype=torch.float32)
        return sample
