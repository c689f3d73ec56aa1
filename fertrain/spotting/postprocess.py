"""Per-frame scores -> expression intervals: smoothing, thresholding or peak picking, merging, length limits.

Two ways to turn a score curve into intervals (``mode``):

* ``"threshold"``: runs of consecutive frames whose smoothed score is >= the threshold become intervals
  (frame-classification spotters such as FESNet's per-frame neutral/macro/micro output; the MEGC2020 baseline
  marks the frames whose MDMD feature exceeds its threshold, HeyingGithub/Baseline-project-for-MEGC2020_spotting,
  ``MDMD_codes/cmd.m``).
* ``"peaks"``: every local maximum above the threshold (``scipy.signal.find_peaks``, at least ``k`` frames apart)
  becomes ``[peak - k, peak + k]`` clipped to the video: SOFTNet's rule (genbing99/SoftNet-SpotME, ``training.py``,
  ``spotting``: ``find_peaks(height=threshold, distance=k)``, then ``[peak - k, peak + k]``), with ``k`` half the
  mean expression length of the training annotations (:func:`k_from_annotations`).

Then intervals closer than ``merge_gap`` frames are merged and intervals outside ``[min_len, max_len]`` frames
are dropped (counted in ``stats``). Threshold strings: ``"rel:P"`` = ``mean + P * (max - mean)`` of the smoothed
curve (Moilanen et al., ICPR 2014; the MEGC2020 baseline, ``cmd.m``: ``T = cmean + 0.01 p (cmax - cmean)``;
SOFTNet, ``training.py`` ``spotting``), ``"std:X"`` = ``mean + X * std``.

Per-type length limits (frames) for CAS(ME)^2 at 30 fps and SAMM-LV at 200 fps are in :data:`LENGTH_LIMITS`:
those of the MEGC2020 evaluation scripts (``MDMD_results/evaluation_all_p.py``: CAS(ME)^2 micro 7-16, macro >= 17;
SAMM micro 47-105, macro >= 106), which drop the other predictions before counting.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from fertrain.spotting.intervals import KINDS, Interval

#: (min_len, max_len) in frames per dataset and kind; ``None`` = no upper limit.
LENGTH_LIMITS: dict[str, dict[str, tuple[int, int | None]]] = {
    "casme2": {"micro": (7, 16), "macro": (17, None)},     # CAS(ME)^2, 30 fps
    "samm_lv": {"micro": (47, 105), "macro": (106, None)},  # SAMM long videos, 200 fps
}

#: Column of each kind in a (N, 3) per-frame score array (neutral, macro, micro).
SCORE_COLUMNS = {"neutral": 0, "macro": 1, "micro": 2}

_KEYS = ("mode", "smooth", "threshold", "min_len", "max_len", "merge_gap", "k", "peak_distance")


def smooth_scores(scores: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over ``window`` frames (``<= 1``: unchanged); edges average the frames present.

    Args:
        scores: float (N,) per-frame scores.
    Returns:
        float64 (N,).
    """
    x = np.asarray(scores, dtype=np.float64)
    if window <= 1 or x.size == 0:
        return x.copy()
    kernel = np.ones(int(window))
    num = np.convolve(x, kernel, mode="same")
    den = np.convolve(np.ones_like(x), kernel, mode="same")
    return num / den


