"""Training-step benchmark: clips/s and peak memory of fertrain's video models, and how the cost grows.

One command (``fertrain-bench-train``, or ``scripts/bench_train.py`` in a checkout)::

    python -m fertrain.bench.train            # --quick (default): a few minutes on 2 CPU cores
    python -m fertrain.bench.train --full     # every model x batch 1/8/32, T 8/16/32 x 112/224 pixels
    python -m fertrain.bench.train --compile --channels-last   # + compiled / NHWC rows (CPU: minutes)
    python -m fertrain.bench.train --device cuda --amp bf16 --channels-last --compile   # on a GPU

A training step is ``zero_grad`` + forward + cross-entropy + backward + AdamW step on random normalised clips
float ``(B, T, 3, H, W)`` (7 classes, random init). The default input is DFEW's configuration: ``T = 16``
frames (``SegmentSampler(8, 2)``) of ``112 x 112`` pixels. Models: ``MSCM`` (fertrain/models/mscm.py),
``FrameMeanResNet18`` (fertrain/models/baselines.py: the same ResNet-18 trunk per frame without the correlation
branch, i.e. MSCM's backbone alone) and ``R3D18``. Configurations that are compared run in the same rounds:
after one warm-up step each, their timed steps alternate (A, B, A, B, ...), so a change of machine load hits
both; ms/step is the median of the timed steps (at least 1, at most ``--steps``; a configuration stops
once its timed steps add up to ``--max-seconds``).

CPU threads. One by default (``--threads``): on a machine shared with other jobs, torch's intra-op threads wait
for each other at every operator (a thread that lost its core holds up the rest), which made a tiny training step
20x slower with 2 threads than with 1 on the 2-core development machine; single-threaded steps measure the work,
and the ratios (MSCM over its backbone, growth with T and size) are what the tables are for.
``--threads 0`` uses torch's own choice (one per core) on a dedicated machine.

Memory, per model while it runs alone (warm-up and first timed step). CPU: peak RSS minus the RSS before the
model was built (after ``malloc_trim``), i.e. weights, gradients, optimizer state and activations (Linux
``/proc``; ``n/a`` elsewhere). GPU: ``torch.cuda.max_memory_allocated`` minus what was allocated before the
model was built.

Targets (issue 19), printed met / NOT met: the MSCM step at most 1.40x its backbone's at batch 1 and at batch 8
in eager mode (its FLOP ratio, the floor, is printed beside). On the CPU the verdict is taken on CPU time of the
process (the work; wall time is printed too). MSCM's eager outputs and gradients equal its previous
formulation (per-displacement correlation) within 1e-5 (tests/test_speed.py); the compiled and channels_last rows
print their largest difference from eager float32. ``--compile`` adds compiled rows (``trainer.compile=true``):
the first step's time (compilation included) and the step time; ``--channels-last`` likewise
(``trainer.channels_last=true``).

Checkpoint size: bytes of the weights alone and of the full training state that ``last.ckpt`` holds (weights +
AdamW's two moments), per model.

GPU path (``--device cuda``, or ``auto`` when one is available): ``--amp bf16|fp16`` autocast (fp16 with a
``GradScaler``), ``--channels-last`` memory format, ``--compile`` (``torch.compile``), cuDNN benchmark mode.
Without a GPU the script says so and measures the CPU only.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from fertrain.bench.common import (
    cpu_model, fmt, load_line, markdown_table, peak_rss_mib, preset_parser, reset_peak_rss, rss_mib)
from fertrain.cli import UsageError, guarded
from fertrain.models import MSCM, R3D18, FrameMeanResNet18
from fertrain.models.complexity import count_parameters, gflops_per_clip

PROG = "python -m fertrain.bench.train"

NUM_CLASSES = 7
DEFAULT_T, DEFAULT_SIZE = 16, 112  # DFEW config: SegmentSampler(8, 2), data.image_size=112
BACKBONE = "FrameMeanResNet18"
MSCM_TARGET_BATCHES, MSCM_TARGET_RATIO = (1, 8), 1.40  # issue 19: MSCM step <= 1.40x its backbone

MODELS: dict[str, Callable[[], nn.Module]] = {
    "MSCM": lambda: MSCM(num_classes=NUM_CLASSES),
    BACKBONE: lambda: FrameMeanResNet18(num_classes=NUM_CLASSES),
    "R3D18": lambda: R3D18(num_classes=NUM_CLASSES),
}


@dataclass(frozen=True)
class Config:
    """One measured configuration: model, batch size B, clip length T (frames), side length (pixels)."""

    model: str
    batch: int
    frames: int = DEFAULT_T
    size: int = DEFAULT_SIZE


@dataclass
class Measurement:
    """Timed steps of one configuration."""

    config: Config
    step_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)  # CPU time of this process per step (all threads)
    first_s: float | None = None  # the first (warm-up) step: compilation included when compiled
    peak_mib: float | None = None
    params_m: float = 0.0
    gflops: float | None = None

    @property
    def ms_per_step(self) -> float:
        return 1e3 * statistics.median(self.step_s)

    @property
    def clips_per_s(self) -> float:
        return self.config.batch / statistics.median(self.step_s)

    @property
    def cpu_ms_per_step(self) -> float | None:
        return 1e3 * statistics.median(self.cpu_s) if self.cpu_s else None


@dataclass
class Runtime:
    """Device settings of a run."""

    device: torch.device
    amp: str = "off"  # off | bf16 | fp16
    channels_last: bool = False
    compile: bool = False


def _trim_heap() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``) so the next baseline RSS is honest."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _Step:
    """A model with its optimizer and inputs, ready to run training steps on ``rt.device``."""

    def __init__(self, config: Config, rt: Runtime, seed: int = 0) -> None:
        torch.manual_seed(seed)
        model = MODELS[config.model]().to(rt.device).train()
        if rt.channels_last:
            has_5d = any(p.dim() == 5 for p in model.parameters())
            model = model.to(memory_format=torch.channels_last_3d if has_5d else torch.channels_last)
        self.params_m = count_parameters(model) / 1e6
        self.model = model
        self.forward = torch.compile(model, dynamic=False) if rt.compile else model  # as trainer.compile=true
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.x = torch.randn(config.batch, config.frames, 3, config.size, config.size, device=rt.device)
        self.y = torch.randint(0, NUM_CLASSES, (config.batch,), device=rt.device)
        self.rt = rt
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(rt.amp)
        self.autocast = dtype
        self.scaler = torch.amp.GradScaler("cuda") if rt.amp == "fp16" else None

    def __call__(self) -> tuple[float, float]:
        """One training step; returns its wall time and this process's CPU time in seconds (device synchronised)."""
        sync = torch.cuda.synchronize if self.rt.device.type == "cuda" else (lambda: None)
        sync()
        c0 = time.process_time()
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.rt.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            loss = nn.functional.cross_entropy(self.forward(self.x), self.y)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        sync()
        return time.perf_counter() - t0, time.process_time() - c0


