"""MEGC spotting F1: hand-computed TP/FP/FN on the edge cases of the MEGC2020 rule and the one-to-one variant."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from fertrain.metrics.spotting import SpottingF1, prf
from fertrain.spotting.intervals import Interval, iou


def M(a: int, b: int) -> Interval:
    return Interval(a, b, "macro")


def m(a: int, b: int) -> Interval:
    return Interval(a, b, "micro")


def counts(metric: SpottingF1, kind: str) -> tuple[int, int, int]:
    out = metric.compute()
    return int(out[f"{kind}/tp"]), int(out[f"{kind}/fp"]), int(out[f"{kind}/fn"])


def test_iou_counts_frames_inclusively() -> None:
    assert len(M(10, 19)) == 10
    assert iou(M(10, 19), M(10, 19)) == 1.0
    # [10,19] vs [15,24]: intersection 15..19 = 5 frames, union 10..24 = 15 -> 1/3
    assert iou(M(10, 19), M(15, 24)) == pytest.approx(1 / 3)
    assert iou(M(0, 4), M(5, 9)) == 0.0  # touching, no shared frame
    assert iou(M(3, 3), M(3, 3)) == 1.0  # one-frame intervals
    with pytest.raises(ValueError, match="offset 4 < onset 5"):
        Interval(5, 4, "macro")
    with pytest.raises(ValueError, match="kind must be one of"):
        Interval(0, 4, "smile")


def test_several_predictions_on_one_ground_truth() -> None:
    # GT [10,29] (20 frames); preds [10,29] IoU 1, [12,29] IoU 18/20, [0,9] IoU 0 -> one TP, two FP, no FN
    metric = SpottingF1()
    metric.update([M(10, 29), M(12, 29), M(0, 9)], [M(10, 29)], "v1")
    assert counts(metric, "macro") == (1, 2, 0)
    out = metric.compute()
    # P = 1/3, R = 1, F1 = 2 * (1/3) / (4/3) = 0.5
    assert out["macro/precision"] == pytest.approx(1 / 3) and out["macro/recall"] == 1.0
    assert out["macro/f1"] == pytest.approx(0.5)


def test_one_prediction_on_two_overlapping_ground_truths() -> None:
    # GT [0,9] and [2,11]; pred [1,10]: IoU 9/11 with both (>= 0.5)
    preds, gts = [M(1, 10)], [M(0, 9), M(2, 11)]
    assert iou(preds[0], gts[0]) == pytest.approx(9 / 11) and iou(preds[0], gts[1]) == pytest.approx(9 / 11)
    found = SpottingF1()
    found.update(preds, gts, "v")
    # MEGC2020 found rule: both GTs found -> TP 2, FN 0; FP = 1 - 2 = -1 clamped to 0 (our choice)
    assert counts(found, "macro") == (2, 0, 0)
    strict = SpottingF1(one_to_one=True)
    strict.update(preds, gts, "v")
    assert counts(strict, "macro") == (1, 0, 1)  # the prediction may match only one of them
    assert strict.compute()["macro/f1"] == pytest.approx(2 * 1 * 0.5 / 1.5)  # P 1, R 1/2 -> 2/3


def test_iou_boundary_off_by_one_frame() -> None:
    # GT [0,9] (10 frames). Pred [5,14]: inter 5 (5..9), union 15 -> 1/3 (miss).
    # Pred [0,19]: inter 10, union 20 -> exactly 0.5 -> found (>=). Pred [0,20]: inter 10, union 21 -> 0.476 miss.
    assert iou(M(0, 19), M(0, 9)) == 0.5 and iou(M(0, 20), M(0, 9)) == pytest.approx(10 / 21)
    hit, miss = SpottingF1(), SpottingF1()
    hit.update([M(0, 19)], [M(0, 9)], "v")
    miss.update([M(0, 20)], [M(0, 9)], "v")
    assert counts(hit, "macro") == (1, 0, 0)
    assert counts(miss, "macro") == (0, 1, 1)
    # an exclusive-offset IoU would give [0,19) vs [0,9): 9/19 < 0.5 -- frames must be inclusive
    strict = SpottingF1(iou_threshold=0.6)
    strict.update([M(0, 19)], [M(0, 9)], "v")
    assert counts(strict, "macro") == (0, 1, 1)


def test_video_without_ground_truth_and_pooling_over_videos() -> None:
    metric = SpottingF1()
    metric.update([M(0, 20), m(30, 37)], [], "no_gt")  # 1 macro FP, 1 micro FP
    metric.update([M(100, 150)], [M(100, 150), M(300, 340)], "v2")  # macro TP 1, FN 1
    metric.update([], [], "empty")  # counts nothing, but must not fail
    assert counts(metric, "macro") == (1, 1, 1) and counts(metric, "micro") == (0, 1, 0)
    out = metric.compute()
    # overall = summed counts: TP 1, FP 2, FN 1 -> P 1/3, R 1/2, F1 = 2*(1/6)/(5/6) = 0.4
    assert (out["overall/tp"], out["overall/fp"], out["overall/fn"]) == (1.0, 2.0, 1.0)
    assert out["overall/f1"] == pytest.approx(0.4)
    # micro: TP 0, FP 1, FN 0 -> zero denominator for recall -> 0 (documented), F1 0
    assert out["micro/recall"] == 0.0 and out["micro/f1"] == 0.0 and out["micro/precision"] == 0.0
    assert metric.videos == 3


def test_macro_and_micro_are_matched_separately() -> None:
    # same frames, different kinds: a micro prediction never finds a macro ground truth
    metric = SpottingF1()
    metric.update([m(10, 19)], [M(10, 19)], "v")
    assert counts(metric, "macro") == (0, 0, 1) and counts(metric, "micro") == (0, 1, 0)
    metric.update([m(40, 47), M(60, 90)], [m(40, 48), M(60, 95)], "w")
    # micro [40,47] vs [40,48]: 8/9 -> TP; macro [60,90] vs [60,95]: 31/36 -> TP
    assert counts(metric, "macro") == (1, 0, 1) and counts(metric, "micro") == (1, 1, 0)
    macro_only = SpottingF1(kinds=("macro",))
    with pytest.raises(ValueError, match="kind 'micro'"):
        macro_only.update([m(1, 8)], [], "v")


def test_one_to_one_maximum_matching_beats_greedy() -> None:
    # GT A [0,9], GT B [4,13]; pred P1 [2,11] (IoU 8/12 with A and B), P2 [0,8] (IoU 9/10 with A, 5/14 with B).
    # A greedy assignment of P1 to A would leave B unmatched; the maximum matching is P2-A, P1-B: TP 2.
    preds, gts = [M(2, 11), M(0, 8)], [M(0, 9), M(4, 13)]
    metric = SpottingF1(one_to_one=True)
    metric.update(preds, gts, "v")
    assert counts(metric, "macro") == (2, 0, 0)
    # found rule: both GTs found -> TP 2, FP 2 - 2 = 0
    found = SpottingF1()
    found.update(preds, gts, "v")
    assert counts(found, "macro") == (2, 0, 0)
    # three predictions on one GT under one-to-one: 1 TP, 2 FP (same as the found rule here)
    metric = SpottingF1(one_to_one=True)
    metric.update([M(10, 29), M(12, 29), M(11, 28)], [M(10, 29)], "v")
    assert counts(metric, "macro") == (1, 2, 0)


def test_prf_zero_denominators_and_state_is_concatenated_rows() -> None:
    assert prf(0, 0, 0) == (0.0, 0.0, 0.0)
    assert prf(3, 1, 2) == pytest.approx((0.75, 0.6, 2 * 0.45 / 1.35))
    # DDP contract: one long row per (video, kind), concatenated across ranks; pooled counts = one process's counts
    a, b, single = SpottingF1(), SpottingF1(), SpottingF1()
    assert "cat" in str(a._reductions["rows"])
    videos = [([M(0, 9)], [M(0, 9), M(20, 29)], "v1"), ([m(3, 9), M(40, 49)], [m(3, 9)], "v2")]
    a.update(*videos[0])
    b.update(*videos[1])
    for v in videos:
        single.update(*v)
    merged = SpottingF1()
    merged.rows = torch.cat([torch.cat(a.rows), torch.cat(b.rows)])  # what dim_zero_cat leaves after a sync
    merged._update_count = 2
    assert merged.compute() == single.compute()
    assert counts(single, "macro") == (1, 1, 1) and counts(single, "micro") == (1, 0, 0)
    metric = SpottingF1()
    metric.update([M(0, 9)], [M(0, 9)], "v")
    metric.reset()
    assert counts(metric, "macro") == (0, 0, 0) and metric.result_log() == [] and metric.details == []


def test_result_log_rows_and_csv(tmp_path: Path) -> None:
    metric = SpottingF1()
    metric.update([M(10, 29), M(12, 29), M(50, 60)], [M(10, 29), M(80, 99)], "vid")
    rows = metric.result_log()
    by = sorted((r["result"], r["gt_onset"], r["pred_onset"]) for r in rows)
    # TP: GT 10 with pred 10 (IoU 1); FN: GT 80; FP: preds 12 (duplicate) and 50
    assert by == [("FN", 80, ""), ("FP", "", 12), ("FP", "", 50), ("TP", 10, 10)]
    assert counts(metric, "macro") == (1, 2, 1)
    path = metric.write_result_log(tmp_path / "log" / "result_log.csv")
    read = list(csv.DictReader(path.open()))
    assert len(read) == 4 and read[0].keys() >= {"video", "gt_onset", "gt_offset", "pred_onset", "pred_offset",
                                                  "result"}
    # per-video figures from forward() count only that video
    one = metric(([M(0, 9)]), [M(0, 9)], "vid2")
    assert one["macro/tp"] == 1.0 and one["macro/fp"] == 0.0
    assert metric.compute()["macro/tp"] == 2.0
