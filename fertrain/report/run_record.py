"""The run record ``<run_dir>/run.json``: what produced a run's numbers, and whether they can be used.

Contract (schema 1). Writers: :mod:`fertrain.train` (training and test-only runs), :mod:`fertrain.predict`.
Readers: :mod:`fertrain.table`, the plots, the dataset check. Keys (all present; ``null`` where unknown)::

    schema        1
    kind          "train" | "test" | "predict"
    status        "running" | "finished" | "failed" | "killed" | "debug"
    experiment    experiment_name;   run_id: the run's id;   run_dir: absolute path
    config        the resolved config (dict);   config_hash: "sha256:<hex>" of the fields that define the run
    overrides     the command-line overrides (list of str)
    git           {"commit": str | null, "dirty": bool | null}
    versions      {"python", "torch", "pytorch_lightning", "fertrain", ...}
    device        {"accelerator", "devices", "num_nodes", "precision", "name"}
    seed          int
    data          {"fingerprint": "sha256:..." , "splits": {...}, "skipped": {reason: count}} (see
                  :func:`fertrain.data.fingerprint.data_fingerprint`)
    started_at, ended_at   ISO 8601 UTC (ended_at null while running)
    error         message of the failure, or null
    attempts      [{"started_at", "ended_at", "status", "resumed_from"}] one per start (resumes append)

``debug`` is a status of its own: a run composed with ``debug=...`` (or with ``fast_dev_run``/``limit_*_batches``
below 1) never counts as a result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RUN_RECORD = "run.json"
SCHEMA = 1
STATUSES = ("running", "finished", "failed", "killed", "debug")


def read_run_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The run record of ``run_dir``, or None when the run has none (runs made before records existed).

    Raises:
        ValueError: ``run.json`` exists but is not a JSON object of a known schema (message names the file).
    """
    path = Path(run_dir) / RUN_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); expected a fertrain run record") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise ValueError(f"{path}: expected a fertrain run record with schema {SCHEMA}, "
                         f"found {type(record).__name__} with schema {record.get('schema') if isinstance(record, dict) else None!r}")
    return record


def run_flags(record: dict[str, Any] | None) -> list[str]:
    """Why a run's numbers must not be averaged beside paper numbers: ``[]`` for a finished, non-debug run.

    Flags: ``"no run.json"`` (record missing), ``"debug"``, ``"running"``, ``"failed"``, ``"killed"``.
    """
    if record is None:
        return ["no run.json"]
    status = record.get("status")
    return [] if status == "finished" else [str(status)]
