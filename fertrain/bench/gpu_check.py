"""GPU check: one Markdown table of what fertrain does on a GPU machine (issue 19), in under 8 minutes on one GPU.

One command (``fertrain-gpu-check``, or ``scripts/gpu_check.py`` in a checkout)::

    python -m fertrain.bench.gpu_check                 # on a GPU machine (about 5-7 minutes on one GPU)
    python -m fertrain.bench.gpu_check --smoke         # CPU, seconds: every code path on tiny inputs (tests)

Rows of the table (``check`` column):

- ``step``: one training step (``zero_grad`` + forward + cross-entropy + backward + AdamW) of MSCM, CEFLNet and
  DMFE at their experiment configs' batch size, clip length and image size (``dfew_mscm``, ``dfew_ceflnet``,
  ``rafdb_dmfe``, composed with Hydra), in ``fp32``, ``bf16-mixed`` and ``16-mixed`` (autocast; fp16 with a
  ``GradScaler``, as Lightning does): median ms/step of the timed steps after warm-up (cuDNN benchmark mode) and
  peak GPU memory (``torch.cuda.max_memory_allocated``).
- ``stream``: a DFEW-sized synthetic frame-folder dataset written to local disk (official layout; 224 x 224 JPEG
  frames, quality 90, frames per clip from DFEW's distribution, ``--clips`` clips), read by fertrain's real
  datamodule (``+experiment=dfew_mscm``: DFEW, SegmentSampler(8, 2), training augmentation, ``--workers``
  DataLoader workers) into MSCM training by Lightning (bf16-mixed) for ``--stream-seconds`` (2 minutes):
  clips/s, GPU utilisation sampled every 0.5 s with ``nvidia-smi`` (mean and share of samples >= 90%), and the
  loader's wait per step (host time between the end of a step and the start of the next: fetch and transfer).
- ``decode``: JPEG decoding of the stream's frames, ``torchvision.io.decode_jpeg(device="cuda")`` on batches of
  256 files against fertrain's CPU reader (``readers._decode_image``) in ``--workers`` DataLoader workers.
- ``ddp``: ``python -m fertrain +experiment=dfew_mscm trainer=ddp trainer.devices=<all visible GPUs>`` on the
  stream data for ``--ddp-steps`` steps: median step time and clips/s (global batch), against one GPU; labelled
  with the batch size per process, precision and process count the run itself used (read back from it).

``--smoke`` runs the same code on the CPU with tiny inputs (2 frames of 32 px, a 7-clip tree, 3 training
steps, CPU decoding only); rows that need a GPU say so. Nothing is downloaded; all data are generated.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

import fertrain
from fertrain.bench.common import load_line, markdown_table
from fertrain.cli import guarded

PROG = "python -m fertrain.bench.gpu_check"

HEADER = ["check", "what", "precision", "batch", "ms/step", "peak GiB", "throughput", "detail"]
MODELS = {"MSCM": "dfew_mscm", "CEFLNet": "dfew_ceflnet", "DMFE": "rafdb_dmfe"}  # model -> experiment config
PRECISIONS = ("fp32", "bf16-mixed", "16-mixed")
# DFEW clip_224x224 frame counts: log-normal fit of the 11,697 real counts (fertrain.bench.data)
LOG_MU, LOG_SIGMA, MIN_FRAMES, MAX_FRAMES = 4.221, 0.480, 12, 847


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def compose(overrides: list[str]) -> Any:
    """The run config ``python -m fertrain <overrides>`` would use (Hydra compose, no run directory)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from fertrain.config import config_dir, register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------ step table
