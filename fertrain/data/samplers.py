"""Temporal samplers: *when* to sample a clip from a segment of ``num_frames`` frames.

Pure index arithmetic, no I/O. Every sampler meets the ``FrameSampler`` protocol of
``fertrain.data.records``: ``sampler(num_frames, train, rng)`` returns int64 frame indices of shape
``(clip_len,)``, non-decreasing, with values in ``[0, num_frames - 1]`` relative to the segment start
(the dataset adds ``ClipRecord.start_frame``). At test time (``train=False``) the output depends on
``num_frames`` only; in training it is drawn from ``rng``.

Short segments (fewer frames than a sampler spans) are never an error and never dropped: each sampler
documents its padding rule (repeat the last frame, or repeat frames evenly). ``num_frames < 1`` raises
``ValueError``.

Samplers:
    - ``SegmentSampler``: TSN segments (Wang et al., "Temporal Segment Networks: Towards Good Practices
      for Deep Action Recognition", ECCV 2016, sec. 3.1), ``num_segments x frames_per_segment``
      (e.g. 8x2 or 16x1).
    - ``UniformSampler``: ``clip_len`` frames evenly spaced over the whole segment.
    - ``DenseSampler``: one window of ``clip_len`` frames ``frame_stride`` apart (C3D/I3D-style clips).
"""

from __future__ import annotations

import numpy as np

__all__ = ["DenseSampler", "SegmentSampler", "UniformSampler"]


def _check_positive_int(name: str, value: int) -> int:
    """Return ``value`` if it is an int >= 1, else raise ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_call(num_frames: int, train: bool, rng: np.random.Generator | None) -> int:
    """Validate the arguments of a sampler call; return ``num_frames`` as int."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)):
        raise ValueError(f"num_frames must be an integer number of frames, got {num_frames!r}")
    if num_frames < 1:
        raise ValueError(
            f"num_frames must be >= 1 to sample a clip, got {num_frames} (empty segment or video: "
            "check the record's frame count)"
        )
    if train and not isinstance(rng, np.random.Generator):
        raise ValueError(f"train=True needs rng to be a numpy.random.Generator, got {type(rng).__name__}")
    return int(num_frames)


def _finish(indices: np.ndarray, num_frames: int) -> np.ndarray:
    """Clamp to ``[0, num_frames - 1]`` (repeats the last frame past the end) and return int64."""
    return np.clip(indices, 0, num_frames - 1).astype(np.int64)


class SegmentSampler:
    """TSN segment sampling: one snippet of consecutive frames per equal-length segment.

    Source: Wang et al., "Temporal Segment Networks", ECCV 2016, sec. 3.1 (sparse snippet sampling, one
    snippet per segment; random in training). The test rule (centre of each segment) follows the common
    TSN implementations; the exact arithmetic below is ours.

    Definition. A snippet is ``frames_per_segment`` frames spaced by ``frame_stride``; it spans
    ``span = (frames_per_segment - 1) * frame_stride + 1`` frames. The ``L = num_frames - span + 1``
    valid snippet starts are split into ``num_segments`` equal segments of (real-valued) length
    ``L / num_segments``; segment ``k`` covers starts ``[k L / K, (k + 1) L / K)``. The start of snippet
    ``k`` is ``floor(k L / K + u L / K)`` with ``u ~ U[0, 1)`` in training and ``u = 0.5`` at test
    (the segment centre). Example: ``SegmentSampler(4)`` on 40 frames at test gives ``[5, 15, 25, 35]``.

    Padding rule for short videos (ours): if the video is shorter than one snippet (``L < 1``) every
    snippet starts at frame 0 and indices past the end are clamped, so the last frame is repeated. If
    segments are shorter than a snippet, snippets overlap; the indices are then sorted so the clip stays in
    temporal order (snippets interleave instead of repeating out of order).

    Attributes:
        clip_len: ``num_segments * frames_per_segment`` (frames per clip, T).
    """

    def __init__(self, num_segments: int, frames_per_segment: int = 1, frame_stride: int = 1) -> None:
        """Build the sampler.

        Args:
            num_segments: K, number of equal segments (one snippet each).
            frames_per_segment: consecutive frames per snippet (frames).
            frame_stride: spacing between the frames of a snippet (frames); 1 = adjacent frames.

        Raises:
            ValueError: an argument is not an integer >= 1.
        """
        self.num_segments = _check_positive_int("num_segments", num_segments)
        self.frames_per_segment = _check_positive_int("frames_per_segment", frames_per_segment)
        self.frame_stride = _check_positive_int("frame_stride", frame_stride)
        self.clip_len = self.num_segments * self.frames_per_segment

    def __repr__(self) -> str:
        return (
            f"SegmentSampler(num_segments={self.num_segments}, frames_per_segment={self.frames_per_segment}, "
            f"frame_stride={self.frame_stride})"
        )

    def __call__(self, num_frames: int, train: bool, rng: np.random.Generator | None = None) -> np.ndarray:
        """Sample one clip.

        Args:
            num_frames: frames in the segment (N >= 1).
            train: random offset inside each segment if True, segment centre if False.
            rng: source of randomness; required when ``train`` is True, unused otherwise.

        Returns:
            int64 ``(clip_len,)``, non-decreasing, values in ``[0, N - 1]``; snippet-major order
            (``K`` snippets of ``frames_per_segment`` frames) unless snippets overlap (see class docstring).

        Raises:
            ValueError: ``num_frames < 1``, or ``train`` without a ``numpy.random.Generator``.
        """
        n = _check_call(num_frames, train, rng)
        k, f, s = self.num_segments, self.frames_per_segment, self.frame_stride
        span = (f - 1) * s + 1
        num_starts = max(n - span + 1, 1)  # L; 1 when the video is shorter than one snippet
        seg_len = num_starts / k
        offset = rng.random(k) if train else np.full(k, 0.5)
        starts = np.floor((np.arange(k) + offset) * seg_len).astype(np.int64)  # (K,)
        starts = np.minimum(starts, num_starts - 1)  # guards float rounding at the upper edge
        indices = (starts[:, None] + s * np.arange(f)[None, :]).reshape(-1)  # (K, F) -> (K*F,)
        return np.sort(_finish(indices, n))


