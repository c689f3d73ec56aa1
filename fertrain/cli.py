"""Exit codes and error printing shared by every fertrain command-line tool.

Contract (README "Exit codes"): ``0`` success; ``1`` runtime failure (training diverged, a checkpoint could not be
written, a sample failed to decode during training, ...); ``2`` usage or configuration error (unknown or
wrong-type override, a missing file or folder the command line or config names, a malformed dataset root).
Every error is printed once, as ``<prog>: error: <message>`` on stderr; known errors print no traceback
(``FERTRAIN_TRACEBACK=1`` shows it).

Tools: ``fertrain`` (:mod:`fertrain.train`), ``fertrain.predict``, ``fertrain.table``, ``fertrain.sweep``,
``fertrain.preprocess``, ``fertrain.data.check`` and the other ``python -m fertrain.<tool>`` entry points use
:func:`guarded` (argparse tools) or raise :class:`UsageError` / :class:`RunFailure` for the Hydra apps.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable, NoReturn, Sequence

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


def exit_code_for(err: BaseException) -> int | None:
    """The exit status of a known error type (``None``: unknown, let the traceback show)."""
    from fertrain.data.records import DatasetError

    if isinstance(err, (UsageError, DatasetError, FileNotFoundError)):
        return EXIT_USAGE
    if isinstance(err, (RunFailure, FloatingPointError, PermissionError, OSError)):
        return EXIT_FAILURE
    return None


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
                code = exit_code_for(err)
                if code is None or os.environ.get("FERTRAIN_TRACEBACK"):
                    raise
                fail(prog, str(err), code)

        return inner

    return wrap
