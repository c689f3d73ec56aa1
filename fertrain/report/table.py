"""Paper tables: collect the runs of a protocol and print them beside the published numbers.

``python -m fertrain.table RUN_ROOT [--protocol dfew|mmi|bu3dfe|afew|rafdb|affectnet|ferplus|casme2|sammlv]
[--paper conf/papers/mscm.yaml ...] [--out table.md] [--allow-incomplete]``

Every run directory under ``RUN_ROOT`` (found by its ``config_resolved.yaml``, written by
:func:`fertrain.train.run`) whose dataset belongs to the protocol contributes one row: its fold and seed come
from the resolved config, its numbers from ``summary.json``. Runs are grouped by ``(experiment_name, seed)``;
each group gets one row per fold and a mean ± std row. Published numbers come from ``conf/papers/*.yaml``
(each with its source). Writes Markdown (``--out``, default ``RUN_ROOT/table_<protocol>.md``) and CSV (same
name, ``.csv``) and prints the Markdown.

Nothing is dropped silently: a fold that has no run is listed and, unless ``--allow-incomplete`` is given, the
group gets no mean (``n/a``); a run directory without ``summary.json`` (crashed or still running) is listed;
two runs of the same experiment, seed and fold are an error naming both directories.

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
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from fertrain.config import config_dir


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
    """MEGC spotting over LOSO subjects: per kind F1 (percent) and TP/FP/FN of each fold's test subject; the
    group row pools the counts over folds (sum TP, FP, FN, then P/R/F1; zero denominators give 0)."""

    published: dict[str, str] = field(default_factory=lambda: {
        f"f1_{k}": f"test.{k}/f1" for k in SPOTTING_KINDS})
    fold_key: str = "data.subject"

    @property
    def columns(self) -> tuple[Column, ...]:
        cols: list[Column] = []
        for kind in SPOTTING_KINDS:
            cols.append(Column(f"test.{kind}/f1", f"{kind} F1"))
            cols += [Column(f"test.{kind}/{c}", c.upper(), scale=1.0, digits=0) for c in ("tp", "fp", "fn")]
        return tuple(cols)

    @property
    def legend(self) -> str:
        return ("MEGC F1 in percent (IoU ≥ 0.5, frames inclusive) with its TP/FP/FN counts, per LOSO test subject. "
                "**pooled** = TP, FP and FN summed over the subjects, then precision, recall and F1 from the sums "
                "(not an average of F1). Published F1 as printed by their source.")

    def group_label(self, n: str) -> str:
        return f"pooled ({n} folds)"

    def aggregate(self, values: dict[str, list[float]], label: str) -> Aggregate:
        out: dict[str, float | None] = {}
        for kind in SPOTTING_KINDS:
            counts = [values.get(f"test.{kind}/{c}", []) for c in ("tp", "fp", "fn")]
            if not all(counts) or len({len(c) for c in counts}) != 1:
                out.update({f"test.{kind}/{c}": None for c in ("f1", "tp", "fp", "fn")})
                continue
            tp, fp, fn = (int(round(sum(c))) for c in counts)
            out.update({f"test.{kind}/tp": float(tp), f"test.{kind}/fp": float(fp), f"test.{kind}/fn": float(fn),
                        # = 2PR / (P + R) of fertrain.metrics.spotting.prf (0 when TP = 0); no torch import here
                        f"test.{kind}/f1": 100.0 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0})
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
        return str(summary.get("test_source") or "not stated in summary.json")

    def selection_note(self, selections: list[str]) -> str:
        return f"tested checkpoint: {' / '.join(selections)}"


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
        title="CAS(ME)^2 long videos, macro/micro spotting, leave-one-subject-out (MEGC F1, IoU ≥ 0.5)",
    ),
    "sammlv": SpottingProtocol(
        name="sammlv", dataset="sammlv", folds=(),
        title="SAMM Long Videos, macro/micro spotting, leave-one-subject-out (MEGC F1, IoU ≥ 0.5)",
    ),
}


# ----------------------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class Run:
    """One finished run of a protocol (``summary.json`` present)."""

    run_dir: Path
    experiment: str
    seed: int
    fold: Any  # int (recognition folds) or str (LOSO subject)
    summary: dict[str, Any]
    selection: str  # where the best epoch was chosen, e.g. "test fold"


@dataclass
class Collection:
    """Runs of a protocol found under a root, and the run directories that could not be used (listed)."""

    root: Path
    runs: list[Run]
    incomplete: list[Path]  # run directories without summary.json


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


def collect_runs(root: str | Path, protocol: Protocol) -> Collection:
    """Find the runs of ``protocol`` under ``root`` (any depth: single runs or a Hydra multirun folder).

    Raises:
        TableError: ``root`` is not a folder; a config or summary cannot be read or lacks ``data.fold``/``seed``;
            a fold outside the protocol; two runs with the same experiment, seed and fold.
    """
    root = Path(root)
    if not root.is_dir():
        raise TableError(f"run root {root} is not a folder (expected e.g. logs/dfew_mscm or its multirun/)")
    runs: list[Run] = []
    incomplete: list[Path] = []
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
        summary_path = run_dir / "summary.json"
        if not summary_path.is_file():
            incomplete.append(run_dir)
            continue
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise TableError(f"{summary_path}: cannot read the run summary ({e})") from e
        experiment = str(config.get("experiment_name") or summary.get("experiment") or run_dir.name)
        for fold_i, summary_i in protocol.split_summary(fold, summary, summary_path):
            key = (experiment, seed, fold_i)
            if key in seen:
                raise TableError(f"two runs of experiment {experiment!r}, seed {seed}, fold {fold_i}: {seen[key]} "
                                 f"and {run_dir}; pass a RUN_ROOT that holds only one of them")
            seen[key] = run_dir
            runs.append(Run(run_dir, experiment, seed, fold_i, summary_i, protocol.selection(config, summary)))
    return Collection(root, runs, incomplete)


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
    ``published``; values in percent."""

    kind: str
    method: str
    seed: int | None
    fold: str
    values: dict[str, float | None]
    spreads: dict[str, float | None] = field(default_factory=dict)
    run: str = ""
    ref: str = ""


