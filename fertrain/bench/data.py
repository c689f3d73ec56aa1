"""Input-pipeline benchmark: clips per second of fertrain's video-file and frame-folder paths.

One command (``fertrain-bench-data``, or ``scripts/bench_data.py`` in a checkout; data are generated on the first
run into ``.cache/bench`` under the current folder or ``$FERTRAIN_ROOT``)::

    python -m fertrain.bench.data              # --quick (default): about 4 minutes on 2 busy cores
    python -m fertrain.bench.data --full       # more clips, plus segments of the real h264 demo video
    python -m fertrain.bench.data --breakdown  # also: CPU ms/clip after each stage of the fertrain path

What is measured. For each source and worker count (0, 1, 2) the loaders of one row run through real
``torch.utils.data.DataLoader``\ s (batch 8, fixed order, persistent workers, ``seed_worker``) side by side: 5
epochs each, epoch 1 warms up, epochs 2..5 are timed rounds taken in turn (limit, fertrain, naive, then the
reverse order), and every ratio is the median of the per-round ratios, so a change of machine load hits the
loaders of a row alike. Clips are 16 frames (TSN ``SegmentSampler(8, 2)``, training draw), output ``112 x 112``;
the frame indices of every clip are drawn once, so all loaders of a source read exactly the same frames. Speed is
given as wall-clock clips/s and as CPU ms per clip (user + system time of the main process and the loader's
workers): the work a loader does per clip, which a busy machine disturbs much less than wall time.

Loaders:

- ``fertrain``: ``fertrain.data.clip_dataset.ClipDataset`` as training uses it, reading the planned frame
  indices: the training transform ``build_clip_transform(train=True, size=112)`` (RandomResizedCrop + horizontal
  flip), JPEG frames decoded at the transform's ``decode_size`` (full size for 224-pixel frames: no crop is
  upsampled), the video decoder of ``--decoder`` (default decord), the default collate into uint8
  ``(B, T, C, H, W)`` plus the sample's label, index and video id. Video frame counts (``count_frames``) are
  filled in the main process before the workers fork, as ``DFEW(source="videos")`` does; frame-folder listings
  likewise (the index-time listing that ``readers`` caches per process).
- ``limit``: decode-only throughput of exactly the same frames with the same decoder at the same scale, no
  augmentation, no collation: the ``--decoder`` reader of the video (decord: ``VideoReader(num_threads=1)
  .get_batch``, its buffer viewed through DLPack as the reader does, no ``asnumpy`` copy) for videos; the frame
  reader's own JPEG decode of the sampled files (file names resolved outside the timed loop) for frame folders.
  Only a frame count returns from the workers.
- ``naive`` (frame folders only): the way public DFEW codebases load a clip: list the folder, open every sampled
  JPEG with PIL at full size, apply torchvision transforms frame by frame (one RandomResizedCrop and flip draw
  per clip), ``to_tensor`` each frame (float32) and stack. ``--naive-output uint8`` returns fertrain's bytes.

Generated data (deterministic; ``.cache/bench`` is git-ignored; ``--cache-dir`` moves it): frames of the shipped
real video ``fertrain/assets/demo/WolfgangLanger_Pexels.mp4`` (Wolfgang Langer, Pexels; 640x360) played forward
and backward. Frame folders: DFEW ``clip_224x224`` layout (``<id>/00001.jpg ...``), a 280-pixel face crop resized
to ``224 x 224``, JPEG quality 90 (about 11 KB a frame). Videos: MPEG-4 Part 2 (``mp4v``, the encoder OpenCV
ships; DFEW's originals are h264, which costs more per frame to decode) at 25 fps, 640x360 and 1280x720
(upscaled). Frames per clip are drawn from the real DFEW distribution in a ``frame_counts.csv`` (``--frame-counts``;
default ``data/dfew/frame_counts.csv`` of the project's reference data, see :func:`fertrain.bench.common.shared_dir`)
when present, else from the documented fallback: log-normal with ``mu = 4.221, sigma = 0.480`` (fitted to those
11,697 counts: median 70, mean 77 frames), clipped to ``[12, 847]`` frames.

Memory: peak RSS (``VmHWM``) of the main process and of the loader's largest worker, and the RSS of the process
doing the work (the largest worker, or the main process with 0 workers) after epochs 1, 3 and the last; the
target is growth < 5% from epoch 1 to epoch 3. RSS counts the pages a forked worker shares with the main
process (torch alone is about 1 GB here) in full. A worker RSS that creeps up for some epochs and then stays is
glibc's heap serving the multi-MB frame buffers (its mmap threshold adapts to them), not a leak: with
``MALLOC_MMAP_THRESHOLD_=1048576`` in the environment it stays flat. Linux ``/proc``; ``n/a`` elsewhere.

Targets (issue 19): the fertrain loader at >= 0.85x its decode limit for frame folders and >= 0.90x for videos,
at every worker count, from wall time and from CPU time (``speed target``); the naive loader is context.
Decoders (``--decoders``): decode-only clips/s of every installed video decoder on the same planned frames of
the same videos, side by side (0 workers), in a table of its own.

Threads: the main process runs torch with 1 intra-op thread (``--torch-threads``), as DataLoader workers do. It
matters with 0 workers, where collation runs in the main process: on a machine shared with other jobs, torch's
threads wait for each other at every operator (2 threads made a 0.6 MB copy about 20x slower here).
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import torch  # before decord: decord2 loads NVBLAS, which breaks torch CPU matmuls if it comes first
import decord
import numpy as np
import PIL.Image
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from torch.utils.data import DataLoader, Dataset

from fertrain.bench.common import (
    cache_dir,
    child_pids,
    cpu_model,
    cpu_seconds,
    fmt,
    load_line,
    markdown_table,
    peak_rss_mib,
    preset_parser,
    reset_peak_rss,
    rss_mib,
    shared_dir,
)
from fertrain.cli import UsageError, guarded
from fertrain.config import asset_path
from fertrain.data import readers
from fertrain.data.clip_dataset import ClipDataset
from fertrain.data.datasets.dfew import read_frame_counts
from fertrain.data.records import ClipRecord
from fertrain.data.samplers import SegmentSampler
from fertrain.data.transforms import build_clip_transform, channels_first, seed_worker

PROG = "python -m fertrain.bench.data"

DEMO_VIDEO = Path(asset_path("demo/WolfgangLanger_Pexels.mp4"))
# Fallback frame-count distribution: log-normal fitted to DFEW's clip_224x224 counts (11,697 clips).
FALLBACK_LOG_MU, FALLBACK_LOG_SIGMA, MIN_FRAMES, MAX_FRAMES = 4.221, 0.480, 12, 847
FACE_BOX = (290, 60, 280)  # left, top, side (pixels) of a square around the face in the 640x360 demo video
FACE_SIDE, FACE_JITTER = 240, 16  # the box is resized to 240 px; each clip takes its own 224 px window of it
JPEG_QUALITY = 90
DATA_VERSION = 2  # bump when the generated data change
VIDEO_FPS = 25.0
NUM_CLASSES = 7
SPEED_TARGETS = {"video": ("limit", 0.90), "frames": ("limit", 0.85)}  # fertrain >= ratio x reference
RSS_GROWTH_TARGET, RSS_GROWTH_EPOCHS = 0.05, 3  # worker RSS may grow < 5% from the end of epoch 1 to epoch 3


@dataclass(frozen=True)
class Source:
    """One benchmarked input: a generated (or shipped) set of clips."""

    key: str
    kind: str  # "frames" or "video"
    label: str
    width: int = 224
    height: int = 224
    clips: int = 0
    demo_segments: bool = False  # records are segments of the shipped h264 demo video (no generation)


@dataclass
class Preset:
    """Sizes of one run (``--quick``, ``--full`` or ``--smoke``)."""

    sources: list[Source]
    workers: tuple[int, ...] = (0, 1, 2)
    epochs: int = 5  # per loader: 1 warm-up + 4 timed rounds
    batch_size: int = 8


def presets() -> dict[str, Preset]:
    """The three run sizes (clip counts are multiples of batch x 2 workers, so workers finish together)."""
    def frames(n: int) -> Source:
        return Source("frames", "frames", "frames 224x224 JPEG (DFEW layout)", clips=n)

    def video(w: int, h: int, n: int) -> Source:
        return Source(f"video{h}", "video", f"video {w}x{h} mp4v", width=w, height=h, clips=n)

    h264 = Source("demo_h264", "video", "video 640x360 h264 (demo segments)", 640, 360, clips=64, demo_segments=True)
    return {
        "quick": Preset([frames(48), video(640, 360, 32), video(1280, 720, 16)]),
        "full": Preset([frames(256), video(640, 360, 96), video(1280, 720, 48), h264], epochs=7),
        "smoke": Preset([frames(8), video(640, 360, 4)], workers=(0, 1), epochs=2, batch_size=2),
    }


# ----------------------------------------------------------------------------------------------- data generation
def default_frame_counts_csv() -> Path | None:
    """DFEW's ``frame_counts.csv`` in the project's reference data, if that folder is known and has it."""
    shared = shared_dir()
    path = None if shared is None else shared / "data" / "dfew" / "frame_counts.csv"
    return path if path is not None and path.is_file() else None


def frame_counts(n: int, rng: np.random.Generator, counts_csv: Path | None = None) -> tuple[np.ndarray, str]:
    """Frames per clip for ``n`` clips: int64 ``(n,)`` drawn from DFEW's real counts in ``counts_csv`` (a DFEW
    ``frame_counts.csv``), else (None) from the fallback log-normal."""
    if counts_csv is not None:
        real = np.array(list(read_frame_counts(counts_csv).values()), dtype=np.int64)
        return rng.choice(real, size=n, replace=True), f"DFEW {counts_csv} ({len(real)} clips)"
    counts = np.rint(rng.lognormal(FALLBACK_LOG_MU, FALLBACK_LOG_SIGMA, size=n)).astype(np.int64)
    return np.clip(counts, MIN_FRAMES, MAX_FRAMES), "fallback log-normal (no DFEW frame_counts.csv: --frame-counts)"


def bounce(start: int, count: int, n: int) -> np.ndarray:
    """Indices of ``count`` frames from ``start`` in a video of ``n`` frames played forward, then backward."""
    pos = (start + np.arange(count)) % (2 * (n - 1))
    return np.where(pos < n, pos, 2 * (n - 1) - pos)  # (count,)


def face_crops(vr: decord.VideoReader) -> np.ndarray:
    """The face box of every demo frame resized to ``FACE_SIDE``: uint8 ``(N, 240, 240, 3)`` (about 80 MB)."""
    x0, y0, side = FACE_BOX
    crops = []
    for start in range(0, len(vr), 64):
        batch = vr.get_batch(list(range(start, min(start + 64, len(vr))))).asnumpy()  # (<=64, 360, 640, 3)
        crops += [cv2.resize(f[y0:y0 + side, x0:x0 + side], (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_AREA)
                  for f in batch]
    return np.stack(crops)


def generate(source: Source, cache_dir: Path, seed: int, log: Callable[[str], None],
             counts_csv: Path | None = None) -> tuple[list[ClipRecord], str]:
    """Write (once) and return the records of ``source``; the second value says where frame counts came from."""
    rng = np.random.default_rng(seed)
    counts, counts_from = frame_counts(source.clips, rng, counts_csv)
    if source.demo_segments:
        num = readers.count_frames(DEMO_VIDEO)
        counts = np.minimum(counts, num)
        starts = rng.integers(0, num - counts + 1)
        return [ClipRecord(path=DEMO_VIDEO, label=k % NUM_CLASSES, video_id=f"{k + 1:05d}", num_frames=int(c),
                           start_frame=int(s)) for k, (c, s) in enumerate(zip(counts, starts))], counts_from
    tag = f"v{DATA_VERSION}_{source.key}_{source.width}x{source.height}_n{source.clips}_seed{seed}_q{JPEG_QUALITY}"
    root = cache_dir / tag
    done = root / "complete.json"
    layout = root / "Clip" / "clip_224x224" if source.kind == "frames" else root / "Clip" / "original"
    paths = [layout / (f"{k + 1:05d}" + ("" if source.kind == "frames" else ".mp4")) for k in range(source.clips)]
    if not done.is_file():
        log(f"generating {source.label}: {source.clips} clips, {int(counts.sum())} frames -> {root}")
        t0 = time.perf_counter()
        layout.mkdir(parents=True, exist_ok=True)
        vr = decord.VideoReader(str(DEMO_VIDEO), ctx=decord.cpu(0), num_threads=1)
        starts = rng.integers(0, len(vr), size=source.clips)
        offsets = rng.integers(0, FACE_JITTER + 1, size=(source.clips, 2))
        crops = face_crops(vr) if source.kind == "frames" else None
        for k, (path, count) in enumerate(zip(paths, counts)):
            pos = bounce(int(starts[k]), int(count), len(vr))  # (N,) demo frame of each clip frame
            if crops is not None:
                dx, dy = offsets[k]
                path.mkdir(exist_ok=True)
                for j, p in enumerate(pos):
                    face = np.ascontiguousarray(crops[p, dy:dy + 224, dx:dx + 224])
                    PIL.Image.fromarray(face).save(path / f"{j + 1:05d}.jpg", quality=JPEG_QUALITY)
                continue
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS,
                                     (source.width, source.height))
            if not writer.isOpened():
                raise RuntimeError(f"OpenCV cannot write an mp4v video to {path}")
            for chunk in range(0, len(pos), 64):  # at most 64 decoded frames in memory
                unique = np.unique(pos[chunk:chunk + 64])
                frames = vr.get_batch(unique.tolist()).asnumpy()  # (U, 360, 640, 3)
                for u in np.searchsorted(unique, pos[chunk:chunk + 64]):
                    frame = frames[u]
                    if frame.shape[:2] != (source.height, source.width):
                        frame = cv2.resize(frame, (source.width, source.height), interpolation=cv2.INTER_LINEAR)
                    writer.write(np.ascontiguousarray(frame[..., ::-1]))  # RGB -> BGR
            writer.release()
        del vr
        with open(root / "frame_counts.csv", "w", newline="") as f:
            csv.writer(f).writerows([("video_name", "num_frames")] + [(k + 1, int(c)) for k, c in enumerate(counts)])
        done.write_text(json.dumps({"clips": source.clips, "frames": int(counts.sum()), "seed": seed}))
        log(f"  generated in {time.perf_counter() - t0:.1f} s")
    records = [ClipRecord(path=p, label=k % NUM_CLASSES, video_id=f"{k + 1:05d}", num_frames=int(c))
               for k, (p, c) in enumerate(zip(paths, counts))]
    return records, counts_from


def warm_page_cache(records: list[ClipRecord]) -> None:
    """Read every media file once so that no loader pays for the first read from disk."""
    seen: set[Path] = set()
    for rec in records:
        if rec.path in seen:
            continue
        seen.add(rec.path)
        files = readers.list_frame_files(rec.path) if rec.path.is_dir() else [rec.path]
        for f in files:
            with open(f, "rb") as fh:
                while fh.read(1 << 20):
                    pass


# ------------------------------------------------------------------------------------------------------ loaders
class PlannedClipDataset(ClipDataset):
    """fertrain's ``ClipDataset``, unchanged, except that it reads the planned frame indices (every loader of a
    row reads the same frames)."""

    def __init__(self, records: list[ClipRecord], plan: list[np.ndarray], transform: Callable,
                 sampler: SegmentSampler, decoder: str = "decord") -> None:
        super().__init__(records, sampler, transform, train=True, seed=0, decoder=decoder)
        self.plan = plan

    def frame_indices(self, i: int, *args) -> np.ndarray:
        return self.plan[i] + self.records[i].start_frame


class DecodeOnlyDataset(Dataset):
    """The limit: decode the planned frames with the pipeline's own decoder; returns the number of frames only."""

    def __init__(self, records: list[ClipRecord], plan: list[np.ndarray], kind: str, reduce_to: int | None,
                 decoder: str = "decord") -> None:
        self.kind = kind
        self.reduce_to = reduce_to
        self.decoder = decoder
        self.jobs: list[tuple[str, list]] = []
        for rec, idx in zip(records, plan):
            unique = np.unique(idx + rec.start_frame)
            if kind == "video":
                self.jobs.append((str(rec.path), unique.tolist()))
            else:  # the file names are resolved here, outside the timed decode
                files = readers.list_frame_files(rec.path)
                self.jobs.append(("", [files[min(j, len(files) - 1)] for j in unique]))

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> int:
        path, items = self.jobs[i]
        if self.kind == "video":
            if self.decoder == "decord":
                vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
                frames = readers._decord_numpy(vr.get_batch(items))  # (U, H, W, 3) uint8, decord's own buffer
                del vr
            elif self.decoder == "torchcodec":
                frames = readers._read_video_torchcodec(Path(path), np.asarray(items))
            else:
                frames = readers._read_video_pyav(Path(path), np.asarray(items))
            return len(frames)
        return len([readers._decode_image(f, self.reduce_to) for f in items])  # the reader's own JPEG decode


