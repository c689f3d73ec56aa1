"""Spotting plots: one PNG per video with the score curve, ground truth, proposals coloured TP/FP and missed GTs.

:func:`plot_spotting_video` draws one row per kind (macro on top, micro below) on a shared frame axis:

* the per-frame score of the kind (the stitched softmax of the network, or any (N,) curve) and, where known, the
  threshold of the post-processing;
* ground-truth intervals as shaded spans (blue), a missed one (FN) hatched and outlined in orange;
* proposals as bars under the curve: green = true positive, red = false positive (under the evaluation protocol
  whose :class:`~fertrain.spotting.protocols.KindResult` is given), grey = not evaluated (``predict``: no ground
  truth, or a kind the protocol did not score);
* the counts of the row (TP/FP/FN) and the protocol in the row title.

:func:`log_image` sends a written PNG to the active Lightning loggers (TensorBoard ``add_image``, Weights & Biases
``log_image``). Matplotlib with the Agg backend; PNG at ``dpi`` (default 110).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fertrain.spotting.intervals import KINDS, Interval

log = logging.getLogger(__name__)

COLORS = {"gt": "#1f77b4", "tp": "#2ca02c", "fp": "#d62728", "fn": "#ff7f0e", "none": "#7f7f7f",
          "macro": "#9467bd", "micro": "#17becf"}


def plot_spotting_video(path: str | Path, video_id: str, num_frames: int, scores: Mapping[str, np.ndarray] | None,
                        results: Mapping[str, Any] | None = None,
                        preds: Sequence[Interval] = (), gts: Sequence[Any] = (),
                        thresholds: Mapping[str, float] | None = None, fps: float | None = None,
                        protocol: str = "", title: str = "", dpi: int = 110) -> Path:
    """Write the spotting plot of one video (module docstring) as a PNG.

    Args:
        path: output ``.png`` (parent folders are created; written atomically).
        video_id: the video's name (title).
        num_frames: frames of the video (x axis 0 .. N-1, 0-based source frames).
        scores: per kind a float ``(N,)`` score curve (None: no curve).
        results: per kind a :class:`~fertrain.spotting.protocols.KindResult` (TP/FP/FN colours and counts); None:
            proposals and ground truth are drawn uncoloured (``preds`` / ``gts``).
        preds, gts: used where ``results`` has no entry for a kind (e.g. ``predict`` without ground truth).
        thresholds: per kind the post-processing threshold on the score (drawn as a dashed line).
        fps: frames per second (a seconds axis on top when given).
        protocol: the evaluation protocol's name (row titles).
        title: extra title text (run, checkpoint).
        dpi: resolution of the PNG (>= 100).

    Returns:
        ``path``.

    Raises:
        ValueError: ``num_frames < 1`` or a score curve whose length is not ``num_frames``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    for kind, curve in (scores or {}).items():
        if curve is not None and len(curve) != num_frames:
            raise ValueError(f"scores[{kind!r}] has {len(curve)} values for {num_frames} frames")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width = float(np.clip(num_frames / 60.0, 10.0, 18.0))
    fig, axes = plt.subplots(len(KINDS), 1, figsize=(width, 2.3 * len(KINDS) + 0.9), sharex=True, squeeze=False)
    x = np.arange(num_frames)
    for row, kind in enumerate(KINDS):
        ax = axes[row, 0]
        res = (results or {}).get(kind)
        curve = None if scores is None else scores.get(kind)
        if curve is not None:
            ax.plot(x, curve, color=COLORS[kind], lw=1.2, label=f"{kind} score", zorder=3)
        thr = (thresholds or {}).get(kind)
        if thr is not None and np.isfinite(thr):
            ax.axhline(thr, color="k", ls="--", lw=0.8, label=f"threshold {thr:.2f}", zorder=2)
        ax.set_ylim(-0.32, 1.05)
        ax.set_xlim(-0.5, num_frames - 0.5)
        ax.set_ylabel(f"{kind}\nscore")
        ax.grid(alpha=0.25)
        if res is not None:
            gt_list, found = res.gts, [p is not None for p in res.gt_pred]
            pred_list = res.preds
            colour = [COLORS["tp"] if t else COLORS["fp"] for t in res.pred_tp]
            counts = (f"TP {res.tp}, FP {res.fp}, FN {res.fn}" if res.scored
                      else "not scored under this protocol")
        else:
            gt_list = [g for g in gts if g.kind == kind]
            found = [True] * len(gt_list)
            pred_list = [p for p in preds if p.kind == kind]
            colour = [COLORS["none"]] * len(pred_list)
            counts = "not evaluated"
        for g, ok in zip(gt_list, found):
            a, b = g.onset - 0.5, g.offset + 0.5
            ax.axvspan(a, b, ymin=0.25, ymax=1.0, color=COLORS["gt"], alpha=0.18, lw=0, zorder=1)
            if not ok:
                ax.add_patch(Rectangle((a, 0.0), b - a, 1.0, fill=False, hatch="//", edgecolor=COLORS["fn"],
                                       lw=1.4, zorder=4))
        for i, (p, c) in enumerate(zip(pred_list, colour)):
            y = -0.28 + 0.09 * (i % 3)  # stagger overlapping proposals
            ax.add_patch(Rectangle((p.onset - 0.5, y), p.offset - p.onset + 1, 0.07, color=c, zorder=5))
        head = f"{kind}: {len(gt_list)} GT, {len(pred_list)} proposal{'s' if len(pred_list) != 1 else ''} · {counts}"
        ax.set_title(head + (f" · protocol {protocol}" if protocol and res is not None else ""), fontsize=9,
                     loc="left", pad=22 if (fps and row == 0) else 6)
    axes[-1, 0].set_xlabel("frame (0-based)")
    if fps:
        top = axes[0, 0].secondary_xaxis("top", functions=(lambda f: f / fps, lambda s: s * fps))
        top.set_xlabel("time (s)", fontsize=8)
    handles = [Patch(color=COLORS["gt"], alpha=0.3, label="ground truth"),
               Patch(facecolor="none", edgecolor=COLORS["fn"], hatch="//", label="missed GT (FN)"),
               Patch(color=COLORS["tp"], label="proposal TP"), Patch(color=COLORS["fp"], label="proposal FP"),
               Patch(color=COLORS["none"], label="proposal (not evaluated)"),
               Line2D([0], [0], color="k", ls="--", lw=0.8, label="threshold")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"{video_id}" + (f" · {title}" if title else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=max(100, int(dpi)))
    plt.close(fig)
    tmp.replace(path)
    return path


def log_image(loggers: Sequence[Any], key: str, png: str | Path, step: int = 0) -> int:
    """Send a PNG to the active image-capable Lightning loggers (TensorBoard ``experiment.add_image``, wandb
    ``log_image``); other loggers (CSV) are skipped. Returns how many loggers took it."""
    sent = 0
    img = None
    for lg in loggers or ():
        name = type(lg).__name__
        try:
            if name == "TensorBoardLogger":
                if img is None:
                    import matplotlib.image as mpimg

                    img = (mpimg.imread(str(png))[..., :3] * 255).astype(np.uint8)  # (H, W, 3)
                lg.experiment.add_image(key, img, global_step=step, dataformats="HWC")
                sent += 1
            elif name == "WandbLogger":
                lg.log_image(key=key, images=[str(png)], step=step)
                sent += 1
        except Exception as e:  # noqa: BLE001 - a logger failing must not fail the run; said once per call
            log.warning("could not log %s to %s: %s", png, name, e)
    return sent
