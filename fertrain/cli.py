"""Exit codes and error printing shared by every fertrain command-line tool.

Contract (README "Exit codes"): ``0`` success; ``1`` runtime failure (training diverged, a checkpoint could not be
written, a sample failed to decode while a DataLoader read it, the run was stopped by SIGTERM/SIGUSR1, no sweep
trial completed, ...); ``2`` usage or configuration error (unknown or wrong-type override, a missing file or folder
the command line or config names, a malformed dataset root or a sample found unusable when the dataset is set up,
an unusable checkpoint, a run directory that holds another run, an unwritable output folder). Every error is printed once, as ``<prog>: error: <message>`` on stderr; known
errors print no traceback (``FERTRAIN_TRACEBACK=1`` shows it). An error raised in a DataLoader worker is printed
with its own message (PyTorch re-raises it with the worker's traceback inside the message), not twice.

Tools: ``fertrain`` (:mod:`fertrain.train`), ``fertrain.predict``, ``fertrain.table``, ``fertrain.sweep``,
``fertrain.preprocess``, ``fertrain.data.check`` and the other ``python -m fertrain.<tool>`` entry points use
:func:`guarded` (argparse tools), :func:`run_guarded` (Hydra apps), or raise :class:`UsageError` /
:class:`RunFailure`.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import traceback
from typing import Any, Callable, NoReturn, Sequence

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad command-line usage or configuration (exit status 2). The message names the option/key and what was
    expected."""


class RunFailure(RuntimeError):
    """A run failed at run time for a known reason (exit status 1). The message says what failed and where."""


