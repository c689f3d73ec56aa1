"""Print a Markdown table of the video models' size and cost: parameters, GFLOPs per clip, CPU train-step time.

Usage:
    python scripts/model_card.py [--frames 8] [--size 112] [--batch 2] [--repeats 3] [--num-classes 7]

GFLOPs: forward pass of one clip ``(1, T, 3, size, size)`` counted by ``torch.utils.flop_counter.FlopCounterMode``
(1 GFLOP = 1e9 FLOPs, a multiply-add counts 2; element-wise ops, including MSCM's correlation, are not counted;
see ``fertrain.models.complexity``). Time: forward + backward of a random batch ``(batch, T, 3, size, size)`` in
train mode on this machine's CPU with torch's default thread count, median of ``--repeats`` runs after one
warm-up, divided by the batch size (milliseconds per clip).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from fertrain.models import MSCM, R3D18, FrameMeanResNet18
from fertrain.models.complexity import count_parameters, gflops_per_clip

MODELS: dict[str, Callable[[int], nn.Module]] = {
    "MSCM (ResNet-18, corr. after layer1)": lambda n: MSCM(num_classes=n),
    "FrameMeanResNet18": lambda n: FrameMeanResNet18(num_classes=n),
    "R3D18": lambda n: R3D18(num_classes=n),
}


def train_step_ms_per_clip(model: nn.Module, batch: int, clip_shape: tuple[int, int, int, int], repeats: int) -> float:
    """Median forward+backward time of one batch on CPU, in milliseconds per clip."""
    model.train()
    x = torch.randn(batch, *clip_shape)  # (B, T, C, H, W)
    target = torch.randint(0, 2, (batch,))
    times = []
    for i in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        nn.functional.cross_entropy(model(x), target).backward()
        if i > 0:  # first run is warm-up
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / batch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8, help="frames per clip T (default 8)")
    parser.add_argument("--size", type=int, default=112, help="frame height = width in pixels (default 112)")
    parser.add_argument("--batch", type=int, default=2, help="clips per timed batch (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up (default 3)")
    parser.add_argument("--num-classes", type=int, default=7, help="classes of the head (default 7, DFEW)")
    args = parser.parse_args(argv)
    clip_shape = (args.frames, 3, args.size, args.size)

    print(f"Input: T={args.frames} frames at {args.size}x{args.size}; time = forward+backward, batch {args.batch}, "
          f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| model | params (M) | GFLOPs / clip | train ms / clip (CPU) |")
    print("| --- | ---: | ---: | ---: |")
    for name, build in MODELS.items():
        torch.manual_seed(0)
        model = build(args.num_classes)
        params = count_parameters(model) / 1e6
        gflops = gflops_per_clip(model, clip_shape)
        ms = train_step_ms_per_clip(model, args.batch, clip_shape, args.repeats)
        print(f"| {name} | {params:.2f} | {gflops:.2f} | {ms:.0f} |", flush=True)


if __name__ == "__main__":
    main()