def _record(m: Measurement, times: tuple[float, float]) -> None:
    m.step_s.append(times[0])
    m.cpu_s.append(times[1])


def run_group(configs: list[Config], rt: Runtime, steps: int, max_seconds: float,
              log: Callable[[str], None]) -> list[Measurement]:
    """Measure ``configs`` side by side: build and warm up each, then alternate their timed steps.

    Memory is measured per model while it runs alone (warm-up and first timed step); the later timed steps
    alternate between the models (A, B, A, B, ...) until each has ``steps`` steps or ``max_seconds`` of them.
    """
    built: list[tuple[Measurement, _Step]] = []
    for cfg in configs:
        _trim_heap()
        if rt.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20 if rt.device.type == "cuda" else rss_mib()  # earlier models
        reset_peak_rss()
        step = _Step(cfg, rt)
        m = Measurement(cfg, params_m=step.params_m)
        log(f"  {cfg.model} B={cfg.batch} T={cfg.frames} {cfg.size}px ...")
        m.first_s = step()[0]  # warm-up: allocations, oneDNN primitives / cuDNN autotuning, compilation
        _record(m, step())
        if rt.device.type == "cuda":
            m.peak_mib = torch.cuda.max_memory_allocated() / 2**20 - base
        else:
            peak = peak_rss_mib()
            m.peak_mib = None if peak is None or base is None else peak - base
        m.gflops = gflops_per_clip(step.model, (cfg.frames, 3, cfg.size, cfg.size))
        built.append((m, step))
    for _ in range(steps - 1):
        pending = [(m, step) for m, step in built if sum(m.step_s) < max_seconds]
        if not pending:
            break
        for m, step in pending:
            _record(m, step())
    measurements = [m for m, _ in built]
    for m in measurements:
        log(f"    {m.config.model} B={m.config.batch} T={m.config.frames} {m.config.size}px: "
            f"{m.ms_per_step:.0f} ms/step (median of {len(m.step_s)})")
    built.clear()  # free the models before the next group
    _trim_heap()
    return measurements