def fail(prog: str, message: str, code: int) -> NoReturn:
    """Print ``<prog>: error: <message>`` once on stderr and exit with ``code``."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


_WORKER = re.compile(r"^Caught (\w+) in DataLoader worker process (\d+)\.")


def _worker_message(text: str) -> str:
    """The original message of an exception PyTorch re-raised from a DataLoader worker (whose message embeds the
    worker's traceback), prefixed with the worker; other messages unchanged."""
    m = _WORKER.match(text)
    if not m or "Original Traceback" not in text:
        return text
    lines = text.splitlines()
    for i in range(len(lines) - 1, 0, -1):  # the last unindented "<qualified name>: message" line of the traceback
        head = re.match(rf"^[\w.]*{m.group(1)}: ?(.*)$", lines[i])
        if head:
            return "\n".join([head.group(1), *lines[i + 1:]]).strip() + f" (in DataLoader worker {m.group(2)})"
    return text


def _hydra_message(err: BaseException) -> str | None:
    """A one-paragraph message for Hydra / OmegaConf composition and instantiation errors (None: not one)."""
    try:
        from hydra.errors import (ConfigCompositionException, InstantiationException, MissingConfigException,
                                  OverrideParseException)
        from omegaconf.errors import OmegaConfBaseException
    except ImportError:  # pragma: no cover - hydra is a dependency
        return None
    if isinstance(err, OverrideParseException):
        return f"cannot parse the override: {str(err).strip()}"
    if isinstance(err, MissingConfigException):
        return str(err).strip()
    if isinstance(err, ConfigCompositionException):
        text = str(err).strip()
        cause = err.__cause__
        key = getattr(cause, "full_key", None)
        m = re.match(r"Could not override '([^']+)'", text)
        if m and cause is not None and "not in struct" in str(cause):
            key = m.group(1)
            return (f"unknown config key '{key}' (override {key}=...): there is no such key in the composed "
                    f"config; check the spelling, or add a new key with +{key}=...")
        if cause is not None and str(cause).strip():
            first = str(cause).strip().splitlines()[0]
            return f"{text.splitlines()[0]} ({f'{key}: ' if key else ''}{first})"
        return text
    if isinstance(err, InstantiationException):
        cause = err.__cause__
        key = re.search(r"full_key: ([\w.\[\]]+)", str(err))
        target = re.search(r"target '([^']+)'", str(err))
        what = f"{key.group(1)}" if key else "config"
        if cause is not None:
            return (f"{what}: cannot build {target.group(1) if target else 'the object'}: "
                    f"{type(cause).__name__}: {_first(cause)}")
        return f"{what}: {str(err).strip().splitlines()[0]}"
    if isinstance(err, OmegaConfBaseException):
        key = getattr(err, "full_key", None)
        return f"{f'{key}: ' if key else ''}{_first(err)}"
    return None


def _first(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _from_hydra_run_dir(err: BaseException) -> bool:
    """True for an OSError raised while Hydra creates the run directory or its log files."""
    return any(f.filename.replace("\\", "/").endswith(("hydra/core/utils.py", "hydra/core/hydra_config.py",
                                                       "logging/__init__.py"))
               for f in traceback.extract_tb(err.__traceback__))


def _while_reading(err: BaseException) -> bool:
    """True for an error raised while a DataLoader fetched a batch (not while a dataset was set up)."""
    return any(f.filename.replace("\\", "/").endswith(("torch/utils/data/_utils/fetch.py",
                                                        "torch/utils/data/dataloader.py"))
               for f in traceback.extract_tb(err.__traceback__))


def explain(err: BaseException) -> tuple[int | None, str]:
    """``(exit status, one-paragraph message)`` of an error; status None for an unknown error (traceback)."""
    from fertrain.data.records import DatasetError

    text = _worker_message(str(err).strip())
    cause = err.__cause__
    try:
        from hydra.errors import InstantiationException

        if isinstance(err, InstantiationException):  # a dataset/usage error raised by a constructor: its message
            while cause is not None and not isinstance(cause, (DatasetError, UsageError)):
                cause = cause.__cause__
            if cause is not None:
                return EXIT_USAGE, _worker_message(str(cause).strip())
    except ImportError:  # pragma: no cover
        pass
    hydra_text = _hydra_message(err)
    if hydra_text is not None:
        return EXIT_USAGE, hydra_text
    if isinstance(err, DatasetError) and (_WORKER.match(str(err).strip()) or _while_reading(err)):
        return EXIT_FAILURE, text  # a sample that fails while training/testing reads it: a runtime failure
    if isinstance(err, (UsageError, DatasetError)):
        return EXIT_USAGE, text
    if isinstance(err, FileNotFoundError):
        return EXIT_USAGE, text if not err.filename else f"{err.filename}: {err.strerror or 'no such file'}"
    if isinstance(err, (RunFailure, FloatingPointError)):
        return EXIT_FAILURE, text
    if isinstance(err, OSError):
        where = f" {err.filename}" if err.filename else ""
        reason = err.strerror or text
        if _from_hydra_run_dir(err):
            return EXIT_USAGE, (f"cannot create the run directory{where}: {reason}; set paths.log_dir (or "
                                "FERTRAIN_ROOT) to a writable folder")
        return EXIT_FAILURE, f"cannot write or read{where}: {reason}"
    return None, text


def exit_code_for(err: BaseException) -> int | None:
    """The exit status of a known error type (``None``: unknown, let the traceback show)."""
    return explain(err)[0]


def report(prog: str, err: BaseException) -> NoReturn:
    """Print a known error once and exit with its status; re-raise an unknown one (or with FERTRAIN_TRACEBACK)."""
    code, message = explain(err)
    if code is None or os.environ.get("FERTRAIN_TRACEBACK"):
        raise err
    fail(prog, message, code)


def guarded(prog: str) -> Callable[[Callable[[Sequence[str] | None], int]], Callable[[Sequence[str] | None], int]]:
    """Decorator for an argparse tool's ``main(argv) -> int``: known errors become one line and their exit status."""

    def wrap(main: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
        @functools.wraps(main)
        def inner(argv: Sequence[str] | None = None) -> int:
            try:
                return main(argv)
            except SystemExit:
                raise
            except Exception as err:  # noqa: BLE001 - mapped to an exit status, or re-raised
                report(prog, err)

        return inner

    return wrap


def run_guarded(prog: str, hydra_main: Callable[[], Any]) -> Any:
    """Run a ``@hydra.main`` function so that its errors reach :func:`report` once.

    Hydra prints an exception itself and exits 1 unless ``HYDRA_FULL_ERROR`` is set; it is set here (for this
    process) so the exception propagates, and :func:`report` prints it once with the right status.
    """
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        return hydra_main()
    except SystemExit:
        raise
    except BaseException as err:  # noqa: BLE001 - mapped to an exit status, or re-raised
        if type(err).__name__ == "PassThrough" and isinstance(err.args[0], BaseException):
            err = err.args[0]  # an app's error carried past Hydra's job runner (fertrain.train.PassThrough)
        if not isinstance(err, Exception):
            raise err
        report(prog, err)
