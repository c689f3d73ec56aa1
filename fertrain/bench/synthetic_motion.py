"""Train the video models (MSCM, CEFLNet, R3D18, frame mean) on ``synthetic_motion``; print a Markdown table.

On ``synthetic_motion`` the four classes (subtle/large x up/down) differ only in motion, and a "down" clip is an
"up" clip's frames in reverse order. A model that pools per-frame features without temporal order can reach at
most 0.5 UAR (amplitude alone); a model that sees motion can approach 1.0. CEFLNet is order-free inside and across its clips (see conf/experiment/synthetic_ceflnet.yaml),
so it is expected at 0.5 too.

Usage (or ``scripts/synthetic_motion_check.py`` in a checkout)::

    python -m fertrain.bench.synthetic_motion                 # all four models, their default budget
    python -m fertrain.bench.synthetic_motion --epochs 8 --models mscm

Each run goes through the real entry point (:func:`fertrain.train.run`) with the experiment configs
``synthetic_<model>``; run folders go to ``logs/synthetic_check/`` under the current folder (``--log-dir``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from fertrain.cli import guarded
from fertrain.config import config_dir
from fertrain.train import run

PROG = "python -m fertrain.bench.synthetic_motion"

EXPERIMENTS = {"mscm": "synthetic_mscm", "ceflnet": "synthetic_ceflnet", "r3d18": "synthetic_r3d18",
               "frame_mean": "synthetic_frame_mean"}


@guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """Train each chosen model on ``synthetic_motion``; print the table. Returns 0."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs of the experiments")
    parser.add_argument("--log-dir", default="logs/synthetic_check")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. optimizer.lr=3e-4")
    args = parser.parse_args(argv)

    rows = []
    for model in args.models:
        name = EXPERIMENTS[model]
        out = Path(args.log_dir) / name
        overrides = [f"+experiment={name}", f"paths.output_dir={out}", "callbacks.rich_progress_bar=null",
                     f"data.datamodule.num_workers={args.workers}", *args.overrides]
        if args.epochs:
            overrides.append(f"trainer.max_epochs={args.epochs}")
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        t0 = time.perf_counter()
        summary = run(cfg)
        seconds = time.perf_counter() - t0
        rows.append((model, cfg.trainer.max_epochs, summary["val_best"], summary["val_last"],
                     summary["test_best"], seconds))

    print(f"\nsynthetic_motion (4 classes; order-free ceiling 0.50 UAR) · torch threads {torch.get_num_threads()}\n")
    print("| model | epochs | val UAR best (epoch) | val UAR last | test UAR (best ckpt) | test WAR | wall time (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for model, epochs, vb, vl, tb, sec in rows:
        print(f"| {model} | {epochs} | {vb['uar']:.3f} ({vb['epoch']}) | {vl['uar']:.3f} | {tb['uar']:.3f} | "
              f"{tb['war']:.3f} | {sec:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