# ------------------------------------------------------------------------------------------------------- plans
@dataclass
class Plan:
    """What one run measures: groups of configurations whose timed steps alternate."""

    model_groups: list[list[Config]]  # table 1: each group = one batch size (the models side by side)
    scaling_group: list[Config]  # table 2: every (model, T, size) of the scaling table side by side
    steps: int
    max_seconds: float


def make_plan(preset: str, models: list[str]) -> Plan:
    """The ``--quick`` / ``--full`` / ``--smoke`` plans (``models`` filters them)."""
    def group(batch: int, names: list[str], frames: int = DEFAULT_T, size: int = DEFAULT_SIZE) -> list[Config]:
        return [Config(n, batch, frames, size) for n in names if n in models]

    pair = ["MSCM", BACKBONE]
    if preset == "smoke":
        return Plan([group(1, pair, 4, 32)], group(1, pair, 4, 32) + group(1, pair, 8, 32), steps=2, max_seconds=5)
    if preset == "quick":
        model_groups = [group(1, list(MODELS)), group(8, pair), group(8, ["R3D18"])]
        scaling = [c for t, size in ((8, 112), (16, 112), (32, 112), (16, 224)) for c in group(1, pair, t, size)]
        return Plan(model_groups, scaling, steps=4, max_seconds=20)
    model_groups = [group(b, list(MODELS)) for b in (1, 8, 32)]
    scaling = [c for size in (112, 224) for t in (8, 16, 32) for c in group(4, list(MODELS), t, size)]
    return Plan(model_groups, scaling, steps=5, max_seconds=120)


# ------------------------------------------------------------------------------------------------------ tables
def model_table(results: dict[Config, Measurement], groups: list[list[Config]], device: str) -> str:
    """Table 1: every model at its default input, per batch size, beside the backbone alone.

    ``x backbone``: ms/step over the backbone's at the same batch (wall time); ``(CPU)``: the same from this
    process's CPU time, which a busy machine disturbs much less (single-threaded CPU runs). ``first step (s)``:
    the warm-up step, compilation included when compiled.
    """
    header = ["device", "model", "batch", "input T x H x W", "ms/step", "clips/s", "x backbone", "x backbone (CPU)",
              "first step (s)", "peak mem (MiB)", "params (M)", "GFLOPs/clip", "steps"]
    rows = []
    for cfg in (c for g in groups for c in g):
        m = results[cfg]
        base = results.get(Config(BACKBONE, cfg.batch, cfg.frames, cfg.size))
        ratio = "—" if base is None or cfg.model == BACKBONE else f"{m.ms_per_step / base.ms_per_step:.2f}"
        cpu_ratio = "—"
        if base is not None and cfg.model != BACKBONE and m.cpu_ms_per_step and base.cpu_ms_per_step:
            cpu_ratio = f"{m.cpu_ms_per_step / base.cpu_ms_per_step:.2f}"
        rows.append([device, cfg.model, str(cfg.batch), f"{cfg.frames} x {cfg.size} x {cfg.size}",
                     f"{m.ms_per_step:.0f}", f"{m.clips_per_s:.2f}", ratio, cpu_ratio, fmt(m.first_s, 1),
                     fmt(m.peak_mib, 0), f"{m.params_m:.2f}", fmt(m.gflops, 2), str(len(m.step_s))])
    return markdown_table(header, rows)


