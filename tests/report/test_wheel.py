"""The built wheel, installed alone into a fresh virtual environment, carries everything its tools need: configs,
papers, assets, console scripts. torch & co. come from the running environment through a ``.pth`` line (no
reinstall); fertrain itself comes only from the wheel (no PYTHONPATH, no source tree on the path).

Run for real from that venv: ``fertrain --help``, the table, the model card (one model, tiny input), the
preprocessing CLI and the spotting baseline on the first 40 frames of the packaged demo video (a real face);
``--help`` of every benchmark (``fertrain.bench``).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import cv2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEMO_VIDEO = REPO / "fertrain" / "assets" / "demo" / "WolfgangLanger_Pexels.mp4"
# console script -> fertrain.bench module; the two synthetic checks run as python -m only
BENCH_SCRIPTS = {"fertrain-bench-data": "data", "fertrain-bench-train": "train", "fertrain-bench-check": "check",
                 "fertrain-bench-faces": "faces", "fertrain-gpu-check": "gpu_check",
                 "fertrain-model-card": "model_card"}
BENCH_MODULES_ONLY = ("synthetic_motion", "synthetic_spotting")
# One venv interpreter runs `<tool> --help` of every benchmark: the console-script files pip generated (runpy), then
# `python -m fertrain.bench.<module>` of the others, so torch & co. are imported once (about 20 s of CPU less than
# one process per tool on 2 cores). Each tool's output is followed by a line "=== <tool> exit <status>".
BENCH_HELP = """
import runpy, sys
for tool, path in [(a, a) for a in sys.argv[1:] if "/" in a] + [(m, None) for m in sys.argv[1:] if "/" not in m]:
    sys.argv = [tool, "--help"]
    try:
        runpy.run_path(path, run_name="__main__") if path else runpy.run_module(tool, run_name="__main__")
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    print(f"=== {tool} exit {code}", flush=True)
"""
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


def _cut_demo(out: Path, frames: int = 40) -> Path:
    """The first ``frames`` frames of the packaged demo video (a real face, 640x360) re-encoded (mp4v) to ``out``."""
    cap = cv2.VideoCapture(str(DEMO_VIDEO))
    fps = cap.get(cv2.CAP_PROP_FPS)
    writer = None
    for _ in range(frames):
        ok, frame = cap.read()
        assert ok, f"cannot read {frames} frames of {DEMO_VIDEO}"
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
            assert writer.isOpened(), f"OpenCV cannot write {out}"
        writer.write(frame)
    cap.release()
    writer.release()
    return out


@pytest.mark.slow
def test_wheel_tools_run_from_a_fresh_venv(venv: Path, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "fold1_seed42"
    run.mkdir(parents=True)
    (run / "config_resolved.yaml").write_text(yaml.safe_dump({"experiment_name": "dfew_mscm", "seed": 42,
                                                              "data": {"name": "dfew", "fold": 1}}))
    (run / "summary.json").write_text(json.dumps({"test_best": {"uar": 0.5, "war": 0.6},
                                                  "test_last": {"uar": 0.4, "war": 0.5}}))
    clip = _cut_demo(tmp_path / "clip.mp4")
    labels = tmp_path / "spotting.csv"  # one labelled macro-expression, no micro ground truth
    labels.write_text("video,onset,apex,offset,type\nclip.mp4,15,25,39,macro\n")
    # all tools at once (each is a fresh interpreter; they only read, and each writes its own folder)
    procs = {
        "probe": _start(venv, "python", "-c", "import fertrain, fertrain.config as c; print(fertrain.__file__); "
                        "print(c.config_dir()); print(c.asset_path('demo/WolfgangLanger_Pexels.mp4'))", cwd=tmp_path),
        "fertrain": _start(venv, "fertrain", "--help", cwd=tmp_path),
        "table": _start(venv, "fertrain-table", str(tmp_path / "runs"), "--allow-incomplete", cwd=tmp_path),
        "alias": _start(venv, "python", "-m", "fertrain.table", "--help", cwd=tmp_path),
        **{s: _start(venv, s, "--help", cwd=tmp_path) for s in ("fertrain-preprocess", "fertrain-spotting-baseline",
                                                                "fertrain-export", "fertrain-sweep-best")},
        "model-card": _start(venv, "fertrain-model-card", "--models", "mscm", "--frames", "2", "--size", "32",
                             "--batch", "1", "--repeats", "1", cwd=tmp_path),
        "preprocess": _start(venv, "fertrain-preprocess", "--input", str(clip), "--output", str(tmp_path / "faces"),
                             "--workers", "1", cwd=tmp_path),
        "spotting": _start(venv, "fertrain-spotting-baseline", "--videos", str(clip), "--labels", str(labels),
                           "--out", str(tmp_path / "spotting"), cwd=tmp_path),
        "bench help": _start(venv, "python", "-c", BENCH_HELP, *(str(venv / "bin" / s) for s in BENCH_SCRIPTS),
                             *(f"fertrain.bench.{m}" for m in BENCH_MODULES_ONLY), cwd=tmp_path),
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
    # the model card: one measured row, and the weights column composed from the packaged experiment configs
    card = res["model-card"][1]
    assert "| model | input T x size | params (M) | GFLOPs / clip |" in card
    (row,) = [line for line in card.splitlines() if line.startswith("| MSCM")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "2 x 32" and float(cells[2]) > 10 and float(cells[3]) > 0 and float(cells[4]) > 0, row
    assert "dfew_mscm" in cells[5] and "demo" in cells[5], row
    # the preprocessing CLI: every frame of the real clip has a face; the report and the 40 crops are written
    faces = tmp_path / "faces"
    (report,) = list(csv.DictReader((faces / "face_report.csv").open()))
    assert (report["video"], report["status"], report["frames"], report["no_face_frames"]) == ("clip.mp4", "done",
                                                                                                "40", "0"), report
    crops = sorted((faces / "clip").glob("*.jpg"))
    assert len(crops) == 40 and cv2.imread(str(crops[0])).shape[2] == 3
    # the spotting baseline: the packaged config, one F1 line per video and the pooled one; micro (no ground
    # truth) is n/a, not 0.000; the one labelled macro-expression is a TP or an FN
    out = res["spotting"][1]
    config = Path(out.splitlines()[0].removeprefix("config: "))
    assert config.name == "spotting_baseline.yaml" and config.is_relative_to(installed), out
    (pooled,) = [line for line in out.splitlines() if line.startswith("POOLED (1 videos)")]
    assert "micro TP/FP/FN 0/0/0 F1 n/a" in pooled and "overall TP/FP/FN" in pooled, pooled
    summary = json.loads((tmp_path / "spotting" / "summary.json").read_text())
    pooled_json = summary["pooled"]
    assert pooled_json["macro/tp"] + pooled_json["macro/fn"] == 1.0 and pooled_json["micro/f1"] is None
    assert (tmp_path / "spotting" / "predictions.csv").read_text().startswith("video,onset,offset,kind,score")
    # every benchmark answers --help with its own usage (prog: python -m fertrain.bench.<module>) and status 0
    helps = re.split(r"^=== (\S+) exit (\S+)$", res["bench help"][1], flags=re.M)  # [text, tool, code, text, ...]
    tools = [str(venv / "bin" / s) for s in BENCH_SCRIPTS] + [f"fertrain.bench.{m}" for m in BENCH_MODULES_ONLY]
    assert helps[1::3] == tools and helps[2::3] == ["0"] * len(tools), res["bench help"][1][-3000:]
    for text, module in zip(helps[0::3], [*BENCH_SCRIPTS.values(), *BENCH_MODULES_ONLY]):
        assert text.strip().startswith(f"usage: python -m fertrain.bench.{module} ") and "--help" in text, text
