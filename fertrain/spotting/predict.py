"""Spotting inference on one long video with a trained spotting checkpoint (``python -m fertrain.predict``).

:func:`predict_spotting` is what ``fertrain.predict.predict_video`` runs when the checkpoint's task is spotting:
the run's own window sampler (window, stride, frame step), eval transform and normalisation; per-frame class
probabilities of the final stage averaged over the windows covering a frame (as the spotting task does at test
time); intervals by the run's post-processing (:func:`fertrain.spotting.postprocess.spot_video`); and the spotting
plot (:func:`fertrain.spotting.plots.plot_spotting_video`: score curves and proposals; with ``labels``, the ground
truth and TP/FP colours under the run's evaluation protocol).

Outputs in ``out_dir``: ``<stem>_spotting_scores.csv`` (frame, p_neutral, p_macro, p_micro),
``<stem>_spotting_intervals.csv`` (kind, onset, offset, score; 0-based inclusive frames) and
``<stem>_spotting.png``.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fertrain.spotting.intervals import Interval
from fertrain.spotting.postprocess import resolve_threshold, smooth_scores, spot_video

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_spotting(net: torch.nn.Module, cfg: dict[str, Any], video: str | Path, out_dir: str | Path,
                     batch_size: int = 8, device: str = "cpu", labels: Sequence[Interval] | None = None,
                     title: str = "") -> dict[str, Path]:
    """Spot expressions in ``video`` with a spotting network and its run config.

    Args:
        net: the spotting network in eval mode (``forward`` -> ``(B, T, K)`` per-frame logits).
        cfg: the run's resolved config (``fertrain_config`` of the checkpoint).
        video: a video file, frame folder or ``.npy`` array.
        out_dir: output folder.
        batch_size: windows per forward pass.
        device: torch device string.
        labels: optional ground-truth intervals (0-based frames) to draw and evaluate (run's ``metric.protocol``).
        title: extra plot title text (e.g. the checkpoint name).

    Returns:
        ``{"scores_csv": path, "intervals_csv": path, "png": path}``.

    Raises:
        FileNotFoundError: no such video.
        KeyError: the run config has no spotting sampler (``data.datamodule.sampler``).
    """
    from fertrain.data.datamodule import IMAGENET_MEAN, IMAGENET_STD, normalize_video
    from fertrain.data.readers import count_frames, read_frames
    from fertrain.spotting.plots import plot_spotting_video

    video = Path(video)
    if not video.exists():
        raise FileNotFoundError(f"video={video}: no such file or folder")
    data = cfg["data"]
    dm = data["datamodule"]
    sampler = instantiate(OmegaConf.create(dm["sampler"]))
    transform = instantiate(OmegaConf.create(dm["eval_transform"]))
    mean, std = dm.get("mean", IMAGENET_MEAN), dm.get("std", IMAGENET_STD)
    n = count_frames(video)
    n_s = sampler.num_sampled(n)
    k = len(data["class_names"])
    sums, hits = np.zeros((n_s, k)), np.zeros(n_s)
    starts = sampler.starts(n)
    for b in range(0, len(starts), batch_size):
        batch, positions = [], []
        for s in starts[b:b + batch_size]:
            pos, valid = sampler.positions(s, n)
            frames = transform(read_frames(video, sampler.source_frames(pos, n)))  # (T, h, w, C) uint8
            batch.append(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2))
            positions.append((pos, valid))
        x = normalize_video(torch.stack(batch).to(device), mean, std)  # (B, T, C, H, W)
        probs = net(x).float().softmax(-1).cpu().numpy()  # (B, T, K)
        for (pos, valid), p in zip(positions, probs):
            np.add.at(sums, pos[valid], p[valid])
            np.add.at(hits, pos[valid], 1.0)
    per_sampled = sums / np.maximum(hits, 1)[:, None]
    per_sampled[hits == 0] = np.eye(k)[0]  # never covered: neutral (cannot happen with WindowSampler.starts)
    scores = per_sampled[np.minimum(np.arange(n) // sampler.frame_step, n_s - 1)]  # (N, K) per source frame
    post = (cfg.get("task") or {}).get("postprocess") or data.get("postprocess") or {"threshold": 0.5}
    stats: dict[str, Any] = {}
    intervals = spot_video(scores, {**post, "stats": stats})

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = video.stem
    scores_csv = out_dir / f"{stem}_spotting_scores.csv"
    with scores_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame"] + [f"p_{c}" for c in data["class_names"]])
        w.writerows([i, *(f"{v:.5f}" for v in row)] for i, row in enumerate(scores))
    intervals_csv = out_dir / f"{stem}_spotting_intervals.csv"
    with intervals_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["kind", "onset", "offset", "score"])
        w.writerows([iv.kind, iv.onset, iv.offset, f"{iv.score:.4f}"] for iv in intervals)
    curves, thresholds = {}, {}
    for kind, col in (("macro", 1), ("micro", 2)):
        kcfg = {**post, **(post.get(kind) or {})}
        curves[kind] = smooth_scores(scores[:, col], int(kcfg.get("smooth", 1) or 1))
        thresholds[kind] = resolve_threshold(curves[kind], kcfg.get("threshold", 0.5))
    results, protocol = None, ""
    if labels is not None:
        from fertrain.metrics.spotting import SpottingF1

        mcfg = cfg.get("metric") or {}
        rules = {k: v for k, v in (mcfg.get("rules") or {}).items() if v is not None and k != "ground_truth"}
        metric = SpottingF1(protocol=mcfg.get("protocol", "fertrain"), rules=rules)
        metric.update(intervals, list(labels), stem)
        results, protocol = metric.details[0][2], metric.protocol
    fps = None
    try:
        from fertrain.predict import video_fps

        fps = video_fps(video) or None
    except Exception:  # noqa: BLE001 - the seconds axis is optional
        fps = None
    png = plot_spotting_video(out_dir / f"{stem}_spotting.png", stem, n, curves, results, preds=intervals,
                              gts=list(labels or ()), thresholds=thresholds, fps=fps, protocol=protocol,
                              title=title or "predict")
    log.info("spotting predict %s: %d intervals (%s); wrote %s, %s, %s", video, len(intervals), stats, scores_csv,
             intervals_csv, png)
    return {"scores_csv": scores_csv, "intervals_csv": intervals_csv, "png": png}
