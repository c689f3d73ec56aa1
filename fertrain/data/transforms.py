"""Clip transforms: albumentations 2.x pipelines applied with the SAME random parameters to every frame.

A clip is uint8 ``(T, H, W, C)``; ``ClipTransform`` runs one ``albumentations.Compose`` on it through the
``images=`` target (``Compose(...)(images=frames)["images"]``), which samples the random parameters once per
call and applies them to every frame, so a clip gets one crop, one flip and one colour jitter.

Seeding across DataLoader workers (a trap of albumentations 2.0.8). ``Compose`` keeps its own numpy/python
generators, created when the transform is built in the main process. Forked workers inherit copies of that
state, so every worker draws the same augmentation stream, and non-persistent workers redraw the same stream
every epoch; seeding numpy/random/torch per worker (what Lightning's ``seed_everything(workers=True)`` does)
does not touch it. ``seed_worker`` is a ``worker_init_fn`` that seeds the global generators as Lightning does
and then calls ``dataset.reseed(seed)``, which must reseed the transform (``ClipTransform.set_random_seed``)
and the sampler's generator.
"""

from __future__ import annotations

import math
import random

import albumentations as A
import cv2
import numpy as np
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function

__all__ = ["ClipTransform", "build_clip_transform", "channels_first", "flip_draws", "hflip_clips", "seed_worker"]