class NaiveFrameDataset(Dataset):
    """Public-codebase style frame loader: PIL per frame at full size, torchvision transforms per frame.

    List the folder, open every sampled JPEG with PIL (duplicates too), draw one ``RandomResizedCrop`` and one
    flip per clip and apply them frame by frame to the PIL images, then ``to_tensor`` each frame (float32 in
    ``[0, 1]``, as the ``ToTensor`` / ``ToTorchFormatTensor`` of the public DFEW codebases) and stack:
    float32 ``(T, C, h, w)``. ``output="uint8"`` stacks ``pil_to_tensor`` instead: the same bytes as fertrain.
    """

    def __init__(self, records: list[ClipRecord], plan: list[np.ndarray], size: int, output: str = "float") -> None:
        self.records, self.plan, self.size, self.output = records, plan, size, output
        self.crop = T.RandomResizedCrop(size, scale=(0.8, 1.0), ratio=(3 / 4, 4 / 3))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        names = sorted(os.listdir(rec.path))
        images = []
        for j in self.plan[i]:
            with PIL.Image.open(os.path.join(rec.path, names[min(j, len(names) - 1)])) as im:
                images.append(im.convert("RGB"))
        top, left, h, w = self.crop.get_params(images[0], self.crop.scale, self.crop.ratio)
        flip = bool(torch.rand(()) < 0.5)
        to_tensor = TF.to_tensor if self.output == "float" else TF.pil_to_tensor
        out = []
        for im in images:
            im = TF.resized_crop(im, top, left, h, w, [self.size, self.size])
            out.append(to_tensor(TF.hflip(im) if flip else im))  # (C, h, w)
        return {"video": torch.stack(out), "label": torch.tensor(rec.label, dtype=torch.long),
                "index": torch.tensor(i, dtype=torch.long), "video_id": rec.video_id}