def target_lines(results: dict[Config, Measurement], label: str, cpu: bool) -> list[str]:
    """``MSCM step <= 1.40x its backbone`` at batch 1 and 8 (issue 19), met / NOT met, with the FLOP floor.

    On the CPU the verdict uses CPU time (the work, robust to a busy machine) and wall time must agree; on a GPU
    wall time (synchronised).
    """
    lines = []
    for cfg in sorted((c for c in results if c.model == "MSCM" and c.batch in MSCM_TARGET_BATCHES),
                      key=lambda c: c.batch):
        batch = cfg.batch
        mscm, base = results[cfg], results.get(Config(BACKBONE, batch, cfg.frames, cfg.size))
        if not base:
            continue
        wall = mscm.ms_per_step / base.ms_per_step
        used = wall
        text = f"wall {wall:.2f}x"
        if cpu and mscm.cpu_ms_per_step and base.cpu_ms_per_step:
            used = mscm.cpu_ms_per_step / base.cpu_ms_per_step
            text = f"CPU time {used:.2f}x, wall {wall:.2f}x"
        floor = f"; FLOP floor {mscm.gflops / base.gflops:.2f}x" if mscm.gflops and base.gflops else ""
        lines.append(f"MSCM step / backbone alone, batch {batch}, {label}: {text} (target <= {MSCM_TARGET_RATIO}x: "
                     f"{'met' if used <= MSCM_TARGET_RATIO else 'NOT met'}{floor})")
    return lines


def checkpoint_table(models: list[str], batch: int = 1) -> str:
    """Bytes of a checkpoint per model: weights only (``state_dict``) and the full training state that
    Lightning's ``last.ckpt`` holds (weights + AdamW's two moments per parameter + step counts), after one step.

    Measured with ``torch.save`` into memory (the same serialisation as a ``.ckpt`` file; Lightning adds a few KB
    of loop/callback state and the resolved config).
    """
    import io

    rows = []
    for name in models:
        torch.manual_seed(0)
        model = MODELS[name]().train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(batch, 4, 3, 32, 32)
        nn.functional.cross_entropy(model(x), torch.zeros(batch, dtype=torch.long)).backward()
        opt.step()
        sizes = []
        for obj in ({"state_dict": model.state_dict()},
                    {"state_dict": model.state_dict(), "optimizer_states": [opt.state_dict()]}):
            buf = io.BytesIO()
            torch.save(obj, buf)
            sizes.append(buf.tell() / 1e6)
        rows.append([name, f"{count_parameters(model) / 1e6:.2f}", f"{sizes[0]:.1f}", f"{sizes[1]:.1f}",
                     f"{sizes[1] / sizes[0]:.2f}"])
    return markdown_table(["model", "params (M)", "weights only (MB)", "full training state (MB)", "x weights"], rows)