def step_rows(device: torch.device, smoke: bool, steps: int) -> list[list[str]]:
    """``step`` rows: every model x precision at its config's batch size and input."""
    from hydra.utils import instantiate

    rows = []
    for name, experiment in MODELS.items():
        cfg = compose([f"+experiment={experiment}", "data.root=/nonexistent"])
        sampler = instantiate(cfg.data.datamodule.sampler)
        frames = getattr(sampler, "clip_len", 1) if cfg.data.name != "rafdb" else 1
        size = int(cfg.data.image_size)
        batch = int(cfg.data.datamodule.batch_size)
        if smoke:
            frames, size, batch = (frames if name == "CEFLNet" else min(frames, 2)), 32, 2
        for precision in PRECISIONS:
            if precision == "16-mixed" and device.type != "cuda":
                rows.append(["step", name, precision, str(batch), "—", "—", "—", "fp16 autocast needs a GPU"])
                continue
            torch.manual_seed(0)
            model = instantiate(cfg.model).to(device).train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            scaler = torch.amp.GradScaler("cuda") if precision == "16-mixed" else None
            dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
            x = torch.randn(batch, frames, 3, size, size, device=device)
            y = torch.randint(0, int(cfg.data.num_classes), (batch,), device=device)
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            times = []
            warmup = 1 if smoke else 2
            for k in range(steps + warmup):  # warm-up steps: allocations, cuDNN autotuning
                _sync(device)
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    loss = nn.functional.cross_entropy(model(x), y)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                _sync(device)
                if k >= warmup:
                    times.append(time.perf_counter() - t0)
            ms = 1e3 * statistics.median(times)
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            rows.append(["step", name, precision, str(batch), f"{ms:.1f}", "n/a" if peak is None else f"{peak:.2f}",
                         f"{batch / ms * 1e3:.1f} clips/s", f"input {frames} x 3 x {size} x {size}, "
                         f"median of {len(times)} steps, loss {float(loss.detach()):.3f}"])
            log(f"  step {name} {precision}: {ms:.1f} ms")
            del model, opt
    return rows


# --------------------------------------------------------------------------------------------- stream data
def _write_clip(job: tuple[str, int, int, int]) -> int:
    """Write ``count`` 224 x 224 (``size``) JPEG frames of a smooth drifting face-like pattern into ``folder``."""
    import cv2

    folder, count, size, seed = job
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = np.stack([xx * 0.8 + 40, yy * 0.7 + 50, (xx + yy) * 0.4 + 30], axis=-1)
    base += rng.normal(0, 8, (size, size, 3)).astype(np.float32)
    out = Path(folder)
    for old in out.glob("*.jpg"):
        old.unlink()
    for t in range(count):
        frame = np.roll(base, (t % 7) - 3, axis=1) + rng.normal(0, 3, (size, size, 3)).astype(np.float32)
        ok, data = cv2.imencode(".jpg", np.clip(frame, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        (out / f"{t + 1:05d}.jpg").write_bytes(data.tobytes())
    return count


def make_stream_tree(root: Path, clips: int, size: int, workers: int, seed: int = 0) -> tuple[int, int]:
    """A DFEW tree (official layout, split files of fertrain's miniature) of ``clips`` synthetic frame folders
    with DFEW's frame-count distribution; returns ``(clips, frames)``."""
    from fertrain.data.datasets.dfew import make_miniature_dfew

    per_class = max(1, math.ceil(clips / 7))
    make_miniature_dfew(root, clips_per_class=per_class, num_frames=1, size=16, seed=seed)
    folders = sorted((root / "Clip" / "clip_224x224").iterdir())
    rng = np.random.default_rng(seed)
    counts = np.clip(np.rint(rng.lognormal(LOG_MU, LOG_SIGMA, len(folders))), MIN_FRAMES, MAX_FRAMES).astype(int)
    jobs = [(str(f), int(c), size, seed + k) for k, (f, c) in enumerate(zip(folders, counts))]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_clip, jobs, chunksize=8))
    else:
        [_write_clip(j) for j in jobs]
    (root / "frame_counts.csv").write_text("\n".join(
        ["video_name,num_frames"] + [f"{int(f.name)},{c}" for f, c in zip(folders, counts)]) + "\n")
    return len(folders), int(counts.sum())