def resolve_threshold(scores: np.ndarray, threshold: float | str) -> float:
    """A number, or ``"rel:P"`` -> ``mean + P (max - mean)`` (Moilanen; MEGC2020 baseline ``cmd.m``; SOFTNet),
    ``"std:X"`` -> mean + X std.

    Raises:
        ValueError: an unknown threshold string.
    """
    if isinstance(threshold, str):
        name, _, arg = threshold.partition(":")
        try:
            p = float(arg)
        except ValueError:
            raise ValueError(f"threshold {threshold!r}: expected a number, 'rel:P' or 'std:X'") from None
        if scores.size == 0:
            return float("inf")
        mean = float(scores.mean())
        if name == "rel":
            return mean + p * (float(scores.max()) - mean)
        if name == "std":
            return mean + p * float(scores.std())
        raise ValueError(f"threshold {threshold!r}: expected a number, 'rel:P' or 'std:X'")
    return float(threshold)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) of the runs of True in a boolean (N,) array."""
    if not mask.any():
        return []
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist()))


def merge_intervals(spans: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    """Merge inclusive spans that overlap or leave at most ``gap`` frames between them."""
    out: list[list[int]] = []
    for s, e in sorted(spans):
        if out and s - out[-1][1] - 1 <= gap:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def scores_to_intervals(scores: np.ndarray, kind: str, *, smooth: int = 1, threshold: float | str = 0.5,
                        min_len: int = 1, max_len: int | None = None, merge_gap: int = 0,
                        mode: str = "threshold", k: int | None = None, peak_distance: int | None = None,
                        stats: dict[str, int] | None = None) -> list[Interval]:
    """Intervals of one kind from a per-frame score curve.

    Args:
        scores: float (N,) per-frame scores of ``kind`` (higher = more likely inside an expression).
        kind: ``"macro"`` or ``"micro"``.
        smooth: moving-average window in frames (``<= 1``: none).
        threshold: a number, ``"rel:P"`` or ``"std:X"`` (see module doc), applied to the smoothed curve.
        min_len, max_len: keep intervals with ``min_len <= length <= max_len`` frames (``max_len=None``: no limit).
        merge_gap: merge intervals separated by at most this many frames (0: only touching/overlapping).
        mode: ``"threshold"`` (runs above threshold) or ``"peaks"`` (``[peak - k, peak + k]``).
        k: half-width in frames for ``mode="peaks"`` (required there), see :func:`k_from_annotations`.
        peak_distance: minimum distance between peaks in frames (default ``k``, as SOFTNet's ``find_peaks``).
        stats: if given, incremented with ``candidates``, ``too_short``, ``too_long``, ``kept``.
    Returns:
        Intervals sorted by onset; ``score`` = maximum smoothed score inside the interval.
    Raises:
        ValueError: scores not 1-D or not finite, unknown kind/mode, ``mode="peaks"`` without ``k >= 1``,
            negative ``merge_gap``/``min_len`` or ``max_len < min_len``.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"scores must be a 1-D per-frame array (N,), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"scores contain {int((~np.isfinite(x)).sum())} non-finite values")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if merge_gap < 0 or min_len < 1 or (max_len is not None and max_len < min_len):
        raise ValueError(f"bad length settings: merge_gap={merge_gap} (>= 0), min_len={min_len} (>= 1), "
                         f"max_len={max_len} (None or >= min_len)")
    n = x.size
    s = smooth_scores(x, int(smooth))
    thr = resolve_threshold(s, threshold)
    if mode == "threshold":
        spans = _runs(s >= thr)
    elif mode == "peaks":
        if k is None or int(k) < 1:
            raise ValueError(f"mode='peaks' needs k >= 1 (half the mean expression length, frames), got {k!r}")
        from scipy.signal import find_peaks

        k = int(k)
        peaks, _ = find_peaks(s, height=thr, distance=max(1, int(peak_distance or k)))
        spans = [(max(0, p - k), min(n - 1, p + k)) for p in peaks.tolist()]
    else:
        raise ValueError(f"mode must be 'threshold' or 'peaks', got {mode!r}")
    spans = merge_intervals(spans, int(merge_gap))
    out: list[Interval] = []
    counts = {"candidates": len(spans), "too_short": 0, "too_long": 0, "kept": 0}
    for a, b in spans:
        length = b - a + 1
        if length < min_len:
            counts["too_short"] += 1
        elif max_len is not None and length > max_len:
            counts["too_long"] += 1
        else:
            out.append(Interval(a, b, kind, float(s[a:b + 1].max())))
    counts["kept"] = len(out)
    if stats is not None:
        for key, v in counts.items():
            stats[key] = stats.get(key, 0) + v
    return out


def spot_video(frame_scores: np.ndarray, cfg: Mapping[str, Any]) -> list[Interval]:
    """Macro and micro intervals of one video from (N, 3) per-frame scores (columns neutral, macro, micro).

    ``cfg`` holds :func:`scores_to_intervals` keywords shared by both kinds, overridden per kind by the
    ``cfg["macro"]`` / ``cfg["micro"]`` sub-mappings, e.g.
    ``{"smooth": 5, "threshold": 0.5, "macro": {"min_len": 17}, "micro": {"min_len": 7, "max_len": 16}}``.
    A kind whose sub-mapping is ``None`` or has ``enabled: false`` is not spotted. An optional
    ``cfg["stats"]`` dict collects the drop counts per kind (``stats[kind]``).

    Returns:
        Intervals of both kinds, sorted by (onset, kind).
    Raises:
        ValueError: ``frame_scores`` not (N, 3); unknown keys in ``cfg`` (named).
    """
    arr = np.asarray(frame_scores)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"frame_scores must be (N, 3) neutral/macro/micro per frame, got shape {arr.shape}")
    allowed = set(_KEYS) | set(KINDS) | {"stats"}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(f"spotting post-processing config: unknown keys {unknown} (allowed {sorted(allowed)})")
    shared = {key: cfg[key] for key in _KEYS if key in cfg}
    stats = cfg.get("stats")
    out: list[Interval] = []
    for kind in KINDS:
        sub = cfg.get(kind, {})
        if sub is None or (isinstance(sub, Mapping) and sub.get("enabled", True) is False):
            continue
        sub = dict(sub)
        sub.pop("enabled", None)
        bad = sorted(set(sub) - set(_KEYS))
        if bad:
            raise ValueError(f"spotting post-processing config [{kind}]: unknown keys {bad} (allowed {list(_KEYS)})")
        kwargs = {**shared, **sub}
        kind_stats = stats.setdefault(kind, {}) if isinstance(stats, dict) else None
        out += scores_to_intervals(arr[:, SCORE_COLUMNS[kind]], kind, stats=kind_stats, **kwargs)
    return sorted(out, key=lambda iv: (iv.onset, iv.kind))


