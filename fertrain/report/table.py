"""Paper tables: collect the runs of a protocol and print them beside the published numbers.

``python -m fertrain.table RUN_ROOT [--protocol dfew|mmi|bu3dfe|afew|rafdb|affectnet|ferplus|casme2|sammlv]
[--paper conf/papers/mscm.yaml ...] [--out table.md] [--allow-incomplete] [--include-flagged]
[--compare A B ...] [--no-plots]`` (also ``python -m fertrain.report.table``)

Every run directory under ``RUN_ROOT`` (found by its ``config_resolved.yaml``, written by
:func:`fertrain.train.run`) whose dataset belongs to the protocol contributes one row: its fold and seed come
from the resolved config, its numbers from ``summary.json``, its flags from ``run.json``
(:mod:`fertrain.report.run_record`). Runs are grouped by ``(experiment_name, seed)``; each group gets one row per
fold and a mean ± std row with a 95 % bootstrap confidence interval (:mod:`fertrain.report.stats`). Two experiments
on the same folds are compared fold by fold (paired t-test and Wilcoxon signed-rank test, n stated). Published
numbers come from ``conf/papers/*.yaml`` (each with its source). Writes Markdown (``--out``, default
``RUN_ROOT/table_<protocol>.md``), CSV (``.csv``; paired comparisons in ``_paired.csv``), a LaTeX booktabs fragment
(``.tex``) and one fold-overview PNG per experiment and seed, and prints the Markdown.

Nothing is dropped or averaged silently: a fold that has no run is listed and, unless ``--allow-incomplete`` is
given, the group gets no mean (``n/a``); a run directory without ``summary.json`` (crashed or still running) is
listed with its recorded status; two runs of the same experiment, seed and fold are an error naming both
directories. A run flagged by its record (``debug``, ``running``, ``failed``, ``killed``) or whose data fingerprint
disagrees with another seed's on the same fold (``data differs``) is listed with its flags and enters no mean and
no comparison unless ``--include-flagged`` (then the mean row shows the flags). Runs made before run records
existed are flagged ``no run.json``, averaged, and the mean row says so.

Choices that are ours: numbers are percentages with 2 decimals in Markdown (4 in CSV); std is the sample
standard deviation (``n - 1``) over folds; the published UAR/WAR sit in the "best" columns, the usual DFEW
practice of reporting the best epoch (on DFEW, fertrain selects it on the test fold unless
``val_from_train > 0``, which the table states per group).

Recognition protocols: ``dfew`` (5 folds), ``mmi`` and ``bu3dfe`` (10 folds, ``data.fold``), and the single-split
ones (:class:`SplitProtocol`: ``afew`` val-as-test, ``rafdb``, ``affectnet``, ``ferplus``), where each run is one
row and the group row averages seeds.

Spotting (``--protocol casme2`` / ``sammlv``, :class:`SpottingProtocol`): runs whose ``summary.json`` has
``task: spotting`` and ``test`` = the :class:`~fertrain.metrics.spotting.SpottingF1` ``compute()`` dict. A fold is a
LOSO subject (``data.subject``; any subject set is accepted, the table lists how many were found). A run may hold
all its folds in ``summary["folds"]`` ({subject: compute() dict}); they become one row each. The group's
**pooled** row sums TP/FP/FN over the folds and computes precision/recall/F1 from the sums (MEGC practice: counts
pooled, not F1 averaged); F1 in percent, counts as integers.

Adding a protocol: a :class:`RecognitionProtocol`, :class:`SplitProtocol` or :class:`SpottingProtocol` entry in :data:`PROTOCOLS`;
collection, grouping, missing-fold reporting and rendering are shared.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import statistics
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import yaml

from fertrain.cli import UsageError, guarded
from fertrain.config import config_dir
from fertrain.report.run_record import read_run_record, run_flags
from fertrain.report.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, PairedResult, bootstrap_ci, paired_tests


class TableError(RuntimeError):
    """A run directory, summary or paper file is unusable (the message names the file and what was wrong)."""


# ----------------------------------------------------------------------------------------------- protocols
@dataclass(frozen=True)
class Column:
    """One numeric column: ``key`` is a dotted path into ``summary.json``; the stored value times ``scale`` is
    shown with ``digits`` decimals (default: fractions 0..1 shown in % with 2 decimals; counts: scale 1, 0)."""

    key: str
    header: str
    scale: float = 100.0
    digits: int = 2


@dataclass(frozen=True)
class Aggregate:
    """The summary of a group over folds: value and spread per column key (``None`` where not computable)."""

    label: str
    values: dict[str, float | None]
    spreads: dict[str, float | None]


@dataclass(frozen=True)
class Protocol:
    """An evaluation protocol: which runs belong to it, which folds it needs and how folds are summarised.

    Attributes:
        name: protocol name (``--protocol``) and key of published results in ``conf/papers/*.yaml``.
        dataset: ``data.name`` of the runs that belong to the protocol.
        folds: the folds a complete result needs (``data.fold`` values).
        title: heading of the table.
        published: published-result field (in the paper YAML) -> column key it is shown under.
        fold_key: dotted config key that holds the fold.
    """

    name: str
    dataset: str
    folds: tuple[Any, ...]
    title: str
    published: dict[str, str] = field(default_factory=dict)
    fold_key: str = "data.fold"

    @property
    def columns(self) -> tuple[Column, ...]:
        raise NotImplementedError

    @property
    def with_ci(self) -> bool:
        """Whether mean rows get a 95 % bootstrap CI column per value column (:mod:`fertrain.report.stats`)."""
        return False

    @property
    def paired(self) -> bool:
        """Whether experiments are compared fold by fold with paired tests (:func:`compare_methods`)."""
        return False

    @property
    def legend(self) -> str:
        """The sentence under the heading that says what the numbers are."""
        raise NotImplementedError

    def aggregate(self, values: dict[str, list[float]], label: str) -> Aggregate:
        """Summarise per-column fold values (scaled) into one row."""
        raise NotImplementedError

    def aggregate_seeds(self, values: dict[str, list[float]], label: str) -> Aggregate:
        """Summarise the per-seed aggregates of one experiment (default: like folds)."""
        return self.aggregate(values, label)

    def group_label(self, n: str) -> str:
        return f"mean ± std ({n} folds)"

    def fold_of(self, config: dict[str, Any], cfg_path: Path) -> Any:
        """The fold of a run from its resolved config.

        Raises:
            TableError: not an integer fold of the protocol.
        """
        fold = _lookup(config, self.fold_key)
        if not isinstance(fold, int):
            raise TableError(f"{cfg_path}: expected integer {self.fold_key} and seed, got {self.fold_key}={fold!r}, "
                             f"seed={config.get('seed')!r}")
        if fold not in self.folds:
            raise TableError(f"{cfg_path}: {self.fold_key}={fold} is not a fold of protocol {self.name!r} "
                             f"(folds {list(self.folds)})")
        return fold

    def split_summary(self, fold: Any, summary: dict[str, Any], path: Path) -> list[tuple[Any, dict[str, Any]]]:
        """``(fold, summary)`` pairs a run contributes (default: itself)."""
        return [(fold, summary)]

    def selection(self, config: dict[str, Any], summary: dict[str, Any]) -> str:
        """Where the reported checkpoint was chosen (shown in the notes)."""
        return _selection(config)

    def selection_note(self, selections: list[str]) -> str:
        return f"best epoch selected on {' / '.join(selections)}"


@dataclass(frozen=True)
class RecognitionProtocol(Protocol):
    """Clip-level recognition: UAR and WAR of the test fold, best and last checkpoint; mean ± sample std."""

    published: dict[str, str] = field(default_factory=lambda: {"uar": "test_best.uar", "war": "test_best.war"})

    @property
    def columns(self) -> tuple[Column, ...]:
        return (Column("test_best.uar", "UAR best"), Column("test_best.war", "WAR best"),
                Column("test_last.uar", "UAR last"), Column("test_last.war", "WAR last"))

    @property
    def legend(self) -> str:
        return ("Percent. UAR = mean per-class recall, WAR = overall accuracy, on each fold's test set; **best** = "
                "checkpoint with the best val UAR, **last** = last epoch. Mean ± sample std (n − 1) over folds. "
                "Published numbers are shown in the best columns as printed by their source.")

    @property
    def with_ci(self) -> bool:
        return True

    @property
    def paired(self) -> bool:
        return len(self.folds) > 1

    def aggregate(self, values: dict[str, list[float]], label: str) -> Aggregate:
        return _mean_std(values, label)


@dataclass(frozen=True)
class SplitProtocol(RecognitionProtocol):
    """One official train/test split and no folds (AFEW val, RAF-DB, AffectNet, FERPlus): a run is one row, and
    the group row of a method averages its seeds' runs. Runs have no ``data.fold``; they count as "fold" 1
    (``folds=(1,)``)."""

    def fold_of(self, config: dict[str, Any], cfg_path: Path) -> Any:
        return 1

    def group_label(self, n: str) -> str:
        return "official split"


def _mean_std(values: dict[str, list[float]], label: str) -> Aggregate:
    means = {k: statistics.fmean(v) if v else None for k, v in values.items()}
    stds = {k: statistics.stdev(v) if len(v) > 1 else None for k, v in values.items()}
    return Aggregate(label, means, stds)


SPOTTING_KINDS = ("macro", "micro", "overall")


@dataclass(frozen=True)
class SpottingProtocol(Protocol):
    """Spotting over LOSO subjects: per kind F1 (percent) and TP/FP/FN of each fold's test subject; the group row
    pools the counts over folds (sum TP, FP, FN, then P/R/F1; zero denominators give 0). The runs' evaluation
    protocol (``summary.json`` ``metric.protocol``, :mod:`fertrain.spotting.protocols`) is named in the notes; the
    protocols a run also evaluated (``metric.also``) get their own F1/TP/FP/FN columns (:meth:`for_runs`)."""

    published: dict[str, str] = field(default_factory=lambda: {
        f"f1_{k}": f"test.{k}/f1" for k in SPOTTING_KINDS})
    fold_key: str = "data.subject"
    also: tuple[str, ...] = ()

    @property
    def prefixes(self) -> tuple[str, ...]:
        return ("", *(f"{a}/" for a in self.also))

    @property
    def columns(self) -> tuple[Column, ...]:
        cols: list[Column] = []
        for prefix in self.prefixes:
            name = f"{prefix[:-1]} " if prefix else ""
            for kind in SPOTTING_KINDS:
                cols.append(Column(f"test.{prefix}{kind}/f1", f"{name}{kind} F1"))
                cols += [Column(f"test.{prefix}{kind}/{c}", c.upper(), scale=1.0, digits=0) for c in ("tp", "fp", "fn")]
        return tuple(cols)

    def for_runs(self, runs: Sequence[Any]) -> "SpottingProtocol":
        """This protocol with the extra evaluators found in the runs' summaries (``test.<name>/overall/f1``)."""
        from fertrain.spotting.protocols import PRESETS

        found = [name for name in PRESETS if any(f"{name}/overall/f1" in (r.summary.get("test") or {}) for r in runs)]
        return dataclasses.replace(self, also=tuple(found)) if found else self

    @property
    def legend(self) -> str:
        extra = (f" Extra columns: the same proposals under the evaluators {', '.join(self.also)} "
                 "(metric.also; docs/spotting_protocols.md)." if self.also else "")
        return ("Spotting F1 in percent with its TP/FP/FN counts, per LOSO test subject, under the evaluation "
                "protocol named in the notes (metric.protocol). **pooled** = TP, FP and FN summed over the subjects, "
                "then precision, recall and F1 from the sums (not an average of F1). Published F1 as printed by "
                "their source, with the evaluator it used where the source says." + extra)

    def group_label(self, n: str) -> str:
        return f"pooled ({n} folds)"

    def aggregate(self, values: dict[str, list[float]], label: str) -> Aggregate:
        out: dict[str, float | None] = {}
        for prefix in self.prefixes:
            for kind in SPOTTING_KINDS:
                key = f"test.{prefix}{kind}"
                counts = [values.get(f"{key}/{c}", []) for c in ("tp", "fp", "fn")]
                if not all(counts) or len({len(c) for c in counts}) != 1:
                    out.update({f"{key}/{c}": None for c in ("f1", "tp", "fp", "fn")})
                    continue
                tp, fp, fn = (int(round(sum(c))) for c in counts)
                out.update({f"{key}/tp": float(tp), f"{key}/fp": float(fp), f"{key}/fn": float(fn),
                            # = 2PR / (P + R) of fertrain.metrics.spotting.prf (0 when TP = 0); no torch import here
                            f"{key}/f1": 100.0 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0})
        return Aggregate(label, out, {k: None for k in out})

    def aggregate_seeds(self, values: dict[str, list[float]], label: str) -> Aggregate:
        """Over seeds: mean ± sample std of the per-seed pooled F1 and counts."""
        return _mean_std(values, label)

    def fold_of(self, config: dict[str, Any], cfg_path: Path) -> Any:
        fold = _lookup(config, self.fold_key)
        if fold is not None and not isinstance(fold, (str, int)):
            raise TableError(f"{cfg_path}: {self.fold_key}={fold!r}; expected a subject id or null")
        return None if fold is None else str(fold)

    def split_summary(self, fold: Any, summary: dict[str, Any], path: Path) -> list[tuple[Any, dict[str, Any]]]:
        """A run with ``summary["folds"]`` gives one fold per subject; otherwise its ``test`` is one fold
        (``data.subject``, or ``all`` for a run without subject and folds).

        Raises:
            TableError: the summary is not a spotting summary, or its ``test``/``folds`` are malformed.
        """
        if summary.get("task") != "spotting":
            raise TableError(f"{path}: summary['task'] is {summary.get('task')!r}; the {self.name!r} table expects "
                             f"spotting runs (task: spotting)")
        folds = summary.get("folds")
        if folds and fold is None:
            if not isinstance(folds, dict) or not all(isinstance(v, dict) for v in folds.values()):
                raise TableError(f"{path}: summary['folds'] must map subject -> compute() dict")
            return [(str(s), {"task": "spotting", "test": d}) for s, d in folds.items()]
        if not isinstance(summary.get("test"), dict):
            raise TableError(f"{path}: spotting summary without a 'test' dict (SpottingF1.compute() output)")
        return [("all" if fold is None else fold, summary)]

    def selection(self, config: dict[str, Any], summary: dict[str, Any]) -> str:
        protocol = (summary.get("metric") or {}).get("protocol",
                                                      "fertrain (not stated: summary before metric.protocol)")
        return f"checkpoint {summary.get('test_source') or 'not stated in summary.json'}, evaluator {protocol}"

    def selection_note(self, selections: list[str]) -> str:
        note = f"tested: {' / '.join(selections)}"
        if len({s.split(', evaluator ', 1)[-1] for s in selections}) > 1:
            note += " -- DIFFERENT evaluators in one group: its pooled counts mix protocols"
        return note


PROTOCOLS: dict[str, Protocol] = {
    "dfew": RecognitionProtocol(
        name="dfew", dataset="dfew", folds=(1, 2, 3, 4, 5),
        title="DFEW, 5-fold cross-validation (official single-labeled splits; Jiang et al., ACM MM 2020)",
    ),
    "mmi": RecognitionProtocol(
        name="mmi", dataset="mmi", folds=tuple(range(1, 11)),
        title="MMI, subject-independent 10-fold cross-validation (fertrain folds: conf/data/mmi.yaml)",
    ),
    "bu3dfe": RecognitionProtocol(
        name="bu3dfe", dataset="bu3dfe", folds=tuple(range(1, 11)),
        title="BU-3DFE sequences, subject-independent 10-fold cross-validation (fertrain folds: conf/data/bu3dfe.yaml)",
    ),
    "afew": SplitProtocol(
        name="afew", dataset="afew", folds=(1,),
        title="AFEW 7.0, validation set as test (test labels are private; EmotiW)",
    ),
    "rafdb": SplitProtocol(
        name="rafdb", dataset="rafdb", folds=(1,), title="RAF-DB basic, official test set (3,068 images)",
    ),
    "affectnet": SplitProtocol(
        name="affectnet", dataset="affectnet", folds=(1,), title="AffectNet, validation set as test",
    ),
    "ferplus": SplitProtocol(
        name="ferplus", dataset="ferplus", folds=(1,), title="FERPlus, official test set (PrivateTest), majority labels",
    ),
    "casme2": SpottingProtocol(
        name="casme2", dataset="casme2", folds=(),
        title="CAS(ME)^2 long videos, macro/micro spotting, leave-one-subject-out (spotting F1; evaluator in the notes)",
    ),
    "sammlv": SpottingProtocol(
        name="sammlv", dataset="sammlv", folds=(),
        title="SAMM Long Videos, macro/micro spotting, leave-one-subject-out (spotting F1; evaluator in the notes)",
    ),
}


# ----------------------------------------------------------------------------------------------- runs
COMPAT_FLAG = "no run.json"  # runs made before run records existed: listed and averaged, the flag shown


@dataclass(frozen=True)
class Run:
    """One finished run of a protocol (``summary.json`` present).

    ``flags`` say why its numbers must not be averaged beside paper numbers
    (:func:`fertrain.report.run_record.run_flags`: ``debug``, ``running``, ``failed``, ``killed``, ``no run.json``;
    plus ``data differs`` when its data fingerprint disagrees with another run of the same experiment and fold).
    ``data`` is the run record's ``data`` entry (``fingerprint``, ``splits``) or None.
    """

    run_dir: Path
    experiment: str
    seed: int
    fold: Any  # int (recognition folds) or str (LOSO subject)
    summary: dict[str, Any]
    selection: str  # where the best epoch was chosen, e.g. "test fold"
    flags: tuple[str, ...] = ()
    data: dict[str, Any] | None = None

    def counts(self, include_flagged: bool = False) -> bool:
        """Whether the run enters means: unflagged, or only :data:`COMPAT_FLAG`, or ``include_flagged``."""
        return include_flagged or all(f == COMPAT_FLAG for f in self.flags)


@dataclass
class Collection:
    """Runs of a protocol found under a root, and the run directories that could not be used (listed)."""

    root: Path
    runs: list[Run]
    incomplete: list[Path]  # run directories without summary.json
    incomplete_status: dict[Path, str] = field(default_factory=dict)  # their run record's status/error, if any


def _lookup(tree: dict[str, Any], key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _selection(config: dict[str, Any]) -> str:
    frac = _lookup(config, "data.datamodule.source.val_from_train")
    return f"held-out train clips (val_from_train={frac})" if frac else "test fold (val = test)"


def _record(run_dir: Path) -> dict[str, Any] | None:
    try:
        return read_run_record(run_dir)
    except ValueError as e:
        raise TableError(str(e)) from None


def _flag_fingerprints(runs: list[Run]) -> list[Run]:
    """Flag every run of an (experiment, fold) whose runs (seeds) carry more than one data fingerprint."""
    prints: dict[tuple[str, str], set[str]] = {}
    for run in runs:
        fp = (run.data or {}).get("fingerprint")
        if fp:
            prints.setdefault((run.experiment, str(run.fold)), set()).add(str(fp))
    out = []
    for run in runs:
        fps = prints.get((run.experiment, str(run.fold)), set())
        if len(fps) > 1 and (run.data or {}).get("fingerprint"):
            run = replace(run, flags=(*run.flags, f"data differs ({len(fps)} fingerprints on fold {run.fold})"))
        out.append(run)
    return out


def collect_runs(root: str | Path, protocol: Protocol) -> Collection:
    """Find the runs of ``protocol`` under ``root`` (any depth: single runs or a Hydra multirun folder).

    Each run's record (``run.json``, :func:`fertrain.report.run_record.read_run_record`) gives its flags
    (:attr:`Run.flags`); folds of one experiment whose data fingerprints (``run.json`` ``data.fingerprint``) differ
    between seeds are flagged too.

    Raises:
        TableError: ``root`` is not a folder; a config, summary or run record cannot be read or lacks
            ``data.fold``/``seed``; a fold outside the protocol; two runs with the same experiment, seed and fold.
    """
    root = Path(root)
    if not root.is_dir():
        raise TableError(f"run root {root} is not a folder (expected e.g. logs/dfew_mscm or its multirun/)")
    runs: list[Run] = []
    incomplete: list[Path] = []
    incomplete_status: dict[Path, str] = {}
    seen: dict[tuple[str, int, int], Path] = {}
    for cfg_path in sorted(root.rglob("config_resolved.yaml")):
        run_dir = cfg_path.parent
        try:
            config = yaml.safe_load(cfg_path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise TableError(f"{cfg_path}: cannot read the run config ({e})") from e
        if not isinstance(config, dict) or _lookup(config, "data.name") != protocol.dataset:
            continue
        seed = config.get("seed")
        fold = protocol.fold_of(config, cfg_path)
        if not isinstance(seed, int):
            raise TableError(f"{cfg_path}: expected integer {protocol.fold_key} and seed, got "
                             f"{protocol.fold_key}={fold!r}, seed={seed!r}")
        record = _record(run_dir)
        summary_path = run_dir / "summary.json"
        if not summary_path.is_file():
            incomplete.append(run_dir)
            if record is not None:
                incomplete_status[run_dir] = str(record.get("status")) + (
                    f": {record['error']}" if record.get("error") else "")
            continue
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise TableError(f"{summary_path}: cannot read the run summary ({e})") from e
        experiment = str(config.get("experiment_name") or summary.get("experiment") or run_dir.name)
        flags = tuple(run_flags(record))
        data = record.get("data") if record is not None and isinstance(record.get("data"), dict) else None
        for fold_i, summary_i in protocol.split_summary(fold, summary, summary_path):
            key = (experiment, seed, fold_i)
            if key in seen:
                raise TableError(f"two runs of experiment {experiment!r}, seed {seed}, fold {fold_i}: {seen[key]} "
                                 f"and {run_dir}; pass a RUN_ROOT that holds only one of them")
            seen[key] = run_dir
            runs.append(Run(run_dir, experiment, seed, fold_i, summary_i, protocol.selection(config, summary),
                            flags, data))
    return Collection(root, _flag_fingerprints(runs), incomplete, incomplete_status)


# ----------------------------------------------------------------------------------------------- papers
@dataclass(frozen=True)
class Published:
    """Published numbers of one method on one protocol (percent), with their source."""

    method: str
    values: dict[str, float]  # published field (uar, war, ...) -> percent
    setting: str
    citation: str
    source: str  # where exactly: table, page, or "as reported by ..."
    file: Path


def _format_source(src: dict[str, Any]) -> str:
    parts = [str(src["reported_in"])]
    table, page = src.get("table"), src.get("page")
    parts.append(f"table {table}" if table is not None else "table not checked")
    parts.append(f"p. {page}" if page is not None else "page not checked")
    if src.get("note"):
        parts.append(str(src["note"]))
    return "; ".join(parts)


def load_papers(paths: Sequence[str | Path] | None, protocol: Protocol) -> list[Published]:
    """Published results for ``protocol`` from paper YAML files (default: every ``conf/papers/*.yaml``).

    A paper file (see ``conf/papers/mscm.yaml``) has ``method``, ``citation`` and ``results.<protocol>`` with
    the numbers in percent, a ``setting`` and a ``source`` (``reported_in``, ``table``, ``page``, ``note``).
    With explicit ``paths`` a file without the protocol is an error; in the default set it is skipped.

    Raises:
        TableError: a file is missing, unreadable or malformed (names the file and key).
    """
    explicit = paths is not None
    files = [Path(p) for p in paths] if explicit else sorted((config_dir() / "papers").glob("*.yaml"))
    out: list[Published] = []
    for path in files:
        if not path.is_file():
            raise TableError(f"paper file {path} does not exist")
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise TableError(f"{path}: not valid YAML ({e})") from e
        for key in ("method", "citation", "results"):
            if not isinstance(doc, dict) or key not in doc:
                raise TableError(f"{path}: missing top-level key {key!r} (expected method, citation, results)")
        entry = doc["results"].get(protocol.name) if isinstance(doc["results"], dict) else None
        if entry is None:
            if explicit:
                raise TableError(f"{path}: no results.{protocol.name} (has {list(doc['results'] or {})})")
            continue
        src = entry.get("source")
        if not isinstance(src, dict) or "reported_in" not in src:
            raise TableError(f"{path}: results.{protocol.name}.source must be a mapping with reported_in, "
                             f"table, page")
        values: dict[str, float] = {}
        for name in protocol.published:
            if entry.get(name) is not None:  # null = not published / not found (the source note says which)
                value = entry[name]
                if not isinstance(value, (int, float)) or not 0.0 <= value <= 100.0:
                    raise TableError(f"{path}: results.{protocol.name}.{name}={value!r}; expected a percentage "
                                     f"in [0, 100]")
                values[name] = float(value)
        if not values and not src.get("note"):
            raise TableError(f"{path}: results.{protocol.name} has none of {list(protocol.published)} (all null "
                             f"needs source.note saying why)")
        out.append(Published(str(doc["method"]), values, str(entry.get("setting", "")), str(doc["citation"]),
                             _format_source(src), path))
    return out


# ----------------------------------------------------------------------------------------------- table
@dataclass(frozen=True)
class Row:
    """One table row. ``kind`` is ``fold``, ``mean`` (over folds), ``seeds`` (over the per-seed means) or
    ``published``; values in percent. ``ci``: 95 % bootstrap interval per column (mean rows of protocols with
    :attr:`Protocol.with_ci`); ``flags``: why the row's numbers are not clean (fold rows: the run's flags; mean
    rows: the flags of the runs averaged in, and how many flagged runs were left out)."""

    kind: str
    method: str
    seed: int | None
    fold: str
    values: dict[str, float | None]
    spreads: dict[str, float | None] = field(default_factory=dict)
    run: str = ""
    ref: str = ""
    ci: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    flags: str = ""


@dataclass(frozen=True)
class Comparison:
    """Method ``a`` against method ``b`` on one column over their common folds (differences ``a - b``, points)."""

    a: str
    b: str
    column: Column
    folds: tuple[str, ...]
    result: PairedResult


@dataclass
class Table:
    """The rendered content: rows plus the notes that say what is missing and where numbers come from."""

    protocol: Protocol
    rows: list[Row]
    notes: list[str]
    references: list[str]
    comparisons: list[Comparison] = field(default_factory=list)
    comparison_notes: list[str] = field(default_factory=list)


def _flag_summary(runs: Sequence[Run]) -> str:
    counts: dict[str, int] = {}
    for run in runs:
        for flag in run.flags:
            counts[flag] = counts.get(flag, 0) + 1
    return ", ".join(f"{flag} ×{n}" if n > 1 else flag for flag, n in counts.items())


def _ci_row(protocol: Protocol, per_column: dict[str, list[float]], agg: Aggregate) -> dict[str, Any]:
    if not protocol.with_ci:
        return {}
    return {k: (bootstrap_ci(v) if agg.values.get(k) is not None else None) for k, v in per_column.items()}


def build_table(collection: Collection, protocol: Protocol, papers: Sequence[Published],
                allow_incomplete: bool = False, include_flagged: bool = False,
                compare: Sequence[tuple[str, str]] | None = None) -> Table:
    """Group runs by ``(experiment, seed)``: one row per fold and a mean ± std row per group (with a 95 % bootstrap
    CI where the protocol has one); for an experiment with several complete seeds, a row with the mean ± std over
    seeds of the per-seed means; then the papers; then the paired comparisons of experiments (all pairs, or
    ``compare``).

    Flagged runs (:attr:`Run.flags`) are listed with their flags; they enter no mean unless ``include_flagged``
    (then the mean row carries their flags). Runs flagged only ``no run.json`` (made before run records existed)
    are averaged, and the mean row says so.

    Raises:
        TableError: ``compare`` names an experiment that has no run in the collection.
    """
    protocol = protocol.for_runs(collection.runs) if hasattr(protocol, "for_runs") else protocol  # spotting: also
    rows: list[Row] = []
    notes: list[str] = []
    groups: dict[tuple[str, int], list[Run]] = {}
    for run in collection.runs:
        groups.setdefault((run.experiment, run.seed), []).append(run)
    seed_means: dict[str, dict[int, dict[str, float | None]]] = {}  # experiment -> complete seed -> means
    seed_flags: dict[str, list[Run]] = {}
    for (experiment, seed), runs in sorted(groups.items()):
        runs.sort(key=lambda r: (0, r.fold, "") if isinstance(r.fold, int) else (1, 0, str(r.fold)))
        per_column: dict[str, list[float]] = {c.key: [] for c in protocol.columns}
        used = [r for r in runs if r.counts(include_flagged)]
        for run in runs:
            values: dict[str, float | None] = {}
            for col in protocol.columns:
                v = _lookup(run.summary, col.key)
                values[col.key] = None if v is None else col.scale * float(v)
                if v is not None and run in used:
                    per_column[col.key].append(col.scale * float(v))
            rel = run.run_dir.relative_to(collection.root) if run.run_dir != collection.root else Path(".")
            rows.append(Row("fold", experiment, seed, str(run.fold), values, run=str(rel), flags=", ".join(run.flags)))
        left_out = [r for r in runs if r not in used]
        for run in left_out:
            notes.append(f"{experiment}, seed {seed}, fold {run.fold}: flagged {', '.join(run.flags)}; not in the "
                         f"mean (--include-flagged averages it)")
        present = [r.fold for r in used]
        missing = [f for f in protocol.folds if f not in present]
        n = f"{len(present)}/{len(protocol.folds)}" if protocol.folds else str(len(present))
        if missing:
            notes.append(f"{experiment}, seed {seed}: missing folds {', '.join(map(str, missing))} "
                         + ("(mean over the present folds only)" if allow_incomplete
                            else "(no mean; --allow-incomplete averages the present folds)"))
        if (missing and not allow_incomplete) or not used:
            agg = Aggregate(protocol.group_label(n), {c.key: None for c in protocol.columns},
                            {c.key: None for c in protocol.columns})
        else:
            agg = protocol.aggregate(per_column, protocol.group_label(n))
            for col in protocol.columns:
                if len(per_column[col.key]) != len(present):
                    agg.values[col.key] = agg.spreads[col.key] = None
                    notes.append(f"{experiment}, seed {seed}: {col.key} is absent from some summaries; no mean")
        flags = _flag_summary(used)
        if left_out:
            flags = ", ".join(x for x in (flags, f"{len(left_out)} flagged run(s) left out") if x)
        rows.append(Row("mean", experiment, seed, agg.label, agg.values, agg.spreads,
                        ci=_ci_row(protocol, per_column, agg), flags=flags))
        if not missing and used:
            seed_means.setdefault(experiment, {})[seed] = agg.values
            seed_flags.setdefault(experiment, []).extend(used)
        selections = sorted({r.selection for r in runs})
        notes.append(f"{experiment}, seed {seed}: {protocol.selection_note(selections)}")
        last_seed = max(s for e, s in groups if e == experiment) == seed
        if last_seed and len(seed_means.get(experiment, {})) > 1:
            means = seed_means[experiment]
            per_seed = {c.key: [m[c.key] for m in means.values() if m[c.key] is not None] for c in protocol.columns}
            label = f"mean ± std over seeds {', '.join(map(str, sorted(means)))}"
            over = protocol.aggregate_seeds(per_seed, label)
            for col in protocol.columns:
                if len(per_seed[col.key]) != len(means):
                    over.values[col.key] = over.spreads[col.key] = None
            rows.append(Row("seeds", experiment, None, over.label, over.values, over.spreads,
                            ci=_ci_row(protocol, per_seed, over), flags=_flag_summary(seed_flags[experiment])))
    for path in collection.incomplete:
        status = collection.incomplete_status.get(path)
        notes.append(f"run without summary.json ({status or 'crashed or still running'}), not in the table: {path}")
    if protocol.with_ci:
        notes.append(f"95% CI: percentile bootstrap of the mean over folds (seeds in the over-seeds row), "
                     f"{BOOTSTRAP_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED} (fertrain.report.stats)")
    references = []
    for i, paper in enumerate(papers, start=1):
        values = {c.key: None for c in protocol.columns}
        for name, value in paper.values.items():
            values[protocol.published[name]] = value
        rows.append(Row("published", f"{paper.method} (published)", None, paper.setting or "—", values,
                        ref=f"[{i}]"))
        references.append(f"[{i}] {paper.citation}. Source: {paper.source}. ({paper.file.name})")
    table = Table(protocol, rows, notes, references)
    if protocol.paired:
        table.comparisons, table.comparison_notes = compare_methods(collection, protocol, compare, include_flagged)
    return table


def _fold_values(runs: Sequence[Run], protocol: Protocol) -> dict[str, dict[str, float]]:
    """Fold -> column key -> value (percent), the mean over the runs (seeds) of that fold."""
    acc: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for col in protocol.columns:
            v = _lookup(run.summary, col.key)
            if v is not None:
                acc.setdefault(str(run.fold), {}).setdefault(col.key, []).append(col.scale * float(v))
    return {f: {k: statistics.fmean(v) for k, v in cols.items()} for f, cols in acc.items()}


def _test_split(runs: Sequence[Run], fold: str) -> dict[str, Any] | None:
    for run in runs:
        if str(run.fold) == fold and isinstance(_lookup(run.data or {}, "splits.test"), dict):
            return _lookup(run.data or {}, "splits.test")
    return None


def compare_methods(collection: Collection, protocol: Protocol, pairs: Sequence[tuple[str, str]] | None = None,
                    include_flagged: bool = False) -> tuple[list[Comparison], list[str]]:
    """Paired comparison of experiments on their common folds, per column: fold-wise differences ``a - b`` (per
    fold, each method's mean over its seeds), their mean and bootstrap CI, the paired t-test and the Wilcoxon
    signed-rank test (:func:`fertrain.report.stats.paired_tests`). Flagged runs are left out as in the means.

    A fold whose test sets differ between the two methods (run records' ``data.splits.test``: sample count and
    per-class counts) is left out of the pair and listed; where a run has no record the test sets are not verified
    (said in the notes).

    Raises:
        TableError: a pair names an experiment without runs in the collection.
    """
    by_exp: dict[str, list[Run]] = {}
    for run in collection.runs:
        if run.counts(include_flagged):
            by_exp.setdefault(run.experiment, []).append(run)
    known = sorted({r.experiment for r in collection.runs})
    if pairs is None:
        pairs = [(a, b) for i, a in enumerate(known) for b in known[i + 1:]]
    out: list[Comparison] = []
    notes: list[str] = []
    for a, b in pairs:
        for name in (a, b):
            if name not in known:
                raise TableError(f"--compare {a} {b}: no run of experiment {name!r} under {collection.root} "
                                 f"(experiments: {known})")
        va, vb = _fold_values(by_exp.get(a, []), protocol), _fold_values(by_exp.get(b, []), protocol)
        common = sorted(set(va) & set(vb), key=lambda f: (len(f), f))
        usable, unverified = [], []
        for fold in common:
            ta, tb = _test_split(by_exp[a], fold), _test_split(by_exp[b], fold)
            if ta is not None and tb is not None and ta != tb:
                notes.append(f"{a} vs {b}: fold {fold} left out: the test sets differ ({ta} vs {tb})")
                continue
            if ta is None or tb is None:
                unverified.append(fold)
            usable.append(fold)
        if unverified:
            notes.append(f"{a} vs {b}: test sets of fold(s) {', '.join(unverified)} not verified (no data summary "
                         f"in run.json)")
        for col in protocol.columns:
            folds = [f for f in usable if col.key in va[f] and col.key in vb[f]]
            result = paired_tests([va[f][col.key] for f in folds], [vb[f][col.key] for f in folds])
            out.append(Comparison(a, b, col, tuple(folds), result))
    if out:
        notes.append("Paired tests over folds (differences a − b in points): Student's paired t-test "
                     "(scipy.stats.ttest_rel) and Wilcoxon signed-rank (scipy.stats.wilcoxon, exact, zero "
                     f"differences dropped), two-sided; 95% CI of the mean difference by percentile bootstrap, "
                     f"{BOOTSTRAP_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED}. With 5 folds the smallest Wilcoxon "
                     "p is 0.0625.")
    return out, notes


# ----------------------------------------------------------------------------------------------- rendering
def _pct(value: float | None, spread: float | None = None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" + (f" ± {spread:.{digits}f}" if spread is not None else "")


def _ci(ci: tuple[float, float] | None, digits: int = 2) -> str:
    return "" if ci is None else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _p(p: float | None) -> str:
    return "n/a" if p is None else (f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}")


def _headers(protocol: Protocol) -> list[tuple[str, Column, bool]]:
    """Value columns in display order: ``(header, column, is_ci)``."""
    out = []
    for c in protocol.columns:
        out.append((c.header, c, False))
        if protocol.with_ci:
            out.append((f"{c.header} 95% CI", c, True))
    return out


def _cells(row: Row, protocol: Protocol) -> list[str]:
    cells = []
    for _, c, is_ci in _headers(protocol):
        if row.kind == "published":
            cells.append("" if is_ci else ("—" if row.values.get(c.key) is None else _pct(row.values[c.key], None,
                                                                                           c.digits)))
        elif is_ci:
            cells.append(_ci(row.ci.get(c.key), c.digits))
        else:
            cells.append(_pct(row.values.get(c.key), row.spreads.get(c.key), c.digits))
    return cells


def comparison_rows(table: Table) -> list[list[str]]:
    """Cells of the comparison table: a, b, metric, n, folds, mean diff, 95% CI, t, p (t), W, p (Wilcoxon), note."""
    out = []
    for cmp in table.comparisons:
        r = cmp.result
        out.append([cmp.a, cmp.b, cmp.column.header, str(r.n), " ".join(cmp.folds),
                    "n/a" if r.mean_diff is None else f"{r.mean_diff:+.2f}", _ci(r.ci),
                    "n/a" if r.t_stat is None else f"{r.t_stat:.3f}", _p(r.t_p),
                    "n/a" if r.wilcoxon_stat is None else f"{r.wilcoxon_stat:g} (n={r.wilcoxon_n})",
                    _p(r.wilcoxon_p), r.why])
    return out


COMPARISON_HEADER = ["a", "b", "metric", "n folds", "folds", "mean diff a − b", "95% CI", "t", "p (paired t)",
                     "W (Wilcoxon)", "p (Wilcoxon)", "note"]


def render_markdown(table: Table) -> str:
    """The table as GitHub Markdown: heading, legend, table, paired comparisons, notes and references."""
    heads = _headers(table.protocol)
    lines = [f"## {table.protocol.title}", "", table.protocol.legend, "",
             "| method | seed | fold | " + " | ".join(h for h, _, _ in heads) + " | run | flags |",
             "| --- | --- | --- | " + " | ".join("---:" for _ in heads) + " | --- | --- |"]
    for row in table.rows:
        method = f"**{row.method}**" if row.kind in ("mean", "seeds") else row.method
        fold = f"**{row.fold}**" if row.kind in ("mean", "seeds") else row.fold
        seed = "" if row.seed is None else str(row.seed)
        run = f"`{row.run}`" if row.run else row.ref
        flags = f"⚠ {row.flags}" if row.flags else ""
        lines.append(f"| {method} | {seed} | {fold} | " + " | ".join(_cells(row, table.protocol))
                     + f" | {run} | {flags} |")
    if table.comparisons:
        lines += ["", "### Paired comparison on the same folds", "",
                  "| " + " | ".join(COMPARISON_HEADER) + " |",
                  "| " + " | ".join("---" if i in (0, 1, 2, 4, 11) else "---:" for i in range(len(COMPARISON_HEADER)))
                  + " |"]
        lines += ["| " + " | ".join(cells) + " |" for cells in comparison_rows(table)]
    notes = table.notes + table.comparison_notes
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    if table.references:
        lines += ["", "References:", *[f"- {r}" for r in table.references]]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters; ``±`` and ``−`` become math, ``⚠`` is dropped."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    return out.replace("±", r"$\pm$").replace("−", "$-$").replace("×", r"$\times$").replace("⚠ ", "")


def render_latex(table: Table) -> str:
    """The table as a LaTeX fragment (booktabs: ``\\usepackage{booktabs}``): one ``tabular`` with the fold, mean
    and published rows (``\\midrule`` between methods), and one for the paired comparison if there is any. Flags
    are a column of their own; paths are left out (they are in the Markdown and CSV)."""
    heads = _headers(table.protocol)
    ncols = 3 + len(heads) + 1
    spec = "lll" + "r" * len(heads) + "l"
    lines = [f"% fertrain.table: {latex_escape(table.protocol.title)}",
             "% needs \\usepackage{booktabs}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(["Method", "Seed", "Fold", *[latex_escape(h) for h, _, _ in heads], "Flags"]) + r" \\",
             r"\midrule"]
    previous = None
    for row in table.rows:
        group = (row.kind == "published", row.method if row.kind != "published" else "")
        if previous is not None and group != previous:
            lines.append(r"\midrule")
        previous = group
        cells = [latex_escape(row.method), "" if row.seed is None else str(row.seed), latex_escape(row.fold),
                 *[latex_escape(c) for c in _cells(row, table.protocol)], latex_escape(row.flags)]
        if row.kind in ("mean", "seeds"):
            cells = [rf"\textbf{{{c}}}" if c and i < ncols - 1 else c for i, c in enumerate(cells)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.comparisons:
        cmp_heads = [h for h in COMPARISON_HEADER if h != "folds"]
        lines += ["", "% paired comparison on the same folds (differences a - b, points)",
                  rf"\begin{{tabular}}{{lll{'r' * (len(cmp_heads) - 4)}l}}", r"\toprule",
                  " & ".join(latex_escape(h) for h in cmp_heads) + r" \\", r"\midrule"]
        for cells in comparison_rows(table):
            del cells[4]  # the fold list
            lines.append(" & ".join(latex_escape(c) for c in cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_csv(table: Table, path: str | Path) -> Path:
    """One CSV line per row: ``kind, method, seed, fold``, each column (percent, 4 decimals), its std and (with
    CI) ``.ci_low``/``.ci_high``, ``run``, ``ref``, ``flags``. Paired comparisons go to ``<stem>_paired.csv``
    beside it. Written atomically."""
    path = Path(path)
    cols = table.protocol.columns
    header = ["kind", "method", "seed", "fold"]
    for c in cols:
        header += [c.key, f"{c.key}.std"] + ([f"{c.key}.ci_low", f"{c.key}.ci_high"] if table.protocol.with_ci else [])
    header += ["run", "ref", "flags"]
    rows: list[list[Any]] = [header]
    for row in table.rows:
        line: list[Any] = [row.kind, row.method, "" if row.seed is None else row.seed, row.fold]
        for c in cols:
            v, s = row.values.get(c.key), row.spreads.get(c.key)
            line += ["" if v is None else f"{v:.4f}", "" if s is None else f"{s:.4f}"]
            if table.protocol.with_ci:
                ci = row.ci.get(c.key)
                line += ["", ""] if ci is None else [f"{ci[0]:.4f}", f"{ci[1]:.4f}"]
        line += [row.run, row.ref, row.flags]
        rows.append(line)
    _write_rows(path, rows)
    if table.comparisons:
        paired = [["a", "b", "metric", "n", "folds", "mean_diff", "ci_low", "ci_high", "t", "p_t", "wilcoxon_w",
                   "wilcoxon_n", "p_wilcoxon", "note"]]
        for cmp in table.comparisons:
            r = cmp.result
            paired.append([cmp.a, cmp.b, cmp.column.key, r.n, " ".join(cmp.folds), _num(r.mean_diff),
                           *(["", ""] if r.ci is None else [_num(r.ci[0]), _num(r.ci[1])]), _num(r.t_stat),
                           _num(r.t_p, 6), _num(r.wilcoxon_stat), r.wilcoxon_n, _num(r.wilcoxon_p, 6), r.why])
        _write_rows(path.with_name(path.stem + "_paired.csv"), paired)
    return path


def _num(v: float | None, digits: int = 4) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def _write_rows(path: Path, rows: list[list[Any]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    tmp.replace(path)


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def plot_fold_overviews(table: Table, collection: Collection, papers: Sequence[Published], out_dir: Path,
                        include_flagged: bool = False) -> list[Path]:
    """One bar chart per ``(experiment, seed)`` with at least 2 folds: the published columns of the protocol per
    fold, their mean, and the published value of a paper whose method name occurs in the experiment name
    (``MSCM`` -> ``dfew_mscm``; ours). Flagged runs are drawn only with ``include_flagged`` (like the means).
    Written to ``<out_dir>/fold_overview_<experiment>_seed<seed>.png``."""
    from fertrain.report.plots import plot_fold_overview

    protocol = table.protocol
    shown = {field_: key for field_, key in protocol.published.items()}
    cols = {c.key: c for c in protocol.columns}
    groups: dict[tuple[str, int], list[Run]] = {}
    for run in collection.runs:
        if run.counts(include_flagged):
            groups.setdefault((run.experiment, run.seed), []).append(run)
    written = []
    for (experiment, seed), runs in sorted(groups.items()):
        if len(runs) < 2:
            continue
        runs.sort(key=lambda r: (0, r.fold, "") if isinstance(r.fold, int) else (1, 0, str(r.fold)))
        values = {}
        for field_, key in shown.items():
            got = [_lookup(r.summary, key) for r in runs]
            values[field_.upper()] = [None if v is None else cols[key].scale * float(v) for v in got]
        published = {}
        for paper in papers:
            if paper.method.lower().replace("-", "") in experiment.lower().replace("-", ""):
                published = {field_.upper(): v for field_, v in paper.values.items()}
        flags = _flag_summary(runs)
        title = f"{experiment}, seed {seed}: {protocol.name} per fold" + (f" (flags: {flags})" if flags else "")
        written.append(plot_fold_overview(out_dir / f"fold_overview_{experiment}_seed{seed}.png",
                                          [str(r.fold) for r in runs], values, published, title))
    return written


# ----------------------------------------------------------------------------------------------- CLI
@guarded("fertrain.table")
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fertrain.table``; returns the exit status (2 on a :class:`TableError` or a usage error)."""
    parser = argparse.ArgumentParser(prog="python -m fertrain.table", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_root", type=Path, help="folder holding the run directories (any depth)")
    parser.add_argument("--protocol", default="dfew", choices=sorted(PROTOCOLS))
    parser.add_argument("--paper", action="append", default=None,
                        help="paper YAML with published numbers (repeatable; default: all of conf/papers/)")
    parser.add_argument("--out", type=Path, default=None,
                        help="Markdown output (default RUN_ROOT/table_<protocol>.md); .csv, _paired.csv, .tex and "
                             "the fold-overview PNGs go beside it")
    parser.add_argument("--allow-incomplete", action="store_true",
                        help="average over the folds present when some are missing (they are still listed)")
    parser.add_argument("--include-flagged", action="store_true",
                        help="average flagged runs (debug, failed, running, killed, data differs) too; the mean "
                             "row then shows their flags")
    parser.add_argument("--compare", nargs=2, action="append", metavar=("A", "B"), default=None,
                        help="paired comparison of experiments A and B on their common folds (repeatable; "
                             "default: every pair of experiments found)")
    parser.add_argument("--no-plots", action="store_true", help="do not draw the fold-overview PNGs")
    args = parser.parse_args(argv)
    protocol = PROTOCOLS[args.protocol]
    try:
        collection = collect_runs(args.run_root, protocol)
        if not collection.runs and not collection.incomplete:
            raise TableError(f"no run of protocol {protocol.name!r} (data.name={protocol.dataset!r}) under "
                             f"{args.run_root}: expected run directories with config_resolved.yaml")
        papers = load_papers(args.paper, protocol)
        table = build_table(collection, protocol, papers, args.allow_incomplete, args.include_flagged,
                            [tuple(p) for p in args.compare] if args.compare else None)
    except TableError as e:
        raise UsageError(str(e)) from None
    out = args.out or args.run_root / f"table_{protocol.name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(table)
    _write_text(out, markdown)
    written = [out, write_csv(table, out.with_suffix(".csv"))]
    if table.comparisons:
        written.append(out.with_name(out.stem + "_paired.csv"))
    written.append(_write_text(out.with_suffix(".tex"), render_latex(table)))
    if not args.no_plots:
        written += plot_fold_overviews(table, collection, papers, out.parent, args.include_flagged)
    print(markdown)
    print("written: " + "\n         ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