class GpuSampler:
    """Samples GPU utilisation (percent, ``nvidia-smi``) every ``period`` seconds in a thread."""

    def __init__(self, period: float = 0.5) -> None:
        self.period, self.samples, self._stop = period, [], threading.Event()
        self.available = shutil.which("nvidia-smi") is not None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                      "-i", "0"], capture_output=True, text=True, timeout=5).stdout
                self.samples.append(float(out.strip().splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass

    def __enter__(self) -> "GpuSampler":
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.available:
            self._thread.join(timeout=10)


class StepTimes(pl.Callback):
    """Per-step host times: the wait for the next batch (end of a step -> start of the next) and the step itself,
    with the batch size and precision the run really used (so a row never labels a run by its config alone).

    Args:
        out: optional JSON file written at the end of training on global rank 0 (``{"wait_s": [...],
            "step_s": [...], "batch_sizes": [...], "precision": str, "world_size": int}``), for runs in another
            process (``ddp`` rows). ``batch_sizes`` are this process's (per device), one per step.
    """

    def __init__(self, out: str | None = None) -> None:
        self.out, self.wait_s, self.step_s, self.batch_sizes = out, [], [], []
        self._end: float | None = None
        self._start: float | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, i: int) -> None:
        now = time.perf_counter()
        if self._end is not None:
            self.wait_s.append(now - self._end)
        self._start = now
        first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
        self.batch_sizes.append(int(first.shape[0]))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           i: int) -> None:
        self._end = time.perf_counter()
        if self._start is not None:
            self.step_s.append(self._end - self._start)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.out and trainer.is_global_zero:
            Path(self.out).write_text(json.dumps({
                "wait_s": self.wait_s, "step_s": self.step_s, "batch_sizes": self.batch_sizes,
                "precision": str(trainer.precision), "world_size": trainer.world_size}))


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def stream_row(root: Path, device: torch.device, seconds: float, workers: int, smoke: bool) -> list[str]:
    """``stream``: the real datamodule into MSCM training (Lightning) for ``seconds``."""
    from hydra.utils import instantiate

    overrides = ["+experiment=dfew_mscm", f"data.root={root}", f"data.datamodule.num_workers={workers}",
                 "++data.datamodule.persistent_workers=true"]
    if smoke:
        overrides += ["data.image_size=32", "data.datamodule.batch_size=2"]
    cfg = compose(overrides)
    datamodule = instantiate(cfg.data.datamodule)
    task = instantiate(cfg.task, net=instantiate(cfg.model), loss=instantiate(cfg.loss),
                       optimizer=instantiate(cfg.optimizer), scheduler=None)
    timer = StepTimes()
    precision = "bf16-mixed" if device.type == "cuda" else "32-true"
    trainer = pl.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=precision,
                         max_time=None if smoke else {"seconds": seconds}, max_steps=3 if smoke else -1,
                         max_epochs=10_000, limit_val_batches=0,
                         num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                         default_root_dir=str(root / "lightning"))
    with GpuSampler() as gpu:
        t0 = time.perf_counter()
        trainer.fit(task, datamodule=datamodule)
        elapsed = time.perf_counter() - t0
    batch = int(cfg.data.datamodule.batch_size)
    steps = len(timer.step_s)
    skip = min(5, steps // 4)  # the first steps: worker start, cuDNN autotuning
    wait, step = timer.wait_s[skip:], timer.step_s[skip:]
    util = (f"GPU util mean {statistics.mean(gpu.samples):.0f}%, >= 90% in "
            f"{np.mean(np.array(gpu.samples) >= 90):.0%} of {len(gpu.samples)} samples" if gpu.samples else
            "GPU util n/a (" + ("no GPU" if device.type != "cuda" else "nvidia-smi gave no sample") + ")")
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    ms = 1e3 * statistics.median([a + b for a, b in zip(wait, step)] or step or [float("nan")])
    return ["stream", f"MSCM, DFEW-sized frame folders, {workers} workers", precision.replace("32-true", "fp32"),
            str(batch), f"{ms:.1f}", "n/a" if peak is None else f"{peak:.2f}",
            f"{steps * batch / elapsed:.1f} clips/s",
            f"{steps} steps in {elapsed:.0f} s; loader wait per step median {1e3 * _pct(wait, 50):.1f} ms, p90 "
            f"{1e3 * _pct(wait, 90):.1f} ms, {100 * sum(wait) / max(sum(wait) + sum(step), 1e-9):.0f}% of the time; "
            f"{util}"]


# --------------------------------------------------------------------------------------------------- decode
class _CpuDecode(torch.utils.data.Dataset):
    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> int:
        from fertrain.data.readers import _decode_image

        return int(_decode_image(self.files[i], None).shape[0])


def decode_rows(root: Path, device: torch.device, workers: int, limit: int, size: int = 224) -> list[list[str]]:
    """``decode``: torchvision.io.decode_jpeg on the GPU (batches of 256) vs fertrain's reader in CPU workers."""
    import torchvision
    from torchvision.io import decode_jpeg

    files = sorted((root / "Clip" / "clip_224x224").glob("*/*.jpg"))[:limit]
    datas = [torchvision.io.read_file(str(f)) for f in files]
    rows = []
    loader = torch.utils.data.DataLoader(_CpuDecode(files), batch_size=32, num_workers=workers,
                                         collate_fn=lambda b: len(b))
    for _ in range(2):  # the second pass is timed (workers started, files in the page cache)
        t0 = time.perf_counter()
        n = sum(loader)
        cpu_s = time.perf_counter() - t0
    rows.append(["decode", f"fertrain reader (OpenCV/libjpeg-turbo), {workers} CPU workers", "uint8", "32",
                 "—", "—", f"{n / cpu_s:.0f} frames/s", f"{len(files)} frames of {size} x {size}"])
    if device.type != "cuda":
        rows.append(["decode", "torchvision.io.decode_jpeg on the GPU", "uint8", "256", "—", "—", "—",
                     "needs a GPU"])
        return rows
    chunks = [datas[i:i + 256] for i in range(0, len(datas), 256)]
    decode_jpeg(chunks[0], device=device)  # warm-up (nvJPEG handles)
    _sync(device)
    t0 = time.perf_counter()
    for chunk in chunks:
        decode_jpeg(chunk, device=device)
    _sync(device)
    gpu_s = time.perf_counter() - t0
    rows.append(["decode", "torchvision.io.decode_jpeg on the GPU (nvJPEG)", "uint8", "256", "—", "—",
                 f"{len(datas) / gpu_s:.0f} frames/s", f"x {(len(datas) / gpu_s) / (n / cpu_s):.1f} the CPU workers"])
    return rows


# ------------------------------------------------------------------------------------------------------ ddp
def ddp_rows(root: Path, devices: int, steps: int, workers: int, single_ms: float | None,
             timeout: float, extra: tuple[str, ...] = ()) -> list[list[str]]:
    """``ddp``: fertrain's own CLI with trainer=ddp over every visible GPU (a subprocess: Lightning's ddp
    re-runs the command line for the other ranks)."""
    out = root / "ddp_steps.json"
    # the fertrain that runs this check (a checkout or an installed wheel), for the callback below
    package_root = str(Path(fertrain.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", "fertrain", "+experiment=dfew_mscm", f"data.root={root}", "trainer=ddp",
           f"trainer.devices={devices}", f"++trainer.max_steps={steps}", "++trainer.limit_val_batches=0",
           "trainer.num_sanity_val_steps=0", "test=false", f"data.datamodule.num_workers={workers}",
           f"paths.log_dir={root / 'ddp_logs'}", "logger=csv", "predict_video=null", "optimized_metric=null",
           "+callbacks.gpu_check_steps._target_=fertrain.bench.gpu_check.StepTimes",
           f"+callbacks.gpu_check_steps.out={out}",
           *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return [["ddp", f"MSCM, trainer=ddp, {devices} GPUs", "—", "—", "—", "—", "—",
                 f"FAILED (exit {proc.returncode}): {tail[0][:200]}"]]
    times = json.loads(out.read_text())
    step = times["step_s"][5:] or times["step_s"]
    wait = times["wait_s"][5:] or times["wait_s"]
    ms = 1e3 * statistics.median([a + b for a, b in zip(wait, step)] or step)
    # what the run used, read back from it (overrides in ``extra`` included), not from the experiment config
    sizes = sorted(set(times["batch_sizes"]))
    batch = statistics.median(times["batch_sizes"])
    world = int(times["world_size"])
    scaling = "" if single_ms is None else f", {single_ms / ms * world:.2f}x one GPU's clips/s"
    return [["ddp", f"MSCM, trainer=ddp, {world} process(es), fertrain CLI", times["precision"],
             f"{'/'.join(map(str, sizes))} per process",
             f"{ms:.1f}", "—", f"{batch * world / ms * 1e3:.1f} clips/s",
             f"{len(times['step_s'])} steps, {elapsed:.0f} s with start-up{scaling}"]]


# ---------------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny inputs, seconds (the test runs this)")
    parser.add_argument("--clips", type=int, default=2100, help="clips of the synthetic stream (default 2100)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default min(16, CPUs))")
    parser.add_argument("--stream-seconds", type=float, default=120.0, help="training time of the stream row")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per step row")
    parser.add_argument("--ddp-steps", type=int, default=60, help="steps of the ddp row")
    parser.add_argument("--dir", type=Path, default=None, help="where the stream data go (default: a temp dir)")
    return parser.parse_args(argv)


@guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """Run every section (on the CPU with ``--smoke``); print the one table. Returns 0."""
    args = parse_args(argv)
    started = time.perf_counter()
    has_gpu = torch.cuda.is_available() and not args.smoke
    device = torch.device("cuda") if has_gpu else torch.device("cpu")
    workers = args.workers if args.workers is not None else (0 if args.smoke else min(16, os.cpu_count() or 1))
    if has_gpu:
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(1)
    gpu = (f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
           else "none")
    print(f"# gpu_check{' (smoke, CPU)' if args.smoke else ''}: torch {torch.__version__}, GPU {gpu}, "
          f"{os.cpu_count()} CPUs; {load_line()}")
    rows: list[list[str]] = []
    log("step rows ...")
    rows += step_rows(device, args.smoke, 1 if args.smoke else args.steps)
    tmp = Path(tempfile.mkdtemp(prefix="fertrain_gpu_check_", dir=args.dir))
    try:
        root = tmp / "DFEW"
        clips = 7 if args.smoke else args.clips
        log(f"writing {clips} synthetic clips to {root} ...")
        t0 = time.perf_counter()
        n_clips, n_frames = make_stream_tree(root, clips, 32 if args.smoke else 224, max(workers, 1))
        log(f"  {n_clips} clips, {n_frames} frames in {time.perf_counter() - t0:.0f} s")
        log("stream row ...")
        rows.append(stream_row(root, device, args.stream_seconds, workers, args.smoke))
        rows[-1][-1] += f"; data: {n_clips} clips, {n_frames} frames"
        log("decode rows ...")
        rows += decode_rows(root, device, workers, 256 if args.smoke else 8192, 32 if args.smoke else 224)
        if has_gpu:
            log("ddp row ...")
            single = next((float(r[4]) for r in rows if r[0] == "stream" and r[4] not in ("—", "nan")), None)
            rows += ddp_rows(root, torch.cuda.device_count(), args.ddp_steps, min(workers, 8), single, timeout=240)
        else:
            rows.append(["ddp", "MSCM, trainer=ddp over all visible GPUs", "bf16-mixed", "—", "—", "—", "—",
                         "needs a GPU"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(markdown_table(HEADER, rows))
    print(f"\ntotal {time.perf_counter() - started:.0f} s; {load_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
