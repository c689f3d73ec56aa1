"""Figures of runs: confusion matrices, learning curves, prediction timelines, clip activation maps, fold overviews.

Every ``plot_*`` function writes one PNG (atomically: temporary file, then rename) at :data:`DPI` dots per inch
with a fixed figure size, so the pixel size is known in advance (``figure size in inches × DPI``; the sizes are
given per function). Each has a ``*_figure`` twin that returns the :class:`matplotlib.figure.Figure` without saving
(tests measure it). Figures are built with :class:`~matplotlib.figure.Figure` directly, not ``pyplot``: no global
backend switch, no figure registry to leak, safe in DataLoader workers and threads. Layout is matplotlib's
constrained layout; every legend is placed *outside* the data area (``fig.legend(loc="outside right upper")``), so
it never covers a curve, and long titles are wrapped rather than cut.

:func:`log_image` sends a written PNG to the active image-capable loggers (TensorBoard, Weights & Biases).

Colour choices (ours): a sequential map (Blues) for row-normalised percentages, the tab10 palette for classes.
"""

from __future__ import annotations

import logging
import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

DPI = 120  #: dots per inch of every PNG written here (>= 100: readable when shown at 100 %)
_TITLE_WIDTH = 70  # characters per title line before wrapping


def _figure(width: float, height: float) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _title(fig: "Figure", title: str, size: float = 10) -> None:
    if title:
        fig.suptitle("\n".join(textwrap.wrap(title, _TITLE_WIDTH)) or title, fontsize=size)


def save_figure(fig: "Figure", path: str | Path) -> Path:
    """Write ``fig`` as a PNG at :data:`DPI` (parent folders created; temporary file, then rename).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=DPI, format="png")
    tmp.replace(path)
    return path


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


# ----------------------------------------------------------------------------------------------- confusion
def confusion_matrix_size(num_classes: int) -> tuple[float, float]:
    """Figure size in inches of a ``K``-class confusion matrix: ``(max(5, 1.1 K + 2.6), max(4.2, 1.0 K + 1.9))``
    (7 classes: 10.3 × 8.9 in, 1236 × 1068 px at 120 dpi). Ours: about 1.1 in per cell, room for two text lines."""
    k = num_classes
    return max(5.0, 1.1 * k + 2.6), max(4.2, 1.0 * k + 1.9)


def confusion_matrix_figure(confmat: Any, class_names: Sequence[str], title: str = "") -> "Figure":
    """A confusion matrix: every cell shows its count and its row-normalised percentage; colour = row %.

    Args:
        confmat: ``(K, K)`` counts (tensor or array), rows = target class, columns = predicted class.
        class_names: ``K`` names in label order (tick labels of both axes).
        title: heading, wrapped at 70 characters (never cut).

    Raises:
        ValueError: ``confmat`` is not ``(K, K)`` with ``K = len(class_names)``.
    """
    cm = _as_numpy(confmat).astype(float)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {k} class names {list(class_names)}")
    support = cm.sum(axis=1, keepdims=True)
    pct = np.divide(100.0 * cm, support, out=np.zeros_like(cm), where=support > 0)
    fig = _figure(*confusion_matrix_size(k))
    ax = fig.add_subplot()
    im = ax.imshow(pct, vmin=0.0, vmax=100.0, cmap="Blues")
    ax.set_xticks(range(k), list(class_names), rotation=35, ha="right", rotation_mode="anchor", fontsize=10)
    ax.set_yticks(range(k), [f"{n}\n(n={int(s)})" for n, s in zip(class_names, support[:, 0])], fontsize=10)
    ax.set_xlabel("predicted class", fontsize=10)
    ax.set_ylabel("target class", fontsize=10)
    for i in range(k):
        for j in range(k):
            dark = pct[i, j] > 55.0
            ax.text(j, i, f"{int(cm[i, j])}\n{pct[i, j]:.1f}%", ha="center", va="center", fontsize=9,
                    color="white" if dark else "black", fontweight="bold" if i == j else "normal")
    cbar = fig.colorbar(im, ax=ax, shrink=0.8)
    cbar.set_label("% of the target class (row)", fontsize=9)
    _title(fig, title)
    return fig


def plot_confusion_matrix(confmat: Any, class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Save :func:`confusion_matrix_figure` as a PNG (size :func:`confusion_matrix_size` × :data:`DPI`).

    Returns:
        The path written.
    """
    return save_figure(confusion_matrix_figure(confmat, class_names, title), path)