def scaling_table(results: dict[Config, Measurement], configs: list[Config]) -> str:
    """Table 2: cost per clip against clip length T and side length, relative to each model's smallest input."""
    configs = sorted(configs, key=lambda c: (list(MODELS).index(c.model), c.size, c.frames))
    smallest = {}
    for cfg in configs:
        smallest.setdefault(cfg.model, cfg)
    ref_label = {f"T={c.frames}, {c.size} px" for c in smallest.values()}
    header = ["model", "batch", "T (frames)", "size (px)", "ms/step", "ms/clip",
              f"x time (vs {' / '.join(sorted(ref_label))})", "GFLOPs/clip", "x GFLOPs", "peak mem (MiB)"]
    rows = []
    for cfg in configs:
        m, ref = results[cfg], results[smallest[cfg.model]]
        x_flops = "—" if not ref.gflops or m.gflops is None else f"{m.gflops / ref.gflops:.2f}"
        rows.append([cfg.model, str(cfg.batch), str(cfg.frames), str(cfg.size), f"{m.ms_per_step:.0f}",
                     f"{m.ms_per_step / cfg.batch:.0f}", f"{m.ms_per_step / ref.ms_per_step:.2f}",
                     fmt(m.gflops, 2), x_flops, fmt(m.peak_mib, 0)])
    return markdown_table(header, rows)


