"""The run record ``<run_dir>/run.json``: what produced a run's numbers, and whether they can be used.

Contract (schema 1). Writers: :mod:`fertrain.train` (training and test-only runs), :mod:`fertrain.predict`
(through :func:`start_run_record` / :func:`finish_run_record` here). Readers: :mod:`fertrain.table`, the plots,
the dataset check. Keys (all present; ``null`` where unknown)::

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

Added compatibly (readers must not require them): ``pid`` and ``host`` of the process that runs (or ran) the
current attempt (also in every attempt), ``updated_at``, ``debug`` (why the run counts as a debug run: list of
str), ``checkpoints`` (``{"best"|"last": {"path", "bytes", "epoch"}}``), ``source_checkpoint`` (test-only and
predict runs: ``{"path", "bytes", "epoch", "config_hash", "run_dir"}`` of the weights used), ``ckpt_path``.

``debug`` is a status of its own: a run composed with ``debug=...`` (or with ``fast_dev_run``/``limit_*_batches``
below 1) never counts as a result.

**Config hash** (:func:`config_hash`): SHA-256 of the resolved config as canonical JSON, leaving out the keys that
do not change a run's numbers (*ours*, :data:`NON_RESULT_KEYS` and :data:`NON_RESULT_LEAVES`): where things are
written or read from (``paths``, ``*.root``, ``*.output_dir``, ``*.cache_dir``, ``*.dirpath``...; the data
fingerprint stands for the data), how fast (``num_workers``, ``pin_memory``, ``persistent_workers``,
``prefetch_factor``), what is printed or logged (``logger``, the progress bar, the LR monitor,
``trainer.log_every_n_steps``, ``trainer.enable_model_summary``, ``enable_progress_bar``), how the run is started
or resumed (``ckpt_path``, ``checkpoint.*``, ``trainer.plugins``), ``predict_video``, ``experiment_name`` and the
``sweep`` node (a trial's sampled values are ordinary keys of its config). Everything else -- model, data
protocol and transforms, optimiser, schedule, epochs, seed, precision, devices, monitor, debug limits -- is
hashed.

**Liveness**: a record whose ``status`` is ``running`` but whose process is gone (same host, pid not alive) is a
killed run: :func:`effective_status` says ``killed``, :func:`run_flags` flags it, and the next start into the
directory rewrites that attempt as ``killed``.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

RUN_RECORD = "run.json"
SCHEMA = 1
STATUSES = ("running", "finished", "failed", "killed", "debug")
KINDS = ("train", "test", "predict")

# top-level keys (or dotted prefixes) left out of the config hash
NON_RESULT_KEYS = (
    "paths", "logger", "hydra", "ckpt_path", "checkpoint", "predict_video", "sweep", "experiment_name",
    "callbacks.rich_progress_bar", "callbacks.lr_monitor", "callbacks.optuna_pruning", "callbacks.last_checkpoint",
    "callbacks.preemption", "callbacks.step_seed", "callbacks.model_checkpoint.dirpath",
    "callbacks.model_checkpoint.save_weights_only", "trainer.plugins", "trainer.default_root_dir",
    "trainer.log_every_n_steps", "trainer.enable_model_summary", "trainer.enable_progress_bar",
    "trainer.enable_checkpointing",
)
# leaf names left out wherever they occur
NON_RESULT_LEAVES = ("root", "output_dir", "cache_dir", "log_dir", "plot_dir", "result_dir", "num_workers",
                     "pin_memory", "persistent_workers", "prefetch_factor")


# ------------------------------------------------------------------------------------------------ reading
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
        found = record.get("schema") if isinstance(record, dict) else None
        raise ValueError(f"{path}: expected a fertrain run record with schema {SCHEMA}, "
                         f"found {type(record).__name__} with schema {found!r}")
    return record


def effective_status(record: Mapping[str, Any]) -> str:
    """``record["status"]``, except ``"killed"`` for a ``running`` record whose process is known to be gone."""
    status = str(record.get("status"))
    if status == "running" and process_gone(record.get("host"), record.get("pid")):
        return "killed"
    return status


def run_flags(record: dict[str, Any] | None) -> list[str]:
    """Why a run's numbers must not be averaged beside paper numbers: ``[]`` for a finished, non-debug run.

    Flags: ``"no run.json"`` (record missing), ``"debug"``, ``"running"``, ``"failed"``, ``"killed"`` (also a
    ``running`` record whose process is gone).
    """
    if record is None:
        return ["no run.json"]
    status = effective_status(record)
    return [] if status == "finished" else [status]


def process_gone(host: Any, pid: Any) -> bool:
    """True when ``pid`` ran on this host and no longer exists (False when unknown: another host, no pid)."""
    if not pid or host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    except OSError as err:
        return err.errno == errno.ESRCH
    return _is_zombie(int(pid))


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


# ------------------------------------------------------------------------------------------------ identity
def _drop(node: Any, prefix: str = "") -> Any:
    if isinstance(node, Mapping):
        out = {}
        for key, value in node.items():
            path = f"{prefix}{key}"
            if str(key) in NON_RESULT_LEAVES or any(path == k or path.startswith(k + ".") for k in NON_RESULT_KEYS):
                continue
            out[str(key)] = _drop(value, path + ".")
        return out
    if isinstance(node, (list, tuple)):
        return [_drop(v, prefix) for v in node]
    return node


def hashed_config(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that defines the run's numbers (module docstring)."""
    return _drop(resolved)


