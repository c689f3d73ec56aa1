"""Sliding-window inference over a whole video: ``python -m fertrain.predict ckpt=PATH video=PATH``.

Windows of ``window`` frames every ``stride`` frames cover the video; each window is sampled with the run's own
eval sampler and eval transform (read from the checkpoint), classified, and written as one CSV row with its start
and end frame (0-based, inclusive), start and end time (seconds) and the class probabilities. A timeline PNG plots
the probabilities against time. Optional keys: ``window``, ``stride`` (frames), ``out_dir``, ``batch_size``,
``device``.

Models with an activation map over clips (CEFLNet's emotional intensity activation network: a
``forward_with_activation(x) -> (logits (B, K), activation (B, num_clips))`` method) also get
``<stem>_activation.csv`` (window, clip, first/last/centre frame of the clip, activation) and
``<stem>_activation.png``: every window's activation of each clip at the clip's centre time, i.e. which clips
carry the expression (Liu et al., Information Sciences 598, 2022, Sec. 3.3).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fertrain.config import config_dir, register_resolvers
from fertrain.data.datamodule import IMAGENET_MEAN, IMAGENET_STD, normalize_video
from fertrain.data.readers import count_frames, read_frames

log = logging.getLogger("fertrain.predict")


def load_run(ckpt: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the network of a fertrain checkpoint and load its weights.

    Returns:
        ``(net in eval mode, resolved run config as a dict)``.

    Raises:
        FileNotFoundError: no such checkpoint.
        KeyError: the checkpoint was not written by ``python -m fertrain`` (no ``fertrain_config``).
    """
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise FileNotFoundError(f"ckpt={ckpt}: no such checkpoint file")
    state = torch.load(ckpt, map_location=device, weights_only=True)  # tensors and plain containers only
    if "fertrain_config" not in state:
        raise KeyError(f"{ckpt}: no 'fertrain_config' entry; expected a checkpoint written by `python -m fertrain`")
    cfg = state["fertrain_config"]
    # the checkpoint holds every weight: no pretrained initialisation (its file need not exist here)
    net = instantiate(OmegaConf.create({k: v for k, v in cfg["model"].items() if k != "weights"}))
    weights = {k[len("net."):]: v for k, v in state["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(weights)
    return net.to(device).eval(), cfg


def video_fps(video: str | Path) -> float:
    """Average frame rate of a video file in frames per second (decord), or 0.0 for frame folders/arrays."""
    path = Path(video)
    if path.is_dir() or path.suffix == ".npy":
        return 0.0
    import decord

    return float(decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1).get_avg_fps())


@torch.no_grad()
def predict_video(
    ckpt: str | Path,
    video: str | Path,
    out_dir: str | Path,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
) -> dict[str, Path]:
    """Classify sliding windows of ``video`` with the network of ``ckpt``.

    Args:
        ckpt: a checkpoint written by ``python -m fertrain``.
        video: a video file (or frame folder / ``.npy`` array).
        out_dir: output folder; gets ``<stem>_windows.csv`` and ``<stem>_timeline.png``.
        window: frames per window (default: the run's ``data.predict_window``, else 32).
        stride: frames between window starts (default: ``window // 2``).
        batch_size: windows per forward pass.
        device: torch device string.

    Returns:
        ``{"csv": path, "png": path}``, plus ``"activation_csv"`` and ``"activation_png"`` for models with
        ``forward_with_activation`` (CEFLNet).

    Raises:
        FileNotFoundError: no such checkpoint or video.
        ValueError: the video has fewer than 1 frame, or window/stride < 1.
    """
    video = Path(video)
    if not video.exists():
        raise FileNotFoundError(f"video={video}: no such file or folder")
    net, cfg = load_run(ckpt, device)
    data = cfg["data"]
    dm = data["datamodule"]
    class_names = list(data["class_names"])
    sampler = instantiate(OmegaConf.create(dm["sampler"]))
    transform = instantiate(OmegaConf.create(dm["eval_transform"]))
    window = int(window or data.get("predict_window") or 32)
    stride = int(stride or max(1, window // 2))
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1 frame, got window={window}, stride={stride}")
    n = count_frames(video)
    fps = video_fps(video)
    starts = list(range(0, max(1, n - window + 1), stride))
    if starts[-1] + window < n:  # cover the tail
        starts.append(max(0, n - window))
    rng = np.random.default_rng(0)
    probs: list[np.ndarray] = []
    with_activation = hasattr(net, "forward_with_activation")
    activations: list[np.ndarray] = []  # (B, num_clips) per batch
    clip_frames: list[np.ndarray] = []  # (T,) sampled frame indices per window, clip-major
    for b in range(0, len(starts), batch_size):
        idx = [sampler(min(window, n - s), False, rng) + s for s in starts[b:b + batch_size]]
        union = np.unique(np.concatenate(idx))  # decode each frame of the batch once, in order
        decoded = read_frames(video, union)  # (U, H, W, C) uint8
        clips = []
        for i in idx:
            frames = transform(decoded[np.searchsorted(union, i)])  # (T, h, w, C) uint8
            clips.append(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2))  # (T, C, h, w)
        mean, std = dm.get("mean", IMAGENET_MEAN), dm.get("std", IMAGENET_STD)
        x = normalize_video(torch.stack(clips).to(device), mean, std)  # (B, T, C, H, W)
        if with_activation:
            logits, act = net.forward_with_activation(x)  # (B, K), (B, num_clips)
            activations.append(act.cpu().numpy())
            clip_frames.extend(idx)
        else:
            logits = net(x)
        probs.append(logits.softmax(-1).cpu().numpy())
    p = np.concatenate(probs)  # (N, K)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"{video.stem}_windows.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["start_frame", "end_frame", "start_s", "end_s", "pred"] + [f"p_{c}" for c in class_names])
        for s, row in zip(starts, p):
            e = min(n, s + window) - 1
            t0, t1 = (s / fps, (e + 1) / fps) if fps else (float("nan"), float("nan"))
            w.writerow([s, e, f"{t0:.3f}", f"{t1:.3f}", class_names[int(row.argmax())]]
                       + [f"{v:.5f}" for v in row])
    tmp.replace(csv_path)
    png_path = _plot_timeline(out_dir / f"{video.stem}_timeline.png", starts, window, n, fps, p, class_names,
                              title=f"{video.name} · {Path(ckpt).name}")
    log.info("wrote %s and %s (%d windows of %d frames)", csv_path, png_path, len(starts), window)
    out = {"csv": csv_path, "png": png_path}
    if with_activation:
        out.update(_write_activation(out_dir, video.stem, np.concatenate(activations), clip_frames, fps))
    return out


def _write_activation(out_dir: Path, stem: str, act: np.ndarray, clip_frames: list[np.ndarray],
                      fps: float) -> dict[str, Path]:
    """CSV + PNG of the activation map ``act`` ``(N windows, num_clips)``; ``clip_frames[w]`` is window ``w``'s
    sampled frame indices ``(num_clips * frames_per_clip,)``, clip-major."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_windows, n_clips = act.shape
    csv_path = out_dir / f"{stem}_activation.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    centres = np.zeros_like(act)
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["window", "clip", "first_frame", "last_frame", "centre_frame", "activation"])
        for i in range(n_windows):
            for k, frames in enumerate(np.array_split(np.asarray(clip_frames[i]), n_clips)):
                centres[i, k] = frames.mean()
                w.writerow([i, k, int(frames.min()), int(frames.max()), f"{centres[i, k]:.1f}",
                            f"{act[i, k]:.5f}"])
    tmp.replace(csv_path)
    x = centres / fps if fps else centres
    fig, ax = plt.subplots(figsize=(9, 3))
    for i in range(n_windows):
        ax.plot(x[i], act[i], marker=".", alpha=0.5)
    ax.axhline(1.0 / n_clips, color="grey", lw=0.8, ls="--", label=f"uniform (1/{n_clips})")
    ax.set_xlabel("time (s, clip centre)" if fps else "frame (clip centre)")
    ax.set_ylabel("clip activation")
    ax.set_title(f"{stem}: activation map over clips, one line per window", fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png_path = out_dir / f"{stem}_activation.png"
    tmp_png = png_path.with_suffix(".tmp.png")
    fig.savefig(tmp_png, dpi=100)
    plt.close(fig)
    tmp_png.replace(png_path)
    return {"activation_csv": csv_path, "activation_png": png_path}


def _plot_timeline(path: Path, starts: list[int], window: int, n: int, fps: float, p: np.ndarray,
                   class_names: list[str], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = np.array([s + min(window, n - s) / 2 for s in starts], dtype=float)
    x = centres / fps if fps else centres
    fig, ax = plt.subplots(figsize=(9, 3))
    for k, name in enumerate(class_names):
        ax.plot(x, p[:, k], marker=".", label=name)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("time (s, window centre)" if fps else "frame (window centre)")
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry point of ``python -m fertrain.predict``."""
    out_dir = cfg.out_dir or Path(cfg.ckpt).resolve().parent.parent / "predict"
    res = predict_video(cfg.ckpt, cfg.video, out_dir, cfg.window, cfg.stride, cfg.batch_size, cfg.device)
    for k, v in res.items():
        print(f"{k}: {v}")


register_resolvers()

if __name__ == "__main__":
    main()
