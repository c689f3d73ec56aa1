"""``python -m fertrain.table``: per-fold rows, mean ± std, missing folds listed, published numbers with sources."""

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
EXPECTED_MEAN_ROW = "| 54.00 ± 3.16 | 61.00 ± 2.24 | 44.00 ± 3.16 | 55.00 ± 0.00 |"


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
    assert "| dfew_mscm | 42 | 3 | 54.00 | 60.00 | 44.00 | 55.00 | `dfew_mscm/fold3_seed42` |" in md
    assert "mean ± std (5/5 folds)** " + EXPECTED_MEAN_ROW in md
    assert "synthetic" not in md and "missing" not in md
    assert "best epoch selected on test fold (val = test)" in md
    # published rows with their source
    assert "| MSCM (published) |  | 5-fold mean | 58.49 | 70.16 | — | — |" in md
    assert "| CEFLNet (published) |  | 5-fold mean | 51.14 | 65.35 | — | — |" in md
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
    assert "mean ± std (4/5 folds)** | n/a | n/a | n/a | n/a |" in md
    assert "missing folds 3 (no mean" in md
    assert f"run without summary.json (crashed or still running), not in the table: {root / 'fold3_seed42'}" in md
    # opting in averages the 4 present folds, and still says which fold is missing
    md = _table_md(root, allow_incomplete=True)
    # UAR best 50, 52, 56, 58 -> 54.00, std sqrt((16 + 4 + 4 + 16) / 3) = 3.65
    assert "mean ± std (4/5 folds)** | 54.00 ± 3.65 |" in md and "missing folds 3 (mean over the present" in md


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
    assert "| **dfew_mscm** |  | **mean ± std over seeds 7, 42** | 59.00 ± 7.07 | 66.00 ± 7.07 |" in md

    write_run(root / "copy_of_fold2", fold=2)
    with pytest.raises(TableError, match="two runs of experiment 'dfew_mscm', seed 42, fold 2"):
        collect_runs(root, DFEW)


def test_bad_inputs_give_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no run of protocol 'dfew'" in capsys.readouterr().err

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
           f"paths.log_dir={tmp_path / 'logs'}", "-m"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    multirun = tmp_path / "logs" / "dfew_mscm" / "multirun"
    proc = subprocess.run([sys.executable, "-m", "fertrain.table", str(multirun), "--paper",
                           str(Path(__file__).resolve().parents[1] / "conf" / "papers" / "mscm.yaml")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    md = (multirun / "table_dfew.md").read_text()
    assert proc.stdout.startswith(md)
    for fold in range(1, 6):
        job = next(d for d in multirun.glob("*/run.json")  # job folders are <index>-<hash>; overrides in run.json
                   if f"data.fold={fold}" in json.loads(d.read_text())["overrides"]).parent
        summary = json.loads((job / "summary.json").read_text())
        cells = " | ".join(f"{100 * summary[k][m]:.2f}" for k in ("test_best", "test_last") for m in ("uar", "war"))
        assert f"| dfew_mscm | 42 | {fold} | {cells} |" in md
    assert "mean ± std (5/5 folds)" in md and "missing" not in md
    assert "| MSCM (published) |  | 5-fold mean | 58.49 | 70.16 |" in md and "CEFLNet" not in md
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
    assert "| 70.00 | 80.00 |" in md and "| 70.00 | 90.00 |" in md
    assert "DMFE (published)" in md and "89.63" in md
