"""Spotting F1 over videos and LOSO folds under a named evaluation protocol, with TP/FP/FN and a result log.

The counting rules (IoU form and threshold, matching, FP rule, videos scored, dummy predictions, ground-truth
policies) come from a protocol of :mod:`fertrain.spotting.protocols`: a preset that reproduces one public
evaluator (``fertrain``, ``one_to_one``, ``megc2020``, ``softnet``, ``strs``, ``auwgcn``), optionally with named
rules overridden. Each preset's docstring source names the evaluator's repository, file and function; the rules
side by side are in ``docs/spotting_protocols.md``.

Default (``protocol="fertrain"``, fertrain's own rule, ours): per video and kind, a ground-truth interval is
*found* if a predicted interval of the same kind has inclusive IoU >= 0.5 (:func:`fertrain.spotting.intervals.iou`);
``TP`` = ground truths found, ``FP = max(0, predictions - TP)`` per video and kind (clamped: one prediction may
find two overlapping ground truths), ``FN`` = ground truths - TP; every video counts (also those without a ground
truth of the kind, whose predictions are all FP). Counts are summed over all videos before
``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)`` and ``F1 = 2 P R / (P + R)``; ``overall`` uses the
summed macro + micro counts. A zero denominator gives 0. This is the "found" reading of MEGC2020's
``pred_clips_analysis`` with fertrain's IoU and clamp; ``protocol="megc2020"`` is the evaluator itself, quirks
included (one-frame intervals never match, FP not clamped, a video without a prediction file is skipped), with a
warning and the count ``quirk_changes`` where a quirk changed a count.

``one_to_one`` (``one_to_one=True``) is maximum bipartite matching. It is *not* SOFTNet's rule, even where the
greedy order does not matter: SOFTNet's ``check_box`` (mpolicy ``greedy``) lets each prediction try only its
best-IoU ground truth and never falls back to a second one (``softnet`` preset).

DDP: the state is one row per (video, kind) (``subject``, kind, TP, FP, FN, predictions, scored, quirk, dummy),
concatenated across ranks (``dist_reduce_fx="cat"``), so ``compute()`` after DDP sync pools all ranks, folds and
videos, including the subject rule of STRS. The result log (:meth:`SpottingF1.result_log`) and the per-video
details (:attr:`SpottingF1.details`, for plots) are plain Python lists and **rank-local**.
"""

from __future__ import annotations

import csv
import logging
import zlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torchmetrics

from fertrain.spotting.intervals import KINDS, Interval
from fertrain.spotting.protocols import (GT, KindResult, SpottingRules, UnitRow, aggregate, evaluate_video,
                                         evaluation_ground_truth, iou_inclusive, resolve_rules)

log = logging.getLogger(__name__)

