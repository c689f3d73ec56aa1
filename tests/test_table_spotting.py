"""``python -m fertrain.table --protocol casme2``: spotting runs, TP/FP/FN pooled over LOSO folds (not F1 averaged)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from fertrain.table import PROTOCOLS, TableError, build_table, collect_runs, load_papers, main, render_markdown

CASME2 = PROTOCOLS["casme2"]
# per LOSO subject: (tp, fp, fn) for macro and micro
FOLDS = {
    "s15": {"macro": (2, 1, 0), "micro": (0, 2, 1)},
    "s16": {"macro": (1, 0, 1), "micro": (1, 0, 0)},
    "s17": {"macro": (0, 3, 2), "micro": (0, 0, 1)},
}
# Hand-computed pooled figures (percent):
#   macro TP 3, FP 4, FN 3: P 3/7, R 1/2, F1 = 2TP / (2TP + FP + FN) = 6/13 = 46.15
#     (averaging the folds' F1 -- 0.8, 0.667, 0 -- would give 48.89 instead)
#   micro TP 1, FP 2, FN 2: F1 = 2/5 ... = 2 / (2 + 2 + 2) = 33.33
#   overall TP 4, FP 6, FN 5: F1 = 8 / (8 + 6 + 5) = 8/19 = 42.11
POOLED_ROW = "| 46.15 | 3 | 4 | 3 | 33.33 | 1 | 2 | 2 | 42.11 | 4 | 6 | 5 |"


def compute_dict(counts: dict[str, tuple[int, int, int]]) -> dict[str, float]:
    """A SpottingF1.compute() dict from counts (F1 = 2TP / (2TP + FP + FN), 0 when that is 0/0)."""
    out: dict[str, float] = {}
    totals = [0, 0, 0]
    for kind in ("macro", "micro", "overall"):
        tp, fp, fn = counts[kind] if kind != "overall" else tuple(totals)
        if kind != "overall":
            totals = [a + b for a, b in zip(totals, (tp, fp, fn))]
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        out.update({f"{kind}/tp": float(tp), f"{kind}/fp": float(fp), f"{kind}/fn": float(fn),
                    f"{kind}/precision": p, f"{kind}/recall": r, f"{kind}/f1": f})
    return out


def write_run(run_dir: Path, subject: str | None, summary: dict, seed: int = 42, dataset: str = "casme2",
              experiment: str = "casme2_fesnet") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"experiment_name": experiment, "seed": seed, "data": {"name": dataset, "subject": subject}}
    (run_dir / "config_resolved.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def _md(root: Path) -> str:
    return render_markdown(build_table(collect_runs(root, CASME2), CASME2, load_papers(None, CASME2)))


def test_fold_runs_pool_counts_not_f1(tmp_path: Path) -> None:
    root = tmp_path / "multirun"
    for subject, counts in FOLDS.items():
        write_run(root / f"data.subject={subject}", subject,
                  {"task": "spotting", "test": compute_dict(counts), "test_source": "test_last"})
    md = _md(root)
    assert "**pooled (3 folds)** " + POOLED_ROW in md
    # fold rows keep each subject's own F1: s15 macro P 2/3, R 1 -> 80.00
    assert "| casme2_fesnet | 42 | s15 | 80.00 | 2 | 1 | 0 |" in md
    assert "48.89" not in md  # the average of the folds' macro F1 is not what the table reports
    assert "tested: checkpoint test_last, evaluator fertrain (not stated" in md
    # published row of FESNet: not published in public sources -> dashes, the evaluator unknown, and the note
    assert ("| FESNet (published) |  | LOSO, pooled counts; evaluator not stated in public sources | — |" in md
            and "not published in public sources" in md)

    # CLI: Markdown + CSV; the pooled CSV line has the summed counts
    assert main([str(root), "--protocol", "casme2", "--out", str(tmp_path / "t.md")]) == 0
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    pooled = next(r for r in rows if r["kind"] == "mean")
    assert (float(pooled["test.macro/tp"]), float(pooled["test.macro/fp"]), float(pooled["test.macro/fn"])) == \
        (3.0, 4.0, 3.0)
    assert float(pooled["test.overall/f1"]) == pytest.approx(800 / 19, abs=1e-4)


def test_one_loso_run_with_folds_gives_the_same_pooled_row(tmp_path: Path) -> None:
    folds = {s: compute_dict(c) for s, c in FOLDS.items()}
    write_run(tmp_path / "loso", None, {"task": "spotting", "folds": folds, "test": compute_dict(
        {"macro": (3, 4, 3), "micro": (1, 2, 2)})})
    write_run(tmp_path / "dfew_run", None, {"test_best": {"uar": 0.5}}, dataset="dfew")  # other protocol: ignored
    md = _md(tmp_path)
    assert md.count("| casme2_fesnet | 42 | s1") == 3
    assert "**pooled (3 folds)** " + POOLED_ROW in md
    # the same subject again as a separate fold run is a duplicate
    write_run(tmp_path / "again_s16", "s16", {"task": "spotting", "test": folds["s16"]})
    with pytest.raises(TableError, match="two runs of experiment 'casme2_fesnet', seed 42, fold s16"):
        collect_runs(tmp_path, CASME2)


def test_seeds_and_bad_spotting_summaries(tmp_path: Path) -> None:
    for seed, extra in ((1, 0), (2, 2)):  # seed 2: two more macro TP in s15 -> macro TP 5, FP 4, FN 1
        for subject, counts in FOLDS.items():
            c = dict(counts)
            if subject == "s15":
                c["macro"] = (2 + extra, 1, 0)
            if subject == "s17" and extra:
                c["macro"] = (0, 3, 0)
            write_run(tmp_path / f"seed{seed}" / subject, subject, {"task": "spotting", "test": compute_dict(c)},
                      seed=seed)
    md = _md(tmp_path)
    # seed 2 pooled macro: TP 5, FP 4, FN 1 -> 10 / (10 + 5) = 66.67; seed 1: 46.15 -> over seeds 56.41 ± 14.50
    # (std: (66.67 - 46.15) / sqrt(2) = 14.50)
    assert "| 66.67 | 5 | 4 | 1 |" in md
    assert "mean ± std over seeds 1, 2** | 56.41 ± 14.50 |" in md

    write_run(tmp_path / "bad", "s20", {"test": compute_dict(FOLDS["s15"])})  # no task: spotting
    with pytest.raises(TableError, match=r"summary\['task'\] is None"):
        collect_runs(tmp_path, CASME2)
    write_run(tmp_path / "bad", "s20", {"task": "spotting"})
    with pytest.raises(TableError, match="without a 'test' dict"):
        collect_runs(tmp_path, CASME2)