class StageDataset(Dataset):
    """The fertrain path cut after one stage (``--breakdown``): what each stage adds per clip.

    Stages: ``read`` = ``read_frames`` of the clip with ClipDataset's read options (cached listing or frame
    count, decode, layout); ``transform`` = + the clip transform; ``tensor`` = + the ``(T, C, h, w)`` tensor;
    ``collate`` = the tensor alone through the default collate (shared memory between processes). The first
    three return a frame count, as the limit does.
    """

    def __init__(self, records: list[ClipRecord], plan: list[np.ndarray], transform: Callable,
                 read_options: dict, stage: str) -> None:
        self.records, self.plan, self.transform, self.stage = records, plan, transform, stage
        self.read_options = read_options

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> int | torch.Tensor:
        rec = self.records[i]
        frames = readers.read_frames(rec.path, self.plan[i] + rec.start_frame, **self.read_options)  # (T, H, W, C)
        if self.stage == "read":
            return len(frames)
        frames = self.transform(frames)  # (T, h, w, C)
        if self.stage == "transform":
            return len(frames)
        video = torch.from_numpy(channels_first(np.asarray(frames)))  # (T, C, h, w), as ClipDataset
        return len(video) if self.stage == "tensor" else video


def breakdown(source: Source, records: list[ClipRecord], plan: list[np.ndarray], workers: int, epochs: int,
              batch_size: int, size: int, decoder: str) -> str:
    """Table of CPU ms per clip after each stage of the fertrain path, all stages side by side."""
    transform = build_clip_transform(True, size=size, seed=0)
    fertrain = PlannedClipDataset(records, plan, transform, SegmentSampler(8, 2), decoder)
    options = fertrain.read_options
    reduce_to = options["reduce_to"] if source.kind == "frames" else None
    loaders: list[tuple[str, Dataset, Callable | None]] = [
        ("decode only (limit)", DecodeOnlyDataset(records, plan, source.kind, reduce_to, decoder), _count_collate)]
    loaders += [(f"+ {stage}", StageDataset(records, plan, transform, options, stage),
                 None if stage == "collate" else _count_collate) for stage in ("read", "transform", "tensor")]
    loaders.append(("+ collate (tensor only)", StageDataset(records, plan, transform, options, "collate"), None))
    loaders.append(("fertrain (ClipDataset dict)", fertrain, None))
    rows, previous = [], None
    for r in measure_side_by_side(source, loaders, workers, epochs, batch_size):
        cpu = r.cpu_ms_per_clip
        step = "—" if previous is None or cpu is None else f"{cpu - previous:+.2f}"
        rows.append([r.loader, fmt(cpu, 2), step, fmt(r.clips_per_s, 1)])
        previous = cpu
    return markdown_table(["stage (cumulative)", "CPU ms/clip", "added", "clips/s"], rows)


