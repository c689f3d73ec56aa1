"""Every spotting protocol preset against an independent brute force written from its evaluator's rules.

The brute forces below share no code with :mod:`fertrain.spotting.protocols`: IoUs from frame sets (inclusive) or
from the evaluators' own formulas, matchings by exhaustive search or literal loops, video and subject rules spelled
out. 10,000 random cases (fixed seed), each 1-2 subjects x 1-2 videos with macro and micro intervals: overlapping
and duplicated same-type ground truths, one-frame and touching intervals, empty videos, videos without a prediction
file, and (for the presets whose ground-truth policy produces them) ground truths starting at -1 or ending before
they start. Counts (TP, FP, FN per kind) must be equal in every case.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from fertrain.spotting.intervals import Interval
from fertrain.spotting.protocols import GT, PRESETS, UnitRow, aggregate, evaluate_video

N_CASES = 10_000
SEED = 20240516
KINDS = ("macro", "micro")


# ------------------------------------------------------------------------------------------- random cases
def _span(rng: random.Random) -> tuple[int, int]:
    a = rng.randint(0, 20)
    return a, a + rng.choice((0, 0, 1, 2, 3, 5, 8))  # one-frame intervals are frequent


def make_case(rng: random.Random, unusual_gt: bool) -> list[tuple[str, str, list[Interval] | None, list[GT]]]:
    videos = []
    for s in range(rng.randint(1, 2)):
        for v in range(rng.randint(1, 2)):
            gts: list[GT] = []
            preds: list[Interval] = []
            for kind in KINDS:
                for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
                    a, b = _span(rng)
                    r = rng.random()
                    if unusual_gt and r < 0.07:
                        b = a - rng.randint(1, 3)  # an offset-0 row kept (casme2_offset_zero="keep")
                    elif unusual_gt and r < 0.12:
                        a = -1  # an onset-0 row kept (sammlv_onset_zero="keep")
                    gts.append(GT(a, b, kind))
                    if rng.random() < 0.2:  # overlapping / duplicated same-type ground truth
                        d = rng.randint(0, 2)
                        gts.append(GT(a + d, max(a + d, b + rng.randint(0, 2)), kind))
                own = [g for g in gts if g.kind == kind]
                for _ in range(rng.choice((0, 0, 1, 2, 3, 4))):
                    if own and rng.random() < 0.55:
                        g = rng.choice(own)
                        a, b = max(0, g.onset + rng.randint(-2, 2)), max(0, g.offset + rng.randint(-2, 2))
                        a, b = min(a, b), max(a, b)
                        if rng.random() < 0.2:  # touching the ground truth
                            a = max(0, g.offset + 1)
                            b = a + rng.randint(0, 4)
                    else:
                        a, b = _span(rng)
                    preds.append(Interval(a, b, kind, rng.choice((0.2, 0.5, 0.9, rng.random()))))
            rng.shuffle(preds)
            videos.append((f"s{s}", f"s{s}_v{v}", None if rng.random() < 0.1 else preds, gts))
    return videos


def preset_counts(name: str, videos) -> dict[str, tuple[int, int, int]]:
    rules = PRESETS[name]
    rows = []
    for subject, _vid, preds, gts in videos:
        for kind, r in evaluate_video(rules, preds, gts).items():
            rows.append(UnitRow(subject, kind, r.tp, r.fp, r.fn, r.n_pred, r.scored, r.quirk_changed, r.dummy))
    out = aggregate(rules, rows)
    return {k: (int(out[f"{k}/tp"]), int(out[f"{k}/fp"]), int(out[f"{k}/fn"])) for k in KINDS}


# ------------------------------------------------------------------------------------------- brute forces
def frames(a: int, b: int) -> set[int]:
    return set(range(a, b + 1))  # empty when b < a


def iou_sets(g, p) -> float:
    """Inclusive IoU from frame sets (STRS-Metric's definition; equal to SOFTNet's +1 boxes on valid intervals)."""
    A, B = frames(g.onset, g.offset), frames(p.onset, p.offset)
    return len(A & B) / len(A | B) if A | B else 0.0


def iou_megc(g, p) -> float:
    """MEGC2020 result_helper.calc_iou, as written there."""
    inter = max(0, min(g.offset, p.offset) - max(g.onset, p.onset)) + 1
    union = (g.offset - g.onset + 1) + (p.offset - p.onset + 1) - inter
    if g.offset <= g.onset or p.offset <= p.onset or union <= 0:
        return 0.0
    return inter / union


def iou_auw(g, p) -> float:
    """AUW-GCN eval_utils.iou_with_anchors(gt, pred); np.divide gives NaN for 0/0 (inf for x/0, x > 0)."""
    inter = max(min(g.offset, p.offset) - max(g.onset, p.onset), 0)
    union = (g.offset - g.onset) - inter + (p.offset - p.onset)
    if union == 0:
        return math.nan if inter == 0 else math.inf
    return inter / union


def by_kind(videos, kind):
    for subject, vid, preds, gts in videos:
        yield subject, vid, (None if preds is None else [p for p in preds if p.kind == kind]), \
            [g for g in gts if g.kind == kind]


def bf_fertrain(videos):
    out = {}
    for kind in KINDS:
        tp = fp = fn = 0
        for _s, _v, preds, gts in by_kind(videos, kind):
            preds = preds or []
            found = sum(any(iou_sets(g, p) >= 0.5 for p in preds) for g in gts)
            tp, fp, fn = tp + found, fp + max(0, len(preds) - found), fn + len(gts) - found
        out[kind] = (tp, fp, fn)
    return out


def max_matching(ok: list[list[bool]]) -> int:
    """Largest set of disjoint (gt, pred) pairs with ok, by exhaustive search."""
    def best(g: int, used: frozenset) -> int:
        if g == len(ok):
            return 0
        res = best(g + 1, used)
        for p, hit in enumerate(ok[g]):
            if hit and p not in used:
                res = max(res, 1 + best(g + 1, used | {p}))
        return res
    return best(0, frozenset())


def bf_one_to_one(videos):
    out = {}
    for kind in KINDS:
        tp = fp = fn = 0
        for _s, _v, preds, gts in by_kind(videos, kind):
            preds = preds or []
            m = max_matching([[iou_sets(g, p) >= 0.5 for p in preds] for g in gts])
            tp, fp, fn = tp + m, fp + len(preds) - m, fn + len(gts) - m
        out[kind] = (tp, fp, fn)
    return out


def bf_megc2020(videos):
    out = {}
    for kind in KINDS:
        n_clips = n_labels = n_find = 0
        for _s, _v, preds, gts in by_kind(videos, kind):
            if preds is None:  # return_preds_labels: no prediction file -> the video is skipped
                continue
            n_clips += len(preds)
            n_labels += len(gts)
            n_find += sum(any(iou_megc(g, p) >= 0.5 for p in preds) for g in gts)
        out[kind] = (n_find, n_clips - n_find, n_labels - n_find)  # precision_small = N_find / N_clips
    return out


def bf_softnet(videos):
    out = {}
    for kind in KINDS:
        tp = fp = total_gt = 0
        for _s, _v, preds, gts in by_kind(videos, kind):
            if not gts:  # load_gt: only videos with a ground truth of the type
                continue
            preds = preds or [Interval(0, 0, kind)]  # spotting(): no peak -> a dummy [0, 0] prediction
            total_gt += len(gts)
            matched: list[int] = []
            for p in preds:  # check_box, mpolicy "greedy": only the best-IoU ground truth is tried
                ious = [iou_sets(g, p) for g in gts]
                top = max(ious)
                # order = np.argsort(iou)[::-1]; order[0] (numpy decides among equal IoUs)
                idx = ious.index(top) if ious.count(top) == 1 else int(np.argsort(np.array(ious))[::-1][0])
                if ious[idx] >= 0.5 and idx not in matched:
                    matched.append(idx)
                    tp += 1
                else:
                    fp += 1
        out[kind] = (tp, fp, total_gt - tp)
    return out


def bf_strs(videos):
    out = {}
    for kind in KINDS:
        per = list(by_kind(videos, kind))
        subjects = {s for s, _v, preds, _g in per if preds}  # evaluate_STRS: subjects of the prediction file
        tp = fp = fn = 0
        for s, _v, preds, gts in per:
            if s not in subjects or not gts:  # only the ground-truth videos of those subjects
                continue
            taken: set[int] = set()
            for p in sorted(preds or [], key=lambda q: (q.onset, q.offset)):  # file order
                hit = False
                for i, g in enumerate(gts):
                    if iou_sets(g, p) >= 0.5 and i not in taken:
                        taken.add(i)
                        hit = True
                fp += not hit
            tp, fn = tp + len(taken), fn + len(gts) - len(taken)
        out[kind] = (tp, fp, fn)
    return out


def bf_auwgcn(videos):
    out = {}
    for kind in KINDS:
        tp = n = m = 0
        for _s, _v, preds, gts in by_kind(videos, kind):
            m += len(gts)  # calculate_epoch_metrics: every ground truth of the subject
            preds = sorted(preds or [], key=lambda q: (-q.score, q.onset, q.offset))  # NMS output order
            n += len(preds)
            if not preds:
                continue
            marked: set[int] = set()
            for g in gts:  # iou_for_find
                ious = [iou_auw(g, p) for p in preds]
                max_iou = max(ious)
                if max_iou > 0.5:
                    marked.add(int(np.argmax(np.array(ious))))
            tp += len(marked)  # calc_metrics: proposals whose find is True
        out[kind] = (tp, n - tp, m - tp)
    return out


BRUTE = {"fertrain": bf_fertrain, "one_to_one": bf_one_to_one, "megc2020": bf_megc2020, "softnet": bf_softnet,
         "strs": bf_strs, "auwgcn": bf_auwgcn}
UNUSUAL_GT = {"megc2020", "auwgcn"}  # their ground-truth policies keep onset/offset 0 rows


def test_every_preset_has_a_brute_force() -> None:
    assert set(BRUTE) == set(PRESETS)


_CASES: dict[bool, list] = {}


def cases(unusual: bool) -> list:
    """The N_CASES random cases (generated once per module; the same list for every preset of a group)."""
    if unusual not in _CASES:
        rng = random.Random(SEED + unusual)
        _CASES[unusual] = [make_case(rng, unusual) for _ in range(N_CASES)]
    return _CASES[unusual]


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_equals_brute_force_on_random_cases(name: str) -> None:
    mismatches = []
    nonzero = 0
    for i, videos in enumerate(cases(name in UNUSUAL_GT)):
        ours, theirs = preset_counts(name, videos), BRUTE[name](videos)
        nonzero += any(c[0] for c in ours.values())
        if ours != theirs:
            mismatches.append((i, ours, theirs, videos))
    assert not mismatches, f"{len(mismatches)} of {N_CASES} cases differ, first: {mismatches[0]}"
    assert nonzero > N_CASES // 4  # the cases exercise matches, not only misses


def test_cases_cover_the_edge_cases() -> None:
    """The generator really produces what the module docstring promises (so the equality above means something)."""
    rng = random.Random(SEED)
    seen = {"one_frame_gt": 0, "one_frame_pred": 0, "touching": 0, "duplicate_gt": 0, "empty_video": 0,
            "no_file": 0, "both_kinds": 0, "unusual_gt": 0}
    for _ in range(2000):
        for _s, _v, preds, gts in make_case(rng, True):
            seen["one_frame_gt"] += any(g.onset == g.offset for g in gts)
            seen["one_frame_pred"] += any(p.onset == p.offset for p in preds or [])
            seen["touching"] += any(p.onset == g.offset + 1 and p.kind == g.kind for p in preds or [] for g in gts)
            seen["duplicate_gt"] += any(a != b and a.kind == b.kind and frames(a.onset, a.offset) &
                                        frames(b.onset, b.offset) for i, a in enumerate(gts) for b in gts[i + 1:])
            seen["empty_video"] += not gts and not preds
            seen["no_file"] += preds is None
            seen["both_kinds"] += len({g.kind for g in gts}) == 2
            seen["unusual_gt"] += any(g.offset < g.onset or g.onset < 0 for g in gts)
    assert all(v > 20 for v in seen.values()), seen
    assert math.isnan(iou_auw(GT(3, 3, "micro"), Interval(5, 5, "micro")))  # 0/0, as numpy gives it
