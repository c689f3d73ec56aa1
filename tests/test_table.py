"""``python -m fertrain.table``: per-fold rows, mean ± std with a bootstrap CI, missing folds listed, flagged runs
(run records) never averaged silently, paired comparisons, published numbers with sources; Markdown, CSV, LaTeX."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fertrain.data.datasets.dfew import make_miniature_dfew
from fertrain.table import PROTOCOLS, TableError, build_table, collect_runs, load_papers, main, render_markdown

DFEW = PROTOCOLS["dfew"]
# test_best UAR/WAR and test_last UAR/WAR per fold (fractions, as summary.json stores them)
FOLD_VALUES = {
    1: (0.50, 0.60, 0.40, 0.55),
    2: (0.52, 0.60, 0.42, 0.55),
    3: (0.54, 0.60, 0.44, 0.55),
    4: (0.56, 0.60, 0.46, 0.55),
    5: (0.58, 0.65, 0.48, 0.55),
}
# Hand-computed, in percent. UAR best: 50, 52, 54, 56, 58 -> mean 54, deviations -4 -2 0 2 4, sum of squares 40,
# sample std sqrt(40 / 4) = 3.16. WAR best: 60, 60, 60, 60, 65 -> mean 61, squares 1+1+1+1+16 = 20,
# std sqrt(20 / 4) = 2.24. UAR last: 40..48 -> mean 44, std 3.16. WAR last: all 55 -> 55, std 0.
EXPECTED_MEAN_ROW = "| 54.00 ± 3.16 | [51.60, 56.40] | 61.00 ± 2.24 | [60.00, 63.00] | 44.00 ± 3.16 | [41.60, 46.40] | " \
    "55.00 ± 0.00 | [55.00, 55.00] |"
# a fold row: the four values, each followed by its (empty) CI cell
def fold_cells(ub: str, wb: str, ul: str, wl: str) -> str:
    return f"| {ub} |  | {wb} |  | {ul} |  | {wl} |  |"


def write_run(run_dir: Path, fold: int, seed: int = 42, experiment: str = "dfew_mscm", dataset: str = "dfew",
              values: tuple[float, float, float, float] | None = None, summary: bool = True) -> Path:
    """A run directory as fertrain.train.run leaves it: config_resolved.yaml and (optionally) summary.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"experiment_name": experiment, "seed": seed,
              "data": {"name": dataset, "fold": fold, "datamodule": {"source": {"fold": fold}}}}
    (run_dir / "config_resolved.yaml").write_text(yaml.safe_dump(config))
    if summary:
        ub, wb, ul, wl = values or FOLD_VALUES[fold]
        (run_dir / "summary.json").write_text(json.dumps({
            "experiment": experiment, "run_dir": str(run_dir),
            "val_best": {"epoch": 3, "uar": ub, "war": wb}, "val_last": {"epoch": 9, "uar": ul, "war": wl},
            "test_best": {"uar": ub, "war": wb, "ckpt": "best.ckpt"},
            "test_last": {"uar": ul, "war": wl, "ckpt": "last.ckpt"},
        }))
    return run_dir


def five_folds(root: Path, skip: tuple[int, ...] = ()) -> Path:
    for fold in FOLD_VALUES:
        if fold not in skip:
            write_run(root / f"fold{fold}_seed42", fold)
    return root


def _table_md(root: Path, **kwargs) -> str:
    return render_markdown(build_table(collect_runs(root, DFEW), DFEW, load_papers(None, DFEW), **kwargs))


def test_per_fold_rows_mean_std_and_papers(tmp_path: Path) -> None:
    root = five_folds(tmp_path / "logs" / "dfew_mscm")
    write_run(tmp_path / "logs" / "synthetic" / "seed42", fold=1, dataset="synthetic_motion")  # other protocol
    md = _table_md(tmp_path / "logs")
    assert md.count("| dfew_mscm | 42 |") == 5
    assert "| dfew_mscm | 42 | 3 " + fold_cells("54.00", "60.00", "44.00", "55.00") + \
        " `dfew_mscm/fold3_seed42` | ⚠ no run.json |" in md
    assert "mean ± std (5/5 folds)** " + EXPECTED_MEAN_ROW in md
    assert "synthetic" not in md and "missing" not in md
    assert "best epoch selected on test fold (val = test)" in md
    # published rows with their source
    assert "| MSCM (published) |  | 5-fold mean " + fold_cells("58.49", "70.16", "—", "—") in md
    assert "| CEFLNet (published) |  | 5-fold mean " + fold_cells("51.14", "65.35", "—", "—") in md
    assert "⚠ no run.json ×5 |" in md  # runs made before run records: averaged, and the mean row says so
    assert "Pattern Recognition 142 (2023) 109691" in md and "as reported by later papers" in md

    # the CLI writes the same Markdown and a CSV beside it
    assert main([str(root), "--out", str(tmp_path / "t" / "table.md")]) == 0
    assert (tmp_path / "t" / "table.md").read_text() == _table_md(root)
    rows = list(csv.DictReader((tmp_path / "t" / "table.csv").open()))
    assert [r["kind"] for r in rows] == ["fold"] * 5 + ["mean", "published", "published"]
    mean = rows[5]
    assert float(mean["test_best.uar"]) == pytest.approx(54.0) and float(mean["test_best.uar.std"]) == \
        pytest.approx(10 ** 0.5, abs=1e-4)
    assert float(mean["test_best.war.std"]) == pytest.approx(5 ** 0.5, abs=1e-4)


