"""Every plot of fertrain.report.plots: written at its expected pixel size, not empty, legend outside the data area,
and sent to TensorBoard when that logger is active."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fertrain.report import plots

RNG = np.random.default_rng(0)


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG" and round(im.info["dpi"][0]) == plots.DPI
        return np.asarray(im.convert("L"), dtype=float)


def _check_png(path: Path, size_in: tuple[float, float]) -> np.ndarray:
    pixels = _png(path)
    assert pixels.shape == (round(size_in[1] * plots.DPI), round(size_in[0] * plots.DPI))
    assert pixels.std() > 20.0  # a blank or single-colour image has std ~0
    return pixels


def _drawn(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    return fig.canvas.get_renderer()


def _legend_outside_axes(fig) -> None:
    renderer = _drawn(fig)
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    assert box.width > 20 and box.height > 20
    fig_box = fig.bbox
    assert fig_box.x0 <= box.x0 and box.x1 <= fig_box.x1 + 0.5 and box.y1 <= fig_box.y1 + 0.5  # not cut
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        assert not box.overlaps(ax.get_window_extent(renderer)), f"legend covers axes {ax.get_title()!r}"


@pytest.mark.parametrize("k", [2, 7, 8])
def test_confusion_matrix_counts_percent_names_readable(tmp_path: Path, k: int) -> None:
    names = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt"][:k]
    cm = RNG.integers(0, 40, size=(k, k)) + np.diag(np.full(k, 60))
    cm[0] = 0  # a class without samples: row of zeros, 0.0 %, no division warning
    title = "test (best): UAR 0.612 (chance 0.143)  WAR 0.701 — a long title that must wrap, not be cut off"
    fig = plots.confusion_matrix_figure(cm, names, title=title)
    renderer = _drawn(fig)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == k * k
    r = cm[1].sum()
    assert f"{cm[1, 1]}\n{100 * cm[1, 1] / r:.1f}%" in texts and "0\n0.0%" in texts
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == names
    assert all(t.get_fontsize() >= 9 for t in fig.axes[0].texts)
    ax_box = fig.axes[0].get_window_extent(renderer)
    assert ax_box.width / k >= 80 and ax_box.height / k >= 70  # pixels per cell at 120 dpi: room for 2 lines
    title_box = fig._suptitle.get_window_extent(renderer)
    assert fig.bbox.y0 <= title_box.y0 and title_box.y1 <= fig.bbox.y1 and title_box.x0 >= 0
    assert title_box.x1 <= fig.bbox.x1
    path = plots.plot_confusion_matrix(cm, names, tmp_path / "cm.png", title=title)
    _check_png(path, plots.confusion_matrix_size(k))
    with pytest.raises(ValueError, match="does not match 3 class names"):
        plots.confusion_matrix_figure(np.ones((2, 2)), ["a", "b", "c"])


HISTORY = [{"epoch": e, "uar": u, "war": u + 0.05, "loss": 1.0 - u / 2, "train_loss": 1.2 - 0.1 * e}
           for e, u in enumerate([0.3, 0.5, 0.7, 0.65, 0.7, 0.6])]


def test_learning_curves_best_epoch_and_legend_outside(tmp_path: Path) -> None:
    assert plots.best_entry(HISTORY)["epoch"] == 2  # ties: earliest epoch, as fertrain.train's val_best
    assert plots.best_entry(HISTORY, "loss", "min")["epoch"] == 2
    fig = plots.learning_curves_figure(HISTORY)
    _legend_outside_axes(fig)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["train loss", "val loss", "best epoch 2 (val UAR 70.00%)", "val UAR", "val WAR"]
    ax_loss, ax_metric = fig.axes
    assert [line.get_xdata()[0] for line in ax_metric.lines if line.get_linestyle() == ":"] == [2.0]
    np.testing.assert_allclose(ax_metric.lines[0].get_ydata(), [100 * e["uar"] for e in HISTORY])
    _check_png(plots.plot_learning_curves(HISTORY, tmp_path / "lc.png"), plots.LEARNING_CURVES_SIZE)
    with pytest.raises(ValueError, match="empty validation history"):
        plots.learning_curves_figure([])


def test_timeline_ground_truth_no_face_splits_legend_outside(tmp_path: Path) -> None:
    centres = np.arange(4, 472, 4, dtype=float)
    p_happy = 1 / (1 + np.exp(-(centres - 228) / 20))
    probs = np.stack([1 - p_happy, p_happy], 1)
    probs[24:29] = np.nan  # windows with a no-face frame get no class (fertrain.predict): a gap in the curves
    fig = plots.timeline_figure(centres, probs, ["sad", "happy"], fps=23.976,
                                ground_truth=[(0, 225, 0), (230, 471, 1)], no_face=[(100, 119)],
                                split_spans=[(0, 16, "train"), (16, 32, "test"), (32, 48, "val")], title="demo")
    _legend_outside_axes(fig)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["p(sad)", "p(happy)", "labelled sad", "labelled happy", "no face", "train span", "test span",
                      "val span"]
    ax = fig.axes[1]
    shaded = [p for p in ax.patches]  # 2 ground-truth spans + 1 no-face span
    assert len(shaded) == 3
    assert np.isnan(ax.lines[0].get_ydata()[24:29]).all()
    _check_png(plots.plot_timeline(tmp_path / "tl.png", centres, probs, ["sad", "happy"], fps=23.976,
                                   ground_truth=[(0, 225, 0), (230, 471, 1)]), plots.TIMELINE_SIZE)
    with pytest.raises(ValueError, match="out of range"):
        plots.timeline_figure(centres, probs, ["sad", "happy"], ground_truth=[(0, 5, 2)])


def test_clip_activation_heatmap_is_clips_by_samples(tmp_path: Path) -> None:
    act = RNG.dirichlet(np.ones(7), size=58)  # 58 windows x 7 clips (CEFLNet)
    fig = plots.clip_activation_figure(act, sample_positions=np.arange(58) * 0.5, xlabel="window start (s)")
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (7, 58)  # one row per clip, one column per sample: no 58 overlapping lines
    assert not fig.axes[0].lines
    path = plots.plot_clip_activation(tmp_path / "act.png", act, title="CEFLNet activation")
    _check_png(path, plots.ACTIVATION_SIZE)


def test_fold_overview_bars_mean_and_paper_line(tmp_path: Path) -> None:
    folds = ["1", "2", "3", "4", "5"]
    values = {"UAR": [50.0, 52.0, 54.0, 56.0, 58.0], "WAR": [60.0, 60.0, 60.0, 60.0, 65.0]}
    fig = plots.fold_overview_figure(folds, values, published={"UAR": 58.49, "WAR": 70.16}, title="dfew_mscm")
    _legend_outside_axes(fig)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "UAR mean 54.00 (5 folds)" in labels and "UAR published 58.49" in labels
    assert "WAR published 70.16" in labels
    ax = fig.axes[0]
    assert len(ax.patches) == 10  # 5 folds x 2 metrics
    _check_png(plots.plot_fold_overview(tmp_path / "folds.png", folds, values, {"UAR": 58.49}),
               plots.FOLD_OVERVIEW_SIZE)


def test_log_image_reaches_tensorboard_and_wandb(tmp_path: Path) -> None:
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = plots.plot_learning_curves(HISTORY, tmp_path / "lc.png")

    class WandbLogger:  # stands in for pytorch_lightning's (same name and log_image signature), no wandb run
        def __init__(self) -> None:
            self.calls: list = []

        def log_image(self, key, images, step=None):
            self.calls.append((key, images, step))

    tb, wb = TensorBoardLogger(tmp_path, name="tb", version=""), WandbLogger()
    sent = plots.log_image([CSVLogger(tmp_path), tb, wb], "learning_curves", path, step=7)
    assert sent == ["TensorBoardLogger", "WandbLogger"]
    assert wb.calls == [("learning_curves", [str(path)], 7)]
    tb.experiment.flush()
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    (image,) = events.Images("learning_curves")
    assert image.step == 7 and (image.width, image.height) == Image.open(path).size
