"""SyntheticSpotting: long drawn face videos with inserted macro and micro movements (protocol and data ours).

Purpose: tests and CPU benchmarks of spotting models (FESNet) without licensed data. The faces are drawn with the
functions of :mod:`fertrain.data.datasets.synthetic_motion` (anti-aliased ellipses, 4x4 supersampled coverage;
i.i.d. Gaussian pixel noise of ``NOISE_STD`` grey levels per frame). Each subject has one identity (face,
eye, brow and mouth geometry and colours); each video of it is ``num_frames`` frames long and contains:

- macro movements (label ``macro``): 1-2 per video, ``16-30`` frames long; the mouth moves vertically by
  5-8 px and both brows rise by 2-3 px; cosine rise over a quarter of the length, hold, cosine return;
- micro movements (label ``micro``): 1-3 per video, ``6-12`` frames long; only the mouth (or only the brows,
  with probability 1/3) moves by 1.5-3 px, cosine rise over half the length and return (no hold);
- blinks (label ``neutral``, distractors): about one per 120 frames, 4-6 frames, the eyes close to 15 % height.

Events never overlap and are separated by at least 12 rest frames; the ground-truth interval of a movement is
every frame where its displacement is non-zero (0-based, inclusive). Amplitudes are in pixels of the output
frame at any ``size`` (geometry designed at 64 px and scaled).

Splits by subject (protocol ``"split"``): the last ``test_subjects`` subjects are ``test``, the
``val_subjects`` before them ``val``, the rest ``train``. Protocol ``"loso"`` ignores them.

Cache: generated once into ``<root>/<hash of the parameters and generator version>/`` as one ``.npy`` uint8
``(N, H, W, 3)`` per video plus ``videos.csv`` (``video_id,subject,split,num_frames``), ``intervals.csv``
(``video_id,kind,onset,offset``) and ``params.json``; written to a temporary folder and renamed (atomic).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from fertrain.data.datasets.synthetic_motion import NOISE_STD, _cache_root, _paint, ellipse_coverage, ensure_cache
from fertrain.data.records import DatasetError
from fertrain.data.spotting_data import SPOTTING_CLASS_NAMES, SpottingVideo
from fertrain.spotting.intervals import Interval

GENERATOR_VERSION = 1
MACRO_LEN, MICRO_LEN = (16, 30), (6, 12)  # frames, inclusive ranges
MACRO_AMP_PX, MICRO_AMP_PX = (5.0, 8.0), (1.5, 3.0)
MIN_GAP = 12  # rest frames between events
_VIDEO_HEADER = ["video_id", "subject", "split", "num_frames"]
_INTERVAL_HEADER = ["video_id", "kind", "onset", "offset"]


def default_cache_dir() -> Path:
    """``$FERTRAIN_CACHE/synthetic_spotting``, else ``$XDG_CACHE_HOME/fertrain/...``, else ``~/.cache/...``."""
    return _cache_root("synthetic_spotting")


def draw_identity(rng: np.random.Generator, size: int) -> dict:
    """Random face geometry and colours (pixels at ``size``), as in ``synthetic_motion.make_sequence``."""
    k = size / 64.0
    cx, cy = size / 2 + rng.uniform(-3, 3, 2) * k
    face_rx, face_ry = rng.uniform(18, 22) * k, rng.uniform(23, 27) * k
    return {
        "bg": rng.uniform(0, 255, 3), "skin": rng.uniform([150, 100, 70], [240, 200, 170]),
        "cx": cx, "cy": cy, "face_rx": face_rx, "face_ry": face_ry,
        "eye_dx": rng.uniform(0.32, 0.42) * face_rx, "eye_dy": rng.uniform(0.18, 0.28) * face_ry,
        "eye_rx": rng.uniform(2.5, 3.5) * k, "eye_ry": rng.uniform(1.8, 2.6) * k, "pupil_r": rng.uniform(1.0, 1.6) * k,
        "brow_rx": rng.uniform(3.5, 5.5) * k, "brow_ry": rng.uniform(0.8, 1.3) * k, "brow_gap": rng.uniform(3.5, 5.0) * k,
        "eye_white": rng.uniform(210, 255, 3), "pupil": rng.uniform(0, 60, 3), "brow": rng.uniform(20, 90, 3),
        "mouth_rx": rng.uniform(5, 8) * k, "mouth_ry": rng.uniform(1.6, 2.6) * k,
        "mouth_colour": rng.uniform([100, 15, 25], [170, 60, 70]), "mouth_y": cy + rng.uniform(0.40, 0.48) * face_ry,
    }


def _profile(length: int, rise: int) -> np.ndarray:
    """Displacement fraction in (0, 1] over ``length`` frames: cosine rise over ``rise`` frames, a hold at 1
    when ``2 * rise < length``, and a symmetric return; every frame is > 0."""
    t = np.arange(length, dtype=np.float64)
    up = 0.5 - 0.5 * np.cos(np.pi * np.minimum((t + 1) / (rise + 1), 1.0))
    p = np.minimum(up, up[::-1])
    return p / p.max()  # with hold the plateau is already 1


def make_spotting_video(rng: np.random.Generator, identity: dict, num_frames: int = 480,
                        size: int = 64) -> tuple[np.ndarray, list[Interval], list[tuple[int, int]]]:
    """Render one long video of ``identity`` with random macro/micro movements and blinks (module docstring).

    Returns:
        ``(frames uint8 (N, H, W, 3), intervals (0-based, inclusive, sorted), blinks [(first, last)])``.

    Raises:
        ValueError: ``num_frames < 120`` or ``size < 48``.
    """
    if num_frames < 120 or size < 48:
        raise ValueError(f"make_spotting_video needs num_frames >= 120 and size >= 48, got {num_frames}, {size}")
    N, S, k = num_frames, size, size / 64.0
    kinds = ["macro"] * int(rng.integers(1, 3)) + ["micro"] * int(rng.integers(1, 4))
    rng.shuffle(kinds)
    lengths = [int(rng.integers(*MACRO_LEN) if kd == "macro" else rng.integers(*MICRO_LEN)) for kd in kinds]
    while kinds and sum(lengths) + (len(kinds) + 1) * MIN_GAP > N:  # drop events that do not fit
        kinds.pop(), lengths.pop()
    free = N - sum(lengths) - (len(kinds) + 1) * MIN_GAP
    gaps = MIN_GAP + np.floor(rng.dirichlet(np.ones(len(kinds) + 1)) * free).astype(int)

    mouth = np.zeros(N)  # vertical displacement, px (negative = up)
    brow = np.zeros(N)  # brow raise, px (positive = up)
    intervals: list[Interval] = []
    t = int(gaps[0])
    for i, (kd, L) in enumerate(zip(kinds, lengths)):
        sign = 1.0 if rng.random() < 0.5 else -1.0
        if kd == "macro":
            p = _profile(L, max(2, L // 4))
            mouth[t:t + L] = sign * rng.uniform(*MACRO_AMP_PX) * k * p
            brow[t:t + L] = rng.uniform(2.0, 3.0) * k * p
        else:
            p = _profile(L, max(2, L // 2))
            amp = rng.uniform(*MICRO_AMP_PX) * k
            if rng.random() < 1 / 3:
                brow[t:t + L] = amp * p
            else:
                mouth[t:t + L] = sign * amp * p
        intervals.append(Interval(t, t + L - 1, kd))
        t += L + int(gaps[i + 1])
    eye_open = np.ones(N)
    blinks = []
    for _ in range(int(rng.poisson(N / 120))):
        L = int(rng.integers(4, 7))
        a = int(rng.integers(0, N - L))
        eye_open[a:a + L] = np.minimum(eye_open[a:a + L], 1.0 - 0.85 * _profile(L, L // 2))
        blinks.append((a, a + L - 1))

    g = identity
    face = np.broadcast_to(g["bg"].astype(np.float32), (S, S, 3))
    face = _paint(face, ellipse_coverage(S, g["cx"], g["cy"], g["face_rx"], g["face_ry"]), g["skin"])
    frames = np.empty((N, S, S, 3), np.uint8)
    prev_state, img = None, None
    for i in range(N):
        state = (round(mouth[i], 3), round(brow[i], 3), round(eye_open[i], 3))
        if state != prev_state:  # re-render only when something moved
            img = face
            for side in (-1.0, 1.0):
                ex, ey = g["cx"] + side * g["eye_dx"], g["cy"] - g["eye_dy"]
                ry = max(g["eye_ry"] * eye_open[i], 0.3)
                img = _paint(img, ellipse_coverage(S, ex, ey, g["eye_rx"], ry), g["eye_white"])
                img = _paint(img, ellipse_coverage(S, ex, ey, g["pupil_r"], min(g["pupil_r"], ry)), g["pupil"])
                img = _paint(img, ellipse_coverage(S, ex, ey - g["brow_gap"] - brow[i], g["brow_rx"], g["brow_ry"]),
                             g["brow"])
            img = _paint(img, ellipse_coverage(S, g["cx"], g["mouth_y"] + mouth[i], g["mouth_rx"], g["mouth_ry"]),
                         g["mouth_colour"])
            prev_state = state
        noise = rng.standard_normal((S, S, 3), dtype=np.float32) * NOISE_STD
        frames[i] = np.clip(img + noise + 0.5, 0, 255).astype(np.uint8)
    return frames, sorted(intervals, key=lambda iv: iv.onset), blinks


class SyntheticSpotting:
    """The SyntheticSpotting dataset (module docstring), generated once and cached.

    Args:
        root: cache root (default :func:`default_cache_dir`); data in ``root/<12-hex key>/``.
        num_subjects: identities (>= 2).
        videos_per_subject: videos per identity.
        num_frames: frames per video ``N`` (>= 120).
        size: frame side in pixels (>= 48).
        val_subjects, test_subjects: subjects of the fixed split (module docstring).
        fps: nominal frame rate (30: event lengths resemble CAS(ME)^2's).
        seed: seed of everything.

    Raises:
        ValueError: an argument out of range.
        DatasetError: an existing cache folder is incomplete or malformed (delete it to regenerate).
    """

    class_names: tuple[str, ...] = SPOTTING_CLASS_NAMES

    def __init__(self, root: str | Path | None = None, num_subjects: int = 10, videos_per_subject: int = 2,
                 num_frames: int = 480, size: int = 64, val_subjects: int = 1, test_subjects: int = 2,
                 fps: float = 30.0, seed: int = 0) -> None:
        if num_subjects < 2 or videos_per_subject < 1 or num_frames < 120 or size < 48:
            raise ValueError("SyntheticSpotting needs num_subjects >= 2, videos_per_subject >= 1, num_frames >= 120,"
                             f" size >= 48; got {num_subjects}, {videos_per_subject}, {num_frames}, {size}")
        if val_subjects < 0 or test_subjects < 1 or val_subjects + test_subjects >= num_subjects:
            raise ValueError(f"SyntheticSpotting: val_subjects={val_subjects}, test_subjects={test_subjects} must "
                             f"leave at least one of the {num_subjects} subjects for training")
        self.params = {"num_subjects": num_subjects, "videos_per_subject": videos_per_subject,
                       "num_frames": num_frames, "size": size, "val_subjects": val_subjects,
                       "test_subjects": test_subjects, "seed": seed, "generator_version": GENERATOR_VERSION}
        self.fps = float(fps)
        self.root = Path(root) if root is not None else default_cache_dir()
        self.cache_dir, self.generated = ensure_cache(self.root, self.params, self._write)
        self._videos = self._read()

    def _split(self, s: int) -> str:
        n, t, v = self.params["num_subjects"], self.params["test_subjects"], self.params["val_subjects"]
        return "test" if s >= n - t else "val" if s >= n - t - v else "train"

    def _write(self, tmp: Path) -> None:
        """Write the videos (``.npy``), ``videos.csv`` and ``intervals.csv`` into the folder ``tmp``
        (:func:`~fertrain.data.datasets.synthetic_motion.ensure_cache` renames it)."""
        p = self.params
        videos, ivs = [], []
        for s in range(p["num_subjects"]):
            identity = draw_identity(np.random.default_rng([p["seed"], s, 0]), p["size"])
            for j in range(p["videos_per_subject"]):
                vid = f"sub{s:02d}_{j}"
                rng = np.random.default_rng([p["seed"], s, j + 1])
                frames, intervals, _ = make_spotting_video(rng, identity, p["num_frames"], p["size"])
                np.save(tmp / f"{vid}.npy", frames)
                videos.append([vid, f"sub{s:02d}", self._split(s), p["num_frames"]])
                ivs += [[vid, iv.kind, iv.onset, iv.offset] for iv in intervals]
        for name, header, rows in (("videos.csv", _VIDEO_HEADER, videos), ("intervals.csv", _INTERVAL_HEADER, ivs)):
            with open(tmp / name, "w", newline="") as f:
                csv.writer(f).writerows([header] + rows)

    def _read(self) -> list[SpottingVideo]:
        hint = f"delete {self.cache_dir} to regenerate it"
        tables = {}
        for name, header in (("videos.csv", _VIDEO_HEADER), ("intervals.csv", _INTERVAL_HEADER)):
            path = self.cache_dir / name
            if not path.is_file():
                raise DatasetError(f"SyntheticSpotting cache {self.cache_dir} has no {name}; {hint}")
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
            if not rows or rows[0] != header:
                raise DatasetError(f"{path}: line 1: expected header {','.join(header)!r}; {hint}")
            tables[name] = rows[1:]
        by_video: dict[str, list[Interval]] = {}
        for line, row in enumerate(tables["intervals.csv"], start=2):
            try:
                by_video.setdefault(row[0], []).append(Interval(int(row[2]), int(row[3]), row[1]))
            except (IndexError, ValueError) as e:
                raise DatasetError(f"{self.cache_dir / 'intervals.csv'}: line {line}: malformed row {row!r} ({e}); "
                                   f"{hint}") from None
        videos = []
        for line, row in enumerate(tables["videos.csv"], start=2):
            if len(row) != 4 or not row[3].isdigit():
                raise DatasetError(f"{self.cache_dir / 'videos.csv'}: line {line}: malformed row {row!r}; {hint}")
            path = self.cache_dir / f"{row[0]}.npy"
            if not path.is_file():
                raise DatasetError(f"{self.cache_dir / 'videos.csv'}: line {line}: {path} is missing; {hint}")
            videos.append(SpottingVideo(path=path, video_id=row[0], subject=row[1], num_frames=int(row[3]),
                                        fps=self.fps, intervals=tuple(by_video.get(row[0], ())), split=row[2]))
        expected = self.params["num_subjects"] * self.params["videos_per_subject"]
        if len(videos) != expected:
            raise DatasetError(f"{self.cache_dir / 'videos.csv'}: expected {expected} videos, found {len(videos)}; "
                               f"{hint}")
        return videos

    def videos(self) -> list[SpottingVideo]:
        """All videos (``split`` set), subject by subject."""
        return list(self._videos)