def decoder_table(results: list[Result]) -> str:
    """Decode-only throughput of each video decoder on the same clips (0 workers), relative to decord."""
    by_key = {(r.source.key, r.loader): r for r in results}
    rows = []
    for r in results:
        ref = by_key.get((r.source.key, "decord"))
        wall, cpu = r.speedup_over(ref), r.speedup_over(ref, cpu=True)
        rows.append([r.source.label, r.loader, fmt(r.clips_per_s, 1), fmt(r.cpu_ms_per_clip, 2),
                     "—" if r.loader == "decord" or wall is None else f"{wall:.2f}",
                     "—" if r.loader == "decord" or cpu is None else f"{cpu:.2f}"])
    return markdown_table(["source", "decoder", "clips/s", "CPU ms/clip", "x decord (wall)", "x decord (CPU)"], rows)


def _count_collate(batch: list[int]) -> int:
    """The limit's collate: no tensors, just how many clips the batch held."""
    return len(batch)


# -------------------------------------------------------------------------------------------------- measuring
@dataclass
class Result:
    """One row of the table: a loader's timed epochs ("rounds") for one source and worker count."""

    source: Source
    workers: int
    loader: str
    clips: int  # clips per epoch
    round_s: list[float] = field(default_factory=list)  # wall time of each timed epoch (s)
    round_cpu_s: list[float | None] = field(default_factory=list)  # CPU time, main + this loader's workers (s)
    peak_main_mib: float | None = None
    peak_worker_mib: float | None = None
    rss_by_epoch: list[float | None] = field(default_factory=list)  # every epoch, warm-up included

    @property
    def clips_per_s(self) -> float:
        return self.clips * len(self.round_s) / sum(self.round_s)

    @property
    def cpu_ms_per_clip(self) -> float | None:
        if not self.round_cpu_s or any(c is None for c in self.round_cpu_s):
            return None
        return 1e3 * sum(self.round_cpu_s) / (self.clips * len(self.round_cpu_s))

    def rss_growth(self, epoch: int) -> float | None:
        """RSS growth from the end of epoch 1 to the end of ``epoch`` (1-based; the last one if fewer ran)."""
        rss = self.rss_by_epoch[: max(epoch, 1)]
        return None if not rss or not rss[0] or rss[-1] is None else (rss[-1] - rss[0]) / rss[0]

    def speedup_over(self, ref: Result | None, cpu: bool = False) -> float | None:
        """Median over the timed rounds of (ref's time / this loader's time) for the same clips; >1: faster."""
        if ref is None:
            return None
        mine, theirs = (self.round_cpu_s, ref.round_cpu_s) if cpu else (self.round_s, ref.round_s)
        pairs = [(a, b) for a, b in zip(mine, theirs) if a and b]
        return statistics.median(b / a for a, b in pairs) if pairs else None


