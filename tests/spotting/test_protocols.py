"""Spotting protocols: one hand-made case per rule in which the presets disagree (every preset's counts asserted,
each computed by hand in the comments), the ground-truth policies on the miniature CAS(ME)^2 and SAMM-LV workbooks,
the metric, task and table plumbing, and the spotting plot."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from fertrain.metrics.spotting import SpottingF1
from fertrain.spotting.intervals import Interval
from fertrain.spotting.protocols import (GT, PRESETS, GroundTruthPolicy, count_ground_truth, evaluate_video,
                                         evaluation_ground_truth, iou_exclusive, iou_inclusive, iou_megc2020,
                                         resolve_rules)

NAMES = ("fertrain", "one_to_one", "megc2020", "softnet", "strs", "auwgcn")


def M(a: int, b: int, score: float = 0.5) -> Interval:
    return Interval(a, b, "macro", score)


def G(a: int, b: int) -> GT:
    return GT(a, b, "macro")


def run(name: str, videos, rules=None) -> dict[str, float]:
    """Counts of a preset on ``videos`` = [(subject, video, preds | None, gts)] through the metric."""
    metric = SpottingF1(protocol=name, rules=rules)
    for subject, vid, preds, gts in videos:
        metric.update(preds, gts, vid, subject)
    return metric.compute()


def macro(out: dict[str, float]) -> tuple[int, int, int]:
    return int(out["macro/tp"]), int(out["macro/fp"]), int(out["macro/fn"])


def check_counts(videos, expected: dict[str, tuple[int, int, int]], rules=None) -> dict[str, dict[str, float]]:
    assert set(expected) == set(NAMES)
    outs = {name: run(name, videos, rules) for name in NAMES}
    got = {name: macro(out) for name, out in outs.items()}
    assert got == expected
    return outs


# ------------------------------------------------------------------------------------------- one rule per case
def test_iou_form_one_frame_intervals() -> None:
    # GT [5,5] and prediction [5,5]: inclusive IoU 1; MEGC2020 calc_iou returns 0 when end <= start; AUW-GCN's
    # exclusive lengths are 0 and 0/0 is NaN (never > 0.5)
    assert iou_inclusive(5, 5, 5, 5) == 1.0 and iou_megc2020(5, 5, 5, 5) == 0.0
    assert np.isnan(iou_exclusive(5, 5, 5, 5))
    outs = check_counts([("s", "v", [M(5, 5)], [G(5, 5)])],
                 {"fertrain": (1, 0, 0), "one_to_one": (1, 0, 0), "megc2020": (0, 1, 1), "softnet": (1, 0, 0),
                  "strs": (1, 0, 0), "auwgcn": (0, 1, 1)})
    assert outs["megc2020"]["quirk_changes"] == 1.0  # the quirk changed this unit's counts


def test_iou_form_disjoint_intervals_share_one_frame_in_megc2020() -> None:
    # GT [0,1], prediction [3,4]: disjoint. calc_iou: intersection max(0, 1 - 3) + 1 = 1, union 2 + 2 - 1 = 3 -> 1/3;
    # every other form gives 0. At IoU threshold 0.3 (rules override) only megc2020 finds it.
    assert iou_megc2020(0, 1, 3, 4) == pytest.approx(1 / 3) and iou_inclusive(0, 1, 3, 4) == 0.0
    outs = check_counts([("s", "v", [M(3, 4)], [G(0, 1)])],
                 {"fertrain": (0, 1, 1), "one_to_one": (0, 1, 1), "megc2020": (1, 0, 0), "softnet": (0, 1, 1),
                  "strs": (0, 1, 1), "auwgcn": (0, 1, 1)}, rules={"iou_threshold": 0.3})
    assert outs["megc2020"]["quirk_changes"] == 1.0


def test_iou_form_exclusive_and_strict_threshold() -> None:
    # GT [0,10], prediction [0,20]: inclusive 11/21 = 0.524 >= 0.5; AUW-GCN exclusive 10 / (10 - 10 + 20) = 0.5,
    # and it needs IoU > 0.5 -> missed
    assert iou_inclusive(0, 10, 0, 20) == pytest.approx(11 / 21) and iou_exclusive(0, 10, 0, 20) == 0.5
    videos = [("s", "v", [M(0, 20)], [G(0, 10)])]
    check_counts(videos, {"fertrain": (1, 0, 0), "one_to_one": (1, 0, 0), "megc2020": (1, 0, 0), "softnet": (1, 0, 0),
                   "strs": (1, 0, 0), "auwgcn": (0, 1, 1)})
    assert macro(run("auwgcn", videos, {"iou_strict": False})) == (1, 0, 0)  # >= instead of >: found


def test_matching_one_prediction_on_two_overlapping_ground_truths() -> None:
    # GT [0,9] and [2,11]; one prediction [1,10]: inclusive IoU 9/11 with both; exclusive 8/10 with both.
    # found rule: both found (TP 2); FP = 1 - 2 = -1: clamped to 0 (fertrain), kept (megc2020, its quirk);
    # one_to_one: one match; softnet: the prediction tries its best GT only; strs: it takes both free GTs;
    # auwgcn: both GTs pick it as best prediction -> ONE distinct TP.
    outs = check_counts([("s", "v", [M(1, 10)], [G(0, 9), G(2, 11)])],
                 {"fertrain": (2, 0, 0), "one_to_one": (1, 0, 1), "megc2020": (2, -1, 0), "softnet": (1, 0, 1),
                  "strs": (2, 0, 0), "auwgcn": (1, 0, 1)})
    assert outs["megc2020"]["quirk_changes"] == 1.0 and "quirk_changes" not in outs["fertrain"]
    assert outs["megc2020"]["macro/precision"] == 2.0  # precision_small = N_find / N_clips = 2 / 1, as MEGC2020


def test_matching_softnet_never_falls_back_to_a_second_ground_truth() -> None:
    # GT A [0,9], B [3,12]; P1 [0,9] (IoU 1 with A, 7/13 with B), P2 [1,10] (9/11 with A, 8/12 with B).
    # softnet: P1 takes A; P2's best GT is A (taken) -> FP, although B is free and matches (no fall-back);
    # one_to_one: P1-B, P2-A -> 2; strs (onset order): P1 takes A and B, P2 finds nothing free -> FP;
    # auwgcn: A picks P1 (exclusive 1.0), B picks P2 (7/11 > 6/12 = 0.5) -> 2 distinct.
    check_counts([("s", "v", [M(0, 9, 0.9), M(1, 10, 0.8)], [G(0, 9), G(3, 12)])],
          {"fertrain": (2, 0, 0), "one_to_one": (2, 0, 0), "megc2020": (2, 0, 0), "softnet": (1, 1, 1),
           "strs": (2, 1, 0), "auwgcn": (2, 0, 0)})


def test_fp_rule_unmatched_predictions_only() -> None:
    # GT A [0,9], B [2,11]; P1 [1,10] (matches both), P2 [30,35] (matches nothing).
    # clamped/unclamped: FP = 2 predictions - 2 found = 0; strs: FP = predictions that matched nothing = 1.
    check_counts([("s", "v", [M(1, 10), M(30, 35)], [G(0, 9), G(2, 11)])],
          {"fertrain": (2, 0, 0), "one_to_one": (1, 1, 1), "megc2020": (2, 0, 0), "softnet": (1, 1, 1),
           "strs": (2, 1, 0), "auwgcn": (1, 1, 1)})


def test_videos_scored_with_gt_only() -> None:
    # a macro prediction in a video without any macro ground truth: an FP for the evaluators that score every
    # video; softnet (videos with a GT of the type) and strs (GT videos) do not look at it
    check_counts([("s", "v", [M(0, 9)], [])],
          {"fertrain": (0, 1, 0), "one_to_one": (0, 1, 0), "megc2020": (0, 1, 0), "softnet": (0, 0, 0),
           "strs": (0, 0, 0), "auwgcn": (0, 1, 0)})


def test_dummy_prediction_of_softnet() -> None:
    # GT [3,9] and no prediction: softnet adds the dummy [0,0] (IoU 0) -> one FP more; strs: the subject has no
    # prediction at all -> not scored
    outs = check_counts([("s", "v", [], [G(3, 9)])],
                 {"fertrain": (0, 0, 1), "one_to_one": (0, 0, 1), "megc2020": (0, 0, 1), "softnet": (0, 1, 1),
                  "strs": (0, 0, 0), "auwgcn": (0, 0, 1)})
    assert outs["softnet"]["macro/dummies"] == 1.0 and outs["softnet"]["macro/videos"] == 1.0


def test_video_without_prediction_file() -> None:
    # preds None: MEGC2020's return_preds_labels skips the video ("Warnings: there is no file"), so its GT is not
    # a FN -- counted as a quirk; every other protocol reads it as "no prediction"
    outs = check_counts([("s", "v", None, [G(3, 9)]), ("s", "w", [M(3, 9)], [G(3, 9)])],
                 {"fertrain": (1, 0, 1), "one_to_one": (1, 0, 1), "megc2020": (1, 0, 0), "softnet": (1, 1, 1),
                  "strs": (1, 0, 1), "auwgcn": (1, 0, 1)})
    assert outs["megc2020"]["quirk_changes"] == 1.0 and outs["megc2020"]["macro/videos"] == 1.0


def test_videos_scored_strs_subjects_with_predictions() -> None:
    # s1/a: GT [0,9] + prediction [0,9]; s2/b: GT [0,9], no prediction; s1/c: prediction [20,29], no GT.
    # strs scores only the GT videos of subjects with predictions: s2's GT is no FN, c's prediction no FP
    check_counts([("s1", "a", [M(0, 9)], [G(0, 9)]), ("s2", "b", [], [G(0, 9)]), ("s1", "c", [M(20, 29)], [])],
          {"fertrain": (1, 1, 1), "one_to_one": (1, 1, 1), "megc2020": (1, 1, 1), "softnet": (1, 1, 1),
           "strs": (1, 0, 0), "auwgcn": (1, 1, 1)})


def test_megc2020_quirk_is_warned(caplog) -> None:
    metric = SpottingF1(protocol="megc2020")
    metric.update([M(5, 5)], [G(5, 5)], "v")
    with caplog.at_level(logging.WARNING):
        out = metric.compute()
    assert out["quirk_changes"] == 1.0
    assert "MEGC2020 quirks changed the TP/FP/FN of 1 (video, kind) units (iou x1)" in caplog.text


def test_rules_are_named_options_and_errors_name_them() -> None:
    mix = resolve_rules("fertrain", {"matching": "best_gt", "videos": "with_gt", "dummy_prediction": [0, 0]})
    assert (mix.matching, mix.videos, mix.dummy_prediction) == ("best_gt", "with_gt", (0, 0))
    assert mix.name.startswith("fertrain+")
    # softnet's rules stated by hand on top of fertrain give softnet's counts (its ground-truth policy aside)
    case = [("s", "v", [M(0, 9, 0.9), M(1, 10, 0.8)], [G(0, 9), G(3, 12)]), ("s", "w", [], [G(3, 9)])]
    by_hand = {"matching": "best_gt", "fp": "unclamped", "videos": "with_gt", "dummy_prediction": [0, 0]}
    assert macro(run("fertrain", case, by_hand)) == macro(run("softnet", case)) == (1, 2, 2)
    with pytest.raises(ValueError, match=r"metric.protocol='megc2021': unknown spotting protocol"):
        resolve_rules("megc2021")
    with pytest.raises(ValueError, match=r"metric.rules.matchng: unknown rule"):
        resolve_rules("fertrain", {"matchng": "found"})
    with pytest.raises(ValueError, match=r"matching='greedy'; expected one of"):
        resolve_rules("fertrain", {"matching": "greedy"})
    with pytest.raises(ValueError, match=r"ground_truth.sammlv_onset_zero='zero'"):
        resolve_rules("fertrain", {"ground_truth": {"sammlv_onset_zero": "zero"}})
    for name, rules in PRESETS.items():
        assert rules.source, name  # every preset names its source (repository, file, function)
        if name not in ("fertrain", "one_to_one"):
            assert "/" in rules.source and ".py" in rules.source


# ------------------------------------------------------------------------------------------- ground truth
def test_ground_truth_policies_on_the_miniature_casme2(tmp_path: Path) -> None:
    from fertrain.data.datasets.casme2 import CASME2LongVideos, make_miniature_casme2

    videos = CASME2LongVideos(make_miniature_casme2(tmp_path / "cas", folders=(15, 16, 19), num_frames=40,
                                                    size=16)).videos()
    # per subject: disgust1 macro 5-24 and micro 30-36 (1-based), anger1 macro onset 10, apex 20, offset 0
    assert len(videos[0].annotations) + len(videos[1].annotations) == 3
    counts = {name: count_ground_truth(videos, rules) for name, rules in PRESETS.items()}
    assert counts["fertrain"] == {"macro": 6, "micro": 3}  # the reader's intervals (offset 0 -> apex)
    assert counts["megc2020"] == {"macro": 6, "micro": 3, "casme2_offset_zero:apex": 3}
    assert counts["softnet"] == {"macro": 6, "micro": 3, "casme2_offset_zero:apex": 3}
    assert counts["auwgcn"] == {"macro": 6, "micro": 3, "casme2_offset_zero:keep": 3}
    assert count_ground_truth(videos, GroundTruthPolicy(casme2_offset_zero="drop")) == \
        {"macro": 3, "micro": 3, "casme2_offset_zero:drop": 3}
    anger = next(v for v in videos if v.video_id == "15_0401")
    spans = {value: evaluation_ground_truth(anger, resolve_rules("fertrain", {"ground_truth": {
        "casme2_offset_zero": value}})) for value in ("apex", "2*apex-onset", "keep", "drop")}
    assert spans == {"apex": [GT(9, 19, "macro")], "2*apex-onset": [GT(9, 29, "macro")],
                     "keep": [GT(9, -1, "macro")], "drop": []}


def test_ground_truth_policies_on_the_miniature_sammlv(tmp_path: Path) -> None:
    from fertrain.data.datasets.sammlv import SAMMLongVideos, make_miniature_sammlv

    videos = SAMMLongVideos(make_miniature_sammlv(tmp_path / "samm", subjects=(6, 7, 8), num_frames=48,
                                                  size=16)).videos()
    # per subject: <s>_1 macro 5-30 and micro onset 40.6, apex -1, offset 47; <s>_2 macro onset 0, apex 12, offset 30
    counts = {name: count_ground_truth(videos, rules) for name, rules in PRESETS.items()}
    assert counts["fertrain"] == {"macro": 6, "micro": 3}
    assert counts["megc2020"] == {"macro": 6, "micro": 3, "sammlv_fractional:round": 3, "sammlv_onset_zero:keep": 3}
    assert counts["softnet"] == {"macro": 3, "micro": 3, "sammlv_fractional:floor": 3,
                                 "sammlv_onset_zero:drop_macro": 3}  # as SoftNet's 333 of 343 on the release
    assert counts["auwgcn"] == counts["megc2020"]
    assert count_ground_truth(videos, GroundTruthPolicy(sammlv_apex_missing="drop"))["micro"] == 0
    assert count_ground_truth(videos, GroundTruthPolicy(sammlv_fractional="drop"))["micro"] == 0
    v1, v2 = (next(v for v in videos if v.video_id == name) for name in ("006_1", "006_2"))
    micro = {name: [g for g in evaluation_ground_truth(v1, PRESETS[name]) if g.kind == "micro"]
             for name in ("fertrain", "megc2020", "softnet")}
    assert micro == {"fertrain": [GT(40, 46, "micro")], "megc2020": [GT(40, 46, "micro")],  # 40.6 -> 41 (1-based)
                     "softnet": [GT(39, 46, "micro")]}  # int(40.6 - 1) = 39
    assert evaluation_ground_truth(v2, PRESETS["megc2020"]) == [GT(-1, 29, "macro")]  # [0, 30] kept, 1-based
    assert evaluation_ground_truth(v2, PRESETS["fertrain"]) == [GT(11, 29, "macro")]  # reader: onset := apex
    assert evaluation_ground_truth(v2, PRESETS["softnet"]) == []
    # the same proposal on 006_2 under each evaluator's ground truth
    pred = [Interval(11, 29, "macro")]
    outs = {}
    for name in ("fertrain", "megc2020", "softnet"):
        metric = SpottingF1(protocol=name)
        metric.update_video(pred, v2)
        outs[name] = macro(metric.compute())
    # megc2020: calc_iou([-1,29], [11,29]) = 19 / 31 >= 0.5; softnet: no macro GT left -> video not scored
    assert outs == {"fertrain": (1, 0, 0), "megc2020": (1, 0, 0), "softnet": (0, 0, 0)}


# ------------------------------------------------------------------------------------------- plumbing
def test_pool_counts_pools_every_protocol_and_the_quirk_count() -> None:
    from fertrain.tasks.spotting import pool_counts

    folds = []
    for videos in ([("s", "v", [M(1, 10)], [G(0, 9), G(2, 11)])], [("s", "w", [M(5, 5)], [G(5, 5)])]):
        out = run("fertrain", videos)
        out.update({f"megc2020/{k}": v for k, v in run("megc2020", videos).items()})
        folds.append(out)
    pooled = pool_counts(folds)
    # fertrain: (2, 0, 0) + (1, 0, 0); megc2020: (2, -1, 0) + (0, 1, 1), and 2 quirk changes
    assert (pooled["macro/tp"], pooled["macro/fp"], pooled["macro/fn"]) == (3.0, 0.0, 0.0)
    assert (pooled["megc2020/macro/tp"], pooled["megc2020/macro/fp"], pooled["megc2020/macro/fn"]) == (2.0, 0.0, 1.0)
    assert pooled["megc2020/quirk_changes"] == 2.0 and pooled["megc2020/macro/videos"] == 2.0
    assert pooled["megc2020/overall/f1"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))


def test_task_validates_the_metric_config() -> None:
    from fertrain.cli import UsageError
    from fertrain.tasks.spotting import SpottingTask

    ok = SpottingTask._check_metric({"protocol": "softnet", "also": ["megc2020", "softnet", "strs"],
                                     "rules": {"iou_threshold": None}}, None, None)
    assert ok["protocol"] == "softnet" and ok["also"] == ["megc2020", "strs"] and ok["rules"] == {}
    with pytest.raises(UsageError, match=r"metric.protocol='megc2019'.*expected one of \['fertrain'"):
        SpottingTask._check_metric({"protocol": "megc2019"}, None, None)
    with pytest.raises(UsageError, match=r"metric: unknown keys \['protocols'\]"):
        SpottingTask._check_metric({"protocols": "softnet"}, None, None)
    assert SpottingTask._check_metric({}, 0.3, True) == {"protocol": "one_to_one", "also": [],
                                                         "rules": {"iou_threshold": 0.3},
                                                         "name": "one_to_one+iou_threshold=0.3"}


def test_table_adds_columns_for_the_also_protocols(tmp_path: Path) -> None:
    import json

    import yaml

    from fertrain.table import PROTOCOLS, build_table, collect_runs, render_markdown

    for subject, videos in (("s15", [("s15", "v", [M(1, 10)], [G(0, 9), G(2, 11)])]),
                            ("s16", [("s16", "w", [M(5, 5)], [G(5, 5)])])):
        out = run("fertrain", videos)
        out.update({f"softnet/{k}": v for k, v in run("softnet", videos).items()})
        d = tmp_path / subject
        d.mkdir()
        (d / "config_resolved.yaml").write_text(yaml.safe_dump({"experiment_name": "x", "seed": 1, "data": {
            "name": "casme2", "subject": subject}}))
        (d / "summary.json").write_text(json.dumps({"task": "spotting", "test": out, "test_source": "test_last",
                                                    "metric": {"protocol": "fertrain", "also": ["softnet"]}}))
    protocol = PROTOCOLS["casme2"]
    table = build_table(collect_runs(tmp_path, protocol), protocol, [])
    md = render_markdown(table)
    assert table.protocol.also == ("softnet",) and "softnet macro F1" in md and "softnet overall F1" in md
    # pooled: fertrain macro (2,0,0)+(1,0,0) -> F1 100; softnet (1,0,1)+(1,0,0) -> 2*2/(4+0+1) = 80
    pooled = next(r for r in table.rows if r.kind == "mean")
    assert pooled.values["test.macro/f1"] == 100.0 and pooled.values["test.softnet/macro/f1"] == 80.0
    assert "tested: checkpoint test_last, evaluator fertrain" in md and "DIFFERENT" not in md
    # a group whose folds were counted by different evaluators is flagged where the table is read
    summary = json.loads((tmp_path / "s16" / "summary.json").read_text())
    summary["metric"]["protocol"] = "softnet"
    (tmp_path / "s16" / "summary.json").write_text(json.dumps(summary))
    md = render_markdown(build_table(collect_runs(tmp_path, protocol), protocol, []))
    assert "DIFFERENT evaluators in one group" in md


# ------------------------------------------------------------------------------------------- plots
def test_spotting_plot_png_and_logging(tmp_path: Path) -> None:
    from PIL import Image

    from fertrain.spotting.plots import log_image, plot_spotting_video

    preds = [M(1, 10), M(30, 35), Interval(50, 56, "micro")]
    gts = [G(0, 9), G(2, 11), G(70, 80), GT(51, 56, "micro")]
    results = evaluate_video(PRESETS["fertrain"], preds, gts)
    curve = np.clip(np.sin(np.linspace(0, 6, 100)) * 0.5 + 0.5, 0, 1)
    png = plot_spotting_video(tmp_path / "plots" / "v.png", "v", 100, {"macro": curve, "micro": 1 - curve},
                              results, thresholds={"macro": 0.6, "micro": 0.5}, fps=30.0, protocol="fertrain")
    img = Image.open(png)
    assert img.info["dpi"][0] >= 100 - 1e-6 and img.size[0] >= 1000 and img.size[1] >= 500
    pixels = np.asarray(img.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 10  # not blank
    # the TP/FP/FN colours are really drawn: green (TP), red (FP) and orange (missed GT) pixels present
    for rgb in ((44, 160, 44), (214, 39, 40), (255, 127, 14)):
        assert (np.abs(pixels - rgb).sum(-1) < 30).sum() > 20, rgb
    with pytest.raises(ValueError, match="scores\\['macro'\\] has 3 values for 100 frames"):
        plot_spotting_video(tmp_path / "x.png", "x", 100, {"macro": np.zeros(3)})

    calls = []

    class TensorBoardLogger:  # duck-typed by class name, as Lightning's
        class experiment:  # noqa: N801
            @staticmethod
            def add_image(tag, img, global_step, dataformats):
                calls.append(("tb", tag, img.shape, dataformats))

    class WandbLogger:
        def log_image(self, key, images, step):
            calls.append(("wandb", key, images, step))

    class CSVLogger:
        pass

    assert log_image([TensorBoardLogger(), WandbLogger(), CSVLogger()], "test/spotting/v", png, 3) == 2
    assert calls[0][0] == "tb" and calls[0][2][2] == 3 and calls[0][3] == "HWC"
    assert calls[1] == ("wandb", "test/spotting/v", [str(png)], 3)