class UniformSampler:
    """``clip_len`` frames evenly spaced over the whole segment, first to last frame.

    Definition (ours): grid positions ``p_k = k d`` with ``d = (N - 1) / (T - 1)`` for ``k = 0 .. T-1``
    (``np.linspace(0, N - 1, T)``), rounded half up. Training adds an independent jitter
    ``U[-d/2, d/2)`` to every position before rounding (each frame moves within its own interval, so the
    order is kept), then clamps to ``[0, N - 1]``. With ``T = 1`` the single frame is the centre
    ``(N - 1) / 2`` at test and uniform over the segment in training.

    Padding rule for short videos: when ``N < T`` the grid repeats frames evenly (nearest-neighbour
    temporal upsampling), e.g. ``N = 2, T = 4`` gives ``[0, 0, 1, 1]`` at test (positions 0, 1/3, 2/3, 1).

    Attributes:
        clip_len: T, frames per clip.
    """

    def __init__(self, clip_len: int) -> None:
        """Build the sampler.

        Args:
            clip_len: T, frames per clip.

        Raises:
            ValueError: ``clip_len`` is not an integer >= 1.
        """
        self.clip_len = _check_positive_int("clip_len", clip_len)

    def __repr__(self) -> str:
        return f"UniformSampler(clip_len={self.clip_len})"

    def __call__(self, num_frames: int, train: bool, rng: np.random.Generator | None = None) -> np.ndarray:
        """Sample one clip.

        Args:
            num_frames: frames in the segment (N >= 1).
            train: jitter each grid position within its interval if True, exact grid if False.
            rng: source of randomness; required when ``train`` is True, unused otherwise.

        Returns:
            int64 ``(clip_len,)``, non-decreasing, values in ``[0, N - 1]``.

        Raises:
            ValueError: ``num_frames < 1``, or ``train`` without a ``numpy.random.Generator``.
        """
        n = _check_call(num_frames, train, rng)
        t = self.clip_len
        if t == 1:
            pos = np.array([rng.uniform(0.0, n - 1) if train else (n - 1) / 2.0])
        else:
            step = (n - 1) / (t - 1)  # d, frames between grid points
            pos = np.arange(t) * step  # (T,)
            if train:
                pos = pos + (rng.random(t) - 0.5) * step
        return _finish(np.floor(pos + 0.5), n)  # round half up


class DenseSampler:
    """One window of ``clip_len`` frames spaced by ``frame_stride`` (a dense clip).

    Definition (ours): the window spans ``span = (T - 1) * frame_stride + 1`` frames; its start is
    uniform over ``[0, N - span]`` in training and ``(N - span) // 2`` (centred, rounded down) at test.

    Padding rule for short videos: when ``N < span`` the window starts at frame 0 and indices past the end
    are clamped, so the last frame is repeated (e.g. ``T = 4``, stride 1, ``N = 2`` gives ``[0, 1, 1, 1]``).

    Attributes:
        clip_len: T, frames per clip.
    """

    def __init__(self, clip_len: int, frame_stride: int = 1) -> None:
        """Build the sampler.

        Args:
            clip_len: T, frames per clip.
            frame_stride: spacing between sampled frames (frames); 1 = consecutive frames.

        Raises:
            ValueError: an argument is not an integer >= 1.
        """
        self.clip_len = _check_positive_int("clip_len", clip_len)
        self.frame_stride = _check_positive_int("frame_stride", frame_stride)

    def __repr__(self) -> str:
        return f"DenseSampler(clip_len={self.clip_len}, frame_stride={self.frame_stride})"

    def __call__(self, num_frames: int, train: bool, rng: np.random.Generator | None = None) -> np.ndarray:
        """Sample one clip.

        Args:
            num_frames: frames in the segment (N >= 1).
            train: random window start if True, centred window if False.
            rng: source of randomness; required when ``train`` is True, unused otherwise.

        Returns:
            int64 ``(clip_len,)``, non-decreasing, values in ``[0, N - 1]``.

        Raises:
            ValueError: ``num_frames < 1``, or ``train`` without a ``numpy.random.Generator``.
        """
        n = _check_call(num_frames, train, rng)
        span = (self.clip_len - 1) * self.frame_stride + 1
        slack = max(n - span, 0)  # possible start positions minus one
        start = int(rng.integers(0, slack + 1)) if train else slack // 2
        indices = start + self.frame_stride * np.arange(self.clip_len)
        return _finish(indices, n)