def _worker_pids(loader: DataLoader) -> list[int]:
    """Process ids of a persistent loader's workers (``DataLoader._iterator._workers``; [] if unavailable)."""
    workers = getattr(getattr(loader, "_iterator", None), "_workers", None) or []
    return [w.pid for w in workers if getattr(w, "pid", None)]


def measure_side_by_side(source: Source, loaders: list[tuple[str, Dataset, Callable | None]], workers: int,
                         epochs: int, batch_size: int) -> list[Result]:
    """Run the loaders of one (source, worker count) side by side, epoch by epoch.

    Every loader keeps its workers for the whole run (``persistent_workers``). Epoch 1 of each loader warms up
    (worker start, imports, caches); epochs 2..E are the timed rounds, run in turn (limit, fertrain, naive, then
    the reverse order in the next round), so a change of machine load hits all loaders of a row alike and
    ratios are taken round by round. With ``epochs == 1`` the one epoch is timed.

    Returns:
        One :class:`Result` per loader, in the order given.
    """
    built = {}
    for name, dataset, collate in loaders:
        kwargs = {} if collate is None else {"collate_fn": collate}
        built[name] = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                                 persistent_workers=workers > 0, worker_init_fn=seed_worker, **kwargs)
    results = {name: Result(source, workers, name, clips=len(ds)) for name, ds, _ in loaders}
    names = list(built)
    for epoch in range(epochs):
        for name in names if epoch % 2 == 0 else names[::-1]:
            r = results[name]
            pids = _worker_pids(built[name])  # [] before the first epoch (workers start with it)
            cpu0 = [time.process_time()] + [cpu_seconds(p) for p in pids]
            reset_peak_rss()
            t0, n = time.perf_counter(), 0
            for batch in built[name]:
                n += batch if isinstance(batch, int) else len(batch["video"] if isinstance(batch, dict) else batch)
            elapsed = time.perf_counter() - t0
            cpu1 = [time.process_time()] + [cpu_seconds(p) for p in pids]
            if n != r.clips:
                raise RuntimeError(f"{name}: an epoch gave {n} clips, expected {r.clips}")
            if epoch > 0 or epochs == 1:
                r.round_s.append(elapsed)
                ok = epoch > 0 or workers == 0
                r.round_cpu_s.append(sum(b - a for a, b in zip(cpu0, cpu1)) if ok and None not in cpu0 + cpu1 else None)
            r.peak_main_mib = max(r.peak_main_mib or 0.0, peak_rss_mib() or 0.0) or None
            rss = [rss_mib(p) for p in _worker_pids(built[name])] if workers > 0 else [rss_mib()]
            rss = [x for x in rss if x is not None]
            r.rss_by_epoch.append(max(rss) if rss else None)
    ours: set[int] = set()
    for name, loader in built.items():
        pids = _worker_pids(loader)
        ours.update(pids)
        peaks = [p for p in (peak_rss_mib(pid) for pid in pids) if p is not None]
        results[name].peak_worker_mib = max(peaks) if peaks else None
    built.clear()
    del loader
    gc.collect()
    # let these loaders' workers exit before the next row; only ours: a host process (pytest) may have other
    # children for good (e.g. a joblib pool), and waiting on those cost 20 s a row
    deadline = time.time() + 20
    while ours & set(child_pids()) and time.time() < deadline:
        time.sleep(0.05)
    return list(results.values())