# ----------------------------------------------------------------------------------------------- learning curves
LEARNING_CURVES_SIZE = (11.0, 4.2)  #: inches: 1320 × 504 px at 120 dpi


def best_entry(history: Sequence[Mapping[str, float]], monitor: str = "uar", mode: str = "max") -> Mapping[str, float]:
    """The epoch entry ``fertrain.train`` reports as ``val_best``: best ``monitor`` value, earliest epoch on ties.

    Raises:
        ValueError: empty history, or ``monitor`` missing from an entry.
    """
    if not history:
        raise ValueError("empty validation history: no epoch was validated")
    missing = [e.get("epoch") for e in history if monitor not in e]
    if missing:
        raise ValueError(f"validation history has no {monitor!r} for epoch(s) {missing}")
    sign = -1.0 if mode == "min" else 1.0
    return max(history, key=lambda e: (sign * float(e[monitor]), -float(e["epoch"])))


def learning_curves_figure(history: Sequence[Mapping[str, float]], monitor: str = "uar", mode: str = "max",
                           title: str = "") -> "Figure":
    """Loss (train, val) and val UAR/WAR per epoch, best epoch marked.

    Args:
        history: one entry per validated epoch, as ``RecognitionTask.val_history``: ``epoch`` (0-based) and any of
            ``uar``, ``war`` (fractions), ``loss`` (val loss), ``train_loss`` (mean training loss since the
            previous validation).
        monitor: the entry key that picked the best epoch (``monitor.key`` without ``val/``).
        mode: ``max`` or ``min``.
        title: heading.

    Raises:
        ValueError: empty history or ``monitor`` absent (see :func:`best_entry`).
    """
    best = best_entry(history, monitor, mode)
    epochs = np.array([float(e["epoch"]) for e in history])
    fig = _figure(*LEARNING_CURVES_SIZE)
    ax_loss, ax_metric = fig.subplots(1, 2)

    def series(key: str) -> np.ndarray:
        return np.array([float(e[key]) if e.get(key) is not None else np.nan for e in history])

    marker = "o" if len(history) <= 30 else None
    for key, label, style, colour in (("train_loss", "train loss", "-", "C0"), ("loss", "val loss", "--", "C1")):
        if any(key in e for e in history):
            ax_loss.plot(epochs, series(key), style, color=colour, marker=marker, ms=4, label=label)
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss", fontsize=10)
    for key, label, colour, style, mk in (("uar", "val UAR", "C2", "-", "o"), ("war", "val WAR", "C3", "--", "s")):
        if any(key in e for e in history):  # different line and marker: UAR = WAR (balanced sets) stays visible
            ax_metric.plot(epochs, 100 * series(key), style, color=colour, marker=mk if marker else None, ms=4,
                           label=label, mfc="none" if key == "war" else colour)
    ax_metric.set_ylabel("percent")
    ax_metric.set_title("validation UAR / WAR", fontsize=10)
    ax_metric.set_ylim(-2, 102)
    best_label = f"best epoch {int(best['epoch'])} (val {monitor.upper()} " + (
        f"{100 * float(best[monitor]):.2f}%)" if monitor in ("uar", "war", "f1") else f"{float(best[monitor]):.4g})")
    for ax in (ax_loss, ax_metric):
        ax.axvline(float(best["epoch"]), color="black", ls=":", lw=1.2, label=best_label if ax is ax_loss else None)
        ax.set_xlabel("epoch (0-based, as in checkpoint names)")
        ax.grid(alpha=0.3)
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
    handles, labels = [], []
    for ax in (ax_loss, ax_metric):
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    fig.legend(handles, labels, loc="outside right upper", fontsize=9)
    _title(fig, title)
    return fig