def config_hash(resolved: Mapping[str, Any]) -> str:
    """``"sha256:<hex>"`` of :func:`hashed_config` as canonical JSON (sorted keys)."""
    text = json.dumps(hashed_config(resolved), sort_keys=True, default=str, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 12) -> list[str]:
    """``["key: old -> new", ...]`` over the hashed parts of two resolved configs (dotted keys, sorted)."""
    flat_old, flat_new = _flatten(hashed_config(old)), _flatten(hashed_config(new))
    out = []
    for key in sorted(set(flat_old) | set(flat_new)):
        a, b = flat_old.get(key, "<absent>"), flat_new.get(key, "<absent>")
        if a != b:
            out.append(f"{key}: {json.dumps(a, default=str)} -> {json.dumps(b, default=str)}")
    return out if len(out) <= limit else out[:limit] + [f"... and {len(out) - limit} more"]


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def git_state(path: str | Path | None = None) -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the git work tree holding ``path`` (default: the fertrain package); nulls when
    git is absent or the code is not in a work tree (an installed wheel)."""
    where = Path(path) if path else Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
        return {"commit": commit.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions(names: Iterable[str] = ("torch", "pytorch-lightning", "torchmetrics", "hydra-core",
                                             "omegaconf", "albumentations", "numpy", "decord2", "optuna")
                     ) -> dict[str, str | None]:
    """Versions of Python, fertrain and the packages a run's numbers depend on (None when not installed)."""
    from fertrain import __version__

    out: dict[str, str | None] = {"python": platform.python_version(), "fertrain": __version__}
    for name in names:
        try:
            out[name.replace("-", "_")] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name.replace("-", "_")] = None
    return out