class ClipTransform:
    """An albumentations ``Compose`` applied identically to all frames of a clip.

    Attributes:
        compose: the underlying ``albumentations.Compose``.
        size: output side length (pixels); frames come out ``size x size``.
    """

    def __init__(self, compose: A.Compose, size: int, seed: int | None = None) -> None:
        """Wrap ``compose``.

        Args:
            compose: pipeline whose output frames are ``size x size``.
            size: output side length (pixels).
            seed: seed of the augmentation stream; None = fresh OS entropy (not reproducible).
        """
        self.compose = compose
        self.size = size
        self._plan = _fast_plan(compose)
        if seed is not None:
            self.set_random_seed(seed)

    def __repr__(self) -> str:
        return f"ClipTransform(size={self.size}, compose={self.compose!r})"

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Transform one clip.

        Args:
            frames: uint8 ``(T, H, W, C)`` in ``[0, 255]``, T >= 1 (C = 3 for RGB), or a list of T uint8
                ``(H, W, C)`` frames of one size (stacked first where the fast path does not apply).

        Returns:
            uint8 ``(T, size, size, C)``, C-contiguous; one set of random parameters for all T frames.

        Raises:
            ValueError: ``frames`` is not a uint8 array of shape ``(T, H, W, C)`` with T >= 1, or the pipeline
                did not produce ``size x size`` frames.
        """
        if isinstance(frames, (list, tuple)):  # frames as read (readers.read_frames(as_list=True))
            if self._plan is not None and _same_frames(frames):
                out = self._fast_call(frames)
                if out is not None:
                    return out
            frames = np.stack(frames) if len(frames) else np.empty((0,), np.uint8)
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or len(frames) < 1:
            shape = getattr(frames, "shape", None)
            dtype = getattr(frames, "dtype", type(frames).__name__)
            raise ValueError(f"ClipTransform expects uint8 (T, H, W, C) with T >= 1, got {dtype} of shape {shape}")
        out = self._fast_call(frames) if self._plan is not None and frames.ndim == 4 else None
        if out is None:
            out = self.compose(images=frames)["images"]  # one parameter draw for the whole clip
        out = np.ascontiguousarray(out, dtype=np.uint8)
        if out.shape[:3] != (len(frames), self.size, self.size):
            raise ValueError(
                f"ClipTransform produced shape {out.shape} from {frames.shape}; "
                f"expected (T, {self.size}, {self.size}, C)"
            )
        return out

    @property
    def decode_size(self) -> int | None:
        """Shorter side (pixels) frames may be decoded at without any crop being upsampled (OURS): the reader
        decodes JPEGs at reduced DCT scale down to this (``read_frames(reduce_to=...)``); None = full size.

        ``SmallestMaxSize(s)`` first (the eval pipeline; train with ``resize``): ``s``. ``RandomResizedCrop`` first:
        ``ceil(size / m)`` with ``m = sqrt(scale_min * min(ratio_min, 1 / ratio_max))`` the smallest side of a crop
        relative to the frame's shorter side (DFEW's 224-pixel frames at ``size=112``, scale (0.8, 1), ratio
        (3/4, 4/3): 145, i.e. full-size decode in training, half-size (112) in evaluation). Other pipelines: None.
        """
        first = self.compose.transforms[0] if len(self.compose.transforms) else None
        if isinstance(first, A.SmallestMaxSize) and isinstance(first.max_size, int):
            return int(first.max_size)
        if isinstance(first, A.RandomResizedCrop):
            low = min(first.ratio[0], 1.0 / first.ratio[1], 1.0)
            return int(math.ceil(max(first.size) / math.sqrt(first.scale[0] * low) - 1e-9))
        return None

    def _fast_call(self, frames: np.ndarray) -> np.ndarray | None:
        """The two standard pipelines without albumentations' per-call machinery (OURS, for speed): the same
        random draws from the same generator (``get_params_dependent_on_data`` of the transforms themselves), the
        crop as a view of the decoded frames, one ``cv2.resize`` per frame straight into one contiguous output
        array, the flip in place (one ``cv2.flip`` of the whole clip). The same pixels as ``compose(images=...)``
        (tests/test_speed.py); None when a case is not covered (albumentations then runs)."""
        T, (H, W, C) = len(frames), frames[0].shape
        c = self.compose
        kind, ops = self._plan
        if not c.py_random.random() < c.p:  # Compose.__call__'s own draw
            return frames if isinstance(frames, np.ndarray) else np.stack(frames)
        if kind == "train":
            crop_op, flip_op = ops
            x1, y1, x2, y2 = crop_op.get_params_dependent_on_data({"shape": (H, W, C)}, {})["crop_coords"]
            out = np.empty((T, *crop_op.size, C), np.uint8)
            interp = crop_op._get_interpolation_for_resize((y2 - y1, x2 - x1), "image")
            for t in range(T):
                _resize_into(frames[t][y1:y2, x1:x2], out[t], interp)  # the crop: a view of the decoded frame
            if flip_op is not None and flip_op.should_apply():
                flat = out.reshape(T * out.shape[1], out.shape[2], C)
                cv2.flip(flat, 1, dst=flat)  # (T*h, w, C) in place
            return out
        resize_op, crop_op = ops
        scale = resize_op.get_params_dependent_on_data({"shape": (H, W, C)}, {})["scale"]
        rh, rw = max(1, round(H * scale)), max(1, round(W * scale))
        ch, cw = crop_op.height, crop_op.width
        if rh < ch or rw < cw or C > 4:
            return None
        y1, x1 = (rh - ch) // 2, (rw - cw) // 2
        out = np.empty((T, ch, cw, C), np.uint8)
        if (rh, rw) == (H, W):
            for t in range(T):
                out[t] = frames[t][y1:y1 + ch, x1:x1 + cw]
            return out
        resized = np.empty((rh, rw, C), np.uint8)
        for t in range(T):
            _resize_into(frames[t], resized, resize_op.interpolation)
            out[t] = resized[y1:y1 + ch, x1:x1 + cw]
        return out

    def pop_flip(self) -> float:
        """Turn off the pipeline's horizontal flip and return its probability (0.0 if it has none): for
        ``data.augment_on=device``, where the datamodule flips on the device instead (flip commutes with the
        other ops, in distribution, so moving it to the end keeps the augmentation's distribution)."""
        p = 0.0
        for t in self.compose.transforms:
            if isinstance(t, A.HorizontalFlip):
                p, t.p = float(t.p), 0.0
        self._plan = _fast_plan(self.compose)
        return p

    def set_random_seed(self, seed: int) -> None:
        """Reseed the augmentation stream (call once per DataLoader worker, see ``seed_worker``).

        All sub-transforms share ONE numpy and one python generator seeded from ``seed``. (Ours:
        ``Compose.set_random_seed`` would give every sub-transform its own generator with the same seed, so
        e.g. the flip decision and the first crop draw would come from identical streams.)

        Args:
            seed: integer seed in ``[0, 2**32)``.
        """
        self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))