@dataclass
class Table:
    """The rendered content: rows plus the notes that say what is missing and where numbers come from."""

    protocol: Protocol
    rows: list[Row]
    notes: list[str]
    references: list[str]


def build_table(collection: Collection, protocol: Protocol, papers: Sequence[Published],
                allow_incomplete: bool = False) -> Table:
    """Group runs by ``(experiment, seed)``: one row per fold and a mean ± std row per group; for an experiment
    with several complete seeds, a row with the mean ± std over seeds of the per-seed means; then the papers."""
    rows: list[Row] = []
    notes: list[str] = []
    groups: dict[tuple[str, int], list[Run]] = {}
    for run in collection.runs:
        groups.setdefault((run.experiment, run.seed), []).append(run)
    seed_means: dict[str, dict[int, dict[str, float | None]]] = {}  # experiment -> complete seed -> means
    for (experiment, seed), runs in sorted(groups.items()):
        runs.sort(key=lambda r: (0, r.fold, "") if isinstance(r.fold, int) else (1, 0, str(r.fold)))
        per_column: dict[str, list[float]] = {c.key: [] for c in protocol.columns}
        for run in runs:
            values: dict[str, float | None] = {}
            for col in protocol.columns:
                v = _lookup(run.summary, col.key)
                values[col.key] = None if v is None else col.scale * float(v)
                if v is not None:
                    per_column[col.key].append(col.scale * float(v))
            rel = run.run_dir.relative_to(collection.root) if run.run_dir != collection.root else Path(".")
            rows.append(Row("fold", experiment, seed, str(run.fold), values, run=str(rel)))
        present = [r.fold for r in runs]
        missing = [f for f in protocol.folds if f not in present]
        n = f"{len(present)}/{len(protocol.folds)}" if protocol.folds else str(len(present))
        if missing:
            notes.append(f"{experiment}, seed {seed}: missing folds {', '.join(map(str, missing))} "
                         + ("(mean over the present folds only)" if allow_incomplete
                            else "(no mean; --allow-incomplete averages the present folds)"))
        if missing and not allow_incomplete:
            agg = Aggregate(protocol.group_label(n), {c.key: None for c in protocol.columns},
                            {c.key: None for c in protocol.columns})
        else:
            agg = protocol.aggregate(per_column, protocol.group_label(n))
            for col in protocol.columns:
                if len(per_column[col.key]) != len(present):
                    agg.values[col.key] = agg.spreads[col.key] = None
                    notes.append(f"{experiment}, seed {seed}: {col.key} is absent from some summaries; no mean")
        rows.append(Row("mean", experiment, seed, agg.label, agg.values, agg.spreads))
        if not missing:
            seed_means.setdefault(experiment, {})[seed] = agg.values
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
            rows.append(Row("seeds", experiment, None, over.label, over.values, over.spreads))
    for path in collection.incomplete:
        notes.append(f"run without summary.json (crashed or still running), not in the table: {path}")
    references = []
    for i, paper in enumerate(papers, start=1):
        values = {c.key: None for c in protocol.columns}
        for name, value in paper.values.items():
            values[protocol.published[name]] = value
        rows.append(Row("published", f"{paper.method} (published)", None, paper.setting or "—", values,
                        ref=f"[{i}]"))
        references.append(f"[{i}] {paper.citation}. Source: {paper.source}. ({paper.file.name})")
    return Table(protocol, rows, notes, references)


