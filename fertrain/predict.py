"""Sliding-window inference over a whole video: ``python -m fertrain.predict ckpt=PATH video=PATH [key=value ...]``.

Windows of ``window`` frames every ``stride`` frames cover the video; each window is sampled with the run's own
eval sampler and eval transform (read from the checkpoint), classified, and written as one CSV row with its start
and end frame (0-based, inclusive), start and end time (seconds) and the class probabilities. A timeline PNG plots
the probabilities against time; ``<stem>_predict.json`` records what was done (faces, no-face spans, counts).

**Faces.** The model must see what it was trained on. ``faces=auto`` (default) follows the run's data config:
``data.faces`` (a mapping of :class:`fertrain.preprocess.FaceOptions` fields) means the training frames were face
crops, so the video goes through the same face pipeline (:func:`fertrain.preprocess.extract_faces`: detect,
track, align) before the windows are cut; ``data.faces: null`` or no ``data.faces`` key means whole frames (the
JSON says which, and why). ``faces=on`` / ``faces=off`` force it. Frames without a face are no input for a face
model: a window with any no-face frame gets **no class** (empty ``pred`` and probabilities; its ``no_face_frames``
column says why), the no-face spans go into the JSON, and a warning says how much of the video had no face.

Models with an activation map over clips (CEFLNet's emotional intensity activation network: a
``forward_with_activation(x) -> (logits (B, K), activation (B, num_clips))`` method) also get
``<stem>_activation.csv`` (window, clip, first/last/centre frame of the clip, activation) and
``<stem>_activation.png``: every window's activation of each clip at the clip's centre time, i.e. which clips
carry the expression (Liu et al., Information Sciences 598, 2022, Sec. 3.3).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fertrain.cli import EXIT_OK, UsageError, guarded
from fertrain.config import register_resolvers
from fertrain.data.datamodule import IMAGENET_MEAN, IMAGENET_STD, normalize_video
from fertrain.data.readers import count_frames, read_frames
from fertrain.report.plots import plot_clip_activation, plot_timeline

log = logging.getLogger("fertrain.predict")
PROG = "python -m fertrain.predict"
FACE_MODES = ("auto", "on", "off")


def load_run(ckpt: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the network of a fertrain checkpoint and load its weights.

    Returns:
        ``(net in eval mode, resolved run config as a dict)``.

    Raises:
        FileNotFoundError: no such checkpoint.
        UsageError: the checkpoint was not written by ``python -m fertrain`` (no ``fertrain_config``).
    """
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise FileNotFoundError(f"ckpt={ckpt}: no such checkpoint file")
    state = torch.load(ckpt, map_location=device, weights_only=True)  # tensors and plain containers only
    if "fertrain_config" not in state:
        raise UsageError(f"ckpt={ckpt}: no 'fertrain_config' entry; expected a checkpoint written by "
                         f"`python -m fertrain`")
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