def test_missing_fold_is_listed_not_averaged(tmp_path: Path) -> None:
    root = five_folds(tmp_path / "runs", skip=(3,))
    write_run(tmp_path / "runs" / "fold3_seed42", fold=3, summary=False)  # crashed: config but no summary
    md = _table_md(root)
    assert md.count("| dfew_mscm | 42 |") == 4
    assert "mean ± std (4/5 folds)** | n/a |  | n/a |  | n/a |  | n/a |  |" in md
    assert "missing folds 3 (no mean" in md
    assert f"run without summary.json (crashed or still running), not in the table: {root / 'fold3_seed42'}" in md
    # opting in averages the 4 present folds, and still says which fold is missing
    md = _table_md(root, allow_incomplete=True)
    # UAR best 50, 52, 56, 58 -> 54.00, std sqrt((16 + 4 + 4 + 16) / 3) = 3.65
    assert "mean ± std (4/5 folds)** | 54.00 ± 3.65 | [" in md and "missing folds 3 (mean over the present" in md


def test_groups_by_seed_and_refuses_duplicates(tmp_path: Path) -> None:
    root = five_folds(tmp_path / "a")
    write_run(root / "other" / "fold2_seed7", fold=2, seed=7)
    md = _table_md(root)
    assert "mean ± std (5/5 folds)** " + EXPECTED_MEAN_ROW in md
    assert "dfew_mscm, seed 7: missing folds 1, 3, 4, 5" in md
    assert "over seeds" not in md  # seed 7 is incomplete: nothing to average over seeds

    # seed 7 complete with every value 10 points higher: per-seed means 54 and 64 -> 59 ± 7.07 (sqrt(50))
    for fold, values in FOLD_VALUES.items():
        write_run(root / "other" / f"fold{fold}_seed7", fold=fold, seed=7, values=tuple(v + 0.1 for v in values))
    md = _table_md(root)
    assert "| **dfew_mscm** |  | **mean ± std over seeds 7, 42** | 59.00 ± 7.07 | [54.00, 64.00] | 66.00 ± 7.07 |" in md

    write_run(root / "copy_of_fold2", fold=2)
    with pytest.raises(TableError, match="two runs of experiment 'dfew_mscm', seed 42, fold 2"):
        collect_runs(root, DFEW)


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