def _pct(value: float | None, spread: float | None = None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" + (f" ± {spread:.{digits}f}" if spread is not None else "")


def render_markdown(table: Table) -> str:
    """The table as GitHub Markdown: heading, legend, table, notes and references."""
    cols = table.protocol.columns
    lines = [f"## {table.protocol.title}", "", table.protocol.legend, "",
             "| method | seed | fold | " + " | ".join(c.header for c in cols) + " | run |",
             "| --- | --- | --- | " + " | ".join("---:" for _ in cols) + " | --- |"]
    for row in table.rows:
        cells = [_pct(row.values.get(c.key), row.spreads.get(c.key), c.digits) for c in cols]
        if row.kind == "published":
            cells = ["—" if row.values.get(c.key) is None else _pct(row.values[c.key], None, c.digits) for c in cols]
        method = f"**{row.method}**" if row.kind in ("mean", "seeds") else row.method
        fold = f"**{row.fold}**" if row.kind in ("mean", "seeds") else row.fold
        seed = "" if row.seed is None else str(row.seed)
        run = f"`{row.run}`" if row.run else row.ref
        lines.append(f"| {method} | {seed} | {fold} | " + " | ".join(cells) + f" | {run} |")
    if table.notes:
        lines += ["", "Notes:", *[f"- {n}" for n in table.notes]]
    if table.references:
        lines += ["", "References:", *[f"- {r}" for r in table.references]]
    return "\n".join(lines) + "\n"


def write_csv(table: Table, path: str | Path) -> Path:
    """One CSV line per row: ``kind, method, seed, fold``, each column (percent, 4 decimals) and its std,
    ``run``, ``ref``. Written atomically."""
    path = Path(path)
    cols = table.protocol.columns
    header = ["kind", "method", "seed", "fold"]
    for c in cols:
        header += [c.key, f"{c.key}.std"]
    header += ["run", "ref"]
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in table.rows:
            line: list[Any] = [row.kind, row.method, "" if row.seed is None else row.seed, row.fold]
            for c in cols:
                v, s = row.values.get(c.key), row.spreads.get(c.key)
                line += ["" if v is None else f"{v:.4f}", "" if s is None else f"{s:.4f}"]
            line += [row.run, row.ref]
            writer.writerow(line)
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fertrain.table``; returns the exit status (2 on a :class:`TableError`)."""
    parser = argparse.ArgumentParser(prog="python -m fertrain.table", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_root", type=Path, help="folder holding the run directories (any depth)")
    parser.add_argument("--protocol", default="dfew", choices=sorted(PROTOCOLS))
    parser.add_argument("--paper", action="append", default=None,
                        help="paper YAML with published numbers (repeatable; default: all of conf/papers/)")
    parser.add_argument("--out", type=Path, default=None,
                        help="Markdown output (default RUN_ROOT/table_<protocol>.md); the CSV goes beside it")
    parser.add_argument("--allow-incomplete", action="store_true",
                        help="average over the folds present when some are missing (they are still listed)")
    args = parser.parse_args(argv)
    protocol = PROTOCOLS[args.protocol]
    try:
        collection = collect_runs(args.run_root, protocol)
        if not collection.runs and not collection.incomplete:
            raise TableError(f"no run of protocol {protocol.name!r} (data.name={protocol.dataset!r}) under "
                             f"{args.run_root}: expected run directories with config_resolved.yaml")
        table = build_table(collection, protocol, load_papers(args.paper, protocol), args.allow_incomplete)
    except TableError as e:
        print(f"fertrain.table: {e}", file=sys.stderr)
        return 2
    out = args.out or args.run_root / f"table_{protocol.name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(table)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(markdown)
    tmp.replace(out)
    csv_path = write_csv(table, out.with_suffix(".csv"))
    print(markdown)
    print(f"written: {out}\n         {csv_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
