"""Helpers shared by the benchmarks of :mod:`fertrain.bench`: machine load, memory, tables, where data live.

Memory figures come from Linux ``/proc`` (``VmRSS``: resident set now; ``VmHWM``: peak resident set since the
process started or since :func:`reset_peak_rss`). RSS counts pages shared with other processes (e.g. a
DataLoader worker shares the parent's pages after ``fork``) in full for every process. On systems without
``/proc`` the memory columns read ``n/a``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Sequence

__all__ = [
    "cache_dir",
    "child_pids",
    "cpu_model",
    "cpu_seconds",
    "fmt",
    "load_line",
    "markdown_table",
    "peak_rss_mib",
    "reset_peak_rss",
    "rss_mib",
    "shared_dir",
]


def shared_dir() -> Path | None:
    """The project's optional reference-data folder (real videos with labels, DFEW frame counts), or None.

    ``$FERTRAIN_SHARED`` when set; otherwise ``../shared`` beside a source checkout (the folder that holds
    ``pyproject.toml`` and the ``fertrain`` package). An installed wheel has no checkout: then only the
    environment variable (or the tools' own options) point at the data. *Ours*: no public layout.
    """
    env = os.environ.get("FERTRAIN_SHARED")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "fertrain").is_dir():
        return checkout.parent / "shared"
    return None


def cache_dir() -> Path:
    """Where benchmarks keep generated data: ``<FERTRAIN_ROOT or the current folder>/.cache/bench`` (the same root
    as the configs' ``paths.cache_dir``)."""
    return Path(os.environ.get("FERTRAIN_ROOT", ".")) / ".cache" / "bench"


def load_line() -> str:
    """One line describing the machine's load now: 1/5/15-minute load averages, CPU count and wall time."""
    try:
        one, five, fifteen = os.getloadavg()
        load = f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)"
    except OSError:
        load = "load average unavailable"
    return f"{load} on {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M:%S')}"


def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (falls back to ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _status_kib(pid: int | str, key: str) -> int | None:
    """Value of ``key`` (e.g. ``"VmRSS"``) in ``/proc/<pid>/status`` in KiB, or None if unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mib(pid: int | str = "self") -> float | None:
    """Resident set size of process ``pid`` now (MiB), or None where ``/proc`` is unavailable."""
    kib = _status_kib(pid, "VmRSS")
    return None if kib is None else kib / 1024


def peak_rss_mib(pid: int | str = "self") -> float | None:
    """Peak resident set size of process ``pid`` (MiB) since start or :func:`reset_peak_rss`; None if unknown."""
    kib = _status_kib(pid, "VmHWM")
    return None if kib is None else kib / 1024


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, all threads) process ``pid`` has used so far, in seconds; None if unknown.

    From ``/proc/<pid>/stat`` (clock-tick resolution, usually 10 ms). CPU time counts the work a process did,
    not the time it waited for a core, so ratios of CPU time hold still on a busy machine where wall time does
    not. For this process, ``time.process_time()`` gives the same with better resolution.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 (state) onwards
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime (fields 14, 15)
    except (OSError, ValueError, IndexError):
        return None


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux >= 4.0: ``clear_refs`` value 5).

    Returns:
        True if the reset worked; False where it is not supported (peaks then cover the whole process life).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child_pids() -> list[int]:
    """Process ids of this process's live children (e.g. DataLoader workers), from ``/proc``; [] if unknown."""
    pids: list[int] = []
    try:
        for task in Path("/proc/self/task").iterdir():
            text = (task / "children").read_text().split()
            pids.extend(int(p) for p in text)
    except OSError:
        return []
    return sorted(set(pids))


def fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    """Format a number for a table cell; None -> ``n/a``."""
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned when the whole column parses as numbers).

    Args:
        header: column titles.
        rows: cells as strings, each row as long as ``header``.

    Raises:
        ValueError: a row has a different number of cells than the header.
    """
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"table row {list(row)} has {len(row)} cells; expected {len(header)} ({list(header)})")

    def numeric(col: int) -> bool:
        cells = [r[col].replace("x", "").replace("%", "").replace("+", "") for r in rows]
        try:
            [float(c) for c in cells if c not in ("—", "n/a")]
        except ValueError:
            return False
        return bool(rows)

    align = ["---:" if numeric(i) else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def preset_parser(prog: str, doc: str, quick: str, full: str, smoke: str) -> argparse.ArgumentParser:
    """A benchmark's parser (description: the first paragraph of ``doc``) with ``--quick`` (the default) /
    ``--full`` / ``--smoke``, mutually exclusive, into ``args.preset``; each help text says what that size runs."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    helps = {"quick": f"default: {quick}", "full": full, "smoke": f"the smallest configuration (tests): {smoke}"}
    for name, help_ in helps.items():
        size.add_argument(f"--{name}", action="store_const", const=name, dest="preset", help=help_)
    parser.set_defaults(preset="quick")
    return parser