# ----------------------------------------------------------------------------------------------------- report
def _target(got: float | None, need: float) -> str:
    return "n/a" if got is None else f"{got:.3f} " + ("met" if got >= need else "NOT met")


def table(results: list[Result], epochs: int) -> str:
    """The benchmark's one Markdown table.

    ``x limit`` / ``x naive``: throughput relative to the reference of the same source and worker count, the
    median over the timed rounds of the per-round ratio, from wall time and from CPU time (main process + the
    loader's workers: the work each loader does per clip, which a busy machine changes less than wall time).
    """
    shown = sorted({1, min(RSS_GROWTH_EPOCHS, epochs), epochs})  # epochs whose RSS the table shows
    rss_label = "->".join(f"e{e}" for e in shown)
    header = ["source", "workers", "loader", "clips/s", "x limit", "x naive", "CPU ms/clip", "x limit (CPU)",
              "x naive (CPU)", "peak RSS main / worker (MiB)", f"RSS {rss_label} (MiB)", "speed target",
              "RSS target"]
    by_key = {(r.source.key, r.workers, r.loader): r for r in results}
    rows = []
    for r in results:
        limit = by_key.get((r.source.key, r.workers, "limit")) if r.loader != "limit" else None
        naive = by_key.get((r.source.key, r.workers, "naive")) if r.loader == "fertrain" else None
        x_limit, x_naive = r.speedup_over(limit), r.speedup_over(naive)
        cpu_limit, cpu_naive = r.speedup_over(limit, cpu=True), r.speedup_over(naive, cpu=True)
        speed, rss_target = "—", "—"
        if r.loader == "fertrain":
            ref, need = SPEED_TARGETS[r.source.kind]
            wall, cpu = (x_limit, cpu_limit) if ref == "limit" else (x_naive, cpu_naive)
            speed = f">= {need:g}x {ref}: wall {_target(wall, need)}, CPU {_target(cpu, need)}"
            growth = r.rss_growth(RSS_GROWTH_EPOCHS)
            if r.workers > 0 and growth is not None:
                rss_target = (f"< +{RSS_GROWTH_TARGET:.0%} by e{min(RSS_GROWTH_EPOCHS, epochs)}: "
                              + ("met" if growth < RSS_GROWTH_TARGET else "NOT met"))
        values = [r.rss_by_epoch[e - 1] if e <= len(r.rss_by_epoch) else None for e in shown]
        growths = ", ".join(f"{r.rss_growth(e):+.1%}" for e in shown[1:] if r.rss_growth(e) is not None)
        rss_cell = "n/a" if None in values else "->".join(f"{v:.0f}" for v in values) + f" ({growths})"
        peak = f"{fmt(r.peak_main_mib, 0)} / {'—' if r.workers == 0 else fmt(r.peak_worker_mib, 0)}"
        rows.append([r.source.label, str(r.workers), r.loader, fmt(r.clips_per_s, 1),
                     "—" if x_limit is None else f"{x_limit:.2f}", "—" if x_naive is None else f"{x_naive:.2f}",
                     fmt(r.cpu_ms_per_clip, 2), "—" if cpu_limit is None else f"{cpu_limit:.2f}",
                     "—" if cpu_naive is None else f"{cpu_naive:.2f}", peak, rss_cell, speed, rss_target])
    return markdown_table(header, rows)


