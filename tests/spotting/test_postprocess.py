"""Scores -> intervals: thresholding, peaks ± k, merging, length limits, k from annotations, (N, 3) videos."""

from __future__ import annotations

import numpy as np
import pytest

from fertrain.spotting.intervals import Interval
from fertrain.spotting.postprocess import (LENGTH_LIMITS, k_from_annotations, resolve_threshold,
                                           scores_to_intervals, smooth_scores, spot_video)


def spans(intervals: list[Interval]) -> list[tuple[int, int]]:
    return [(iv.onset, iv.offset) for iv in intervals]


def test_threshold_runs_merge_and_length_limits() -> None:
    s = np.zeros(40)
    s[5:10] = 1.0    # frames 5..9 (5 frames)
    s[12:14] = 1.0   # 12..13, gap of 2 frames (10, 11) after the first run
    s[30:31] = 1.0   # a single frame
    assert spans(scores_to_intervals(s, "micro", threshold=0.5)) == [(5, 9), (12, 13), (30, 30)]
    # merge_gap 2 joins 5..9 and 12..13 into 5..13; gap 1 does not
    assert spans(scores_to_intervals(s, "micro", threshold=0.5, merge_gap=2)) == [(5, 13), (30, 30)]
    assert spans(scores_to_intervals(s, "micro", threshold=0.5, merge_gap=1)) == [(5, 9), (12, 13), (30, 30)]
    stats: dict[str, int] = {}
    out = scores_to_intervals(s, "micro", threshold=0.5, min_len=3, max_len=4, stats=stats)
    assert out == []  # 5 frames > 4, 2 and 1 frames < 3
    assert stats == {"candidates": 3, "too_short": 2, "too_long": 1, "kept": 0}
    (iv,) = scores_to_intervals(s, "micro", threshold=0.5, min_len=3, max_len=5)
    assert (iv.onset, iv.offset, iv.kind, iv.score) == (5, 9, "micro", 1.0)


def test_smoothing_and_relative_threshold() -> None:
    x = np.array([0, 0, 3, 0, 0], dtype=float)
    # window 3, edges average only the frames present: [0, 1, 1, 1, 0]
    assert smooth_scores(x, 3).tolist() == pytest.approx([0, 1, 1, 1, 0])
    # rel:P = mean + P (max - mean): mean 0.6, max 3 -> 0.6 + 0.5 * 2.4 = 1.8
    assert resolve_threshold(x, "rel:0.5") == pytest.approx(1.8)
    assert resolve_threshold(x, "std:1") == pytest.approx(0.6 + x.std())
    with pytest.raises(ValueError, match="expected a number, 'rel:P' or 'std:X'"):
        resolve_threshold(x, "otsu")
    # smoothing first: the single spike becomes a 3-frame run above 0.9
    assert spans(scores_to_intervals(x, "macro", smooth=3, threshold=0.9)) == [(1, 3)]


def test_peaks_plus_minus_k_clipped_to_the_video() -> None:
    s = np.zeros(50)
    s[3], s[25], s[27] = 1.0, 0.8, 0.9
    # peaks at 3 and 27 (25 is within distance k=4 of the higher 27); [3-4, 3+4] clipped to [0, 7]
    out = scores_to_intervals(s, "macro", mode="peaks", k=4, threshold=0.5)
    assert spans(out) == [(0, 7), (23, 31)]
    with pytest.raises(ValueError, match="needs k >= 1"):
        scores_to_intervals(s, "macro", mode="peaks", threshold=0.5)


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match=r"1-D per-frame array \(N,\), got shape \(2, 2\)"):
        scores_to_intervals(np.zeros((2, 2)), "macro")
    with pytest.raises(ValueError, match="non-finite"):
        scores_to_intervals(np.array([0.0, np.nan]), "macro")
    with pytest.raises(ValueError, match="kind must be one of"):
        scores_to_intervals(np.zeros(3), "smile")


def test_spot_video_per_kind_settings() -> None:
    n = 100
    scores = np.zeros((n, 3))
    scores[:, 0] = 1.0
    scores[10:40, 1] = 0.9   # macro, 30 frames
    scores[60:70, 2] = 0.8   # micro, 10 frames
    scores[80:82, 2] = 0.8   # micro, 2 frames: below micro min_len 7 at 30 fps
    lim = LENGTH_LIMITS["casme2"]
    stats: dict = {}
    cfg = {"threshold": 0.5, "stats": stats,
           "macro": {"min_len": lim["macro"][0], "max_len": lim["macro"][1]},
           "micro": {"min_len": lim["micro"][0], "max_len": lim["micro"][1]}}
    out = spot_video(scores, cfg)
    assert [(iv.onset, iv.offset, iv.kind) for iv in out] == [(10, 39, "macro"), (60, 69, "micro")]
    assert stats["micro"]["too_short"] == 1 and stats["macro"]["kept"] == 1
    assert spot_video(scores, {"threshold": 0.5, "micro": {"enabled": False}})[0].kind == "macro"
    assert len(spot_video(scores, {"threshold": 0.5, "micro": {"enabled": False}})) == 1
    with pytest.raises(ValueError, match=r"unknown keys \['tresh'\]"):
        spot_video(scores, {"tresh": 0.5})
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        spot_video(scores[:, :2], {})


def test_k_from_annotations() -> None:
    ivs = [Interval(0, 9, "micro"), Interval(0, 13, "micro"), Interval(0, 99, "macro")]
    # micro lengths 10 and 14 -> mean 12 -> k 6; macro 100 -> 50; all: mean 124/3 = 41.33 -> 20.67 -> floor 20
    # (SOFTNet's cal_k: int((mean(offset - onset) + 1) / 2) = int(20.67) = 20), rounded 21
    assert k_from_annotations(ivs, kind="micro") == 6
    assert k_from_annotations(ivs, kind="macro") == 50
    assert k_from_annotations(ivs) == 20
    assert k_from_annotations(ivs, rounding="round") == 21
    # SOFTNet's formula on the same intervals (offset - onset are 9, 13, 99)
    assert k_from_annotations(ivs) == int((sum(iv.offset - iv.onset for iv in ivs) / 3 + 1) / 2)
    with pytest.raises(ValueError, match="no annotated interval of kind micro"):
        k_from_annotations([Interval(0, 9, "macro")], kind="micro")
