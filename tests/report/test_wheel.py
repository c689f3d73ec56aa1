"""The built wheel, installed alone into a fresh virtual environment, carries everything its tools need: configs,
papers, assets, console scripts. torch & co. come from the running environment through a ``.pth`` line (no
reinstall); fertrain itself comes only from the wheel (no PYTHONPATH, no source tree on the path)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TOP_LEVEL_SKIP = {".git", ".venv", "logs", "outputs", "multirun", "data", "build", "dist", ".cache", ".pytest_cache",
                  "wandb", ".whl", ".gl", "shared"}


def _ignore(folder: str, names: list[str]) -> set[str]:
    skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
    return skip | (TOP_LEVEL_SKIP & set(names) if Path(folder) == REPO else set())


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=_ignore)  # build from a copy: no build/ in the checkout
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
                    "-q", "-w", str(root / "dist"), str(src)], check=True, env=env, timeout=300)
    (wheel,) = (root / "dist").glob("fertrain-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the running environment's packages (torch, Lightning, ...), without processing its .pth files (so its
    # editable fertrain, if any, stays invisible)
    (site / "_parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, env=env, timeout=300)
    return venv


def _start(venv: Path, *cmd: str, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"WANDB_MODE": "offline"}
    return subprocess.Popen([str(venv / "bin" / cmd[0]), *cmd[1:]], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


@pytest.mark.slow
def test_wheel_tools_run_from_a_fresh_venv(venv: Path, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "fold1_seed42"
    run.mkdir(parents=True)
    (run / "config_resolved.yaml").write_text(yaml.safe_dump({"experiment_name": "dfew_mscm", "seed": 42,
                                                              "data": {"name": "dfew", "fold": 1}}))
    (run / "summary.json").write_text(json.dumps({"test_best": {"uar": 0.5, "war": 0.6},
                                                  "test_last": {"uar": 0.4, "war": 0.5}}))
    # all tools at once (each is a fresh interpreter; they only read)
    procs = {
        "probe": _start(venv, "python", "-c", "import fertrain, fertrain.config as c; print(fertrain.__file__); "
                        "print(c.config_dir()); print(c.asset_path('demo/WolfgangLanger_Pexels.mp4'))", cwd=tmp_path),
        "fertrain": _start(venv, "fertrain", "--help", cwd=tmp_path),
        "table": _start(venv, "fertrain-table", str(tmp_path / "runs"), "--allow-incomplete", cwd=tmp_path),
        "alias": _start(venv, "python", "-m", "fertrain.table", "--help", cwd=tmp_path),
        **{s: _start(venv, s, "--help", cwd=tmp_path) for s in ("fertrain-preprocess", "fertrain-spotting-baseline",
                                                                "fertrain-export", "fertrain-sweep-best")},
    }
    res = {name: _wait(p) for name, p in procs.items()}
    for name, (code, out, err) in res.items():
        assert code == 0, (name, err[-3000:])
    # fertrain and its configs and assets come from the installed wheel
    probe = res["probe"][1].split()
    installed = Path(probe[0]).parent
    assert installed.is_relative_to(venv) and not installed.is_relative_to(REPO)
    assert all(Path(p).is_relative_to(installed) for p in probe[1:]), probe
    # the training entry point: its help lists the packaged config groups
    assert "experiment: afew_ceflnet" in res["fertrain"][1] and "logger: csv, tensorboard, wandb" in res["fertrain"][1]
    for script in ("fertrain-preprocess", "fertrain-spotting-baseline", "fertrain-export", "fertrain-sweep-best"):
        assert "usage" in (res[script][1] + res[script][2]).lower(), script
    # the table, with the packaged paper files
    assert "MSCM (published)" in res["table"][1] and "| dfew_mscm | 42 | 1 | 50.00 |" in res["table"][1]
    assert "--include-flagged" in res["alias"][1]