def k_from_annotations(intervals: Iterable[Interval], kind: str | None = None, rounding: str = "floor") -> int:
    """``k`` = half the mean expression length in frames, at least 1.

    ``rounding="floor"`` (default) is SOFTNet's ``cal_k`` (genbing99/SoftNet-SpotME, ``load_label.py``:
    ``N = mean(offset - onset)``, ``k = int((N + 1) / 2)``, i.e. the floor of half the mean inclusive length);
    ``"round"`` rounds to nearest (fertrain before; ours). They differ where the half length has a fraction >= .5:
    on the public ground truth (MEGC2020's ``all_Info.txt``) CAS(ME)^2 micro gives 6 (floor) vs 7 (round), SAMM-LV
    macro without its onset-0 rows 174 vs 175. The MEGC2020 baseline does not derive ``k`` from annotations: its
    MDMD uses fixed values (``MDMD_codes/cmd.m``: CAS(ME)^2 micro 12, macro 39; SAMM micro 80, macro 260).

    Compute it from the TRAINING annotations (per kind if ``kind`` is given), never from the test fold.

    Raises:
        ValueError: no interval (of that kind), or an unknown ``rounding``.
    """
    if rounding not in ("floor", "round"):
        raise ValueError(f"k_from_annotations: rounding must be 'floor' (SOFTNet) or 'round', got {rounding!r}")
    lengths = [len(iv) for iv in intervals if kind is None or iv.kind == kind]
    if not lengths:
        raise ValueError(f"k_from_annotations: no annotated interval{'' if kind is None else ' of kind ' + kind}")
    half = float(np.mean(lengths)) / 2.0
    return max(1, int(half) if rounding == "floor" else int(round(half)))
