"""Train FESNet on ``synthetic_spotting`` under a CPU time budget; print its test F1 with TP/FP/FN, and the F1 of
the training-free feature-difference baseline (:mod:`fertrain.spotting.baseline`) on the same test videos.

Usage (or ``scripts/synthetic_spotting_check.py`` in a checkout)::

    python -m fertrain.bench.synthetic_spotting                     # 3-minute training budget
    python -m fertrain.bench.synthetic_spotting --minutes 1 trainer.max_epochs=2 optimizer.lr=1e-3

FESNet goes through the real entry point (:func:`fertrain.train.run`, experiment ``synthetic_fesnet``; run folder
``logs/synthetic_spotting_check/``): training stops after ``--minutes`` (Lightning ``max_time``) or
``trainer.max_epochs``, whichever comes first; the test uses the checkpoint with the best val F1. The baseline
needs no training; its ``k`` (half the mean expression length) comes from the TRAINING annotations
(:func:`fertrain.spotting.postprocess.k_from_annotations`) and its micro/macro length rule from the synthetic
generator's lengths (micro 6-12 frames, macro 16-30 frames at 30 fps).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from fertrain.cli import guarded
from fertrain.config import config_dir
from fertrain.metrics.spotting import SpottingF1
from fertrain.tasks.spotting import format_counts
from fertrain.train import run

PROG = "python -m fertrain.bench.synthetic_spotting"


def baseline_f1(cfg) -> tuple[dict[str, float], float]:
    """F1 of the feature-difference baseline on the test videos of the composed ``synthetic_spotting`` config."""
    import numpy as np

    from fertrain.spotting.baseline import BaselineConfig, spot_crops
    from fertrain.spotting.postprocess import k_from_annotations

    t0 = time.perf_counter()
    source = instantiate(cfg.data.datamodule.source)
    videos = source.videos()
    train = [iv for v in videos if v.split == "train" for iv in v.intervals]
    fps = float(cfg.data.fps)
    bcfg = BaselineConfig(k_frames=k_from_annotations(train), size=int(cfg.data.image_size),
                          micro_min_s=3 / fps, micro_max_s=14 / fps)
    rules = {k: v for k, v in (cfg.metric.rules or {}).items() if v is not None and k != "ground_truth"}
    metric = SpottingF1(protocol=cfg.metric.protocol, rules=rules)  # the FESNet run's evaluator
    for v in (v for v in videos if v.split == "test"):
        res = spot_crops(np.load(v.path), None, fps, bcfg)
        metric.update_video(res.intervals, v)
    return metric.compute(), time.perf_counter() - t0


@guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """Train FESNet under the budget, run the baseline; print both F1 lines. Returns 0."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="FESNet training budget (wall clock)")
    parser.add_argument("--log-dir", default="logs/synthetic_spotting_check")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. trainer.max_epochs=4")
    args = parser.parse_args(argv)

    seconds = int(args.minutes * 60)
    overrides = ["+experiment=synthetic_fesnet", f"paths.output_dir={Path(args.log_dir) / 'synthetic_fesnet'}",
                 "callbacks.rich_progress_bar=null", f"data.datamodule.num_workers={args.workers}",
                 f"+trainer.max_time=00:00:{seconds // 60:02d}:{seconds % 60:02d}", *args.overrides]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    t0 = time.perf_counter()
    summary = run(cfg)
    wall = time.perf_counter() - t0
    test = summary["test"]
    print(f"\nsynthetic_spotting test ({cfg.data.datamodule.source.test_subjects} subjects x "
          f"{cfg.data.datamodule.source.videos_per_subject} videos of {cfg.data.datamodule.source.num_frames} frames)"
          f" · torch threads {torch.get_num_threads()}")
    print(f"FESNet ({summary.get('epochs', '?')} epochs, budget {args.minutes:g} min, run {wall:.0f} s, "
          f"{summary.get('test_source')}): {format_counts(test)}")
    if not args.no_baseline:
        res, sec = baseline_f1(cfg)
        print(f"baseline (LBP feature difference, training-free, {sec:.0f} s): {format_counts(res)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
