"""Spotting evaluation protocols: the counting rules of each public evaluator, as named options.

Published spotting F1s come from evaluators that differ in the IoU form, the matching, how TP/FP are counted,
which videos are scored, dummy predictions and how unannotated frames of the sheets become ground truth. A
protocol (:class:`SpottingRules`) states every one of these rules by name; the presets in :data:`PRESETS`
reproduce one evaluator each, and any rule can be overridden (``metric.rules.<name>=...``) to state a mix.
Side-by-side table of the presets and the published results that used them: ``docs/spotting_protocols.md``.

Rules (fields of :class:`SpottingRules`):

``iou``
    ``"inclusive"``: ``|a ∩ b| / |a ∪ b|`` with ``|[s, e]| = e - s + 1``; disjoint 0, one-frame intervals allowed.
    ``"megc2020"``: MEGC2020's ``calc_iou`` (:func:`iou_megc2020`): intersection ``max(0, min(e) - max(s)) + 1``
    (disjoint intervals share "one" frame), and 0 when either interval has ``end <= start`` (one frame).
    ``"exclusive"``: AUW-GCN's ``iou_with_anchors`` (:func:`iou_exclusive`): length ``end - start`` (a one-frame
    interval has length 0), intersection ``max(min(e) - max(s), 0)``; 0/0 is NaN (never a match).
``iou_threshold``, ``iou_strict``
    a pair matches if IoU ``>=`` the threshold (``iou_strict=False``) or ``>`` it (``True``, AUW-GCN).
``matching``
    ``"found"``: a ground truth is found if any prediction matches it; TP = ground truths found.
    ``"maximum"``: maximum one-to-one bipartite matching (``scipy.optimize.linear_sum_assignment``); TP = matches.
    ``"best_gt"``: each prediction tries only its best-IoU ground truth (ties as ``np.argsort(iou)[::-1][0]``);
    TP if it matches and that ground truth is still free, no fall-back to another one; TP = such predictions.
    ``"greedy_all"``: predictions in order, each takes *every* still-free ground truth it matches; TP = ground
    truths taken.
    ``"best_prediction"``: each ground truth picks its best prediction (Python ``max`` of the IoUs, ``np.argmax``
    for the index); TP = *distinct* predictions picked (two ground truths sharing one best prediction give 1 TP).
``fp``
    ``"clamped"``: ``max(0, predictions - TP)`` per video and kind. ``"unclamped"``: ``predictions - TP`` (negative
    where one prediction finds two ground truths). ``"unmatched"``: predictions that matched nothing.
    FN is always ``ground truths - TP``.
``order``
    prediction order for the order-dependent matchings: ``"onset"`` (fertrain's predictions CSV order) or
    ``"score"`` (descending score, ties by onset; AUW-GCN's NMS output order).
``videos``
    ``"all"``: every video given; ``"with_gt"``: per kind, only videos with a ground truth of that kind;
    ``"with_gt_in_predicted_subjects"``: per kind, videos with a ground truth of that kind of subjects that have at
    least one prediction of that kind (in any of their videos); ``"with_prediction_file"``: a video whose
    predictions are ``None`` ("no prediction file") is skipped entirely, an empty list counts.
``dummy_prediction``
    ``None`` or ``(onset, offset)``: a scored video with no prediction of a kind gets this one prediction.
``ground_truth``
    ``None``: the dataset reader's intervals (its own config policies); or a :class:`GroundTruthPolicy` applied to
    the raw annotation rows (:class:`fertrain.spotting.intervals.AnnotationRow`).
``quirks``
    count (and warn about) the (video, kind) units whose counts the MEGC2020 quirks changed: compared with the
    same protocol read with ``iou="inclusive"``, ``fp="clamped"`` and ``videos="all"``.

Everything here is plain Python on tiny per-video lists (no tensors): the metric
(:class:`fertrain.metrics.spotting.SpottingF1`) calls :func:`evaluate_video` once per video and
:func:`aggregate` once per epoch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from fertrain.spotting.intervals import KINDS, AnnotationRow, Interval

IOU_FORMS = ("inclusive", "megc2020", "exclusive")
MATCHINGS = ("found", "maximum", "best_gt", "greedy_all", "best_prediction")
FP_RULES = ("clamped", "unclamped", "unmatched")
ORDERS = ("onset", "score")
VIDEO_RULES = ("all", "with_gt", "with_gt_in_predicted_subjects", "with_prediction_file")

CASME2_OFFSET_ZERO = ("apex", "2*apex-onset", "drop", "keep")
SAMMLV_ONSET_ZERO = ("apex", "keep", "drop", "drop_macro")
SAMMLV_APEX_MISSING = ("keep", "drop")
SAMMLV_FRACTIONAL = ("round", "floor", "drop")
OFFSET_BEYOND = ("keep", "clamp")

MEGC2020_SRC = "HeyingGithub/Baseline-project-for-MEGC2020_spotting"
SOFTNET_SRC = "genbing99/SoftNet-SpotME"
STRS_SRC = "genbing99/STRS-Metric"
AUWGCN_SRC = "xjtupanda/AUW-GCN"


class GT(NamedTuple):
    """One evaluation ground truth: 0-based frames, possibly unusual (``onset`` -1 where a policy keeps an onset 0,
    ``offset < onset`` where one keeps an offset 0); ``kind`` macro or micro."""

    onset: int
    offset: int
    kind: str


# ------------------------------------------------------------------------------------------- GT policies
@dataclass(frozen=True)
class GroundTruthPolicy:
    """How the sheet's unannotated or fractional frame numbers become evaluation ground truth.

    Attributes:
        casme2_offset_zero: CAS(ME)^2 offset 0 ("not annotated"; 44 macro rows of the release): ``"apex"``
            (offset := apex: MEGC2020 ``dataset_new/CASME_2.py`` ``ME2.generate_dataset``; SoftNet
            ``load_label.py`` ``load_gt``), ``"2*apex-onset"`` (offset := 2 apex - onset, mirrored around the
            apex, as some public LBP spotting scripts do), ``"drop"`` or ``"keep"`` (offset stays 0: an interval
            no prediction can match, still counted as a ground truth: AUW-GCN ``info_csv/cas(me)_new.csv``).
        sammlv_onset_zero: SAMM-LV onset 0 (10 macro rows in MEGC2020's copy of the sheet, 12 in AUW-GCN's):
            ``"apex"`` (onset := apex), ``"keep"`` (the interval starts at frame number 0, one before the first
            frame: MEGC2020 ``dataset_new/SAMM_MEGC.py`` ``SAMM_MEGC.generate_dataset``; AUW-GCN
            ``info_csv/samm_new_25.csv``), ``"drop"`` or ``"drop_macro"`` (only macro rows dropped: SoftNet
            ``load_label.py`` ``load_gt``, "Ignore the samples that is extremely long in SAMMLV").
        sammlv_apex_missing: SAMM-LV apex -1: ``"keep"`` (the apex is not part of an interval; every evaluator
            read here) or ``"drop"``.
        sammlv_fractional: SAMM-LV fractional frame numbers: ``"round"`` (``int(x + 0.5)``: MEGC2020
            ``SAMM_MEGC.generate_dataset``), ``"floor"`` (``int(x - 1)`` of a 1-based number: SoftNet ``load_gt``)
            or ``"drop"``.
        offset_beyond: an offset past the last frame: ``"keep"`` (the evaluators use the sheet's number) or
            ``"clamp"`` (to the last frame, fertrain's reader default).

    Raises:
        ValueError: an unknown value (names the field and the allowed values).
    """

    casme2_offset_zero: str = "apex"
    sammlv_onset_zero: str = "apex"
    sammlv_apex_missing: str = "keep"
    sammlv_fractional: str = "round"
    offset_beyond: str = "keep"

    def __post_init__(self) -> None:
        for name, allowed in (("casme2_offset_zero", CASME2_OFFSET_ZERO), ("sammlv_onset_zero", SAMMLV_ONSET_ZERO),
                              ("sammlv_apex_missing", SAMMLV_APEX_MISSING), ("sammlv_fractional", SAMMLV_FRACTIONAL),
                              ("offset_beyond", OFFSET_BEYOND)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ground_truth.{name}={getattr(self, name)!r}; expected one of {list(allowed)}")


def _frame(x: float, fractional: str) -> int | None:
    if x == int(x):
        return int(x)
    if fractional == "drop":
        return None
    return int(math.floor(x + 0.5)) if fractional == "round" else int(math.floor(x))


def ground_truth_from_rows(rows: Iterable[AnnotationRow], policy: GroundTruthPolicy,
                           stats: dict[str, int] | None = None) -> list[GT]:
    """Apply ``policy`` to raw annotation rows: 0-based :class:`GT` intervals sorted by (onset, offset, kind).

    Args:
        stats: if given, incremented per policy that changed or dropped a row (``"casme2_offset_zero:apex"``, ...).

    Raises:
        ValueError: SAMM-LV onset 0 with apex -1 under ``sammlv_onset_zero="apex"`` (names the row).
    """
    out: list[GT] = []

    def note(key: str) -> None:
        if stats is not None:
            stats[key] = stats.get(key, 0) + 1

    for row in rows:
        if row.dataset == "sammlv":
            frames = [_frame(float(v), policy.sammlv_fractional) for v in (row.onset, row.apex, row.offset)]
            if any(f is None for f in frames):
                note("sammlv_fractional:drop")
                continue
            if any(float(v) != int(float(v)) for v in (row.onset, row.apex, row.offset)):
                note(f"sammlv_fractional:{policy.sammlv_fractional}")
            onset, apex, offset = frames
            if apex == -1:
                if policy.sammlv_apex_missing == "drop":
                    note("sammlv_apex_missing:drop")
                    continue
            if onset == 0:
                rule = policy.sammlv_onset_zero
                if rule == "drop" or (rule == "drop_macro" and row.kind == "macro"):
                    note(f"sammlv_onset_zero:{rule}")
                    continue
                if rule == "apex":
                    if apex < 1:
                        raise ValueError(f"{row.where}: onset 0 and apex {apex}: cannot take onset := apex "
                                         f"(ground_truth.sammlv_onset_zero='apex')")
                    onset = apex
                note(f"sammlv_onset_zero:{rule}")
        else:
            onset, apex, offset = int(row.onset), int(row.apex), int(row.offset)
            if offset == 0:
                rule = policy.casme2_offset_zero
                if rule == "drop":
                    note("casme2_offset_zero:drop")
                    continue
                offset = {"apex": apex, "2*apex-onset": 2 * apex - onset, "keep": 0}[rule]
                note(f"casme2_offset_zero:{rule}")
        a, b = onset - row.first, offset - row.first
        if policy.offset_beyond == "clamp" and row.num_frames and b > row.num_frames - 1:
            b = row.num_frames - 1
            note("offset_beyond:clamp")
        out.append(GT(a, b, row.kind))
    return sorted(out, key=lambda g: (g.onset, g.offset, g.kind))


# ------------------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class SpottingRules:
    """Every counting rule of a spotting evaluation (module docstring); the presets are :data:`PRESETS`.

    Raises:
        ValueError: an unknown rule value or a threshold outside (0, 1] (names the rule and the allowed values).
    """

    name: str
    iou: str = "inclusive"
    iou_threshold: float = 0.5
    iou_strict: bool = False
    matching: str = "found"
    fp: str = "clamped"
    order: str = "onset"
    videos: str = "all"
    dummy_prediction: tuple[int, int] | None = None
    ground_truth: GroundTruthPolicy | None = None
    quirks: bool = False
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for rule, allowed in (("iou", IOU_FORMS), ("matching", MATCHINGS), ("fp", FP_RULES), ("order", ORDERS),
                              ("videos", VIDEO_RULES)):
            if getattr(self, rule) not in allowed:
                raise ValueError(f"spotting protocol {self.name!r}: {rule}={getattr(self, rule)!r}; expected one "
                                 f"of {list(allowed)}")
        if not 0.0 < float(self.iou_threshold) <= 1.0:
            raise ValueError(f"spotting protocol {self.name!r}: iou_threshold must be in (0, 1], got "
                             f"{self.iou_threshold}")
        if self.dummy_prediction is not None:
            a, b = (int(v) for v in self.dummy_prediction)
            object.__setattr__(self, "dummy_prediction", (a, b))

    def describe(self) -> dict[str, Any]:
        """The rules as a plain dict (for ``summary.json``)."""
        out = dataclasses.asdict(self)
        out["ground_truth"] = ("dataset reader's intervals" if self.ground_truth is None
                               else dataclasses.asdict(self.ground_truth))
        return out


#: The public evaluators, one preset each. Sources: the evaluator's own code, read (see each ``source``).
PRESETS: dict[str, SpottingRules] = {
    "fertrain": SpottingRules(
        "fertrain", source="fertrain's own rule (ours): a ground truth is found by any prediction with inclusive "
        "IoU >= 0.5, FP = predictions - TP clamped at 0 per video, every video scored; the dataset reader's "
        "ground truth"),
    "one_to_one": SpottingRules(
        "one_to_one", matching="maximum", fp="unclamped",
        source="fertrain (ours): maximum one-to-one matching (scipy.optimize.linear_sum_assignment)"),
    "megc2020": SpottingRules(
        "megc2020", iou="megc2020", fp="unclamped", videos="with_prediction_file", quirks=True,
        ground_truth=GroundTruthPolicy(casme2_offset_zero="apex", sammlv_onset_zero="keep",
                                       sammlv_apex_missing="keep", sammlv_fractional="round", offset_beyond="keep"),
        source=f"{MEGC2020_SRC}, MDMD_results/result_helper.py: calc_iou, return_preds_labels, "
               "pred_clips_analysis (precision_small / F1_small, as evaluation_all_p.py reports); "
               "dataset_new/CASME_2.py and SAMM_MEGC.py: generate_dataset"),
    "softnet": SpottingRules(
        "softnet", matching="best_gt", fp="unclamped", videos="with_gt", dummy_prediction=(0, 0),
        ground_truth=GroundTruthPolicy(casme2_offset_zero="apex", sammlv_onset_zero="drop_macro",
                                       sammlv_apex_missing="keep", sammlv_fractional="floor", offset_beyond="keep"),
        source=f"{SOFTNET_SRC}, training.py: spotting, evaluation; Utils/mean_average_precision/"
               "mean_average_precision/utils.py: compute_iou, check_box (mpolicy='greedy'), "
               "mean_average_precision_2d.py: MeanAveragePrecision2d._evaluate_class; load_label.py: load_gt"),
    "strs": SpottingRules(
        "strs", matching="greedy_all", fp="unmatched", videos="with_gt_in_predicted_subjects",
        source=f"{STRS_SRC}, strs_metric.py: Evaluator._calculate_iou, evaluate_spotting, evaluate_STRS "
               "(applied per kind: ours, STRS-Metric has no type column)"),
    "auwgcn": SpottingRules(
        "auwgcn", iou="exclusive", iou_strict=True, matching="best_prediction", fp="unclamped", order="score",
        ground_truth=GroundTruthPolicy(casme2_offset_zero="keep", sammlv_onset_zero="keep",
                                       sammlv_apex_missing="keep", sammlv_fractional="round", offset_beyond="keep"),
        source=f"{AUWGCN_SRC}, utils/eval_utils.py: iou_with_anchors, iou_for_find, calc_metrics, "
               "calculate_epoch_metrics; info_csv/cas(me)_new.csv, samm_new_25.csv (ground truth)"),
}

RULE_NAMES = tuple(f.name for f in dataclasses.fields(SpottingRules) if f.name not in ("name", "source"))


def resolve_rules(protocol: str | SpottingRules = "fertrain", overrides: Mapping[str, Any] | None = None
                  ) -> SpottingRules:
    """A preset by name (or a :class:`SpottingRules`), with named rules overridden.

    Args:
        overrides: rule name -> value (:data:`RULE_NAMES`); ``ground_truth`` takes ``None`` (the reader's
            intervals), ``"reader"`` or a mapping of :class:`GroundTruthPolicy` fields (missing fields keep the
            preset's, or the defaults when the preset has none).

    Raises:
        ValueError: an unknown preset or rule name, or a bad value (named).
    """
    if isinstance(protocol, SpottingRules):
        rules = protocol
    else:
        if protocol not in PRESETS:
            raise ValueError(f"metric.protocol={protocol!r}: unknown spotting protocol; expected one of "
                             f"{list(PRESETS)}")
        rules = PRESETS[protocol]
    if not overrides:
        return rules
    changes: dict[str, Any] = {}
    label: list[str] = []
    for key, value in dict(overrides).items():
        if key == "ground_truth" and isinstance(value, Mapping):
            label += [f"ground_truth.{k}={v}" for k, v in sorted(dict(value).items())]
        elif key == "ground_truth" and value in (None, "reader"):
            label.append("ground_truth=reader")
        else:
            label.append(f"{key}={list(value) if isinstance(value, tuple) else value}")
        if key not in RULE_NAMES:
            raise ValueError(f"metric.rules.{key}: unknown rule; expected one of {list(RULE_NAMES)}")
        if key == "ground_truth":
            if value in (None, "reader"):
                value = None
            elif isinstance(value, Mapping):
                base = rules.ground_truth or GroundTruthPolicy()
                bad = sorted(set(value) - {f.name for f in dataclasses.fields(GroundTruthPolicy)})
                if bad:
                    raise ValueError(f"metric.rules.ground_truth: unknown fields {bad}; expected "
                                     f"{[f.name for f in dataclasses.fields(GroundTruthPolicy)]}")
                value = dataclasses.replace(base, **dict(value))
            elif not isinstance(value, GroundTruthPolicy):
                raise ValueError(f"metric.rules.ground_truth={value!r}: expected null, 'reader' or a mapping")
        if key == "dummy_prediction" and value is not None:
            value = tuple(value)
            if len(value) != 2:
                raise ValueError(f"metric.rules.dummy_prediction={list(value)}: expected null or [onset, offset]")
        changes[key] = value
    return dataclasses.replace(rules, name=rules.name + "+" + ",".join(sorted(label)), **changes)


def evaluation_ground_truth(video: Any, rules: SpottingRules, stats: dict[str, int] | None = None) -> list[GT]:
    """The ground truth of ``video`` (a :class:`~fertrain.data.spotting_data.SpottingVideo`) under ``rules``:
    the reader's intervals when ``rules.ground_truth`` is None or the video has no raw annotation rows,
    else the policy applied to the rows."""
    rows = getattr(video, "annotations", ())
    if rules.ground_truth is None or not rows:
        return [GT(iv.onset, iv.offset, iv.kind) for iv in video.intervals]
    return ground_truth_from_rows(rows, rules.ground_truth, stats)


# ------------------------------------------------------------------------------------------- IoU forms
def iou_inclusive(a0: int, a1: int, b0: int, b1: int) -> float:
    """Inclusive-frame IoU of ``[a0, a1]`` and ``[b0, b1]`` (0 when they share no frame or a union is empty).
    Equal to SOFTNet's ``compute_iou`` on 1-pixel-high boxes and to STRS-Metric's ``_calculate_iou`` on frame sets."""
    inter = min(a1, b1) - max(a0, b0) + 1
    if inter <= 0:
        return 0.0
    union = (a1 - a0 + 1) + (b1 - b0 + 1) - inter
    return inter / union if union > 0 else 0.0


def iou_megc2020(a0: int, a1: int, b0: int, b1: int) -> float:
    """MEGC2020's ``calc_iou`` (HeyingGithub/Baseline-project-for-MEGC2020_spotting, ``MDMD_results/
    result_helper.py``): intersection ``max(0, min(a1, b1) - max(a0, b0)) + 1`` (disjoint intervals get 1),
    union ``len(a) + len(b) - intersection``, and 0 if ``a1 <= a0`` or ``b1 <= b0`` (one-frame intervals) or the
    union is not positive."""
    inter = max(0, min(a1, b1) - max(a0, b0)) + 1
    union = (a1 - a0 + 1) + (b1 - b0 + 1) - inter
    if a1 <= a0 or b1 <= b0 or union <= 0:
        return 0.0
    return inter / union


def iou_exclusive(g0: int, g1: int, p0: int, p1: int) -> float:
    """AUW-GCN's ``iou_with_anchors(gt_start, gt_end, pred_start, pred_end)`` (xjtupanda/AUW-GCN,
    ``utils/eval_utils.py``): lengths ``end - start``, intersection ``max(min(ends) - max(starts), 0)``,
    ``intersection / (len_gt - intersection + len_pred)``; 0/0 gives NaN (numpy), as there."""
    inter = max(min(g1, p1) - max(g0, p0), 0)
    union = (g1 - g0) - inter + (p1 - p0)
    if union == 0:
        return math.nan if inter == 0 else math.inf
    return inter / union


_IOU = {"inclusive": iou_inclusive, "megc2020": iou_megc2020, "exclusive": iou_exclusive}


# ------------------------------------------------------------------------------------------- one video
@dataclass
class KindResult:
    """The evaluation of one video and one kind.

    Attributes:
        tp, fp, fn: counts (fp may be negative under ``fp="unclamped"`` with the ``found`` matching).
        scored: the video counts for this kind under the per-video ``videos`` rule (the subject rule of
            ``with_gt_in_predicted_subjects`` is applied by :func:`aggregate`).
        n_pred: predictions of this kind given (before a dummy; 0 for "no prediction file").
        preds: the predictions evaluated (in the rule's order, with the dummy if one was added).
        gts: the ground truths.
        gt_pred: per ground truth, the index into ``preds`` that matched it (None: missed, FN).
        gt_iou: per ground truth, its best IoU with any prediction (0 if none; NaN possible with ``exclusive``).
        pred_tp: per prediction, whether it counts as a true positive.
        dummy: a dummy prediction was added.
        quirk_changed: the MEGC2020 quirks changed (tp, fp, fn) of this unit (``rules.quirks`` only).
        quirk_reasons: which quirks (``"iou"``, ``"negative_fp"``, ``"no_prediction_file"``).
    """

    tp: int
    fp: int
    fn: int
    scored: bool
    n_pred: int
    preds: list[Interval]
    gts: list[GT]
    gt_pred: list[int | None]
    gt_iou: list[float]
    pred_tp: list[bool]
    dummy: bool = False
    quirk_changed: bool = False
    quirk_reasons: tuple[str, ...] = ()


def _ok(v: float, thr: float, strict: bool) -> bool:
    return v > thr if strict else v >= thr  # NaN compares False


def _match(rules: SpottingRules, preds: Sequence[Interval], gts: Sequence[GT]
           ) -> tuple[int, list[int | None], list[bool], list[bool], list[list[float]]]:
    """``(tp, gt_pred, pred_tp, pred_matched_any, iou_matrix)`` of one video and kind under ``rules.matching``."""
    f = _IOU[rules.iou]
    thr, strict = float(rules.iou_threshold), bool(rules.iou_strict)
    G, P = len(gts), len(preds)
    m = [[f(g.onset, g.offset, p.onset, p.offset) for p in preds] for g in gts]
    ok = [[_ok(v, thr, strict) for v in row] for row in m]
    any_ok = [any(ok[g][p] for g in range(G)) for p in range(P)]
    gt_pred: list[int | None] = [None] * G
    pred_tp = [False] * P
    rule = rules.matching
    if rule == "found":
        for g in range(G):
            best, bv = None, -math.inf
            for p in range(P):
                if ok[g][p] and m[g][p] > bv:
                    best, bv = p, m[g][p]
            if best is not None:
                gt_pred[g] = best
                pred_tp[best] = True
        tp = sum(x is not None for x in gt_pred)
    elif rule == "maximum":
        pairs: list[tuple[int, int]] = []
        per_gt = [sum(r) for r in ok]
        if all(c <= 1 for c in per_gt) and all(sum(ok[g][p] for g in range(G)) <= 1 for p in range(P)):
            pairs = [(g, r.index(True)) for g, r in enumerate(ok) if per_gt[g]]  # no conflict: every pair matches
        elif any(any_ok):
            from scipy.optimize import linear_sum_assignment

            # maximise the number of matches; IoU breaks ties (weight < 1 never trades a match away)
            weight = np.array([[1.0 + m[g][p] * 1e-3 if ok[g][p] else 0.0 for p in range(P)] for g in range(G)])
            rows, cols = linear_sum_assignment(weight, maximize=True)
            pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if ok[r][c]]
        for g, p in pairs:
            gt_pred[g] = p
            pred_tp[p] = True
        tp = len(pairs)
    elif rule == "best_gt":
        taken: set[int] = set()
        for p in range(P):
            if G == 0:
                continue
            col = [m[g][p] for g in range(G)]
            if G == 1:
                idx = 0
            else:  # SoftNet's check_box: order = np.argsort(iou)[::-1]; only order[0] is tried (mpolicy greedy)
                idx = int(np.argsort(np.asarray(col, dtype=np.float64))[::-1][0])
            if ok[idx][p] and idx not in taken:
                taken.add(idx)
                gt_pred[idx] = p
                pred_tp[p] = True
        tp = len(taken)
    elif rule == "greedy_all":
        for p in range(P):
            for g in range(G):
                if ok[g][p] and gt_pred[g] is None:
                    gt_pred[g] = p
                    pred_tp[p] = True
        tp = sum(x is not None for x in gt_pred)
    else:  # best_prediction (AUW-GCN iou_for_find)
        for g in range(G):
            if P == 0:
                break
            ious = m[g]
            mx = max(ious)  # Python max, as iou_for_find: NaN never replaces a number, a leading NaN stays
            if _ok(mx, thr, strict):
                nan = [i for i, v in enumerate(ious) if v != v]
                idx = nan[0] if nan else ious.index(max(v for v in ious))  # np.argmax: first NaN, else first max
                if not pred_tp[idx]:
                    gt_pred[g] = idx
                pred_tp[idx] = True
        tp = sum(pred_tp)
    return tp, gt_pred, pred_tp, any_ok, m


def _counts(rules: SpottingRules, preds: Sequence[Interval], gts: Sequence[GT]
            ) -> tuple[int, int, int, list[int | None], list[bool], list[list[float]]]:
    tp, gt_pred, pred_tp, any_ok, m = _match(rules, preds, gts)
    n = len(preds)
    if rules.fp == "clamped":
        fp = max(0, n - tp)
    elif rules.fp == "unclamped":
        fp = n - tp
    else:
        matched = pred_tp if rules.matching != "found" else any_ok
        fp = n - sum(matched)
    return tp, fp, len(gts) - tp, gt_pred, pred_tp, m


def _order(rules: SpottingRules, preds: Iterable[Interval]) -> list[Interval]:
    if rules.order == "score":
        return sorted(preds, key=lambda iv: (-iv.score, iv.onset, iv.offset))
    return sorted(preds, key=lambda iv: (iv.onset, iv.offset))


def evaluate_video(rules: SpottingRules, preds: Sequence[Interval] | None, gts: Sequence[GT],
                   kinds: Sequence[str] = KINDS) -> dict[str, KindResult]:
    """Evaluate one video under ``rules``, kind by kind.

    Args:
        preds: the video's predicted intervals (any order, kinds mixed); ``None`` = no prediction file.
        gts: its ground truths (:class:`GT` or anything with ``onset``, ``offset``, ``kind``).
    """
    out: dict[str, KindResult] = {}
    for kind in kinds:
        g = [GT(int(x.onset), int(x.offset), x.kind) for x in gts if x.kind == kind]
        given = None if preds is None else [iv for iv in preds if iv.kind == kind]
        out[kind] = _evaluate_kind(rules, given, g, kind)
    return out


@functools.lru_cache(maxsize=64)
def _quirk_free(rules: SpottingRules) -> SpottingRules:
    """``rules`` read without the MEGC2020 quirks (inclusive IoU, FP clamped, every video scored)."""
    return dataclasses.replace(rules, iou="inclusive", fp="clamped", videos="all", quirks=False)


def _quirk_possible(rules: SpottingRules, scored: bool, fp: int, preds: Sequence[Interval], gts: Sequence[GT]) -> bool:
    """Whether the quirk-free reading can differ: a skipped video, a negative FP, an interval of at most one frame
    (MEGC2020's IoU is 0 there), or a threshold <= 1/3 (where two disjoint intervals of >= 2 frames can reach it)."""
    if not scored or fp < 0 or float(rules.iou_threshold) <= 1 / 3:
        return True
    return any(x.offset <= x.onset for x in (*preds, *gts))


def _evaluate_kind(rules: SpottingRules, given: list[Interval] | None, g: list[GT], kind: str) -> KindResult:
    n_pred = 0 if given is None else len(given)
    scored = True
    if rules.videos == "with_prediction_file" and given is None:
        scored = False
    elif rules.videos in ("with_gt", "with_gt_in_predicted_subjects") and not g:
        scored = False
    p = _order(rules, given or [])
    dummy = False
    if scored and not p and rules.dummy_prediction is not None:
        a, b = rules.dummy_prediction
        p, dummy = [Interval(a, b, kind, 0.0)], True
    if scored:
        tp, fp, fn, gt_pred, pred_tp, m = _counts(rules, p, g)
        gt_iou = [max(row) if row else 0.0 for row in m]
    else:
        tp = fp = fn = 0
        gt_pred, pred_tp, gt_iou = [None] * len(g), [False] * len(p), [0.0] * len(g)
    res = KindResult(tp, fp, fn, scored, n_pred, p, g, gt_pred, gt_iou, pred_tp, dummy)
    if rules.quirks and _quirk_possible(rules, scored, fp, p, g):
        alt = _evaluate_kind(_quirk_free(rules), given, g, kind)
        exact = (tp, fp, fn) if scored else (0, 0, 0)
        if exact != (alt.tp, alt.fp, alt.fn):
            reasons = []
            if not scored:
                reasons.append("no_prediction_file")
            else:
                if tp != alt.tp:
                    reasons.append("iou")
                if fp < 0:
                    reasons.append("negative_fp")
            res.quirk_changed, res.quirk_reasons = True, tuple(reasons)
    return res


# ------------------------------------------------------------------------------------------- pooling
@dataclass
class UnitRow:
    """One (video, kind) unit of an evaluation, as the metric stores it."""

    subject: str
    kind: str
    tp: int
    fp: int
    fn: int
    n_pred: int
    scored: bool
    quirk_changed: bool = False
    dummy: bool = False


def subject_filter(rules: SpottingRules, rows: Sequence[UnitRow]) -> list[bool]:
    """Which rows count: ``scored``, and for ``videos="with_gt_in_predicted_subjects"`` only subjects with at least
    one prediction of the row's kind (STRS-Metric ``evaluate_STRS``: subjects are taken from the predictions)."""
    keep = [r.scored for r in rows]
    if rules.videos == "with_gt_in_predicted_subjects":
        predicted = {(r.subject, r.kind) for r in rows if r.n_pred > 0}
        keep = [k and (r.subject, r.kind) in predicted for k, r in zip(keep, rows)]
    return keep


def aggregate(rules: SpottingRules, rows: Sequence[UnitRow], kinds: Sequence[str] = KINDS) -> dict[str, float]:
    """Sum the counted rows per kind: ``{kind}/{tp,fp,fn,videos}`` (+ ``{kind}/dummies`` with a dummy rule,
    ``quirk_changes`` with ``rules.quirks``), floats of whole numbers."""
    keep = subject_filter(rules, rows)
    out: dict[str, float] = {}
    for kind in kinds:
        sel = [r for r, k in zip(rows, keep) if k and r.kind == kind]
        out[f"{kind}/tp"] = float(sum(r.tp for r in sel))
        out[f"{kind}/fp"] = float(sum(r.fp for r in sel))
        out[f"{kind}/fn"] = float(sum(r.fn for r in sel))
        out[f"{kind}/videos"] = float(len(sel))
        if rules.dummy_prediction is not None:
            out[f"{kind}/dummies"] = float(sum(r.dummy for r in sel))
    if rules.quirks:
        out["quirk_changes"] = float(sum(r.quirk_changed for r in rows))
    return out


def count_ground_truth(videos: Iterable[Any], rules_or_policy: SpottingRules | GroundTruthPolicy | None
                       ) -> dict[str, int]:
    """Ground-truth intervals per kind that ``videos`` give under a protocol's (or a policy's) ground-truth rule,
    plus the policy counts (``"sammlv_onset_zero:drop_macro"``: rows dropped, ...)."""
    if isinstance(rules_or_policy, SpottingRules):
        rules = rules_or_policy
    else:
        rules = SpottingRules("count", ground_truth=rules_or_policy)
    stats: dict[str, int] = {}
    counts = {k: 0 for k in KINDS}
    for v in videos:
        for g in evaluation_ground_truth(v, rules, stats):
            counts[g.kind] += 1
    return {**counts, **stats}