def plot_learning_curves(history: Sequence[Mapping[str, float]], path: str | Path, monitor: str = "uar",
                         mode: str = "max", title: str = "") -> Path:
    """Save :func:`learning_curves_figure` as a PNG (:data:`LEARNING_CURVES_SIZE` × :data:`DPI`)."""
    return save_figure(learning_curves_figure(history, monitor, mode, title), path)


# ----------------------------------------------------------------------------------------------- timeline
TIMELINE_SIZE = (12.0, 4.0)  #: inches: 1440 × 480 px at 120 dpi


def timeline_figure(
    centres: Sequence[float],
    probs: Any,
    class_names: Sequence[str],
    fps: float = 0.0,
    ground_truth: Iterable[tuple[int, int, int]] | None = None,
    no_face: Iterable[tuple[int, int]] | None = None,
    split_spans: Iterable[tuple[int, int, str]] | None = None,
    title: str = "",
) -> "Figure":
    """Class probabilities of sliding windows over one video, against time.

    Args:
        centres: ``(N,)`` window centres in frames (0-based; e.g. ``start + window / 2``).
        probs: ``(N, K)`` class probabilities of each window.
        class_names: ``K`` names in label order.
        fps: frames per second of the video; ``0`` plots against frames.
        ground_truth: labelled segments ``(first_frame, last_frame, class index)`` (inclusive frames), drawn as
            background shading in the class's colour.
        no_face: ``(first_frame, last_frame)`` spans without a face (inclusive), greyed and hatched.
        split_spans: ``(lo, hi, split name)`` half-open frame spans (e.g. the demo's train/val/test spans), drawn
            as a strip above the curves.
        title: heading.

    Raises:
        ValueError: ``probs`` is not ``(N, K)`` with ``N = len(centres)`` and ``K = len(class_names)``, or a
            ground-truth class index is out of range.
    """
    from matplotlib.patches import Patch

    p = _as_numpy(probs).astype(float)
    x_frames = np.asarray(centres, dtype=float)
    k = len(class_names)
    if p.ndim != 2 or p.shape != (len(x_frames), k):
        raise ValueError(f"probs shape {p.shape} does not match {len(x_frames)} windows x {k} classes")
    scale = 1.0 / fps if fps else 1.0
    colours = [f"C{i % 10}" for i in range(k)]
    fig = _figure(*TIMELINE_SIZE)
    spans = list(split_spans or [])
    if spans:
        ax_split, ax = fig.subplots(2, 1, sharex=True, height_ratios=[1, 7])
    else:
        ax_split, ax = None, fig.add_subplot()
    handles: list[Any] = []
    for i, name in enumerate(class_names):
        (line,) = ax.plot(x_frames * scale, p[:, i], color=colours[i], marker="." if len(x_frames) <= 200 else None,
                          lw=1.5, label=f"p({name})")
        handles.append(line)
    gt_classes: set[int] = set()
    for first, last, label in ground_truth or []:
        if not 0 <= int(label) < k:
            raise ValueError(f"ground-truth class index {label} out of range for {k} classes")
        ax.axvspan(first * scale, (last + 1) * scale, color=colours[int(label)], alpha=0.15, lw=0)
        gt_classes.add(int(label))
    handles += [Patch(color=colours[c], alpha=0.3, label=f"labelled {class_names[c]}") for c in sorted(gt_classes)]
    nf = list(no_face or [])
    for first, last in nf:
        ax.axvspan(first * scale, (last + 1) * scale, facecolor="0.6", alpha=0.5, hatch="//", edgecolor="0.4", lw=0)
    if nf:
        handles.append(Patch(facecolor="0.6", alpha=0.5, hatch="//", edgecolor="0.4", label="no face"))
    if ax_split is not None:
        names = list(dict.fromkeys(s for _, _, s in spans))
        split_colour = {"train": "0.35", "val": "tab:olive", "test": "tab:purple"}  # apart from C0, C1 (classes)
        for j, name in enumerate(names):
            split_colour.setdefault(name, f"C{(j + 5) % 10}")
        for lo, hi, name in spans:
            ax_split.axvspan(lo * scale, hi * scale, color=split_colour[name], lw=0)
        ax_split.set_yticks([])
        ax_split.set_ylabel("split", rotation=0, ha="right", va="center", fontsize=9)
        handles += [Patch(color=split_colour[n], label=f"{n} span") for n in names]
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, (max(x_frames.max(initial=0), max((e for _, e in nf), default=0)) + 1) * scale)
    ax.set_xlabel("time (s, window centre)" if fps else "frame (window centre)")
    ax.set_ylabel("probability")
    ax.grid(alpha=0.3)
    fig.legend(handles=handles, loc="outside right upper", fontsize=9)
    _title(fig, title)
    return fig