def test_bad_inputs_give_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _exit_code([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fertrain.table: error: run root") and "is not a folder" in err and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert _exit_code([str(tmp_path / "empty")]) == 2
    assert "no run of protocol 'dfew'" in capsys.readouterr().err
    assert _exit_code([str(tmp_path / "empty"), "--protocol", "nope"]) == 2  # argparse usage error
    five_folds(tmp_path / "runs")
    assert _exit_code([str(tmp_path / "runs"), "--compare", "dfew_mscm", "dfew_x"]) == 2
    assert "no run of experiment 'dfew_x'" in capsys.readouterr().err
    (tmp_path / "runs" / "fold1_seed42" / "run.json").write_text("{not json")
    assert _exit_code([str(tmp_path / "runs")]) == 2
    assert "run.json: not valid JSON" in capsys.readouterr().err

    write_run(tmp_path / "bad" / "run", fold=6, values=(0.5, 0.5, 0.5, 0.5))
    with pytest.raises(TableError, match="data.fold=6 is not a fold of protocol 'dfew'"):
        collect_runs(tmp_path / "bad", DFEW)

    paper = tmp_path / "paper.yaml"
    paper.write_text(yaml.safe_dump({"method": "X", "citation": "Y", "results": {"dfew": {
        "uar": 0.58, "war": 170.0, "source": {"reported_in": "paper", "table": 3, "page": 7}}}}))
    with pytest.raises(TableError, match=r"results.dfew.war=170.0; expected a percentage"):
        load_papers([paper], DFEW)
    paper.write_text(yaml.safe_dump({"method": "X", "citation": "Y", "results": {"dfew": {"uar": 50.0}}}))
    with pytest.raises(TableError, match="source must be a mapping with reported_in"):
        load_papers([paper], DFEW)
    paper.write_text(yaml.safe_dump({"method": "X", "citation": "Y", "results": {"dfew": {
        "uar": 50.0, "source": {"reported_in": "the paper", "table": 3, "page": 7}}}}))
    (published,) = load_papers([paper], DFEW)
    assert published.source == "the paper; table 3; p. 7"


def test_shipped_papers_have_sources() -> None:
    papers = {p.method: p for p in load_papers(None, DFEW)}
    assert papers["MSCM"].values == {"uar": 58.49, "war": 70.16}
    assert papers["CEFLNet"].values == {"uar": 51.14, "war": 65.35}
    assert "Information Sciences 598 (2022)" in papers["CEFLNet"].citation


@pytest.mark.slow
def test_five_fold_multirun_then_table_cli(tmp_path: Path) -> None:
    """The real thing: a 5-fold Hydra multirun of dfew_mscm on a miniature DFEW tree, then the table command."""
    root = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=2, num_frames=4, size=48)
    env = dict(os.environ, WANDB_MODE="offline", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "fertrain", "+experiment=dfew_mscm", f"data.root={root}", "data.fold=1,2,3,4,5",
           "debug=limit", "data.image_size=48", "data.datamodule.batch_size=4",
           "data.datamodule.sampler.num_segments=4", "data.datamodule.sampler.frames_per_segment=1",
           "model._target_=tests.faults.tiny.TinyVideoNet",  # the multirun and the table are the point, not MSCM
           f"paths.log_dir={tmp_path / 'logs'}", "-m"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    multirun = tmp_path / "logs" / "dfew_mscm" / "multirun"
    # debug=limit runs are flagged "debug" and left out of the mean unless --include-flagged
    proc = subprocess.run([sys.executable, "-m", "fertrain.table", str(multirun), "--include-flagged", "--paper",
                           str(Path(__file__).resolve().parents[1] / "conf" / "papers" / "mscm.yaml")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    md = (multirun / "table_dfew.md").read_text()
    assert proc.stdout.startswith(md)
    for fold in range(1, 6):
        job = next(d for d in multirun.glob("*/run.json")  # job folders are <index>-<hash>; overrides in run.json
                   if f"data.fold={fold}" in json.loads(d.read_text())["overrides"]).parent
        summary = json.loads((job / "summary.json").read_text())
        cells = fold_cells(*(f"{100 * summary[k][m]:.2f}" for k in ("test_best", "test_last") for m in ("uar", "war")))
        assert f"| dfew_mscm | 42 | {fold} {cells}" in md and "⚠ debug" in md
    assert "mean ± std (5/5 folds)" in md and "missing" not in md, md
    assert "| MSCM (published) |  | 5-fold mean | 58.49 |  | 70.16 |" in md and "CEFLNet" not in md
    assert len(list(csv.DictReader((multirun / "table_dfew.csv").open()))) == 5 + 1 + 1


def test_ten_fold_and_single_split_protocols(tmp_path: Path) -> None:
    """MMI's 10 folds: a missing fold is listed; RAF-DB (one official split): one row per seed, DMFE's published
    accuracy in the WAR column."""
    mmi = PROTOCOLS["mmi"]
    for fold in range(1, 10):  # fold 10 missing
        write_run(tmp_path / "mmi" / f"fold{fold}_seed42", fold, experiment="mmi_mscm", dataset="mmi",
                  values=(0.5, 0.6, 0.4, 0.5))
    md = render_markdown(build_table(collect_runs(tmp_path / "mmi", mmi), mmi, load_papers(None, mmi)))
    assert md.count("| mmi_mscm | 42 |") == 9 and "missing folds 10" in md
    raf = PROTOCOLS["rafdb"]
    for seed, war in ((1, 0.80), (2, 0.90)):
        write_run(tmp_path / "raf" / f"seed{seed}", 0, seed=seed, experiment="rafdb_dmfe", dataset="rafdb",
                  values=(0.7, war, 0.7, war))
    md = render_markdown(build_table(collect_runs(tmp_path / "raf", raf), raf, load_papers(None, raf)))
    assert "| 70.00 |  | 80.00 |" in md and "| 70.00 |  | 90.00 |" in md
    assert "DMFE (published)" in md and "89.63" in md


# ----------------------------------------------------------------------------------------------- run records
def write_record(run_dir: Path, status: str = "finished", data: dict | None = None) -> None:
    """``run.json`` as fertrain.train writes it (schema 1; only the keys the table reads are filled in)."""
    (run_dir / "run.json").write_text(json.dumps({
        "schema": 1, "kind": "train", "status": status, "experiment": None, "run_id": None, "run_dir": str(run_dir),
        "config": {}, "config_hash": None, "overrides": [], "git": {"commit": None, "dirty": None}, "versions": {},
        "device": {}, "seed": 42, "data": data, "started_at": None, "ended_at": None, "error": None, "attempts": []}))


def miniature_dfew_data(root: Path, fold: int) -> dict:
    """The run record's ``data`` entry of a dfew run on ``fold`` of the miniature tree (the real fingerprint)."""
    from fertrain.data.datasets.dfew import DFEW
    from fertrain.data.fingerprint import data_fingerprint

    source = DFEW(root, fold=fold)
    return data_fingerprint({s: source.records(s) for s in ("train", "val", "test")}, root)


# Percent. MSCM - CEFLNet per fold, UAR best: +2, +3, +1, +4, +2 -> mean 2.4, sample sd sqrt(1.3) = 1.1402,
# t = 2.4 / (1.1402 / sqrt(5)) = 4.7068 with 4 df; Wilcoxon: all 5 differences positive, W = 0, exact two-sided
# p = 2 / 2^5 = 0.0625 (the smallest possible with n = 5).
UAR_MSCM = [0.52, 0.55, 0.51, 0.58, 0.54]
UAR_CEFL = [0.50, 0.52, 0.50, 0.54, 0.52]


def two_methods(tmp_path: Path) -> tuple[Path, Path]:
    """dfew_mscm and dfew_ceflnet on the 5 folds of the miniature DFEW tree (records with real fingerprints), plus
    a debug run of dfew_mscm (seed 7, fold 1)."""
    dfew = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=1, num_frames=2, size=16)
    root = tmp_path / "logs"
    for experiment, uars in (("dfew_mscm", UAR_MSCM), ("dfew_ceflnet", UAR_CEFL)):
        for fold, uar in enumerate(uars, start=1):
            run = write_run(root / experiment / f"fold{fold}_seed42", fold, experiment=experiment,
                            values=(uar, uar + 0.1, uar - 0.05, uar + 0.05))
            write_record(run, data=miniature_dfew_data(dfew, fold))
    debug = write_run(root / "dfew_mscm" / "fold1_seed7", 1, seed=7, values=(0.99, 0.99, 0.99, 0.99))
    write_record(debug, status="debug", data=miniature_dfew_data(dfew, 1))
    return root, dfew


def test_two_methods_five_folds_ci_paired_test_flags_latex(tmp_path: Path) -> None:
    """Must show 3: CI and paired-test columns, a debug run flagged, LaTeX structure."""
    root, _ = two_methods(tmp_path)
    out = tmp_path / "table" / "dfew.md"
    assert main([str(root), "--out", str(out)]) == 0
    md = out.read_text()
    # the debug run is listed with its flag and averaged nowhere: seed 7 has no mean
    assert "| dfew_mscm | 7 | 1 " + fold_cells("99.00", "99.00", "99.00", "99.00") in md
    assert "`dfew_mscm/fold1_seed7` | ⚠ debug |" in md
    assert "| **dfew_mscm** | 7 | **mean ± std (0/5 folds)** | n/a |" in md and "1 flagged run(s) left out" in md
    assert "dfew_mscm, seed 7, fold 1: flagged debug; not in the mean" in md
    assert "99.00 ±" not in md and "over seeds" not in md
    # finished runs with records carry no flag; mean ± std and its CI (10,000 resamples, seed 0)
    assert "| **dfew_mscm** | 42 | **mean ± std (5/5 folds)** | 54.00 ± 2.74 | [52.00, 56.20] |" in md
    assert "| **dfew_ceflnet** | 42 | **mean ± std (5/5 folds)** | 51.60 ± 1.67 | [50.40, 52.80] |" in md
    assert "no run.json" not in md and "10,000 resamples, seed 0" in md
    # paired comparison, ceflnet vs mscm (sorted names): differences -2, -3, -1, -4, -2
    row = next(line for line in md.splitlines() if line.startswith("| dfew_ceflnet | dfew_mscm | UAR best |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3:6] == ["5", "1 2 3 4 5", "-2.40"]
    assert float(cells[7]) == pytest.approx(-4.7068, abs=1e-3)
    assert float(cells[8]) == pytest.approx(0.00926, abs=1e-4)  # two-sided t(4) tail of 4.7068
    assert cells[9] == "0 (n=5)" and cells[10] == "0.0625"
    assert "Student's paired t-test" in md and "Wilcoxon signed-rank" in md
    # every folds' test sets verified through the records' data summaries
    assert "not verified" not in md and "test sets differ" not in md
    paired = list(csv.DictReader(out.with_name("dfew_paired.csv").open()))
    assert [(r["metric"], r["n"]) for r in paired][:2] == [("test_best.uar", "5"), ("test_best.war", "5")]
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    mean = next(r for r in rows if r["kind"] == "mean" and r["seed"] == "42" and r["method"] == "dfew_mscm")
    assert (float(mean["test_best.uar.ci_low"]), float(mean["test_best.uar.ci_high"])) == (52.0, 56.2)
    assert next(r for r in rows if r["seed"] == "7")["flags"] == "debug"

    # LaTeX: a booktabs tabular fragment whose every row has as many cells as the column spec
    tex = out.with_suffix(".tex").read_text()
    check_latex_fragment(tex)
    assert r"dfew\_mscm" in tex and "±" not in tex and r"$\pm$" in tex and r"\textbf{54.00 $\pm$ 2.74}" in tex
    # fold overview per (experiment, seed) with at least 2 clean folds
    assert sorted(p.name for p in out.parent.glob("*.png")) == ["fold_overview_dfew_ceflnet_seed42.png",
                                                               "fold_overview_dfew_mscm_seed42.png"]


def check_latex_fragment(tex: str) -> None:
    import re

    body = [line for line in tex.splitlines() if line and not line.startswith("%")]
    assert body.count(r"\toprule") == body.count(r"\bottomrule") == tex.count(r"\begin{tabular}") >= 1
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}")
    ncols = None
    for line in body:
        m = re.fullmatch(r"\\begin\{tabular\}\{([lrc]+)\}", line)
        if m:
            ncols = len(m.group(1))
            continue
        if line.endswith(r"\\"):
            cells = re.split(r"(?<!\\)&", line[:-2])
            assert len(cells) == ncols, line
            text = re.sub(r"\\[a-zA-Z]+|\\[&%$#_{}]|\$[^$]*\$", "", line[:-2])
            assert not re.search(r"[%#_^~]", text), f"unescaped LaTeX special character in: {line}"
            assert text.count("{") == text.count("}"), line
        else:
            assert line in (r"\toprule", r"\midrule", r"\bottomrule", r"\end{tabular}"), line


def test_fingerprint_disagreement_and_different_test_sets_are_flagged(tmp_path: Path) -> None:
    root, dfew = two_methods(tmp_path)
    # seed 8 of dfew_mscm on fold 2 saw other data than seed 42 (e.g. a re-extracted tree): both flagged
    other = miniature_dfew_data(dfew, 2) | {"fingerprint": "sha256:" + "0" * 64}
    write_record(write_run(root / "dfew_mscm" / "fold2_seed8", 2, seed=8), data=other)
    # ceflnet's fold 3 was tested on another test set: left out of the paired comparison
    rec = json.loads((root / "dfew_ceflnet" / "fold3_seed42" / "run.json").read_text())
    rec["data"]["splits"]["test"]["samples"] += 1
    (root / "dfew_ceflnet" / "fold3_seed42" / "run.json").write_text(json.dumps(rec))
    md = _table_md(root)
    assert md.count("data differs (2 fingerprints on fold 2)") == 2 + 2  # both fold rows, and both left out (notes)
    assert "| **dfew_mscm** | 42 | **mean ± std (4/5 folds)** | n/a |" in md  # its fold 2 is flagged now
    assert "dfew_ceflnet vs dfew_mscm: fold 3 left out: the test sets differ" in md
    assert "| dfew_ceflnet | dfew_mscm | UAR best | 3 | 1 4 5 |" in md  # folds 2 (flagged) and 3 (test sets) out
    md = _table_md(root, include_flagged=True)
    assert "| **dfew_mscm** | 42 | **mean ± std (5/5 folds)** | 54.00 ± 2.74 |" in md
    assert "⚠ data differs (2 fingerprints on fold 2) |" in md
