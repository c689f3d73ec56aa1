"""Re-run a sweep's best trial on every fold of the protocol and table the runs ("tune on one fold, report on all").

``python -m fertrain.sweep_best +experiment=NAME hparams_search=SPACE [k=v ...] [--storage S] [--study NAME]
[--folds 1,2,3,4,5] [--seeds 42] [--out DIR] [--no-table]`` — the same overrides as the ``fertrain.sweep`` command
that ran the study (``fertrain.sweep ... --best`` forwards here).

1. The study is read through Optuna's public API (``optuna.load_study``): storage ``--storage`` (a journal file,
   an ``.db`` SQLite file, or an RDB URL) or, by default, what the sweep config names (``sweep.storage``, else
   ``<sweep.dir>/optuna.journal``, else ``<sweep.dir>/optuna.db``); study ``--study`` or ``sweep.study_name``.
2. Its best complete trial's parameters (dotted config keys, as ``fertrain.sweep`` stores them) are added to the
   overrides, and one run per fold of the protocol (:data:`fertrain.report.table.PROTOCOLS`, found by
   ``data.name``; ``--folds`` to choose) and seed (``--seeds``, default the config's) is composed and run in this
   process with :func:`fertrain.train.run`, into ``<out>/fold<k>_seed<s>`` (default ``out`` =
   ``<sweep.dir>/best_trial_<n>``). A protocol without folds (one official split, LOSO inside one run) gets one
   run per seed. ``<out>/best_trial.json`` records the study, the trial, its value and parameters.
3. ``python -m fertrain.table <out> --protocol <protocol>`` then writes the table of those runs (``--no-table``
   skips it). The fold the study was tuned on is named in ``best_trial.json``: report it beside the table (tuning
   on a test fold and reporting it is optimistic).

Exit status: 0 all runs finished; 1 a run failed (the others still ran; the table lists it); 2 usage (no study,
no complete trial, unknown protocol).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from fertrain.cli import RunFailure, UsageError, guarded
from fertrain.sweep import _override

log = logging.getLogger("fertrain.sweep_best")


def open_storage(spec: str) -> Any:
    """An Optuna storage from a URL (``sqlite:///...``, ``postgresql://...``), an SQLite ``.db`` file or a
    journal file path.

    Raises:
        UsageError: a file path that does not exist.
    """
    import optuna

    if "://" in spec:
        return optuna.storages.RDBStorage(spec)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UsageError(f"study storage {path} does not exist (expected the sweep's optuna.journal or optuna.db, "
                         f"or pass --storage)")
    if path.suffix == ".db":
        return optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path.resolve())))


def default_storage(sweep_cfg: Any) -> str:
    """What ``fertrain.sweep`` uses for this config: ``sweep.storage``, else the journal or SQLite file in
    ``sweep.dir`` (the one that exists; journal first)."""
    if sweep_cfg.get("storage"):
        return str(sweep_cfg.storage)
    sweep_dir = Path(str(sweep_cfg.dir))
    journal, db = sweep_dir / "optuna.journal", sweep_dir / "optuna.db"
    return str(db) if db.is_file() and not journal.exists() else str(journal)


def best_trial(storage: Any, study_name: str | None) -> tuple[str, Any]:
    """``(study name, best complete trial)`` of the study.

    Raises:
        UsageError: no such study, several studies and no name, or no complete trial.
    """
    import optuna

    names = optuna.get_all_study_names(storage)
    if study_name is None:
        if len(names) != 1:
            raise UsageError(f"the storage holds studies {names}; name one with --study")
        study_name = names[0]
    if study_name not in names:
        raise UsageError(f"no study {study_name!r} in the storage (studies: {names})")
    study = optuna.load_study(study_name=study_name, storage=storage)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise UsageError(f"study {study_name!r} has no complete trial ({len(study.trials)} trials in all)")
    return study_name, study.best_trial


def _split(argv: Sequence[str]) -> tuple[list[str], dict[str, str | bool]]:
    options = {"--storage": None, "--study": None, "--folds": None, "--seeds": None, "--out": None}
    flags = {"--no-table": False}
    overrides: list[str] = []
    args = list(argv)
    while args:
        tok = args.pop(0)
        key, eq, value = tok.partition("=")
        if key in flags and not eq:
            flags[key] = True
        elif key in options:
            if not eq:
                if not args:
                    raise UsageError(f"{key} needs a value")
                value = args.pop(0)
            options[key] = value
        elif tok.startswith("--"):
            raise UsageError(f"unknown option {tok!r}; options: {', '.join([*options, *flags])}")
        else:
            overrides.append(f"+{tok}" if tok.startswith("hparams_search=") else tok)
    return overrides, {k: v for k, v in {**options, **flags}.items() if v is not None}


def _ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"{what}={text!r}: expected comma-separated integers") from None


def run_best(argv: Sequence[str]) -> dict[str, Any]:
    """Do what ``python -m fertrain.sweep_best ARGV`` does (module docstring); returns the report written to
    ``best_trial.json`` plus ``runs`` (run directory -> "finished" or the error)."""
    from hydra import compose, initialize_config_dir

    from fertrain.config import config_dir
    from fertrain.report.table import PROTOCOLS

    overrides, opts = _split(argv)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        base = compose("train", overrides=overrides)
        if "sweep" not in base:
            raise UsageError("no search space: pass the sweep's hparams_search=NAME (and its other overrides)")
        spec = str(opts.get("--storage") or default_storage(base.sweep))
        study_name, trial = best_trial(open_storage(spec), opts.get("--study") or str(base.sweep.study_name))
        dataset = str(base.data.name)
        protocol = next((p for p in PROTOCOLS.values() if p.dataset == dataset), None)
        folds = _ints(opts.get("--folds"), "--folds")
        if folds is None:
            folds = list(protocol.folds) if protocol is not None and protocol.fold_key == "data.fold" and len(
                protocol.folds) > 1 else [None]
        seeds = _ints(opts.get("--seeds"), "--seeds") or [int(base.seed)]
        out = Path(str(opts.get("--out") or Path(str(base.sweep.dir)) / f"best_trial_{trial.number:03d}")).resolve()
        out.mkdir(parents=True, exist_ok=True)
        params = [_override(k, v) for k, v in trial.params.items()]
        tuned_on = {"data.fold": base.data.get("fold")} if "fold" in base.data else {}
        report: dict[str, Any] = {
            "storage": spec, "study": study_name, "trial": trial.number, "value": trial.value, "params": trial.params,
            "trial_run_dir": trial.user_attrs.get("run_dir"), "tuned_on": tuned_on, "overrides": overrides,
            "protocol": protocol.name if protocol else None, "folds": folds, "seeds": seeds, "out": str(out)}
        (out / "best_trial.json").write_text(json.dumps(report, indent=2, default=str))
        runs: dict[str, str] = {}
        for seed in seeds:
            for fold in folds:
                name = f"fold{fold}_seed{seed}" if fold is not None else f"seed{seed}"
                extra = [f"seed={seed}", f"paths.output_dir={out / name}"]
                if fold is not None:
                    extra.append(f"data.fold={fold}")
                cfg = compose("train", overrides=[*overrides, *params, *extra])
                log.info("best trial %d on %s", trial.number, name)
                runs[str(out / name)] = _run_one(cfg)
    report["runs"] = runs
    if protocol is not None and not opts.get("--no-table"):
        from fertrain.report.table import main as table_main

        table_main([str(out), "--protocol", protocol.name])
    elif protocol is None:
        log.warning("no table protocol has data.name=%s: runs are in %s", dataset, out)
    return report


def _run_one(cfg: Any) -> str:
    from fertrain.train import run

    try:
        run(cfg)
    except Exception as err:  # noqa: BLE001 - one fold's failure is recorded; the other folds still run
        log.error("run %s failed: %s: %s", cfg.paths.output_dir, type(err).__name__, err)
        return f"{type(err).__name__}: {err}"
    return "finished"


@guarded("fertrain.sweep_best")
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fertrain.sweep_best``; exit status 0 (every run finished), 1 (a run failed) or 2 (usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s")
    report = run_best(argv)
    failed = {d: e for d, e in report["runs"].items() if e != "finished"}
    print(f"best trial {report['trial']} of {report['study']} (value {report['value']}): {report['params']}")
    print(f"runs: {report['out']} ({len(report['runs']) - len(failed)} finished, {len(failed)} failed)")
    if failed:
        raise RunFailure("failed runs: " + "; ".join(f"{d}: {e}" for d, e in failed.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