def now() -> str:
    """The current time, ISO 8601 UTC (seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------------ writing
def write_run_record(run_dir: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` atomically (temporary file + rename) to ``<run_dir>/run.json``; returns the path."""
    path = Path(run_dir) / RUN_RECORD
    tmp = path.with_name(f".{RUN_RECORD}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, path)
    return path


def start_run_record(run_dir: str | Path, *, kind: str, experiment: str | None, run_id: str | None,
                     config: Mapping[str, Any], overrides: list[str] | None = None, seed: int | None = None,
                     device: Mapping[str, Any] | None = None, debug: list[str] | None = None,
                     resumed_from: str | None = None, previous: Mapping[str, Any] | None = None,
                     **extra: Any) -> dict[str, Any]:
    """Write the record of a starting attempt (status ``running``) and return it.

    A resumed run (``previous`` = its existing record) keeps its first ``started_at`` and its ``attempts``; a
    previous attempt still marked ``running`` is closed as ``killed`` (its process is gone: a run is only resumed
    once :func:`fertrain.train.check_run_dir` has checked that).

    Raises:
        ValueError: unknown ``kind``.
        fertrain.cli.UsageError: ``run_dir`` already holds the record of a run of another kind (a predict or
            test-only run never replaces a training run's record).
    """
    if kind not in KINDS:
        raise ValueError(f"run record kind must be one of {KINDS}, got {kind!r}")
    existing = read_run_record(run_dir)
    if existing is not None and existing.get("kind") != kind:
        from fertrain.cli import UsageError

        raise UsageError(f"{Path(run_dir) / RUN_RECORD} is the record of a {existing.get('kind')} run; a {kind} "
                         "run writes its own record elsewhere: choose another output folder")
    stamp = now()
    attempts = [dict(a) for a in (previous or {}).get("attempts", [])] if previous else []
    for a in attempts:
        if a.get("status") == "running":
            a["status"], a["ended_at"] = "killed", a.get("ended_at") or (previous or {}).get("updated_at")
    attempts.append({"started_at": stamp, "ended_at": None, "status": "running", "resumed_from": resumed_from,
                     "pid": os.getpid(), "host": socket.gethostname()})
    record: dict[str, Any] = {
        "schema": SCHEMA, "kind": kind, "status": "running",
        "experiment": experiment, "run_id": run_id, "run_dir": str(Path(run_dir).resolve()),
        "config": dict(config), "config_hash": config_hash(config), "overrides": list(overrides or []),
        "git": git_state(), "versions": package_versions(), "device": dict(device or {}), "seed": seed,
        "data": {"fingerprint": None, "splits": None, "skipped": None},
        "started_at": (previous or {}).get("started_at") if previous else stamp, "ended_at": None,
        "updated_at": stamp, "error": None, "attempts": attempts,
        "pid": os.getpid(), "host": socket.gethostname(), "debug": list(debug or []),
        "checkpoints": None, "ckpt_path": resumed_from,
    }
    record["started_at"] = record["started_at"] or stamp
    record.update(extra)
    write_run_record(run_dir, record)
    return record


def update_run_record(run_dir: str | Path, record: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Set ``fields`` in ``record`` (and ``updated_at``), write it, return it."""
    record.update(fields)
    record["updated_at"] = now()
    write_run_record(run_dir, record)
    return record


def finish_run_record(run_dir: str | Path, record: dict[str, Any], status: str, error: str | None = None,
                      **fields: Any) -> dict[str, Any]:
    """Close the current attempt with ``status`` (``finished``, ``debug``, ``failed`` or ``killed``).

    Raises:
        ValueError: unknown status.
    """
    if status not in STATUSES or status == "running":
        raise ValueError(f"a run ends as one of {STATUSES[1:]}, got {status!r}")
    stamp = now()
    if record.get("attempts"):
        record["attempts"][-1].update(status=status, ended_at=stamp)
    return update_run_record(run_dir, record, status=status, ended_at=stamp, error=error, **fields)


@contextmanager
def recorded(run_dir: str | Path, kind: str, **start: Any) -> Iterator[dict[str, Any]]:
    """Record a run in ``run_dir`` around a block: :func:`start_run_record` (``kind``, ``start`` keywords with
    defaults ``experiment=None, run_id=None, config={}``), then ``finished``, or ``failed`` with the error's message
    (re-raised). Used by ``fertrain.predict``.

    Raises:
        ValueError: see :func:`start_run_record`.
    """
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    start.setdefault("experiment", None)
    start.setdefault("run_id", None)
    start.setdefault("config", {})
    record = start_run_record(run_dir, kind=kind, **start)
    try:
        yield record
    except BaseException as err:
        finish_run_record(run_dir, record, "failed", error=f"{type(err).__name__}: {err}"[:2000])
        raise
    finish_run_record(run_dir, record, "finished")


def device_info(trainer_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``{"accelerator", "devices", "num_nodes", "precision", "name"}`` from the trainer config and the machine."""
    name = platform.processor() or platform.machine()
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda", "auto"):
        try:
            import torch

            if torch.cuda.is_available():
                name = torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001 - a device name is informative only
            pass
    return {"accelerator": accelerator, "devices": trainer_cfg.get("devices"),
            "num_nodes": trainer_cfg.get("num_nodes", 1), "precision": str(trainer_cfg.get("precision")),
            "name": name, "platform": f"{platform.system()} {platform.release()}", "python": sys.version.split()[0]}