def _resize_into(src: np.ndarray, dst: np.ndarray, interpolation: int) -> None:
    """``cv2.resize`` of one frame ``src`` (H, W, C), a view, into ``dst`` (h, w, C) in place; a copy when the sizes
    are equal (albumentations returns the frame itself then)."""
    if src.shape[:2] == dst.shape[:2]:
        dst[:] = src
    else:
        cv2.resize(src, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=interpolation)


def _split_writes_in_place() -> bool:
    """Whether ``cv2.split(src, planes)`` fills the given contiguous numpy planes (checked once, on 2x2 pixels)."""
    src = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    dst = np.zeros((3, 2, 2), np.uint8)
    try:
        cv2.split(src, [dst[0], dst[1], dst[2]])
    except cv2.error:
        return False
    return bool(np.array_equal(dst, src.transpose(2, 0, 1)))


_SPLIT_IN_PLACE = _split_writes_in_place()


def channels_first(frames: np.ndarray) -> np.ndarray:
    """A clip in channels-first layout: ``(T, H, W, C)`` -> C-contiguous ``(T, C, H, W)``, same dtype and values.

    For uint8 clips with 1 to 4 channels one ``cv2.split`` per frame writes the planes straight into the output
    (OURS, for speed: 0.08 ms for a ``(16, 112, 112, 3)`` clip on the development machine against 0.25 ms for a
    transposing copy in torch or numpy); otherwise (or where this OpenCV build does not split in place) numpy's
    transposing copy.
    """
    T, H, W, C = frames.shape
    if not (_SPLIT_IN_PLACE and frames.dtype == np.uint8 and 1 <= C <= 4):
        return np.ascontiguousarray(frames.transpose(0, 3, 1, 2))
    out = np.empty((T, C, H, W), np.uint8)
    if C == 1:
        out[:, 0] = frames[..., 0]
        return out
    for t in range(T):
        cv2.split(frames[t], list(out[t]))  # (H, W, C) -> C contiguous (H, W) planes of out[t]
    return out


def _same_frames(frames: list | tuple) -> bool:
    """A non-empty list of uint8 ``(H, W, C)`` frames of one shape."""
    if not frames:
        return False
    first = frames[0]
    return (isinstance(first, np.ndarray) and first.dtype == np.uint8 and first.ndim == 3
            and all(isinstance(f, np.ndarray) and f.shape == first.shape and f.dtype == np.uint8 for f in frames))


def _fast_plan(compose: A.Compose) -> tuple[str, tuple] | None:
    """``("train", (RandomResizedCrop, flip or None))`` or ``("eval", (SmallestMaxSize, CenterCrop))`` when
    ``compose`` is exactly one of the two standard pipelines of :func:`build_clip_transform` with nothing else that
    could change the result (no bbox/keypoint processors, every op always applied except the flip), else None."""
    ops = list(compose.transforms)
    if getattr(compose, "processors", None) or any(not isinstance(t, A.BasicTransform) for t in ops):
        return None
    if (1 <= len(ops) <= 2 and type(ops[0]) is A.RandomResizedCrop and ops[0].p >= 1.0
            and (len(ops) == 1 or type(ops[1]) is _ClipHorizontalFlip)):
        return "train", (ops[0], ops[1] if len(ops) == 2 else None)
    if (len(ops) == 2 and type(ops[0]) is A.SmallestMaxSize and isinstance(ops[0].max_size, int)
            and ops[0].area_for_downscale is None and ops[0].p >= 1.0 and type(ops[1]) is A.CenterCrop
            and ops[1].p >= 1.0 and not ops[1].pad_if_needed):
        return "eval", (ops[0], ops[1])
    return None