def face_plan(data_cfg: dict[str, Any], faces: str = "auto",
              face_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """Which frames the model gets: ``(FaceOptions or None for whole frames, reason)`` (module docstring).

    Raises:
        UsageError: ``faces`` not one of ``auto``, ``on``, ``off``, or bad face options.
    """
    from fertrain.preprocess import FaceOptions

    if faces not in FACE_MODES:
        raise UsageError(f"faces={faces!r}: expected one of {', '.join(FACE_MODES)}")
    declared = data_cfg.get("faces", "absent")
    if faces == "off":
        return None, "faces=off"
    if faces == "auto" and (declared is None or declared is False):
        return None, "the run's data.faces is null: the model was trained on whole frames"
    if faces == "auto" and declared == "absent":
        return None, ("the run's data config has no data.faces (what the model saw is not recorded); whole frames "
                      "are used; pass faces=on to extract faces")
    base = dict(declared) if isinstance(declared, dict) else {}
    try:
        opts = FaceOptions.from_dict({**base, **(face_options or {})})
    except ValueError as err:
        raise UsageError(f"face options: {err}") from None
    why = "faces=on" if faces == "on" else "the run's data.faces: the model was trained on face crops"
    return opts, why


@torch.no_grad()
def predict_video(
    ckpt: str | Path,
    video: str | Path,
    out_dir: str | Path,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    faces: str = "auto",
    face_options: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    labels: str | Path | None = None,
) -> dict[str, Path]:
    """Classify sliding windows of ``video`` with the network of ``ckpt``.

    Args:
        ckpt: a checkpoint written by ``python -m fertrain``.
        video: a video file (or frame folder / ``.npy`` array; faces are not extracted from ``.npy``).
        out_dir: output folder; gets ``<stem>_windows.csv``, ``<stem>_timeline.png`` and ``<stem>_predict.json``.
        window: frames per window (None: the run's ``data.predict_window``, else 32).
        stride: frames between window starts (None: ``window // 2``).
        batch_size: windows per forward pass.
        device: torch device string.
        faces: ``auto`` (the run's ``data.faces``), ``on`` or ``off`` (module docstring).
        face_options: ``FaceOptions`` fields overriding the run's ``data.faces``.
        cache_dir: where ``extract_faces`` may cache the faces of ``video`` (None: no cache).
        labels: optional CSV of labelled segments ``start_frame,end_frame,label`` (inclusive frames, 0-based;
            ``label`` a class name of the run; an optional ``video`` column keeps the rows of this file name), e.g.
            the demo's ``annotations.csv``: shaded behind the timeline's curves (see :func:`read_segments`).

    Returns:
        ``{"csv", "png", "json"}`` paths, plus ``"activation_csv"`` and ``"activation_png"`` for models with
        ``forward_with_activation`` (CEFLNet).

    Raises:
        FileNotFoundError: no such checkpoint or video.
        UsageError: ``window`` or ``stride`` < 1, a bad ``faces`` mode or face option, not a fertrain checkpoint,
            or a ``labels`` file that cannot be used (file, row and what was expected named).
        DatasetError: the video cannot be read.
    """
    for name, value in (("window", window), ("stride", stride)):
        if value is not None and int(value) < 1:
            raise UsageError(f"{name}={value}: must be >= 1 frame (or unset for the default)")
    video = Path(video)
    if not video.exists():
        raise FileNotFoundError(f"video={video}: no such file or folder")
    net, cfg = load_run(ckpt, device)
    if str((cfg.get("task") or {}).get("_target_", "")).endswith("SpottingTask"):  # per-frame spotting network
        from fertrain.spotting.predict import predict_spotting

        return predict_spotting(net, cfg, video, out_dir, batch_size, device, title=Path(ckpt).name)
    data = cfg["data"]
    dm = data["datamodule"]
    class_names = list(data["class_names"])
    ground_truth = read_segments(labels, class_names, video.name) if labels else None
    sampler = instantiate(OmegaConf.create(dm["sampler"]))
    transform = instantiate(OmegaConf.create(dm["eval_transform"]))
    window = int(window if window is not None else (data.get("predict_window") or 32))
    stride = int(stride if stride is not None else max(1, window // 2))
    opts, why = face_plan(data, faces, face_options)
    if opts is not None and video.suffix.lower() == ".npy":
        raise UsageError(f"video={video}: faces cannot be extracted from a .npy array; pass faces=off")
    face_info: dict[str, Any] = {"mode": "whole frames" if opts is None else "face crops", "reason": why}
    if opts is None:
        n, fps = count_frames(video), video_fps(video)
        has_face = np.ones(n, dtype=bool)
        source = video
    else:
        from fertrain.preprocess import extract_faces

        try:
            extracted = extract_faces(video, opts, cache_dir=cache_dir)
        except ImportError as err:  # the detector or landmark model is not installed
            raise UsageError(f"faces: {err}") from None
        n, fps, has_face = extracted.track.num_frames, extracted.fps, extracted.has_face
        source = extracted.frames  # (N, S, S, 3) uint8 RGB, zeros without a face
        face_info.update(options=opts.to_dict(), detector=extracted.track.detector,
                         no_face_spans=[list(s) for s in extracted.no_face_spans()])
    no_face = int((~has_face).sum())
    face_info.update(no_face_frames=no_face, no_face_fraction=round(no_face / max(n, 1), 4))

    starts = list(range(0, max(1, n - window + 1), stride))
    if starts[-1] + window < n:  # cover the tail
        starts.append(max(0, n - window))
    ends = [min(n, s + window) - 1 for s in starts]
    no_face_in = [int((~has_face[s:e + 1]).sum()) for s, e in zip(starts, ends)]
    usable = [i for i, k in enumerate(no_face_in) if k == 0]
    rng = np.random.default_rng(0)
    p = np.full((len(starts), len(class_names)), np.nan)
    with_activation = hasattr(net, "forward_with_activation")
    activations: list[np.ndarray] = []  # (B, num_clips) per batch
    clip_frames: list[np.ndarray] = []  # (T,) sampled frame indices per classified window, clip-major
    mean, std = dm.get("mean", IMAGENET_MEAN), dm.get("std", IMAGENET_STD)
    for b in range(0, len(usable), batch_size):
        batch = usable[b:b + batch_size]
        idx = [sampler(min(window, n - starts[i]), False, rng) + starts[i] for i in batch]
        union = np.unique(np.concatenate(idx))  # decode each frame of the batch once, in order
        decoded = read_frames(video, union) if opts is None else source[union]  # (U, H, W, C) uint8
        clips = []
        for i in idx:
            frames = transform(decoded[np.searchsorted(union, i)])  # (T, h, w, C) uint8
            clips.append(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2))  # (T, C, h, w)
        x = normalize_video(torch.stack(clips).to(device), mean, std)  # (B, T, C, H, W)
        if with_activation:
            logits, act = net.forward_with_activation(x)  # (B, K), (B, num_clips)
            activations.append(act.cpu().numpy())
            clip_frames.extend(idx)
        else:
            logits = net(x)
        p[batch] = logits.softmax(-1).cpu().numpy()

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"{video.stem}_windows.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["start_frame", "end_frame", "start_s", "end_s", "no_face_frames", "pred"]
                   + [f"p_{c}" for c in class_names])
        for s, e, k, row in zip(starts, ends, no_face_in, p):
            t0, t1 = (s / fps, (e + 1) / fps) if fps else (float("nan"), float("nan"))
            classified = not np.isnan(row).any()
            w.writerow([s, e, f"{t0:.3f}", f"{t1:.3f}", k, class_names[int(row.argmax())] if classified else ""]
                       + ([f"{v:.5f}" for v in row] if classified else [""] * len(class_names)))
    tmp.replace(csv_path)
    png_path = _plot_timeline(out_dir / f"{video.stem}_timeline.png", starts, window, n, fps, p, class_names,
                              title=f"{video.name} · {Path(ckpt).name}", has_face=has_face,
                              ground_truth=ground_truth)
    out = {"csv": csv_path, "png": png_path}
    if with_activation and activations:
        out.update(_write_activation(out_dir, video.stem, np.concatenate(activations), clip_frames, fps))
    skipped = len(starts) - len(usable)
    if no_face:
        log.warning("%s: %d of %d frames (%.1f%%) have no face %s; %d of %d windows got no class", video.name,
                    no_face, n, 100.0 * no_face / n, face_info.get("no_face_spans"), skipped, len(starts))
    record = {"video": str(video), "ckpt": str(ckpt), "frames": n, "fps": fps, "window": window, "stride": stride,
              "windows": len(starts), "windows_classified": len(usable), "windows_no_face": skipped,
              "labels": str(labels) if labels else None,
              "faces": face_info, **{k: str(v) for k, v in out.items()}}
    json_path = out_dir / f"{video.stem}_predict.json"
    json_path.with_suffix(".json.tmp").write_text(json.dumps(record, indent=1) + "\n")
    json_path.with_suffix(".json.tmp").replace(json_path)
    out["json"] = json_path
    log.info("wrote %s, %s and %s (%d windows of %d frames, %d classified; %s)", csv_path, png_path, json_path,
             len(starts), window, len(usable), face_info["mode"])
    return out


def _write_activation(out_dir: Path, stem: str, act: np.ndarray, clip_frames: list[np.ndarray],
                      fps: float) -> dict[str, Path]:
    """CSV + PNG of the activation map ``act`` ``(W classified windows, num_clips)``; ``clip_frames[w]`` is
    window ``w``'s sampled frame indices ``(num_clips * frames_per_clip,)``, clip-major."""
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
    # one column per window (its start, in s or frames), one row per clip: a heatmap, not N overlapping lines
    starts = [float(np.min(f)) / fps if fps else float(np.min(f)) for f in clip_frames]
    png_path = plot_clip_activation(out_dir / f"{stem}_activation.png", act, sample_positions=starts,
                                    xlabel="window start (s)" if fps else "window start (frame)",
                                    title=f"{stem}: CEFLNet activation map over clips ({n_windows} windows)")
    return {"activation_csv": csv_path, "activation_png": png_path}


def _plot_timeline(path: Path, starts: list[int], window: int, n: int, fps: float, p: np.ndarray,
                   class_names: list[str], title: str, has_face: np.ndarray | None = None,
                   ground_truth: list[tuple[int, int, int]] | None = None) -> Path:
    """``fertrain.report.plots.plot_timeline`` of the class probabilities ``p`` ``(W, K)`` (NaN rows: no class) at
    the window centres, with the no-face spans greyed and the labelled segments shaded."""
    from fertrain.preprocess.track import spans_of

    centres = [s + min(window, n - s) / 2 for s in starts]
    no_face = [(int(a), int(b)) for a, b in spans_of(~has_face)] if has_face is not None else None
    return plot_timeline(path, centres, p, class_names, fps=fps, ground_truth=ground_truth, no_face=no_face,
                         title=title)


def read_segments(path: str | Path, class_names: Sequence[str], video_name: str | None = None
                  ) -> list[tuple[int, int, int]]:
    """Labelled segments of one video from a CSV with a header ``start_frame,end_frame,label`` (optional
    ``video``: rows of other videos are left out when ``video_name`` is given).

    Returns:
        ``[(first_frame, last_frame, class index), ...]`` (inclusive, 0-based frames; index in ``class_names``).

    Raises:
        UsageError: no such file, a missing column, a row whose frames are not integers with start <= end, or a
            label that is not one of ``class_names`` (file and row named).
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"labels={path}: no such file")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"start_frame", "end_frame", "label"} - set(reader.fieldnames or [])
        if missing:
            raise UsageError(f"labels={path}: missing column(s) {sorted(missing)}; expected a header "
                             "start_frame,end_frame,label (optional video)")
        out = []
        for row_no, row in enumerate(reader, start=2):
            if video_name and row.get("video") and Path(row["video"]).name != video_name:
                continue
            try:
                first, last = int(row["start_frame"]), int(row["end_frame"])
            except ValueError:
                first = last = -1
            if not 0 <= first <= last:
                raise UsageError(f"labels={path}, row {row_no}: start_frame={row['start_frame']!r}, "
                                 f"end_frame={row['end_frame']!r}; expected integers 0 <= start <= end")
            if row["label"] not in class_names:
                raise UsageError(f"labels={path}, row {row_no}: label {row['label']!r} is not a class of this run "
                                 f"({', '.join(class_names)})")
            out.append((first, last, list(class_names).index(row["label"])))
    return out


_KEYS = {"ckpt": "checkpoint written by `python -m fertrain` (required)",
         "video": "video file, frame folder or .npy array (required)",
         "window": "frames per window (default: the run's data.predict_window, else 32)",
         "stride": "frames between window starts (default: window // 2)",
         "out_dir": "output folder (default: <run dir of ckpt>/predict)",
         "batch_size": "windows per forward pass (default: 8)",
         "device": "torch device (default: cpu)",
         "faces": "auto: as the run's data.faces says; on: extract faces; off: whole frames (default: auto)",
         "cache_dir": "folder where extracted faces are cached and reused (default: none)",
         "labels": "CSV start_frame,end_frame,label[,video]: labelled segments shaded on the timeline (default: none)"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, usage=f"{PROG} ckpt=PATH video=PATH [window=FRAMES] [stride=FRAMES] [out_dir=DIR] "
                         f"[batch_size=N] [device=DEV] [faces={{auto,on,off}}] [cache_dir=DIR] [labels=CSV]",
        description="Classify sliding windows over a whole video with a fertrain checkpoint; writes "
                    "<stem>_windows.csv, <stem>_timeline.png and <stem>_predict.json. Options are key=value "
                    "(or --key value).")
    types = {"window": int, "stride": int, "batch_size": int}
    for key, text in _KEYS.items():
        p.add_argument(f"--{key}", dest=key, metavar=key.upper(), type=types.get(key, str), help=text,
                       required=key in ("ckpt", "video"), default=None)
    return p


def _as_options(argv: Sequence[str]) -> list[str]:
    """``key=value`` tokens -> ``--key value`` (argparse's form); other tokens unchanged."""
    out = []
    for tok in argv:
        key, eq, value = tok.partition("=")
        if eq and not tok.startswith("-"):
            out += [f"--{key}", value]
        else:
            out.append(tok)
    return out


@guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fertrain.predict ckpt=PATH video=PATH [key=value ...]`` (``--help`` lists the keys)."""
    args = _parser().parse_args(_as_options(sys.argv[1:] if argv is None else list(argv)))
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(levelname)s %(message)s", stream=sys.stdout)
    out_dir = args.out_dir or Path(args.ckpt).resolve().parent.parent / "predict"
    from fertrain.report.run_record import recorded  # this prediction's own run.json (kind "predict")

    with recorded(out_dir, "predict", config=vars(args), ckpt_path=str(args.ckpt)) as rec:
        res = predict_video(args.ckpt, args.video, out_dir, args.window, args.stride, args.batch_size or 8,
                            args.device or "cpu", args.faces or "auto", cache_dir=args.cache_dir, labels=args.labels)
        rec["outputs"] = {k: str(v) for k, v in res.items()}
    for k, v in res.items():
        print(f"{k}: {v}")
    return EXIT_OK


register_resolvers()

if __name__ == "__main__":
    sys.exit(main())
