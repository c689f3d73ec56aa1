"""SyntheticMotion: procedurally drawn faces whose four classes differ only in motion (protocol and data ours).

Purpose: a test that a model uses temporal order. Each sample is a short clip of one drawn face (random identity:
face ellipse size and colour, eye/brow/mouth positions, sizes and colours, background colour; a random position
jitter of a few pixels per sample; i.i.d. Gaussian pixel noise per frame). Only the mouth moves, vertically: it
rests, moves over a few frames at a random time (cosine ease), and rests at the new position.

Label map (our choice)::

    0 subtle_up    mouth moves up by 1-2 px (uniform, subpixel)
    1 subtle_down  mouth moves down by 1-2 px
    2 large_up     mouth moves up by 6-10 px
    3 large_down   mouth moves down by 6-10 px

Amplitudes are in pixels of the output frame at any ``size``; the face geometry scales with ``size``. Shapes are
drawn anti-aliased (exact 4x4 supersampled coverage), so a 1 px motion changes pixels along the mouth's edges.

Construction: a realisation (identity, noise, amplitude, timing) is drawn once as an "up" sequence
``F_0 .. F_{T-1}``; its "down" sample is exactly ``F_{T-1} .. F_0``. Each pair of one split holds both orders of
the same realisation, so the frame multisets of an up class and its down class are identical: a model that pools
per-frame features without temporal order can at best separate amplitude (chance 0.5 UAR over the 4 classes);
a model that sees motion direction can reach 1.0.

Splits: ``num_train``/``num_val``/``num_test`` samples (multiples of 4, exactly balanced: sample ``i`` of a
split belongs to pair ``r = i // 2``, amplitude ``"subtle"`` for even ``r`` and ``"large"`` for odd ``r``,
direction ``"up"`` for even ``i``). The pair's generator is seeded by ``(seed, split index, r)``.

Cache: generated once into ``<root>/<hash of the parameters and generator version>/`` as one ``.npy`` uint8
``(T, H, W, 3)`` per sample plus ``index.csv`` (``split,file,label,pair,amplitude_px``) and ``params.json``;
written to a temporary folder and renamed, so an interrupted generation never leaves a partial cache.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from fertrain.data.records import SPLITS, ClipRecord, DatasetError

SYNTHETIC_MOTION_CLASS_NAMES: tuple[str, ...] = ("subtle_up", "subtle_down", "large_up", "large_down")
AMPLITUDE_RANGES_PX: dict[str, tuple[float, float]] = {"subtle": (1.0, 2.0), "large": (6.0, 10.0)}
GENERATOR_VERSION = 1  # bump when the drawing changes: it is part of the cache key
NOISE_STD = 3.0  # per-pixel Gaussian noise, grey levels of 0..255
_SUPERSAMPLE = 4  # subpixels per pixel side for anti-aliased coverage
_INDEX_HEADER = ["split", "file", "label", "pair", "amplitude_px"]


@dataclass(frozen=True)
class MotionSequence:
    """One generated clip and the ground truth of its motion.

    Attributes:
        frames: uint8 ``(T, H, W, 3)`` RGB frames in 0..255.
        part_mask: float32 ``(T, H, W)`` anti-aliased coverage in ``[0, 1]`` of the moving part (the mouth).
        amplitude_px: total vertical displacement of the mouth between first and last frame, pixels (> 0).
        direction: ``"up"`` (towards row 0) or ``"down"``.
        motion_frames: ``(first, last)`` frames, inclusive, between which the mouth moves (rest outside).
    """

    frames: np.ndarray
    part_mask: np.ndarray
    amplitude_px: float
    direction: str
    motion_frames: tuple[int, int]


def _cache_root(name: str) -> Path:
    """``$FERTRAIN_CACHE/<name>``, else ``$XDG_CACHE_HOME/fertrain/<name>``, else ``~/.cache/fertrain/<name>``."""
    if os.environ.get("FERTRAIN_CACHE"):
        return Path(os.environ["FERTRAIN_CACHE"]) / name
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "fertrain" / name


def default_cache_dir() -> Path:
    """Default cache root: ``$FERTRAIN_CACHE/synthetic_motion``, else ``$XDG_CACHE_HOME/fertrain/...``, else
    ``~/.cache/fertrain/synthetic_motion``."""
    return _cache_root("synthetic_motion")


def ensure_cache(root: Path, params: dict, write: Callable[[Path], None]) -> tuple[Path, bool]:
    """The cache folder of a generated dataset, generated first if it does not exist.

    The folder is ``root/<key>``, ``key`` the first 12 hex digits of the SHA-1 of ``params`` as sorted JSON. To
    generate it, ``write(tmp)`` fills a temporary folder in ``root``, ``params.json`` (``params``) is added, and the
    folder is renamed to ``root/<key>`` (atomic: an interrupted generation leaves no cache folder).

    Returns:
        ``(cache_dir, generated)``: ``generated`` is True when this call wrote the folder; False when it existed, or
        when a concurrent writer renamed its own folder there first (this call's temporary folder is removed).

    Raises:
        whatever ``write`` raises, or the rename's ``OSError``; the temporary folder is removed first.
    """
    cache_dir = root / hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    if cache_dir.is_dir():
        return cache_dir, False
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{cache_dir.name}-", dir=root))
    try:
        write(tmp)
        (tmp / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
        try:
            os.rename(tmp, cache_dir)
        except OSError:
            if not cache_dir.is_dir():  # not a concurrent writer winning the race
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return cache_dir, False
        return cache_dir, True
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ellipse_coverage(size: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Fraction of each pixel covered by an axis-aligned ellipse, by 4x4 supersampling.

    Pixel ``(i, j)`` spans ``[j, j + 1) x [i, i + 1)`` in continuous coordinates (pixels; x right, y down).

    Returns:
        float32 ``(size, size)`` in ``[0, 1]``.
    """
    ss = _SUPERSAMPLE
    out = np.zeros((size, size), np.float32)
    # Only the bounding box of the ellipse is evaluated.
    y0, y1 = max(0, int(np.floor(cy - ry))), min(size, int(np.ceil(cy + ry)) + 1)
    x0, x1 = max(0, int(np.floor(cx - rx))), min(size, int(np.ceil(cx + rx)) + 1)
    if y0 >= y1 or x0 >= x1:
        return out
    ys = (np.arange(y0 * ss, y1 * ss) + 0.5) / ss  # subpixel centres
    xs = (np.arange(x0 * ss, x1 * ss) + 0.5) / ss
    inside = ((ys[:, None] - cy) / ry) ** 2 + ((xs[None, :] - cx) / rx) ** 2 <= 1.0  # (h*ss, w*ss)
    out[y0:y1, x0:x1] = inside.reshape(y1 - y0, ss, x1 - x0, ss).mean(axis=(1, 3))
    return out


def _paint(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Alpha-composite a flat ``colour`` (3,) over float ``img`` (H, W, 3) with coverage ``alpha`` (H, W)."""
    a = alpha[..., None]
    return img * (1.0 - a) + colour * a


def make_sequence(
    rng: np.random.Generator,
    amplitude: str,
    direction: str,
    num_frames: int = 16,
    size: int = 64,
) -> MotionSequence:
    """Draw one realisation and render it as a clip whose mouth moves ``direction``.

    The generator draws the same numbers in the same order for both directions; ``"down"`` returns the
    ``"up"`` rendering in reversed frame order. Hence ``make_sequence(rng_a, a, "down")`` equals the reversed
    ``make_sequence(rng_b, a, "up")`` when ``rng_a`` and ``rng_b`` are in the same state.

    Args:
        rng: numpy generator (consumed).
        amplitude: ``"subtle"`` (1-2 px) or ``"large"`` (6-10 px), see :data:`AMPLITUDE_RANGES_PX`.
        direction: ``"up"`` or ``"down"``.
        num_frames: frames ``T`` (>= 8: at least 2 rest frames before and after a motion of up to 6 frames).
        size: frame height = width ``H = W`` in pixels (>= 48).

    Returns:
        The clip (uint8 ``(T, H, W, 3)``) and its motion ground truth.

    Raises:
        ValueError: unknown amplitude or direction, ``num_frames < 8`` or ``size < 48``.
    """
    if amplitude not in AMPLITUDE_RANGES_PX:
        raise ValueError(f"amplitude must be one of {tuple(AMPLITUDE_RANGES_PX)}, got {amplitude!r}")
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
    if num_frames < 8 or size < 48:
        raise ValueError(f"make_sequence needs num_frames >= 8 and size >= 48, got {num_frames}, {size}")
    T, S = num_frames, size
    k = S / 64.0  # geometry is designed at 64 px and scaled

    # Identity (all distances in pixels at 64 px, times k).
    bg = rng.uniform(0, 255, 3)
    skin = rng.uniform([150, 100, 70], [240, 200, 170])
    cx, cy = S / 2 + rng.uniform(-3, 3, 2) * k  # per-sample position jitter
    face_rx, face_ry = rng.uniform(18, 22) * k, rng.uniform(23, 27) * k
    eye_dx, eye_dy = rng.uniform(0.32, 0.42) * face_rx, rng.uniform(0.18, 0.28) * face_ry
    eye_rx, eye_ry = rng.uniform(2.5, 3.5) * k, rng.uniform(1.8, 2.6) * k
    pupil_r = rng.uniform(1.0, 1.6) * k
    brow_rx, brow_ry, brow_gap = rng.uniform(3.5, 5.5) * k, rng.uniform(0.8, 1.3) * k, rng.uniform(3.5, 5.0) * k
    eye_white, pupil, brow = rng.uniform(210, 255, 3), rng.uniform(0, 60, 3), rng.uniform(20, 90, 3)
    mouth_rx, mouth_ry = rng.uniform(5, 8) * k, rng.uniform(1.6, 2.6) * k
    mouth_colour = rng.uniform([100, 15, 25], [170, 60, 70])
    mouth_mid = cy + rng.uniform(0.40, 0.48) * face_ry  # centre of the mouth's travel
    # Motion: amplitude, ramp length m frames, onset a; rest on frames [0, a] and [a + m, T - 1].
    lo, hi = AMPLITUDE_RANGES_PX[amplitude]
    amp = float(rng.uniform(lo, hi))
    m = int(rng.integers(3, 6))
    a = int(rng.integers(1, T - m - 1))  # a >= 1 and a + m <= T - 2: >= 2 rest frames at each end
    noise = rng.standard_normal((T, S, S, 3), dtype=np.float32) * NOISE_STD

    # Static face, composited once.
    img = np.broadcast_to(bg.astype(np.float32), (S, S, 3))
    img = _paint(img, ellipse_coverage(S, cx, cy, face_rx, face_ry), skin)
    for side in (-1.0, 1.0):
        ex, ey = cx + side * eye_dx, cy - eye_dy
        img = _paint(img, ellipse_coverage(S, ex, ey, eye_rx, eye_ry), eye_white)
        img = _paint(img, ellipse_coverage(S, ex, ey, pupil_r, pupil_r), pupil)
        img = _paint(img, ellipse_coverage(S, ex, ey - brow_gap, brow_rx, brow_ry), brow)

    # Mouth rows over time ("up": row decreases by amp), cosine ease between rest positions.
    t = np.arange(T)
    progress = 0.5 - 0.5 * np.cos(np.pi * np.clip((t - a) / m, 0.0, 1.0))  # (T,) 0 -> 1
    mouth_y = mouth_mid + amp / 2 - amp * progress  # (T,)
    masks = np.empty((T, S, S), np.float32)
    frames = np.empty((T, S, S, 3), np.uint8)
    for i in range(T):
        if i > 0 and mouth_y[i] == mouth_y[i - 1]:
            masks[i] = masks[i - 1]  # at rest: same coverage
        else:
            masks[i] = ellipse_coverage(S, cx, float(mouth_y[i]), mouth_rx, mouth_ry)
        frame = _paint(img, masks[i], mouth_colour) + noise[i]
        frames[i] = np.clip(frame + 0.5, 0, 255).astype(np.uint8)  # round to nearest grey level

    motion = (a, a + m)
    if direction == "down":
        frames, masks = np.ascontiguousarray(frames[::-1]), np.ascontiguousarray(masks[::-1])
        motion = (T - 1 - (a + m), T - 1 - a)
    return MotionSequence(frames=frames, part_mask=masks, amplitude_px=amp, direction=direction,
                          motion_frames=motion)


class SyntheticMotion:
    """The SyntheticMotion dataset (module docstring), generated once and cached as ``.npy`` clips.

    Records: ``ClipRecord(path=<.npy uint8 (T, H, W, 3)>, label, video_id=f"{split}_{i:05d}", num_frames=T,
    fps=None)``.

    Args:
        root: cache root; the data go to ``root/<12-hex key>/``. Default :func:`default_cache_dir`.
        num_train: train samples (a multiple of 4).
        num_val: val samples (a multiple of 4).
        num_test: test samples (a multiple of 4).
        num_frames: frames per clip ``T`` (>= 8).
        size: frame height = width in pixels (>= 48).
        seed: seed of all realisations.

    Attributes:
        cache_dir: the folder holding this parameter set's data.
        generated: True when this construction generated the data, False when it reused the cache.

    Raises:
        ValueError: an argument is out of range.
        DatasetError: an existing cache folder is incomplete or malformed (delete it to regenerate).
    """

    class_names: tuple[str, ...] = SYNTHETIC_MOTION_CLASS_NAMES

    def __init__(
        self,
        root: str | Path | None = None,
        num_train: int = 512,
        num_val: int = 128,
        num_test: int = 128,
        num_frames: int = 16,
        size: int = 64,
        seed: int = 0,
    ) -> None:
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        for split, n in self.sizes.items():
            if n < 0 or n % 4:
                raise ValueError(f"SyntheticMotion num_{split} must be a non-negative multiple of 4 (one up/down "
                                 f"pair per amplitude), got {n}")
        if num_frames < 8 or size < 48:
            raise ValueError(f"SyntheticMotion needs num_frames >= 8 and size >= 48, got {num_frames}, {size}")
        self.num_frames, self.size, self.seed = num_frames, size, seed
        self.params = {"num_train": num_train, "num_val": num_val, "num_test": num_test, "num_frames": num_frames,
                       "size": size, "seed": seed, "generator_version": GENERATOR_VERSION}
        self.root = Path(root) if root is not None else default_cache_dir()
        self.cache_dir, self.generated = ensure_cache(self.root, self.params, self._write)
        self._records = self._read_index()

    def records(self, split: str) -> list[ClipRecord]:
        """Records of ``split`` (``"train"``, ``"val"`` or ``"test"``), up/down pairs adjacent.

        Raises:
            ValueError: unknown ``split``.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return list(self._records[split])

    def _write(self, tmp: Path) -> None:
        """Write every split and ``index.csv`` into the folder ``tmp`` (:func:`ensure_cache` renames it)."""
        rows = []
        for split_index, split in enumerate(SPLITS):
            (tmp / split).mkdir()
            for r in range(self.sizes[split] // 2):
                amplitude = "subtle" if r % 2 == 0 else "large"
                rng = np.random.default_rng([self.seed, split_index, r])
                up = make_sequence(rng, amplitude, "up", self.num_frames, self.size)
                for direction, frames in (("up", up.frames), ("down", up.frames[::-1])):
                    i = len(rows) - sum(self.sizes[s] for s in SPLITS[:split_index])
                    label = self.class_names.index(f"{amplitude}_{direction}")
                    file = f"{split}/{i:05d}.npy"
                    np.save(tmp / file, np.ascontiguousarray(frames))
                    rows.append([split, file, label, r, f"{up.amplitude_px:.4f}"])
        with open(tmp / "index.csv", "w", newline="") as f:
            csv.writer(f).writerows([_INDEX_HEADER] + rows)

    def _read_index(self) -> dict[str, list[ClipRecord]]:
        """Parse and check ``index.csv`` of the cache folder."""
        index = self.cache_dir / "index.csv"
        hint = f"delete {self.cache_dir} to regenerate it"
        if not index.is_file():
            raise DatasetError(f"SyntheticMotion cache {self.cache_dir} has no index.csv; {hint}")
        records: dict[str, list[ClipRecord]] = {s: [] for s in SPLITS}
        with open(index, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != _INDEX_HEADER:
                raise DatasetError(f"{index}: line 1: expected header {','.join(_INDEX_HEADER)!r}, "
                                   f"found {header!r}; {hint}")
            for row in reader:
                line = reader.line_num
                if len(row) != len(_INDEX_HEADER) or row[0] not in SPLITS or not row[2].isdigit() \
                        or int(row[2]) >= len(self.class_names):
                    raise DatasetError(f"{index}: line {line}: malformed row {row!r}; {hint}")
                split, file, label = row[0], row[1], int(row[2])
                path = self.cache_dir / file
                if not path.is_file():
                    raise DatasetError(f"{index}: line {line}: {path} is missing; {hint}")
                i = len(records[split])
                records[split].append(ClipRecord(path=path, label=label, video_id=f"{split}_{i:05d}",
                                                 num_frames=self.num_frames))
        for split, n in self.sizes.items():
            if len(records[split]) != n:
                raise DatasetError(f"{index}: expected {n} {split} rows, found {len(records[split])}; {hint}")
        return records
