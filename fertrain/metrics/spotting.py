"""MEGC spotting F1 over videos and LOSO folds, with TP/FP/FN and a MEGC-style result log.

Definition (MEGC2020, "found" rule; the default): per video and per kind, a ground-truth interval is *found* if a
predicted interval of the same kind has IoU >= ``iou_threshold`` (0.5; frames counted inclusively, see
:func:`fertrain.spotting.intervals.iou`). ``TP`` = ground truths found, ``FP`` = predictions - TP, ``FN`` =
ground truths - TP. Counts are summed over all videos (also videos without a ground truth of that kind, whose
predictions are all FP) before ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)`` and
``F1 = 2 P R / (P + R)``; ``overall`` uses the summed macro + micro counts. A zero denominator gives 0.

Our choice: with the found rule one prediction can find two overlapping ground truths, and the literal
``predictions - TP`` would then be negative; FP is clamped at 0 per video and kind (documented edge case,
tested). ``one_to_one=True`` gives the strict variant: each prediction matches at most one ground truth and
vice versa, maximum bipartite matching (``scipy.optimize.linear_sum_assignment`` on the pairs with IoU >= the
threshold, maximising the number of matches), and ``FP = predictions - TP`` exactly.

What published evaluators do (read in their public code; they differ exactly on the edge cases tested in
``tests/spotting/test_metric.py``):

* MEGC2019/2020 definition (Li et al., "Spotting micro-expressions on long videos sequences", FG 2019,
  arXiv:1812.10306; He et al., MEGC2020 baseline, FG 2020): TP by overlap IoU >= 0.5, F1 from counts summed
  over the whole database (as summarised in the abstract; how the papers treat duplicates was not checked here).
  This module's default is the "ground truth found" reading given in the project's issue.
* SOFTNet, MEGC2021 (github.com/genbing99/SoftNet-SpotME, ``Utils/mean_average_precision``, a vendored copy of
  the MIT ``mean_average_precision`` package, ``mpolicy="greedy"``): PASCAL-VOC greedy
  one-to-one matching: predictions in descending score, each compared with its best-IoU ground truth only; TP if
  IoU >= 0.5 and that ground truth is still free, else FP; FN = ground truths - TP. Intervals as 1-pixel-high
  boxes with the VOC "+1", i.e. frames inclusive.
* STRS metric, MEGC2023 (github.com/genbing99/STRS-Metric, ``strs_metric.py``; Liong et al., Signal Processing:
  Image Communication 110, 2023): predictions in file order, each takes every still-free ground truth with
  IoU >= 0.5 (no break: one prediction can make two TPs), unmatched predictions are FP; videos are taken from the
  ground-truth file, so predictions on videos without ground truth are not counted.
* A public MEGC-style ``spotting_evaluation`` (``cal_TP``; peaks of ``mean + P (max - mean)``, ``±K``; found via
  code search, repository not identified): TP = ground truths with >= 1 prediction of IoU >= 0.5, FP = predictions
  minus all (GT, prediction) pairs with IoU >= 0.5, so duplicate predictions on one ground truth are *not* FP.
* LSSNet, MTSN and the MEGC2022 organisers' evaluator: code not found with the available search tools.

``one_to_one=True`` agrees with SOFTNet wherever the greedy order does not matter; where it does, the maximum
matching gives at least as many TP as any greedy order (test: ``test_one_to_one_maximum_matching_beats_greedy``).

DDP: the state is three summed count tensors (TP, FP, FN per kind, ``dist_reduce_fx="sum"``), so ``compute()``
after DDP sync pools all ranks, folds and videos. The result log (:meth:`SpottingF1.result_log`) is a plain
Python list and **rank-local**: each rank logs only the videos it saw (write one file per rank, or gather).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torchmetrics

from fertrain.spotting.intervals import KINDS, Interval, iou

LOG_FIELDS = ("video", "kind", "gt_onset", "gt_offset", "pred_onset", "pred_offset", "iou", "result")


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1 from counts; each is 0.0 where its denominator is 0 (our choice, documented)."""
    p = tp / (tp + fp) if tp + fp > 0 else 0.0
    r = tp / (tp + fn) if tp + fn > 0 else 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f