def plot_timeline(path: str | Path, centres: Sequence[float], probs: Any, class_names: Sequence[str],
                  fps: float = 0.0, ground_truth: Iterable[tuple[int, int, int]] | None = None,
                  no_face: Iterable[tuple[int, int]] | None = None,
                  split_spans: Iterable[tuple[int, int, str]] | None = None, title: str = "") -> Path:
    """Save :func:`timeline_figure` as a PNG (:data:`TIMELINE_SIZE` × :data:`DPI`). For ``fertrain.predict``:
    ``centres = start + min(window, n - start) / 2`` per window, ``probs`` the ``(N, K)`` softmax outputs,
    ``no_face`` from the face report, ``ground_truth`` from a labels file when given."""
    return save_figure(timeline_figure(centres, probs, class_names, fps, ground_truth, no_face, split_spans, title),
                       path)


# ----------------------------------------------------------------------------------------------- activation
ACTIVATION_SIZE = (12.0, 3.6)  #: inches: 1440 × 432 px at 120 dpi


def clip_activation_figure(activation: Any, sample_positions: Sequence[float] | None = None,
                           xlabel: str = "window", title: str = "") -> "Figure":
    """CEFLNet's activation map over clips as a heatmap: one column per sample (window), one row per clip.

    Args:
        activation: ``(N samples, C clips)`` activation weights (each row sums to 1 in CEFLNet's emotional
            intensity activation network; Liu et al., Information Sciences 598, 2022, Sec. 3.3).
        sample_positions: ``(N,)`` x value of each sample (e.g. window start in seconds), used as tick labels;
            default the sample index.
        xlabel: x-axis label (e.g. ``"window start (s)"``).
        title: heading.

    Raises:
        ValueError: ``activation`` is not 2-D, or ``sample_positions`` has the wrong length.
    """
    act = _as_numpy(activation).astype(float)
    if act.ndim != 2:
        raise ValueError(f"activation must be (N samples, C clips), got shape {act.shape}")
    n, c = act.shape
    if sample_positions is not None and len(sample_positions) != n:
        raise ValueError(f"{len(sample_positions)} sample positions for {n} samples")
    fig = _figure(*ACTIVATION_SIZE)
    ax = fig.add_subplot()
    im = ax.imshow(act.T, aspect="auto", cmap="viridis", interpolation="nearest", origin="lower",
                   vmin=0.0, vmax=max(float(act.max(initial=0.0)), 1e-6))
    ax.set_yticks(range(c), [str(i + 1) for i in range(c)])
    ax.set_ylabel("clip")
    step = max(1, math.ceil(n / 16))
    ticks = list(range(0, n, step))
    labels = [f"{sample_positions[i]:.1f}" if sample_positions is not None else str(i) for i in ticks]
    ax.set_xticks(ticks, labels)
    ax.set_xlabel(xlabel)
    cbar = fig.colorbar(im, ax=ax)
    cbar.set_label(f"activation (uniform = {1 / c:.3f})", fontsize=9)
    _title(fig, title)
    return fig


def plot_clip_activation(path: str | Path, activation: Any, sample_positions: Sequence[float] | None = None,
                         xlabel: str = "window", title: str = "") -> Path:
    """Save :func:`clip_activation_figure` as a PNG (:data:`ACTIVATION_SIZE` × :data:`DPI`). For
    ``fertrain.predict``: ``activation`` is the concatenated ``forward_with_activation`` output ``(N, C)``."""
    return save_figure(clip_activation_figure(activation, sample_positions, xlabel, title), path)


