"""Typed records and the small protocols that connect the stages of the data path.

One data path, one layout per stage (written down here once):

    ClipRecord --sampler--> frame indices --reader--> uint8 (T, H, W, C)
               --transform--> uint8 (T, h, w, C) --dataset--> uint8 tensor (T, C, h, w)
               --collate--> uint8 (B, T, C, h, w) --datamodule.on_after_batch_transfer--> float (B, T, C, h, w)

Normalisation (uint8 -> float, mean/std) happens in exactly one place: the datamodule's
``on_after_batch_transfer`` (on the accelerator, after the batch has been moved there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

SPLITS = ("train", "val", "test")


class DatasetError(RuntimeError):
    """A dataset root, split file, label or media file is missing or malformed.

    The message always names the file (and row, where there is one), what was found and what was expected.
    """


@dataclass(frozen=True)
class ClipRecord:
    """One labelled sample: a segment of a video, a frame folder or a cached array.

    Attributes:
        path: video file (read with decord), folder of ordered frame images (``*.jpg``/``*.png``),
            or ``.npy`` array of uint8 frames ``(T, H, W, C)``.
        label: 0-based index into the dataset's ``class_names``.
        video_id: identifier of the source video/clip as the dataset names it (e.g. DFEW ``"00001"``).
        num_frames: number of frames of the segment, as listed by the dataset or the container (frames).
            Readers clamp to what can really be decoded, so an over-reported count is safe.
        start_frame: first frame of the segment in the source, 0-based, in decoded order (frames).
        fps: frame rate of the source in frames per second, where known.
        subject: subject/identity id, where the protocol needs it (LOSO, subject-independent folds).
        target: optional soft target, ``K`` floats summing to 1 (e.g. FERPlus crowd-vote distributions); the
            dataset adds it to the sample as float32 ``(K,)`` ``target`` (all records of a split have one or none).
        box: optional face box ``(x, y, width, height)`` in pixels of the decoded frame; the dataset crops every
            frame to it (clamped to the frame) before the transform (e.g. AffectNet's face_x/y/width/height).
        frame_files: optional explicit ordered frame images of the sequence (e.g. BU-3DFE's neutral -> level 1..4
            static images, which share a folder with other sequences); when given, frames are read from this list
            (``path`` is then the folder that holds them, for messages) and ``num_frames`` is its length.
        origin: where the record was listed (e.g. ``"labels.csv line 7"``), quoted by error messages and by the
            list of skipped samples.
        extra: optional further annotations the dataset lists per sample, for tasks that want them, e.g.
            AffectNet's ``{"valence": float, "arousal": float, "landmarks": ((x, y), ...)}`` (68 points, pixels);
            the dataset adds them to the sample as float32 tensors (all records of a split have the same keys).
    """

    path: Path
    label: int
    video_id: str
    num_frames: int
    start_frame: int = 0
    fps: float | None = None
    subject: str | None = None
    target: tuple[float, ...] | None = None
    box: tuple[int, int, int, int] | None = None
    frame_files: tuple[Path, ...] | None = None
    origin: str | None = None
    extra: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)


class RecordSource(Protocol):
    """A dataset protocol: parses the official files of one dataset into records.

    Implementations live in ``fertrain/data/datasets/<name>.py``; the label map and the split protocol
    of a dataset live there and nowhere else.
    """

    class_names: tuple[str, ...]

    def records(self, split: str) -> list[ClipRecord]:
        """Records of ``split`` (one of ``"train"``, ``"val"``, ``"test"``).

        Raises:
            DatasetError: the root or an official file is missing or malformed (message names the file/row).
        """
        ...


class FrameSampler(Protocol):
    """When to sample: pure index arithmetic, no I/O.

    ``__call__(num_frames, train, rng)`` returns int64 indices of shape ``(clip_len,)`` with values in
    ``[0, num_frames - 1]``, relative to the start of the segment.
    """

    clip_len: int

    def __call__(self, num_frames: int, train: bool, rng: np.random.Generator) -> np.ndarray: ...


@dataclass
class Batch:
    """Documentation of the batch dict the datamodule yields (keys are the contract).

    - ``video``: float32 ``(B, T, C, H, W)``, normalised with the data config's mean/std.
    - ``label``: int64 ``(B,)``, 0-based class index.
    - ``index``: int64 ``(B,)``, position of the sample in its split's record list.
    - ``video_id``: list of ``B`` strings.
    - ``target`` (only when the records carry soft targets): float32 ``(B, K)``, rows sum to 1.
    """

    video: object = None
    label: object = None
    index: object = None
    video_id: Sequence[str] = field(default_factory=list)


class LazySplitRecords:
    """Base of the split-protocol datasets (AFEW, RAF-DB, AffectNet, FERPlus): :meth:`records` parses every split
    once, on the first call.

    A subclass sets ``self._records = None`` in its constructor, implements ``_load() -> {split: records}`` for
    the three :data:`SPLITS`, and says in its class docstring what each split holds.
    """

    _records: dict[str, list[ClipRecord]] | None = None

    def _load(self) -> dict[str, list[ClipRecord]]:
        raise NotImplementedError

    def records(self, split: str) -> list[ClipRecord]:
        """Records of ``split`` (``"train"``, ``"val"`` or ``"test"``: see the class docstring), a new list each call.

        Raises:
            ValueError: ``split`` is not one of ``"train"``, ``"val"``, ``"test"``.
            DatasetError: see the class docstring.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if self._records is None:
            self._records = self._load()
        return list(self._records[split])
