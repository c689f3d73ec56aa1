"""``python -m fertrain.sweep_best``: the best trial of a stored Optuna study re-run on every DFEW fold, then tabled.
Training itself is replaced by a recorder (tested elsewhere): what is checked is which configs are run and that the
table receives them."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from omegaconf import DictConfig, OmegaConf

import fertrain.train
from fertrain import sweep_best

BASE = ["+experiment=dfew_mscm", "hparams_search=dfew_mscm_optuna", "data.root=/nowhere/DFEW", "data.fold=1"]


def make_study(tmp_path: Path) -> Path:
    """The journal storage fertrain.sweep would leave for BASE: two complete trials, the second one best."""
    sweep_dir = tmp_path / "logs" / "dfew_mscm" / "sweeps" / "dfew_mscm_fold1_optuna"
    sweep_dir.mkdir(parents=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep_dir / "optuna.journal")))
    study = optuna.create_study(study_name="dfew_mscm_fold1_optuna", storage=storage, direction="maximize")
    dist = {"optimizer.lr": optuna.distributions.FloatDistribution(5e-5, 1e-3, log=True),
            "loss.label_smoothing": optuna.distributions.CategoricalDistribution([0.0, 0.1])}
    for lr, smoothing, value in ((1e-4, 0.0, 0.40), (6e-4, 0.1, 0.55)):
        study.add_trial(optuna.trial.create_trial(params={"optimizer.lr": lr, "loss.label_smoothing": smoothing},
                                                  distributions=dist, value=value))
    return sweep_dir


def recording_run(seen: list[DictConfig], fail_fold: int | None = None):
    def run(cfg: DictConfig) -> dict:
        seen.append(cfg)
        if cfg.data.fold == fail_fold:
            raise FloatingPointError("non-finite training loss")
        out = Path(cfg.paths.output_dir)
        out.mkdir(parents=True)
        (out / "config_resolved.yaml").write_text(yaml.safe_dump(OmegaConf.to_container(cfg, resolve=True)))
        uar = 0.5 + 0.01 * cfg.data.fold
        summary = {"experiment": cfg.experiment_name, "run_dir": str(out), "test_best": {"uar": uar, "war": uar},
                   "test_last": {"uar": uar, "war": uar}}
        (out / "summary.json").write_text(json.dumps(summary))
        return summary
    return run


def test_best_trial_runs_every_fold_then_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep_dir = make_study(tmp_path)
    seen: list[DictConfig] = []
    monkeypatch.setattr(fertrain.train, "run", recording_run(seen))
    assert sweep_best.main([*BASE, f"paths.log_dir={tmp_path / 'logs'}"]) == 0
    assert [c.data.fold for c in seen] == [1, 2, 3, 4, 5]
    assert {c.optimizer.lr for c in seen} == {6e-4} and {c.loss.label_smoothing for c in seen} == {0.1}
    assert {c.data.datamodule.source.fold for c in seen} == {1, 2, 3, 4, 5}  # interpolations follow the fold
    out = sweep_dir / "best_trial_001"
    assert [Path(c.paths.output_dir) for c in seen] == [out / f"fold{k}_seed42" for k in range(1, 6)]
    report = json.loads((out / "best_trial.json").read_text())
    assert report["trial"] == 1 and report["value"] == 0.55 and report["tuned_on"] == {"data.fold": 1}
    assert report["storage"].endswith("optuna.journal") and report["protocol"] == "dfew"
    md = (out / "table_dfew.md").read_text()
    assert md.count("| dfew_mscm | 42 |") == 5 and "mean ± std (5/5 folds)** | 53.00 ± 1.58 |" in md


def test_a_failed_fold_is_exit_1_and_the_others_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    sweep_dir = make_study(tmp_path)
    seen: list[DictConfig] = []
    monkeypatch.setattr(fertrain.train, "run", recording_run(seen, fail_fold=3))
    with pytest.raises(SystemExit) as info:
        sweep_best.main([*BASE, f"paths.log_dir={tmp_path / 'logs'}", "--seeds", "7"])
    assert info.value.code == 1 and len(seen) == 5
    assert "fold3_seed7: FloatingPointError: non-finite training loss" in capsys.readouterr().err
    assert "missing folds 3" in (sweep_dir / "best_trial_001" / "table_dfew.md").read_text()


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        sweep_best.main([*BASE, f"paths.log_dir={tmp_path / 'logs'}"])
    assert info.value.code == 2 and "optuna.journal does not exist" in capsys.readouterr().err
    make_study(tmp_path)
    with pytest.raises(SystemExit) as info:
        sweep_best.main([*BASE, f"paths.log_dir={tmp_path / 'logs'}", "--study", "nope"])
    assert info.value.code == 2 and "no study 'nope'" in capsys.readouterr().err