LOG_FIELDS = ("video", "kind", "gt_onset", "gt_offset", "pred_onset", "pred_offset", "iou", "result")
_COLS = ("subject", "kind", "tp", "fp", "fn", "n_pred", "scored", "quirk", "dummy")


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1 from counts; each is 0.0 where its denominator is 0 (our choice, documented)."""
    p = tp / (tp + fp) if tp + fp > 0 else 0.0
    r = tp / (tp + fn) if tp + fn > 0 else 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f


def match_video(preds: Sequence[Interval], targets: Sequence[Interval], iou_threshold: float = 0.5,
                one_to_one: bool = False) -> tuple[int, int, int, list[tuple[int | None, int | None, float]]]:
    """Match the predictions and ground truths of ONE video and ONE kind under fertrain's rule (or maximum
    one-to-one matching).

    Returns:
        ``(tp, fp, fn, pairs)``; ``pairs`` lists ``(gt_index, pred_index, iou)`` for every match, then
        ``(gt_index, None, best_iou)`` for missed GTs and ``(None, pred_index, best_iou)`` for the other predictions.
    """
    rules = resolve_rules("one_to_one" if one_to_one else "fertrain", {"iou_threshold": float(iou_threshold)})
    kinds = sorted({iv.kind for iv in (*preds, *targets)}) or ["macro"]
    if len(kinds) > 1:
        raise ValueError(f"match_video takes one kind, got {kinds}")
    res = evaluate_video(rules, list(preds), [GT(t.onset, t.offset, t.kind) for t in targets], kinds)[kinds[0]]
    # evaluate_video orders predictions by onset: map back to the caller's indices
    index = {id(p): i for i, p in enumerate(preds)}
    order = [index[id(p)] for p in res.preds]
    return res.tp, res.fp, res.fn, [(g, None if p is None else order[p], v) for g, p, v in _pairs(res)]


def _pairs(res: KindResult) -> list[tuple[int | None, int | None, float]]:
    """``(gt, pred, iou)`` rows of a result: matches, missed ground truths, then non-TP predictions (IoU inclusive,
    for reading; the protocol's own IoU decided the match)."""
    out: list[tuple[int | None, int | None, float]] = []
    for g, p in enumerate(res.gt_pred):
        if p is not None:
            x, q = res.gts[g], res.preds[p]
            out.append((g, p, iou_inclusive(x.onset, x.offset, q.onset, q.offset)))
    out += [(g, None, max((iou_inclusive(res.gts[g].onset, res.gts[g].offset, q.onset, q.offset)
                           for q in res.preds), default=0.0)) for g, p in enumerate(res.gt_pred) if p is None]
    for p, q in enumerate(res.preds):
        if not res.pred_tp[p]:
            best = max((iou_inclusive(x.onset, x.offset, q.onset, q.offset) for x in res.gts), default=0.0)
            out.append((None, p, best))
    return out


def subject_code(subject: str) -> int:
    """A stable integer for a subject id (CRC-32), so that DDP ranks agree on it."""
    return zlib.crc32(str(subject).encode("utf-8"))


class SpottingF1(torchmetrics.Metric):
    """Spotting F1 (macro, micro, overall) under a named protocol, from TP/FP/FN summed over videos, folds and ranks.

    Args:
        iou_threshold: shortcut for ``rules={"iou_threshold": ...}`` (None: the protocol's, 0.5 for all presets).
        one_to_one: shortcut: True = the ``one_to_one`` preset (maximum matching) instead of ``protocol``.
        kinds: the expression kinds counted (intervals of other kinds are an error).
        protocol: a preset name of :data:`fertrain.spotting.protocols.PRESETS` or a ``SpottingRules``.
        rules: named rules overriding the preset's (:func:`fertrain.spotting.protocols.resolve_rules`).

    ``update(preds, targets, video_id, subject="")`` takes the intervals of ONE video (``preds=None``: the video
    has no prediction file, which only ``videos="with_prediction_file"`` treats differently from an empty list);
    :meth:`update_video` takes a ``SpottingVideo`` and applies the protocol's ground-truth policy. ``compute()``
    returns floats ``"{macro,micro,overall}/{tp,fp,fn,precision,recall,f1}"``, ``"{macro,micro}/videos"``
    (units scored) and, where the protocol has them, ``"{kind}/dummies"`` and ``"quirk_changes"``.

    Raises:
        ValueError: a bad protocol, rule, threshold or kind list (named).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, iou_threshold: float | None = None, one_to_one: bool | None = None,
                 kinds: Sequence[str] = KINDS, protocol: str | SpottingRules = "fertrain",
                 rules: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        overrides = dict(rules or {})
        if iou_threshold is not None:
            if not 0.0 < float(iou_threshold) <= 1.0:
                raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
            overrides["iou_threshold"] = float(iou_threshold)
        if one_to_one:
            protocol = "one_to_one"
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {list(kinds)}")
        self.rules = resolve_rules(protocol, overrides)
        self.iou_threshold = float(self.rules.iou_threshold)
        self.one_to_one = self.rules.matching == "maximum"
        self.kinds = tuple(kinds)
        self.add_state("rows", default=[], dist_reduce_fx="cat")
        self._log: list[dict[str, Any]] = []
        self.details: list[tuple[str, str, dict[str, KindResult]]] = []  # (video, subject, per-kind results)
        self.quirk_reasons: dict[str, int] = {}
        self.gt_policy_stats: dict[str, int] = {}
        self.videos: int = 0  # rank-local count of update() calls

    @property
    def protocol(self) -> str:
        """The protocol's name (preset name, plus the overridden rules)."""
        return self.rules.name

    def update(self, preds: Sequence[Interval] | None, targets: Sequence[Any], video_id: str,
               subject: str = "") -> None:
        """Add one video's predicted and ground-truth intervals (any order, both kinds mixed).

        Args:
            preds: predicted intervals (:class:`Interval`), or None for "no prediction file".
            targets: ground truths: :class:`Interval` or :class:`fertrain.spotting.protocols.GT` tuples.
            subject: the video's subject (used by ``videos="with_gt_in_predicted_subjects"``; default: one subject).

        Raises:
            ValueError: an element is not an Interval / GT or has a kind not in ``kinds``.
        """
        for name, items in (("preds", preds or ()), ("targets", targets)):
            for i, iv in enumerate(items):
                ok = isinstance(iv, Interval) if name == "preds" else isinstance(iv, (Interval, GT))
                if not ok:
                    raise ValueError(f"video {video_id!r}: {name}[{i}] is {type(iv).__name__}, expected "
                                     f"{'Interval' if name == 'preds' else 'Interval or GT'}")
                if iv.kind not in self.kinds:
                    raise ValueError(f"video {video_id!r}: {name}[{i}] has kind {iv.kind!r}; this metric counts "
                                     f"{list(self.kinds)}")
        self.videos += 1
        results = evaluate_video(self.rules, None if preds is None else list(preds), list(targets), self.kinds)
        code = subject_code(subject)
        rows = []
        for ki, kind in enumerate(self.kinds):
            r = results[kind]
            rows.append([code, ki, r.tp, r.fp, r.fn, r.n_pred, int(r.scored), int(r.quirk_changed), int(r.dummy)])
            for q in r.quirk_reasons:
                self.quirk_reasons[q] = self.quirk_reasons.get(q, 0) + 1
            if r.scored:
                self._log_rows(str(video_id), kind, r)
        self.rows.append(torch.tensor(rows, dtype=torch.long))
        self.details.append((str(video_id), str(subject), results))

    def update_video(self, preds: Sequence[Interval] | None, video: Any) -> None:
        """:meth:`update` with a ``SpottingVideo``: the protocol's ground-truth policy applied to its raw annotation
        rows (the reader's intervals when the protocol has none or the video has no rows), its id and subject."""
        gts = evaluation_ground_truth(video, self.rules, self.gt_policy_stats)
        self.update(preds, gts, video.video_id, video.subject)

    def _log_rows(self, video: str, kind: str, r: KindResult) -> None:
        for g, p, v in _pairs(r):
            gt, pr = (r.gts[g] if g is not None else None), (r.preds[p] if p is not None else None)
            self._log.append({
                "video": video, "kind": kind,
                "gt_onset": "" if gt is None else gt.onset, "gt_offset": "" if gt is None else gt.offset,
                "pred_onset": "" if pr is None else pr.onset, "pred_offset": "" if pr is None else pr.offset,
                "iou": round(v, 4), "result": "TP" if gt is not None and pr is not None
                else ("FN" if pr is None else "FP"),
            })

    def unit_rows(self) -> list[UnitRow]:
        """The (video, kind) rows of the state (after a DDP sync: of all ranks); ``subject`` is its CRC-32 code."""
        rows = self.rows
        if isinstance(rows, torch.Tensor):  # after sync / dim_zero_cat
            data = rows.reshape(-1, len(_COLS)).tolist()
        else:
            data = [x for t in rows for x in t.reshape(-1, len(_COLS)).tolist()]
        return [UnitRow(str(s), self.kinds[k], tp, fp, fn, n, bool(sc), bool(q), bool(d))
                for s, k, tp, fp, fn, n, sc, q, d in data]

    def compute(self) -> dict[str, float]:
        """``{kind}/{tp,fp,fn,precision,recall,f1,videos}`` for each kind and ``overall`` (summed counts), plus
        ``{kind}/dummies`` / ``quirk_changes`` where the protocol has them. Logs a warning when a MEGC2020 quirk
        changed a count."""
        counts = aggregate(self.rules, self.unit_rows(), self.kinds)
        out = counts_to_metrics(counts, self.kinds)
        if out.get("quirk_changes"):
            reasons = ", ".join(f"{k} x{v}" for k, v in sorted(self.quirk_reasons.items())) or "on other ranks"
            log.warning("%s: MEGC2020 quirks changed the TP/FP/FN of %d (video, kind) units (%s): one-frame "
                        "intervals never match and disjoint ones share one frame (calc_iou), FP is not clamped, "
                        "a video without a prediction file is skipped. Compare with metric.protocol=fertrain.",
                        self.rules.name, int(out["quirk_changes"]), reasons)
        return out

    def forward(self, preds: Sequence[Interval] | None, targets: Sequence[Any], video_id: str,
                subject: str = "") -> dict[str, float]:
        """Update with one video and return that video's own figures (counts of this video only)."""
        n_before = len(self.rows)
        self.update(preds, targets, video_id, subject)
        rows = self.unit_rows()[len(self.kinds) * n_before:]
        return counts_to_metrics(aggregate(self.rules, rows, self.kinds), self.kinds)

    def reset(self) -> None:
        super().reset()
        self._log = []
        self.details = []
        self.quirk_reasons = {}
        self.gt_policy_stats = {}
        self.videos = 0

    def result_log(self) -> list[dict[str, Any]]:
        """MEGC-style rows of the scored (video, kind) units, rank-local: one per TP pair, missed GT (FN) and
        prediction that is not a true positive (FP), with ``video, kind, gt_onset, gt_offset, pred_onset,
        pred_offset, iou, result`` (empty cell = none; ``iou`` inclusive, for reading).

        Under the found rule each found GT is paired with its best-IoU prediction; every other prediction (also a
        duplicate on an already found GT) gets an ``FP`` row. The FP rows equal the FP count except where the FP
        rule is ``clamped`` / ``unclamped`` and one prediction found several GTs, or under the STRS subject rule.
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


def counts_to_metrics(counts: Mapping[str, float], kinds: Sequence[str] = KINDS) -> dict[str, float]:
    """Add precision/recall/F1 per kind and the ``overall`` block (summed macro + micro counts) to a dict of counts
    ``{kind}/{tp,fp,fn}``; other keys (``{kind}/videos``, ``quirk_changes``, ...) are kept."""
    out: dict[str, float] = {}
    totals = [0, 0, 0]
    for kind in kinds:
        c = [int(counts.get(f"{kind}/{x}", 0)) for x in ("tp", "fp", "fn")]
        totals = [a + b for a, b in zip(totals, c)]
        out.update(_block(kind, *c))
    out.update(_block("overall", *totals))
    for key, v in counts.items():
        out.setdefault(key, float(v))
    return out


def _block(name: str, tp: int, fp: int, fn: int) -> dict[str, float]:
    p, r, f = prf(tp, fp, fn)
    return {f"{name}/tp": float(tp), f"{name}/fp": float(fp), f"{name}/fn": float(fn),
            f"{name}/precision": p, f"{name}/recall": r, f"{name}/f1": f}
