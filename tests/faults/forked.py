"""Run a fertrain command line in a forked child of the test process: the real CLI code path (``sys.argv`` ->
Hydra -> :func:`fertrain.train.run`, exit status, SIGKILL) without paying ~10 s of imports per process.

The child redirects its output to a log file, uses one CPU thread (so every run of a test computes identically,
and no OpenMP pool of the parent is used after the fork) and ends with ``os._exit``.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Mapping, Sequence

REPO = Path(__file__).resolve().parents[2]


def _main_of(module: str):
    if module == "fertrain":
        from fertrain.train import main

        return lambda: main()
    if module == "fertrain.sweep":
        from fertrain.sweep import main

        return lambda: main(sys.argv[1:])
    if module == "fertrain.predict":
        from fertrain.predict import main

        return lambda: main()
    raise ValueError(module)


def cli(args: Sequence[str], cwd: Path, log: Path, module: str = "fertrain",
        env: Mapping[str, str] | None = None) -> int:
    """Run ``python -m <module> <args>`` in a forked child; returns its exit status, or ``-signal`` if killed."""
    return wait(start(args, cwd, log, module, env))


def wait(pid: int) -> int:
    """Wait for a child of :func:`start`; its exit status, or ``-signal`` if killed."""
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def start(args: Sequence[str], cwd: Path, log: Path, module: str = "fertrain",
          env: Mapping[str, str] | None = None) -> int:
    """Start ``python -m <module> <args>`` in a forked child and return its pid (see :func:`wait`)."""
    Path(cwd).mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
            sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
            os.chdir(cwd)
            os.environ.update(env or {})
            os.environ.update(WANDB_MODE="offline", PYTHONUNBUFFERED="1")
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter: Ctrl-C raises
            import torch
            from hydra.core.global_hydra import GlobalHydra

            from tests.faults.probe import KillAt

            torch.set_num_threads(1)
            GlobalHydra.instance().clear()
            KillAt.fits = 0  # count this command's fit() calls only (in-process runs of the parent counted too)
            sys.argv = [module, *args]
            try:
                result = _main_of(module)()
                code = result if isinstance(result, int) and module != "fertrain" else 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, int) and e.code is not None:
                    print(e.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    return pid


def reference_run(core: Sequence[str], root: Path, run: Path) -> tuple[list[str], Path]:
    """One uninterrupted run of ``core`` under ``root/ref`` (the reference a resumed run must equal), its data
    cached in ``root/cache``: returns the cache override to reuse and the run's folder (``root/ref/<run>``)."""
    cache = [f"paths.cache_dir={root / 'cache'}"]
    rc = cli([*core, *cache, f"paths.log_dir={root / 'ref' / 'logs'}"], root / "ref", root / "ref.log")
    assert rc == 0, (root / "ref.log").read_text()[-3000:]
    return cache, root / "ref" / run