def output_check(rt: Runtime, frames: int = 4, size: int = 64) -> str:
    """Max |difference| of MSCM's logits and parameter gradients between eager float32 and ``rt`` (channels_last
    and/or compiled; same weights, same input, eval mode so that dropout and batch statistics do not differ)."""
    import copy

    torch.manual_seed(0)
    eager = MODELS["MSCM"]().to(rt.device).eval()
    other = copy.deepcopy(eager)
    if rt.channels_last:
        other = other.to(memory_format=torch.channels_last)
    torch._dynamo.reset()  # a fresh compilation for this input
    forward = torch.compile(other, dynamic=False) if rt.compile else other
    x = torch.randn(2, frames, 3, size, size, device=rt.device)
    y = torch.tensor([1, 4], device=rt.device)
    outs = []
    for model, fwd in ((eager, eager), (other, forward)):
        logits = fwd(x)
        nn.functional.cross_entropy(logits, y).backward()
        outs.append((logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (l1, g1), (l2, g2) = outs
    dl = (l1 - l2).abs().max().item()
    dg = max((g1[n] - g2[n]).abs().max().item() for n in g1)
    scale = max(p.abs().max().item() for p in g1.values())
    ok = dl <= 1e-5 and dg <= 1e-5 * max(scale, 1.0)
    return (f"outputs vs eager float32 (MSCM, eval mode, input 2 x {frames} x 3 x {size} x {size}): max |d logits| "
            f"{dl:.2e}, max |d grad| {dg:.2e} (largest grad {scale:.2e}): "
            + ("<= 1e-5, the rounding of other kernels (fused/reordered sums, NHWC convolutions)" if ok
               else "NOT within 1e-5"))


def profile_step(config: Config, rt: Runtime, rows: int = 12) -> str:
    """torch.profiler table (self CPU time) of one training step of ``config`` after a warm-up step."""
    step = _Step(config, rt)
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = preset_parser(PROG, __doc__, quick="batch 1 (all models) and 8; T 8/16/32 at 112 px and T 16 at 224 px",
                           full="every model at batch 1/8/32; T 8/16/32 x 112/224 px at batch 4 (long on a CPU)",
                           smoke="tiny clips, MSCM and its backbone")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: the CPU, plus the GPU when one is available")
    parser.add_argument("--amp", choices=["off", "bf16", "fp16"], default=None,
                        help="GPU autocast dtype (default bf16 where supported, else fp16); CPU runs fp32")
    parser.add_argument("--channels-last", action="store_true",
                        help="also measure channels_last parameters (trainer.channels_last=true); on a GPU: use it")
    parser.add_argument("--compile", action="store_true",
                        help="also measure torch.compile'd models (trainer.compile=true): first step (compilation "
                             "included) and step time; batch 1 and 8, MSCM and its backbone (minutes on a CPU)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: see the module docstring; 0 = torch's own choice)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default by preset)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop timing a configuration after this many seconds of steps (default by preset)")
    parser.add_argument("--profile", action="store_true",
                        help="also print a torch.profiler table of MSCM and its backbone at batch 8 on the CPU")
    return parser.parse_args(argv)


@guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print its tables (stdout) and progress (stderr). Returns 0.

    Raises:
        UsageError: ``--device cuda`` without a GPU.
    """
    args = parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    plan = make_plan(args.preset, args.models)
    plan.steps = args.steps or plan.steps
    plan.max_seconds = args.max_seconds or plan.max_seconds
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    has_gpu = torch.cuda.is_available()
    if args.device == "cuda" and not has_gpu:
        raise UsageError("--device cuda: no GPU is available (torch.cuda.is_available() is False)")
    runtimes = []
    if args.device != "cuda":
        runtimes.append(Runtime(torch.device("cpu")))  # eager: the targets
        if args.channels_last:
            runtimes.append(Runtime(torch.device("cpu"), channels_last=True))
        if args.compile:
            runtimes.append(Runtime(torch.device("cpu"), channels_last=args.channels_last, compile=True))
    if args.device in ("cuda", "auto") and has_gpu:
        amp = args.amp or ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
        torch.backends.cudnn.benchmark = True
        runtimes.append(Runtime(torch.device("cuda"), amp, args.channels_last, args.compile))

    print(f"# bench_train ({args.preset}): training step = zero_grad + forward + cross-entropy + backward + AdamW; "
          f"{NUM_CLASSES} classes, random init")
    print(f"machine: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"GPU: {torch.cuda.get_device_name(0)}" if has_gpu else
          "GPU: none available (torch.cuda.is_available() is False); GPU rows skipped. On a GPU machine: "
          "--device cuda [--amp bf16|fp16] [--channels-last] [--compile]")
    print(f"before: {load_line()}")
    for rt in runtimes:
        label = rt.device.type + "".join(f", {x}" for x, on in (
            (rt.amp, rt.amp != "off"), ("channels_last", rt.channels_last), ("compile", rt.compile)) if on)
        results: dict[Config, Measurement] = {}
        groups = plan.model_groups
        if rt.compile and args.preset != "smoke":  # compilation takes minutes on a CPU: the target rows only
            groups = [[Config(n, b) for n in ("MSCM", BACKBONE) if n in args.models] for b in MSCM_TARGET_BATCHES]
        for group in groups:
            results.update({m.config: m for m in run_group(group, rt, plan.steps, plan.max_seconds, log)})
        print()
        print(f"## {label}: models at the default input" + (
            f" (T = {DEFAULT_T}, {DEFAULT_SIZE} px)" if args.preset != "smoke" else ""))
        print(model_table(results, groups, label))
        lines = target_lines(results, label, cpu=rt.device.type == "cpu" and torch.get_num_threads() == 1)
        if lines:
            print()
            print("\n".join(lines))
        if rt.compile or rt.channels_last:
            print(output_check(rt))
        if rt.compile or not plan.scaling_group:
            continue
        log("scaling: every configuration side by side")
        scaling = {m.config: m for m in run_group(plan.scaling_group, rt, plan.steps, plan.max_seconds, log)}
        print()
        print(f"## {label}: scaling with clip length T and frame size (all rows side by side)")
        print(scaling_table(scaling, plan.scaling_group))
    print()
    print("## checkpoint size (after one AdamW step; Lightning's last.ckpt = full state, weights-only = state_dict)")
    print(checkpoint_table([m for m in args.models if m != "R3D18" or args.preset != "smoke"]))
    if args.profile:
        for name in ("MSCM", BACKBONE):
            print(f"\n## profile: {name}, batch 8, T = {DEFAULT_T}, {DEFAULT_SIZE} px, CPU, one training step")
            print(profile_step(Config(name, 8), Runtime(torch.device("cpu"))))
    print(f"\nafter: {load_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
