"""Temporal samplers: *when* to sample a clip from a segment of ``num_frames`` frames.

Pure index arithmetic, no I/O. Every sampler meets the ``FrameSampler`` protocol of
``fertrain.data.records``: ``sampler(num_frames, train, rng)`` returns int64 frame indices of shape
``(clip_len,)``, non-decreasing (``CEFLNetSampler``: within each of its overlapping clips), with values in
``[0, num_frames - 1]`` relative to the segment start
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
    - ``CEFLNetSampler``: CEFLNet's overlapping clips (7 clips x 5 frames from a 75-frame window), clip-major.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CEFLNetSampler", "DenseSampler", "SegmentSampler", "UniformSampler"]


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


class CEFLNetSampler:
    """CEFLNet's clip sampling: overlapping clips from one fixed-length window, a few frames per clip.

    Source: Liu et al., "Clip-aware expressive feature learning for video-based facial expression recognition",
    Information Sciences 598 (2022), and the authors' public code (github.com/CVLab-Liuyuanyuan/CEFLNet,
    ``data/NewDataset.py``): a window of 75 frames starting at a random frame in ``[0, 29]`` in training and at
    frame 15 at test, split into 7 clips of 15 frames whose starts are 10 frames apart (clips overlap by 5 frames);
    from each clip 5 distinct random frames in training, every 3rd frame (``0, 3, 6, 9, 12``) at test.

    Definition. With ``span = clip_span``, clip ``c`` covers window positions ``[c * clip_stride,
    c * clip_stride + span)``. Its frames are the window positions ``c * clip_stride + o_j``, ``j = 0 ..
    frames_per_clip - 1``, where the offsets ``o_j`` are ``j * (span // frames_per_clip)`` at test (the official
    ``range(0, 15, 15 // 5)``) and ``frames_per_clip`` distinct values drawn without replacement from
    ``[0, span)`` in training, sorted (OURS: the official code keeps Python ``set`` order, which is ascending only
    for most draws; we keep every clip in temporal order). Window position ``q`` is frame ``start + q``.

    Window placement and padding rule for short videos (OURS; the official code assumes at least
    ``train_start_max + window`` frames and fails otherwise), for a segment of N frames:

    - ``N >= window``: the window fits. ``start`` is uniform over ``[0, min(train_start_max, N - window)]`` in
      training and ``min(test_start, N - window)`` at test, i.e. the official start, moved earlier only as far as
      needed for the window to end inside the video.
    - ``N < window``: the window is stretched over the whole video: position ``q`` reads frame
      ``floor(q * N / window)`` (nearest-lower temporal resampling: every frame is used, each repeated about
      ``window / N`` times, order kept), so the clips still cover the video from its start to its end, in order.
      Distinct training offsets may then read the same frame. This is the common case on DFEW: by the frame counts
      of its ``clip_224x224`` folders (median 70 frames, 12 to 847), 64.5% of the 11,697 single-labelled clips are
      shorter than 75 frames, 7.1% have 75 to 89 (start moved earlier at test) and 28.4% have 90 or more.

    Output order is clip-major (``num_clips`` clips of ``frames_per_clip`` frames, ``(C, F) -> (C * F,)``), the
    layout ``fertrain.models.ceflnet.CEFLNet`` expects. Overlapping clips make the whole index vector
    non-monotonic; each clip's ``frames_per_clip`` indices are non-decreasing.

    Example: ``CEFLNetSampler()(100, False)`` gives ``15 + 10 c + 3 j`` for clip ``c = 0..6``, frame ``j = 0..4``.

    Attributes:
        clip_len: ``num_clips * frames_per_clip`` (frames per sample, T; 35 by default).
    """

    def __init__(
        self,
        num_clips: int = 7,
        clip_span: int = 15,
        clip_stride: int = 10,
        frames_per_clip: int = 5,
        window: int = 75,
        train_start_max: int = 29,
        test_start: int = 15,
    ) -> None:
        """Build the sampler.

        Args:
            num_clips: clips per sample (7 in the paper).
            clip_span: frames covered by one clip (15).
            clip_stride: frames between the starts of consecutive clips (10).
            frames_per_clip: frames sampled from each clip (5); at most ``clip_span``.
            window: frames of the window the clips are cut from (75); at least
                ``(num_clips - 1) * clip_stride + clip_span``.
            train_start_max: last possible window start in training (frames; 29: start uniform in ``[0, 29]``).
            test_start: window start at test (frames; 15).

        Raises:
            ValueError: an argument is not an integer >= 1 (>= 0 for the two starts), ``frames_per_clip >
                clip_span``, or the clips do not fit in ``window``.
        """
        self.num_clips = _check_positive_int("num_clips", num_clips)
        self.clip_span = _check_positive_int("clip_span", clip_span)
        self.clip_stride = _check_positive_int("clip_stride", clip_stride)
        self.frames_per_clip = _check_positive_int("frames_per_clip", frames_per_clip)
        self.window = _check_positive_int("window", window)
        for name, value in (("train_start_max", train_start_max), ("test_start", test_start)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0 (frames), got {value!r}")
        self.train_start_max, self.test_start = int(train_start_max), int(test_start)
        if self.frames_per_clip > self.clip_span:
            raise ValueError(
                f"frames_per_clip ({frames_per_clip}) must be <= clip_span ({clip_span}): a clip's frames are distinct"
            )
        needed = (self.num_clips - 1) * self.clip_stride + self.clip_span
        if self.window < needed:
            raise ValueError(
                f"window ({window} frames) is shorter than the clips it holds: (num_clips - 1) * clip_stride + "
                f"clip_span = ({num_clips} - 1) * {clip_stride} + {clip_span} = {needed} frames"
            )
        self.clip_len = self.num_clips * self.frames_per_clip

    def __repr__(self) -> str:
        return (
            f"CEFLNetSampler(num_clips={self.num_clips}, clip_span={self.clip_span}, clip_stride={self.clip_stride}, "
            f"frames_per_clip={self.frames_per_clip}, window={self.window}, "
            f"train_start_max={self.train_start_max}, test_start={self.test_start})"
        )

    def __call__(self, num_frames: int, train: bool, rng: np.random.Generator | None = None) -> np.ndarray:
        """Sample one clip-major stack of clips.

        Args:
            num_frames: frames in the segment (N >= 1).
            train: random window start and random distinct frames per clip if True; fixed ones if False.
            rng: source of randomness; required when ``train`` is True, unused otherwise.

        Returns:
            int64 ``(num_clips * frames_per_clip,)``, values in ``[0, N - 1]``, clip-major; non-decreasing within
            each clip.

        Raises:
            ValueError: ``num_frames < 1``, or ``train`` without a ``numpy.random.Generator``.
        """
        n = _check_call(num_frames, train, rng)
        c, f, span = self.num_clips, self.frames_per_clip, self.clip_span
        if train:
            offsets = np.stack([np.sort(rng.choice(span, size=f, replace=False)) for _ in range(c)])  # (C, F)
        else:
            offsets = np.tile(np.arange(f) * (span // f), (c, 1))  # (C, F)
        positions = np.arange(c)[:, None] * self.clip_stride + offsets  # (C, F), window positions
        if n >= self.window:
            last_start = n - self.window  # latest start that keeps the window inside the video
            start = int(rng.integers(0, min(self.train_start_max, last_start) + 1)) if train else min(
                self.test_start, last_start
            )
            indices = start + positions
        else:
            indices = (positions * n) // self.window  # stretch the window over the N frames
        return _finish(indices.reshape(-1), n)  # (C * F,)
