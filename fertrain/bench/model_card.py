"""Print a Markdown table of every model's size and cost: parameters, GFLOPs per clip, CPU train-step time, and
the pretrained weights each experiment of the model expects with their input normalisation.

Usage (``fertrain-model-card``, ``make model-card``, or ``scripts/model_card.py`` in a checkout)::

    python -m fertrain.bench.model_card [--frames 8] [--size 112] [--batch 2] [--repeats 3] [--num-classes 7]
    python -m fertrain.bench.model_card --models mscm dmfe     # only these rows (keys: see --help)

Inputs: the clip-level video models (MSCM, FrameMeanResNet18, R3D18) take ``--frames`` x ``--size``; the other
models take their own default input, given in the table: CEFLNet 7 clips x 5 frames (T = 35, its sampler),
the image models (DMFE, ResNet18Image) one frame (T = 1), FESNet a 32-frame spotting window at 64 px
(conf/data/casme2.yaml) with 3 per-frame outputs.

GFLOPs: forward pass of one clip ``(1, T, 3, size, size)`` counted by ``torch.utils.flop_counter.FlopCounterMode``
(1 GFLOP = 1e9 FLOPs, a multiply-add counts 2; element-wise ops, including MSCM's correlation, are not counted;
see ``fertrain.models.complexity``). Time: forward + backward of a random batch ``(batch, T, 3, size, size)`` in
train mode on this machine's CPU with torch's default thread count, median of ``--repeats`` runs after one
warm-up, divided by the batch size (milliseconds per clip).

Weights: every packaged ``conf/experiment/*.yaml`` (:func:`fertrain.config.config_dir`) is composed (as
``python -m fertrain +experiment=NAME`` would) and grouped by its model; the column lists each weights entry
(``conf/weights``, ``none`` = random init) with the normalisation the datamodule then applies
(``data.datamodule.mean/std``; ``[0, 1]`` when mean 0 and std 1) and the experiments that use it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from fertrain.cli import guarded
from fertrain.models import MSCM, R3D18, FrameMeanResNet18, R2Plus1D18
from fertrain.models.baselines import ResNet18Image
from fertrain.models.ceflnet import CEFLNet
from fertrain.models.complexity import count_parameters, gflops_per_clip
from fertrain.models.dmfe import DMFE
from fertrain.models.fesnet import FESNet

PROG = "python -m fertrain.bench.model_card"

# key (--models) -> (row name, constructor(num_classes), input (T, size) or None for --frames/--size)
MODELS: dict[str, tuple[str, Callable[[int], nn.Module], tuple[int, int] | None]] = {
    "mscm": ("MSCM (ResNet-18, corr. after layer1)", lambda n: MSCM(num_classes=n), None),
    "frame_mean": ("FrameMeanResNet18", lambda n: FrameMeanResNet18(num_classes=n), None),
    "r3d18": ("R3D18", lambda n: R3D18(num_classes=n), None),
    "r2plus1d18": ("R2Plus1D18", lambda n: R2Plus1D18(num_classes=n), None),
    "ceflnet": ("CEFLNet (7 clips x 5 frames)", lambda n: CEFLNet(num_classes=n), (35, 112)),
    "dmfe": ("DMFE (image)", lambda n: DMFE(num_classes=n), (1, 112)),
    "resnet18_image": ("ResNet18Image (image)", lambda n: ResNet18Image(num_classes=n), (1, 112)),
    "fesnet": ("FESNet (spotting window)", lambda n: FESNet(num_classes=3), (32, 64)),
}


def train_step_ms_per_clip(model: nn.Module, batch: int, clip_shape: tuple[int, int, int, int], repeats: int) -> float:
    """Median forward+backward time of one batch on CPU, in milliseconds per clip (per window for spotting)."""
    model.train()
    x = torch.randn(batch, *clip_shape)  # (B, T, C, H, W)
    times = []
    for i in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        logits = model(x)  # (B, K), or (B, T, K) per frame (FESNet)
        target = torch.zeros(logits.shape[:-1], dtype=torch.long)
        nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1)).backward()
        if i > 0:  # first run is warm-up
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / batch


def _norm(mean: list[float], std: list[float]) -> str:
    if all(m == 0 for m in mean) and all(v == 1 for v in std):
        return "input in [0, 1]: mean 0, std 1"
    if [round(m, 3) for m in mean] == [0.485, 0.456, 0.406] and [round(v, 3) for v in std] == [0.229, 0.224, 0.225]:
        return "ImageNet mean/std"
    return f"mean {mean}, std {std}"


def experiment_weights() -> dict[str, str]:
    """Model class name -> "entry (normalisation): experiments; ..." over every experiment config."""
    from collections import defaultdict

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from fertrain.config import config_dir

    uses: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for path in sorted((config_dir() / "experiment").glob("*.yaml")):
            cfg = compose("train", overrides=[f"+experiment={path.stem}", "paths.output_dir=unused"])
            mean, std = (OmegaConf.to_container(cfg.data.datamodule[k], resolve=True) for k in ("mean", "std"))
            name = "none = random init" if cfg.weights.name == "none" else cfg.weights.name
            entry = f"{name} ({_norm(mean, std)})"
            uses[str(cfg.model._target_).rsplit(".", 1)[1]][entry].append(path.stem)
    return {model: "; ".join(f"{e}: {', '.join(exps)}" for e, exps in by_entry.items())
            for model, by_entry in uses.items()}


@guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """Print the model card (Markdown) on stdout. Returns 0."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), metavar="KEY",
                        help=f"rows to measure, in this order (default all: {' '.join(MODELS)})")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip T (default 8)")
    parser.add_argument("--size", type=int, default=112, help="frame height = width in pixels (default 112)")
    parser.add_argument("--batch", type=int, default=2, help="clips per timed batch (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up (default 3)")
    parser.add_argument("--num-classes", type=int, default=7, help="classes of the head (default 7, DFEW)")
    args = parser.parse_args(argv)
    clip_shape = (args.frames, 3, args.size, args.size)

    print(f"Input: T={args.frames} frames at {args.size}x{args.size}; time = forward+backward, batch {args.batch}, "
          f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    weights = experiment_weights()
    print("| model | input T x size | params (M) | GFLOPs / clip | train ms / clip (CPU) | weights expected "
          "(normalisation): experiments |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for key in args.models:
        name, build, own = MODELS[key]
        torch.manual_seed(0)
        model = build(args.num_classes)
        shape = clip_shape if own is None else (own[0], 3, own[1], own[1])
        params = count_parameters(model) / 1e6
        gflops = gflops_per_clip(model, shape)
        ms = train_step_ms_per_clip(model, args.batch, shape, args.repeats)
        used = weights.get(type(model).__name__, "no experiment (weights=<entry> with a matching arch)")
        print(f"| {name} | {shape[0]} x {shape[2]} | {params:.2f} | {gflops:.2f} | {ms:.0f} | {used} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