class _ClipHorizontalFlip(A.HorizontalFlip):
    """``albumentations.HorizontalFlip`` whose clip (``images``) flip is one ``cv2.flip`` call (ours, for speed).

    albumentations 2.0.8 flips ``images`` as ``images[:, :, ::-1]`` made contiguous by numpy, a strided copy
    that took about 1.4 ms for a ``(16, 112, 112, 3)`` clip on the development machine; ``cv2.flip`` of the same
    pixels viewed as one ``(T * H, W, C)`` image takes about 0.04 ms. Same output, same random draw.
    """

    def apply_to_images(self, images: np.ndarray, **params) -> np.ndarray:
        """uint8 ``(T, H, W, C)`` (or ``(T, H, W)``) -> the same clip mirrored left-right, C-contiguous."""
        flat = np.ascontiguousarray(images).reshape(images.shape[0] * images.shape[1], *images.shape[2:])
        return cv2.flip(flat, 1).reshape(images.shape)  # (T*H, W, C) mirrored along W, back to (T, H, W, C)


def build_clip_transform(
    train: bool,
    size: int = 112,
    resize: int | None = None,
    crop_scale: tuple[float, float] = (0.8, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
    color_jitter: float = 0.0,
    rotate_limit: float = 0.0,
    seed: int | None = None,
) -> ClipTransform:
    """Build the train or eval clip transform.

    Train (standard video recognition augmentation; the defaults are ours):
        ``[SmallestMaxSize(resize)]`` -> ``RandomResizedCrop(size, crop_scale, crop_ratio)`` ->
        ``HorizontalFlip(hflip)`` (as ``_ClipHorizontalFlip``) -> ``[ColorJitter(color_jitter)]`` ->
        ``[Affine(rotate=+-rotate_limit)]``.
    Eval (deterministic):
        ``SmallestMaxSize(resize or size)`` -> ``CenterCrop(size)``. With ``resize=None`` the shorter side goes
        to ``size`` exactly, so a square face crop (DFEW/FERV39k/MAFW ``224x224``) is resized whole, never
        cut (ours; the ImageNet habit of ``resize = size / 0.875`` would crop into the face).

    Args:
        train: build the random train pipeline if True, the deterministic eval pipeline if False.
        size: output side length (pixels); frames come out ``size x size``.
        resize: shorter side (pixels) the frames are first resized to, keeping the aspect ratio. Train: no
            pre-resize when None (the crop is taken from the full-resolution frame). Eval: None means ``size``.
        crop_scale: train only: range of the crop area as a fraction of the (resized) frame area.
        crop_ratio: train only: range of the crop aspect ratio (width / height).
        hflip: train only: probability of a horizontal flip of the whole clip.
        color_jitter: train only: strength s of brightness, contrast and saturation jitter, each factor drawn
            from ``[max(0, 1 - s), 1 + s]``; hue is not jittered (ours: hue shifts make skin colour unnatural).
            0 disables it.
        rotate_limit: train only: rotation drawn from ``[-rotate_limit, rotate_limit]`` degrees, corners filled
            with black. 0 disables it.
        seed: seed of the augmentation stream; None = fresh OS entropy. Workers must still be reseeded
            (``seed_worker``): every forked worker inherits the same stream.

    Returns:
        The ``ClipTransform``: uint8 ``(T, H, W, C)`` -> uint8 ``(T, size, size, C)``.

    Raises:
        ValueError: ``size``/``resize`` < 1, probabilities outside ``[0, 1]``, bad crop ranges, negative
            jitter or rotation.
    """
    if size < 1 or (resize is not None and resize < 1):
        raise ValueError(f"size and resize must be >= 1 pixel, got size={size}, resize={resize}")
    if not 0.0 <= hflip <= 1.0:
        raise ValueError(f"hflip is a probability in [0, 1], got {hflip}")
    if not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
        raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1 (area fraction), got {crop_scale}")
    if not 0.0 < crop_ratio[0] <= crop_ratio[1]:
        raise ValueError(f"crop_ratio must satisfy 0 < low <= high (width / height), got {crop_ratio}")
    if color_jitter < 0 or rotate_limit < 0:
        raise ValueError(f"color_jitter and rotate_limit must be >= 0, got {color_jitter}, {rotate_limit}")

    ops: list[A.BasicTransform] = []
    if train:
        if resize is not None:
            ops.append(A.SmallestMaxSize(max_size=resize))
        ops.append(A.RandomResizedCrop(size=(size, size), scale=tuple(crop_scale), ratio=tuple(crop_ratio)))
        if hflip > 0:
            ops.append(_ClipHorizontalFlip(p=hflip))
        if color_jitter > 0:
            s = float(color_jitter)
            ops.append(A.ColorJitter(brightness=s, contrast=s, saturation=s, hue=0.0, p=1.0))
        if rotate_limit > 0:
            ops.append(A.Affine(rotate=(-rotate_limit, rotate_limit), fill=0, p=1.0))
    else:
        ops.append(A.SmallestMaxSize(max_size=resize if resize is not None else size))
        ops.append(A.CenterCrop(height=size, width=size))
    return ClipTransform(A.Compose(ops, seed=seed), size=size, seed=seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed the global generators and the dataset's own streams per worker.

    Seeds torch, ``random`` and numpy exactly as Lightning's ``pl_worker_init_function`` does (from
    ``torch.initial_seed()``, which differs per worker and per epoch for non-persistent workers, mixed with the
    worker id and the global rank), then calls ``dataset.reseed(torch.initial_seed() % 2**32)`` when the
    worker's dataset has a ``reseed(seed: int)`` method, so the albumentations stream (and the sampler's rng)
    differ across workers, epochs and ranks. Passing this function to the DataLoader replaces the one Lightning
    would add under ``seed_everything(workers=True)``. It also limits OpenCV to one thread per worker (ours: with its
    thread pool the train transform of a 16-frame 720p clip took 1.4 CPU ms instead of 0.9 on the development
    machine, and workers already use every core).

    Args:
        worker_id: index of the worker process in ``[0, num_workers)``.
    """
    pl_worker_init_function(worker_id)  # sets torch.initial_seed() to a per-(epoch, worker, rank) value
    cv2.setNumThreads(1)  # one thread per worker, as torch does in workers: OpenCV's pool would oversubscribe cores
    info = torch.utils.data.get_worker_info()
    reseed = getattr(info.dataset, "reseed", None) if info is not None else None
    if callable(reseed):
        reseed(torch.initial_seed() % 2**32)


# ------------------------------------------------------------------------------- flips on the device
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele, Lea, Flood, OOPSLA 2014) on uint64 arrays: a well-mixed hash of each value."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
        return z ^ (z >> np.uint64(31))


def flip_draws(index: np.ndarray, p: float, seed: int, epoch: int) -> np.ndarray:
    """Which clips to mirror: bool ``(B,)``, True with probability ``p`` independently per clip (OURS).

    The draw of a clip is a hash of ``(seed, epoch, sample index)`` mapped to a uniform number in [0, 1): it does
    not depend on the batch, the worker, the device or the process (DDP ranks agree; a resumed run draws the same).

    Args:
        index: int ``(B,)`` dataset indices of the clips.
        p: flip probability in [0, 1].
        seed, epoch: run seed and epoch.
    """
    key = _splitmix64(_splitmix64(np.asarray([seed], dtype=np.int64).astype(np.uint64)) ^ np.uint64(epoch))
    z = _splitmix64(np.asarray(index, dtype=np.int64).astype(np.uint64) ^ key)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53) < p


def hflip_clips(video: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the clips of ``video`` (``(B, ..., W)``, any dtype, any device) where ``flips`` (bool
    ``(B,)``) is True; the others unchanged."""
    flips = flips.to(video.device, non_blocking=True).view(-1, *([1] * (video.ndim - 1)))
    return torch.where(flips, video.flip(-1), video)