def match_video(preds: Sequence[Interval], targets: Sequence[Interval], iou_threshold: float = 0.5,
                one_to_one: bool = False) -> tuple[int, int, int, list[tuple[int | None, int | None, float]]]:
    """Match the predictions and ground truths of ONE video and ONE kind.

    Returns:
        ``(tp, fp, fn, pairs)``; ``pairs`` lists ``(gt_index, pred_index, iou)`` for every match (found rule:
        each found GT with its best-IoU prediction), then ``(gt_index, None, best_iou)`` for missed GTs and
        ``(None, pred_index, best_iou)`` for predictions that matched no GT.
    """
    n_gt, n_pred = len(targets), len(preds)
    m = np.array([[iou(g, p) for p in preds] for g in targets], dtype=np.float64).reshape(n_gt, n_pred)
    ok = m >= iou_threshold
    pairs: list[tuple[int | None, int | None, float]] = []
    if one_to_one:
        if ok.any():
            from scipy.optimize import linear_sum_assignment

            # maximise the number of matches; IoU breaks ties (weight < 1 so it never trades a match away)
            weight = np.where(ok, 1.0 + m * 1e-3, 0.0)
            rows, cols = linear_sum_assignment(weight, maximize=True)
            matched = [(int(r), int(c)) for r, c in zip(rows, cols) if ok[r, c]]
        else:
            matched = []
        tp = len(matched)
        fp = n_pred - tp
        pairs += [(g, p, float(m[g, p])) for g, p in matched]
        used_pred = {p for _, p in matched}
        found = {g for g, _ in matched}
    else:
        found = {g for g in range(n_gt) if ok[g].any()}
        tp = len(found)
        fp = max(0, n_pred - tp)  # our choice: clamp (one prediction may find two overlapping GTs)
        pairs += [(g, int(np.argmax(m[g])), float(m[g].max())) for g in sorted(found)]
        used_pred = {int(np.argmax(m[g])) for g in found}  # other predictions get FP rows (duplicates)
    fn = n_gt - tp
    pairs += [(g, None, float(m[g].max()) if n_pred else 0.0) for g in range(n_gt) if g not in found]
    pairs += [(None, p, float(m[:, p].max()) if n_gt else 0.0) for p in range(n_pred) if p not in used_pred]
    return tp, fp, fn, pairs


