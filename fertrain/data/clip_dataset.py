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

from fertrain.data.images import IMAGE_FILE_SUFFIXES, crop_box
from fertrain.data.integrity import UnusableSampleError, classify_error
from fertrain.data.readers import count_frames, read_frames
from fertrain.data.records import ClipRecord, DatasetError, FrameSampler
from fertrain.data.transforms import ClipTransform, channels_first


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

    def rng_for(self, i: int) -> np.random.Generator:
        """The random stream of sample ``i``: for a :class:`fertrain.data.resumable.SampleKey` (training order of
        :class:`~fertrain.data.resumable.EpochSampler`) a generator seeded by ``(seed, epoch, index)``, also
        reseeding the transform, so a resumed run draws exactly what an uninterrupted one drew (*ours*); for a
        plain ``int``, the running ``self.rng`` stream."""
        epoch = getattr(i, "epoch", None)
        if epoch is None:
            return self.rng
        seq = np.random.SeedSequence([int(getattr(self, "seed", 0)), int(epoch), int(i)])
        if hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(int(seq.generate_state(1)[0]))
        return np.random.default_rng(seq)


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
        skip_unusable: return unusable samples marked instead of raising (``data.skip_corrupt``; see below).
        decoder: video decoder, ``data.decoder`` (:data:`fertrain.data.readers.VIDEO_DECODERS`).

    ``__getitem__(i)`` returns a dict: ``video`` uint8 tensor ``(T, C, h, w)`` (0..255, RGB), ``label`` int,
    ``index`` int (= i), ``video_id`` str (collated into int64 ``(B,)`` tensors and a list); plus ``target`` float32
    ``(K,)`` when the record has a soft target, and float32 tensors of the record's ``extra`` annotations (e.g.
    ``valence``, ``arousal``, ``landmarks`` ``(68, 2)``). A record's face ``box`` crops the decoded frames before the
    transform. JPEG frames are decoded at reduced DCT scale where no crop of the transform gets upsampled
    (``ClipTransform.decode_size``; full size when records carry face boxes, which are in full-size pixels).

    Unusable media (:mod:`fertrain.data.integrity`): a video whose decodable frames are fewer than the record
    indexes is *truncated*; with ``skip_unusable`` the sampler then draws only from the frames that decode and the
    sample carries ``_truncated`` (counted by the datamodule), and a sample whose frames cannot be read comes back
    as ``{"unusable": reason, "detail", "path", "index", "split", "video_id"}`` (dropped from its batch by
    :func:`fertrain.data.datamodule.collate_usable`, counted).

    Raises (from ``__getitem__``, without ``skip_unusable``):
        fertrain.data.integrity.UnusableSampleError: the media file is missing, unreadable, empty or truncated
            (names the file, the problem, the split, the sample index, the ``video_id`` and the record's
            ``origin``). Frames come from ``record.frame_files`` when set, else ``record.path``. Inside a
            DataLoader worker the error is re-raised in the main process by PyTorch (no hang).
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        sampler: FrameSampler,
        transform: Callable[[np.ndarray], np.ndarray],
        train: bool,
        seed: int = 0,
        split: str = "",
        skip_unusable: bool = False,
        decoder: str = "decord",
    ) -> None:
        self.records = list(records)
        # how frames are read: JPEG frames at reduced DCT scale down to the transform's decode_size; video decoder
        has_box = any(r.box is not None for r in self.records)
        reduce_to = None if has_box else getattr(transform, "decode_size", None)
        as_list = not has_box and isinstance(transform, ClipTransform)  # frames go to the transform unstacked
        self.read_options = {"reduce_to": reduce_to, "decoder": decoder, "as_list": as_list}
        self.split = split
        self.skip_unusable = skip_unusable
        self.sampler = sampler
        self.transform = transform
        self.train = train
        self._truncated: dict | None = None  # set by frame_indices for a truncated video (skip_unusable)
        self.seed = seed
        self.reseed(seed)

    def __len__(self) -> int:
        return len(self.records)

    def frame_indices(self, i: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Absolute frame indices (0-based, decoded order) that sample ``i`` reads: int64 ``(T,)``."""
        rec = self.records[i]
        return self.sampler(self._usable_frames(i, rec), self.train, self.rng if rng is None else rng) + rec.start_frame

    def _usable_frames(self, i: int, rec: ClipRecord) -> int:
        """Frames the sampler may draw from: the record's count, or fewer for a truncated video (only the frames
        that decode; the decodable count is the readers' cached one). Frame folders were counted at setup."""
        path = rec.path
        if rec.frame_files is not None or path.is_dir() or path.suffix.lower() == ".npy" or rec.num_frames < 1:
            return rec.num_frames
        if path.suffix.lower() in IMAGE_FILE_SUFFIXES:
            return rec.num_frames
        available = count_frames(path) - rec.start_frame  # (cached per process) DatasetError if it does not open
        if available >= rec.num_frames:
            return rec.num_frames
        detail = (f"video {path}: {rec.num_frames} frames indexed (from frame {rec.start_frame}) but only "
                  f"{max(available, 0)} decode (truncated file or over-reporting container)")
        if available < 1 or not self.skip_unusable:
            raise UnusableSampleError(detail, "truncated", str(path))
        self._truncated = {"split": self.split, "index": i, "video_id": rec.video_id, "path": str(path),
                           "detail": detail}
        return available

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        self._truncated = None
        rng = self.rng_for(i)  # before the transform runs: it may reseed the augmentation stream
        try:
            frames = read_frames(rec.frame_files or rec.path, self.frame_indices(i, rng),
                                 **self.read_options)  # (T, H, W, C) uint8
        except DatasetError as err:  # say which sample, and how to skip unusable ones
            reason = classify_error(err)
            if self.skip_unusable:
                return {"unusable": reason, "detail": str(err), "path": str(getattr(err, "path", None) or rec.path),
                        "index": i, "split": self.split, "video_id": rec.video_id}
            where = f", listed at {rec.origin}" if rec.origin else ""
            raise UnusableSampleError(
                f"{self.split or 'dataset'} sample {i} (video_id {rec.video_id}{where}): {reason}: {err}. To skip, "
                "count and report unusable samples instead, set data.skip_corrupt=true (listed in "
                "<run_dir>/skipped_samples.csv)", reason, str(getattr(err, "path", None) or rec.path)) from err
        if rec.box is not None:  # face box (e.g. AffectNet), before any augmentation
            frames = crop_box(frames, rec.box, rec.path)
        frames = self.transform(frames)  # (T, h, w, C) uint8
        # (T, C, h, w), C-contiguous: the collate's copy into the (shared-memory) batch is then a plain copy
        video = torch.from_numpy(channels_first(np.asarray(frames)))
        # lean sample: plain ints (the default collate makes the int64 (B,) tensors), no per-sample tensors
        sample = {"video": video, "label": int(rec.label), "index": int(i), "video_id": rec.video_id}
        if rec.target is not None:  # soft target (e.g. FERPlus vote distribution), float32 (K,)
            sample["target"] = torch.tensor(rec.target, dtype=torch.float32)
        if rec.extra:  # further annotations (e.g. AffectNet valence/arousal/landmarks), float32
            sample.update({k: torch.tensor(v, dtype=torch.float32) for k, v in rec.extra.items()})
        if self._truncated is not None:
            sample["_truncated"] = self._truncated
        return sample