# ----------------------------------------------------------------------------------------------- fold overview
FOLD_OVERVIEW_SIZE = (10.0, 4.2)  #: inches: 1200 × 504 px at 120 dpi


def fold_overview_figure(folds: Sequence[str], values: Mapping[str, Sequence[float | None]],
                         published: Mapping[str, float] | None = None, title: str = "") -> "Figure":
    """Per-fold bars of each metric (e.g. UAR and WAR, percent) with the mean over folds and the published value.

    Args:
        folds: fold labels (x axis).
        values: metric name -> one value per fold (percent; ``None`` draws no bar).
        published: metric name -> published value (percent), drawn as a dashed line in the metric's colour.
        title: heading.

    Raises:
        ValueError: a metric has a different number of values than ``folds``.
    """
    names = list(values)
    for name in names:
        if len(values[name]) != len(folds):
            raise ValueError(f"{name}: {len(values[name])} values for {len(folds)} folds")
    fig = _figure(*FOLD_OVERVIEW_SIZE)
    ax = fig.add_subplot()
    x = np.arange(len(folds), dtype=float)
    width = 0.8 / max(1, len(names))
    top = 0.0
    for i, name in enumerate(names):
        vals = np.array([np.nan if v is None else float(v) for v in values[name]])
        colour = f"C{i % 10}"
        bars = ax.bar(x + (i - (len(names) - 1) / 2) * width, np.nan_to_num(vals), width, color=colour,
                      label=f"{name} per fold")
        for bar, v in zip(bars, vals):
            if not np.isnan(v):
                ax.text(bar.get_x() + bar.get_width() / 2, v - 1, f"{v:.1f}", ha="center", va="top", fontsize=8,
                        color="white")
        finite = vals[~np.isnan(vals)]
        if finite.size:
            ax.axhline(float(finite.mean()), color=colour, ls=":", lw=1.5,
                       label=f"{name} mean {finite.mean():.2f} ({finite.size} folds)")
            top = max(top, float(finite.max()))
        if published and published.get(name) is not None:
            ax.axhline(float(published[name]), color=colour, ls="--", lw=1.5,
                       label=f"{name} published {float(published[name]):.2f}")
            top = max(top, float(published[name]))
    ax.set_xticks(x, [str(f) for f in folds])
    ax.set_xlabel("fold")
    ax.set_ylabel("percent")
    ax.set_ylim(0, min(100.0, top + 12) if top else 100.0)
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=9)
    _title(fig, title)
    return fig


def plot_fold_overview(path: str | Path, folds: Sequence[str], values: Mapping[str, Sequence[float | None]],
                       published: Mapping[str, float] | None = None, title: str = "") -> Path:
    """Save :func:`fold_overview_figure` as a PNG (:data:`FOLD_OVERVIEW_SIZE` × :data:`DPI`)."""
    return save_figure(fold_overview_figure(folds, values, published, title), path)


# ----------------------------------------------------------------------------------------------- loggers
def log_image(loggers: Iterable[Any], tag: str, path: str | Path, step: int = 0) -> list[str]:
    """Send the PNG at ``path`` to every image-capable logger: TensorBoard (``add_image``) and Weights & Biases
    (``log_image``). Other loggers (CSV) are left out. Call on global rank 0 only.

    Returns:
        The class names of the loggers that received the image.
    """
    sent: list[str] = []
    image = None
    for lg in loggers:
        kind = type(lg).__name__
        if kind == "TensorBoardLogger":
            if image is None:
                from PIL import Image

                with Image.open(path) as im:
                    image = np.asarray(im.convert("RGB"))  # (H, W, 3) uint8
            lg.experiment.add_image(tag, image, global_step=step, dataformats="HWC")
            sent.append(kind)
        elif kind == "WandbLogger":
            lg.log_image(key=tag, images=[str(path)], step=step)
            sent.append(kind)
    return sent