class SpottingF1(torchmetrics.Metric):
    """MEGC spotting F1 (macro, micro, overall) from TP/FP/FN summed over videos, folds and DDP ranks.

    Args:
        iou_threshold: a ground truth is found by a prediction with IoU >= this (MEGC: 0.5).
        one_to_one: strict one-to-one matching instead of the MEGC2020 found rule (module doc).
        kinds: the expression kinds counted (intervals of other kinds are an error).

    ``update(preds, targets, video_id)`` takes the intervals of ONE video. ``compute()`` returns floats
    ``"{macro,micro,overall}/{tp,fp,fn,precision,recall,f1}"`` (counts as floats of whole numbers).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, iou_threshold: float = 0.5, one_to_one: bool = False,
                 kinds: Sequence[str] = KINDS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {list(kinds)}")
        self.iou_threshold = float(iou_threshold)
        self.one_to_one = bool(one_to_one)
        self.kinds = tuple(kinds)
        for name in ("tp", "fp", "fn"):
            self.add_state(name, default=torch.zeros(len(self.kinds), dtype=torch.long), dist_reduce_fx="sum")
        self._log: list[dict[str, Any]] = []
        self.videos: int = 0  # rank-local count of update() calls

    def update(self, preds: Sequence[Interval], targets: Sequence[Interval], video_id: str) -> None:
        """Add one video's predicted and ground-truth intervals (any order, both kinds mixed).

        Raises:
            ValueError: an element is not an :class:`Interval` or has a kind not in ``kinds``.
        """
        for name, items in (("preds", preds), ("targets", targets)):
            for i, iv in enumerate(items):
                if not isinstance(iv, Interval):
                    raise ValueError(f"video {video_id!r}: {name}[{i}] is {type(iv).__name__}, expected Interval")
                if iv.kind not in self.kinds:
                    raise ValueError(f"video {video_id!r}: {name}[{i}] has kind {iv.kind!r}; this metric counts "
                                     f"{list(self.kinds)}")
        self.videos += 1
        for ki, kind in enumerate(self.kinds):
            p = sorted((iv for iv in preds if iv.kind == kind), key=lambda iv: (iv.onset, iv.offset))
            g = sorted((iv for iv in targets if iv.kind == kind), key=lambda iv: (iv.onset, iv.offset))
            tp, fp, fn, pairs = match_video(p, g, self.iou_threshold, self.one_to_one)
            self.tp[ki] += tp
            self.fp[ki] += fp
            self.fn[ki] += fn
            for gi, pi, v in pairs:
                gt, pr = (g[gi] if gi is not None else None), (p[pi] if pi is not None else None)
                self._log.append({
                    "video": str(video_id), "kind": kind,
                    "gt_onset": "" if gt is None else gt.onset, "gt_offset": "" if gt is None else gt.offset,
                    "pred_onset": "" if pr is None else pr.onset, "pred_offset": "" if pr is None else pr.offset,
                    "iou": round(v, 4), "result": "TP" if gt is not None and pr is not None
                    else ("FN" if pr is None else "FP"),
                })

    def compute(self) -> dict[str, float]:
        """``{kind}/{tp,fp,fn,precision,recall,f1}`` for each kind and ``overall`` (summed counts)."""
        out: dict[str, float] = {}
        totals = [0, 0, 0]
        for ki, kind in enumerate(self.kinds):
            c = [int(self.tp[ki]), int(self.fp[ki]), int(self.fn[ki])]
            totals = [a + b for a, b in zip(totals, c)]
            out.update(_block(kind, *c))
        out.update(_block("overall", *totals))
        return out

    def forward(self, preds: Sequence[Interval], targets: Sequence[Interval], video_id: str) -> dict[str, float]:
        """Update with one video and return that video's own figures (counts of this video only)."""
        before = (self.tp.clone(), self.fp.clone(), self.fn.clone())
        self.update(preds, targets, video_id)
        out: dict[str, float] = {}
        totals = [0, 0, 0]
        for ki, kind in enumerate(self.kinds):
            c = [int(self.tp[ki] - before[0][ki]), int(self.fp[ki] - before[1][ki]), int(self.fn[ki] - before[2][ki])]
            totals = [a + b for a, b in zip(totals, c)]
            out.update(_block(kind, *c))
        out.update(_block("overall", *totals))
        return out

    def reset(self) -> None:
        super().reset()
        self._log = []
        self.videos = 0

    def result_log(self) -> list[dict[str, Any]]:
        """MEGC-style rows, rank-local: one per TP pair, missed GT (FN) and unmatched prediction (FP), with
        ``video, kind, gt_onset, gt_offset, pred_onset, pred_offset, iou, result`` (empty cell = none).

        Under the found rule each found GT is paired with its best-IoU prediction; every other prediction
        (also a duplicate on an already found GT) gets an ``FP`` row. The FP rows equal the FP count except
        when one prediction is the best match of several GTs and other predictions exist (then the clamped
        count ``max(0, predictions - TP)`` is lower than the rows).
        """
        return list(self._log)

    def write_result_log(self, path: str | Path) -> Path:
        """Write :meth:`result_log` as CSV (columns :data:`LOG_FIELDS`) atomically; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
            writer.writeheader()
            writer.writerows(self._log)
        tmp.replace(path)
        return path


def _block(name: str, tp: int, fp: int, fn: int) -> dict[str, float]:
    p, r, f = prf(tp, fp, fn)
    return {f"{name}/tp": float(tp), f"{name}/fp": float(fp), f"{name}/fn": float(fn),
            f"{name}/precision": p, f"{name}/recall": r, f"{name}/f1": f}