def _verdict(r: Result, results: list[Result]) -> bool:
    """Whether the fertrain row ``r`` meets its speed target in wall and in CPU time."""
    ref_name, need = SPEED_TARGETS[r.source.kind]
    ref = next((x for x in results if (x.source.key, x.workers, x.loader) == (r.source.key, r.workers, ref_name)), None)
    wall, cpu = r.speedup_over(ref), r.speedup_over(ref, cpu=True)
    return wall is not None and wall >= need and (cpu is None or cpu >= need)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = preset_parser(PROG, __doc__, quick="frame folders, 640x360 and 1280x720 videos; a few minutes on 2 cores",
                           full="more clips per source, plus segments of the shipped real h264 video",
                           smoke="8 frame folders, 4 videos of 640x360, 0/1 workers")
    parser.add_argument("--workers", type=int, nargs="+", help="DataLoader worker counts (default: 0 1 2)")
    parser.add_argument("--epochs", type=int, help="epochs per loader (default 5: 1 warm-up + 4 timed rounds; full: 7)")
    parser.add_argument("--sources", nargs="+", help="subset of source keys: frames video360 video720 demo_h264")
    parser.add_argument("--cache-dir", type=Path, default=cache_dir(),
                        help="where generated clips are kept (default .cache/bench under the current folder or "
                             "$FERTRAIN_ROOT; git-ignored in a checkout)")
    parser.add_argument("--frame-counts", type=Path, default=None,
                        help="a DFEW frame_counts.csv to draw frames per clip from (default: the project's reference "
                             "data when present, else a log-normal fitted to DFEW's counts)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data generation and frame sampling")
    parser.add_argument("--decoder", choices=list(readers.VIDEO_DECODERS), default="decord",
                        help="video decoder of the fertrain and limit rows (data.decoder; default decord)")
    parser.add_argument("--decoders", nargs="*", default=None,
                        help="video decoders compared decode-only on the same clips (default: every installed one; "
                             "none: skip the table)")
    parser.add_argument("--naive-output", choices=["float", "uint8"], default="float",
                        help="naive loader's clip tensor: float32 from per-frame to_tensor, as the public DFEW "
                             "codebases (default), or uint8 like fertrain's")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads of the main process (default 1, as in DataLoader workers; "
                             "0 = torch's choice); matters with 0 workers, where collation runs in the main process")
    parser.add_argument("--breakdown", action="store_true",
                        help="also print, per source, CPU ms/clip after each stage of the fertrain path "
                             "(1 worker): what bounds it")
    return parser.parse_args(argv)


@guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print its tables (stdout) and progress (stderr). Returns 0.

    Raises:
        UsageError: an unknown source or decoder (``--decoders``), a negative worker count, ``--epochs < 1`` or a
            missing ``--frame-counts``.
    """
    args = parse_args(argv)
    preset = presets()[args.preset]
    workers = tuple(args.workers) if args.workers else preset.workers
    epochs = args.epochs or preset.epochs
    by_key = {s.key: s for s in presets()["full"].sources}
    by_key.update({s.key: s for s in preset.sources})  # the preset's clip counts win
    keys = args.sources or [s.key for s in preset.sources]
    unknown = [k for k in keys if k not in by_key]
    if unknown or any(w < 0 for w in workers) or epochs < 1:
        raise UsageError(f"unknown source(s) {unknown} (known: {sorted(by_key)}), or a worker count < 0, "
                         "or --epochs < 1")
    if args.frame_counts is not None and not args.frame_counts.is_file():
        raise UsageError(f"--frame-counts {args.frame_counts}: no such file (expected DFEW's frame_counts.csv)")
    counts_csv = args.frame_counts or default_frame_counts_csv()
    if args.decoders is not None and "none" in args.decoders:
        args.decoders = []  # "--decoders none": skip the table (it used to run "none" as a decoder name)
    unknown = [d for d in args.decoders or [] if d not in readers.VIDEO_DECODERS]
    if unknown:
        raise UsageError(f"--decoders {' '.join(unknown)}: unknown (known: {', '.join(readers.VIDEO_DECODERS)}, "
                         "or none)")
    sources = [by_key[k] for k in keys]

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    size, clip_len = 112, 16
    sampler = SegmentSampler(8, 2)
    load_before = load_line()
    notes = []
    plans = []
    for source in sources:
        records, counts_from = generate(source, args.cache_dir, args.seed, log, counts_csv)
        rng = np.random.default_rng(args.seed + 1)
        plan = [sampler(rec.num_frames, True, rng) for rec in records]  # (T,) per clip, same for all loaders
        warm_page_cache(records)
        if source.kind == "video":
            t0 = time.perf_counter()
            for rec in records:
                readers.count_frames(rec.path)  # main process, before the workers fork (as DFEW(videos) does)
            notes.append(f"{source.label}: count_frames pass {1e3 * (time.perf_counter() - t0) / len(records):.1f}"
                         " ms per clip, once per process (cached before the workers fork)")
        frames = sum(int(r.num_frames) for r in records)
        notes.append(f"{source.label}: {len(records)} clips, {frames} frames (mean {frames / len(records):.1f}); "
                     f"frame counts from {counts_from}")
        plans.append((source, records, plan))

    readers.check_decoder(args.decoder)
    results: list[Result] = []
    for source, records, plan in plans:
        if source.kind == "frames":
            for rec in records:
                readers.list_frame_files(rec.path)  # the index-time listing, cached before the workers fork
        for w in workers:
            fertrain = PlannedClipDataset(records, plan, build_clip_transform(True, size=size, seed=0), sampler,
                                          args.decoder)
            reduce_to = fertrain.read_options["reduce_to"] if source.kind == "frames" else None
            loaders: list[tuple[str, Dataset, Callable | None]] = [
                ("limit", DecodeOnlyDataset(records, plan, source.kind, reduce_to, args.decoder), _count_collate),
                ("fertrain", fertrain, None),
            ]
            if source.kind == "frames":
                loaders.append(("naive", NaiveFrameDataset(records, plan, size, args.naive_output), None))
            log(f"{source.label}, {w} workers: {', '.join(n for n, _, _ in loaders)} side by side ...")
            for r in measure_side_by_side(source, loaders, w, epochs, preset.batch_size):
                results.append(r)
                log(f"  {r.loader}: {r.clips_per_s:.1f} clips/s, {fmt(r.cpu_ms_per_clip, 2)} CPU ms/clip")
    decoders = args.decoders
    if decoders is None:  # every installed decoder
        decoders = []
        for name in readers.VIDEO_DECODERS:
            try:
                readers.check_decoder(name)
                decoders.append(name)
            except readers.DatasetError as err:
                notes.append(f"decoder {name} not compared: {str(err)[:160]}")
    decoder_results: list[Result] = []
    for source, records, plan in plans:
        if source.kind != "video" or not decoders:
            continue
        log(f"{source.label}: decoders {', '.join(decoders)} side by side ...")
        loaders = [(d, DecodeOnlyDataset(records, plan, "video", None, d), _count_collate) for d in decoders]
        decoder_results += measure_side_by_side(source, loaders, 0, epochs, preset.batch_size)

    timed = f"epoch 1 warms up, epochs 2..{epochs} are timed rounds" if epochs > 1 else "one timed epoch"
    print(f"# bench_data ({args.preset}, decoder {args.decoder}, training augmentation, naive output "
          f"{args.naive_output}): "
          f"clips of {clip_len} frames -> "
          f"{size}x{size}, batch {preset.batch_size}; {epochs} epochs per loader ({timed}), loaders of a row "
          f"side by side")
    print(f"machine: {cpu_model()}; main-process torch threads {torch.get_num_threads()}; "
          f"torch {torch.__version__}, decord {decord.__version__}, "
          f"Pillow {PIL.__version__}, OpenCV {cv2.__version__}")
    print(f"before: {load_before}")
    for note in notes:
        print(f"- {note}")
    print()
    print(table(results, epochs))
    print()
    met = [r for r in results if r.loader == "fertrain"]
    verdicts = [_verdict(r, results) for r in met]
    print(f"speed targets (frame folders >= {SPEED_TARGETS['frames'][1]}x, videos >= {SPEED_TARGETS['video'][1]}x "
          f"their decode limit, wall and CPU time): {sum(verdicts)} of {len(verdicts)} rows met -> "
          + ("met" if all(verdicts) else "NOT met"))
    print()
    if decoder_results:
        print(f"## video decoders, decode only, same clips and frames, 0 workers")
        print(decoder_table(decoder_results))
        print()
    if args.breakdown:
        for source, records, plan in plans:
            log(f"{source.label}: stage breakdown ...")
            print(f"## {source.label}: stage breakdown, 1 worker ({load_line()})")
            print(breakdown(source, records, plan, 1, epochs, preset.batch_size, size, args.decoder))
            print()
    print(f"after: {load_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
