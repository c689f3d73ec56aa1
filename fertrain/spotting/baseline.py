"""Training-free expression spotter: LBP feature difference against the frames ±L, thresholded into intervals.

``python -m fertrain.spotting.baseline --videos V [V ...] --labels spotting.csv --out DIR [--config YAML]
[--protocol fertrain|megc2020|softnet|...]``

``--config`` defaults to the ``spotting_baseline.yaml`` shipped inside the package (``fertrain/conf``, found with
:func:`fertrain.config.config_dir`, so it works from a pip install); a bare name (``spotting_baseline``) is looked up
there too. A kind without any ground truth among the videos has no F1: it is printed ``n/a`` and stored as ``null``
in ``summary.json`` (its FP are still counted). Exit status (:mod:`fertrain.cli`): 0 ok, 2 bad input (config,
labels, video path), 1 runtime failure; each error printed once.

The classic MEGC baseline family (per-frame appearance features, difference of the current frame to frames k
before and after, threshold, intervals): Moilanen, Zhao & Pietikäinen, "Spotting rapid facial movements from
videos using appearance-based feature difference analysis", ICPR 2014 (LBP histograms on a block grid, χ²
distance, mean of the M = 1/3 largest block differences); Li et al., "Towards reading hidden emotions", IEEE TAC
2018 and the MEGC2019/2020 baselines (Li et al., FG 2019; He et al., FG 2020: feature difference / MDMD, threshold
``mean + p (max - mean)``, runs of frames above it: HeyingGithub/Baseline-project-for-MEGC2020_spotting,
``MDMD_codes/cmd.m``); peaks ± k is SOFTNet's interval rule (genbing99/SoftNet-SpotME, ``training.py``,
``spotting``). Per video:

1. Face crops from :func:`fertrain.preprocess.extract_faces` (aligned); frames without a face
   are excluded, and each face span (run of face frames) is processed on its own, so no difference or interval
   crosses a no-face span.
2. Per face frame: grey, Gaussian blur (``blur`` px), uniform LBP (8 neighbours, radius 1, 59 bins) histograms on
   a ``grid x grid`` block grid, each normalised to sum 1. Feature ``F_t``: (grid², 59).
3. Difference of frame t to frame t - L and to frame t + L (``L = 2 k`` = the mean expression length; ``k`` =
   half of it, as in MEGC's ``k``): per block χ², then the mean of the largest ``top_fraction`` of blocks.
   **Our choice** (differs from Moilanen's "average of the head and tail frame" and its contrast step):
   the score is the *minimum* of the two sides, so a frame scores high only if it differs from both the past
   and the future neutral face; this covers a whole expression of length <= L (not only its onset and offset
   transitions) and removes the "ghost" that a one-sided difference leaves L frames after an expression.
   At a span's start the past reference is clamped to the span's first frame (assumed neutral). Near its end,
   where t + L is outside the span, frame t - 2L (clamped) stands in for the future one: an expression cut by
   the end of the video (or by the face leaving) still scores high, while the neutral frames after an
   expression that ended less than L frames before the end (whose t - L lies inside it) do not. Both edge
   rules are our choice.
4. The score curve is smoothed (``smooth_s``), thresholded (``threshold``: number, ``"rel:P"`` = mean +
   P (max - mean) over the video's face frames, MEGC2020 baseline style) into runs, merged across gaps of up to
   ``merge_gap_s``, and each run becomes an interval (:func:`fertrain.spotting.postprocess.scores_to_intervals`).
   ``mode: peaks`` gives SOFTNet's ``[peak - k, peak + k]`` intervals instead.
5. Kind by length (seconds, so that 30 fps CAS(ME)^2 and 200 fps SAMM-LV share one rule): shorter than
   ``micro_min_s`` dropped (counted), up to ``micro_max_s`` micro, longer macro. Defaults 7/30 s and 16/30 s
   follow the CAS(ME)^2 limits of :data:`~fertrain.spotting.postprocess.LENGTH_LIMITS` (SAMM-LV: 47/200 and
   105/200 s, nearly the same).

Defaults (``BaselineConfig``, mirrored in ``conf/spotting_baseline.yaml``) were chosen on the three reference
videos of ``../shared/data/real`` themselves (``k_s = 1.0`` s is half the mean length of their labelled smiles,
54 frames at 26.4-30 fps ≈ 2 s); there is no separate training data, so the figures there show that the spotter
works end to end, not how well it generalises. ``k_s`` should come from the training annotations
(:func:`~fertrain.spotting.postprocess.k_from_annotations`, divided by the fps) when a dataset has them.
Measured alternatives: Farneback optical-flow magnitude in place of LBP separated the smile less clearly from
the head-motion floor; ``k_s = 0.8`` s gave IoUs of only 0.54-0.72 with the smiles, ``k_s = 1.0`` s 0.82-0.87.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import yaml

from fertrain.cli import EXIT_OK, UsageError, guarded
from fertrain.spotting.intervals import KINDS, Interval
from fertrain.spotting.postprocess import resolve_threshold, scores_to_intervals, smooth_scores

LBP_BINS = 59  # uniform patterns (58) + one bin for all non-uniform ones


@dataclass
class BaselineConfig:
    """Parameters of the feature-difference spotter (times in seconds, converted with the video's fps).

    Attributes:
        k_s: half the mean expression length, seconds; the difference lag is ``L = 2 k`` frames.
        k_frames: if set, ``k`` in frames (overrides ``k_s``; use for a fixed-fps dataset).
        size: face crop side in pixels. blur: Gaussian kernel side in pixels (odd; 0 or 1 = none).
        grid: LBP block grid ``grid x grid``. top_fraction: fraction of blocks with the largest χ² averaged
            (Moilanen et al.: one third).
        smooth_s: moving-average window of the score, seconds.
        threshold: number or ``"rel:P"`` / ``"std:X"`` (see :mod:`fertrain.spotting.postprocess`).
        mode: ``"threshold"`` (runs) or ``"peaks"`` (``[peak - k, peak + k]``).
        merge_gap_s: merge intervals closer than this, seconds.
        micro_min_s, micro_max_s: intervals shorter than ``micro_min_s`` are dropped, up to ``micro_max_s`` are
            micro, longer ones macro (seconds; lengths count frames inclusively).
        margin: face crop margin (``fertrain.preprocess.FaceOptions.margin``).
        face_options: other ``FaceOptions`` fields (e.g. ``{"detector": "haar", "align": "none"}``).
    """

    k_s: float = 1.0
    k_frames: int | None = None
    size: int = 112
    blur: int = 5
    grid: int = 6
    top_fraction: float = 1 / 3
    smooth_s: float = 0.2
    threshold: float | str = "rel:0.3"
    mode: str = "threshold"
    merge_gap_s: float = 0.2
    micro_min_s: float = 7 / 30
    micro_max_s: float = 16 / 30
    margin: float = 0.25
    face_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("threshold", "peaks"):
            raise ValueError(f"BaselineConfig.mode must be 'threshold' or 'peaks', got {self.mode!r}")
        if not 0 < self.top_fraction <= 1:
            raise ValueError(f"BaselineConfig.top_fraction must be in (0, 1], got {self.top_fraction}")
        if self.grid < 1 or self.size < 8:
            raise ValueError(f"BaselineConfig: grid >= 1 and size >= 8 expected, got {self.grid}, {self.size}")
        if self.k_frames is None and self.k_s <= 0:
            raise ValueError(f"BaselineConfig.k_s must be > 0 seconds, got {self.k_s}")
        if not 0 <= self.micro_min_s <= self.micro_max_s:
            raise ValueError(f"BaselineConfig: need 0 <= micro_min_s <= micro_max_s, got {self.micro_min_s}, "
                             f"{self.micro_max_s}")

    @classmethod
    def from_yaml(cls, path: str | Path) -> "BaselineConfig":
        """Load from a YAML mapping of field names (unknown keys are an error naming the file)."""
        path = Path(path)
        doc = yaml.safe_load(path.read_text()) or {}
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: expected a mapping of BaselineConfig fields")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - names)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown} (BaselineConfig fields: {sorted(names)})")
        return cls(**doc)

    def k(self, fps: float) -> int:
        """``k`` in frames at ``fps`` (at least 1)."""
        return max(1, int(self.k_frames if self.k_frames is not None else round(self.k_s * fps)))


# ----------------------------------------------------------------------------------------------- features
def _uniform_table() -> np.ndarray:
    """uint8 (256,): LBP code -> uniform-pattern bin (0..57), non-uniform codes -> 58."""
    table = np.full(256, LBP_BINS - 1, dtype=np.uint8)
    nxt = 0
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        if sum(bits[i] != bits[(i + 1) % 8] for i in range(8)) <= 2:
            table[code] = nxt
            nxt += 1
    return table


_UNIFORM = _uniform_table()


def lbp_histograms(gray: np.ndarray, grid: int) -> np.ndarray:
    """Uniform LBP(8, 1) block histograms.

    Args:
        gray: uint8/float (T, H, W) grey frames.
        grid: blocks per side.
    Returns:
        float64 (T, grid * grid, 59), each block's histogram summing to 1.
    """
    g = np.asarray(gray, dtype=np.int16)
    T, H, W = g.shape
    c = g[:, 1:-1, 1:-1]
    code = np.zeros(c.shape, dtype=np.uint8)
    neighbours = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
    for bit, (dy, dx) in enumerate(neighbours):
        n = g[:, 1 + dy:H - 1 + dy, 1 + dx:W - 1 + dx]
        code |= (n >= c).astype(np.uint8) << bit
    u = _UNIFORM[code].astype(np.int64)                               # (T, H-2, W-2)
    h, w = u.shape[1:]
    by = np.minimum(np.arange(h) * grid // h, grid - 1)
    bx = np.minimum(np.arange(w) * grid // w, grid - 1)
    block = (by[:, None] * grid + bx[None, :]).ravel()               # (h*w,)
    flat = (np.arange(T)[:, None] * grid * grid + block[None, :]) * LBP_BINS + u.reshape(T, -1)
    hist = np.bincount(flat.ravel(), minlength=T * grid * grid * LBP_BINS).astype(np.float64)
    hist = hist.reshape(T, grid * grid, LBP_BINS)
    return hist / hist.sum(-1, keepdims=True)


def block_difference(a: np.ndarray, b: np.ndarray, top_fraction: float) -> np.ndarray:
    """Mean of the largest ``top_fraction`` per-block χ² distances.

    Args:
        a, b: (T, B, 59) block histograms.
    Returns:
        float64 (T,).
    """
    chi2 = ((a - b) ** 2 / (a + b + 1e-12)).sum(-1)                   # (T, B)
    m = max(1, int(round(chi2.shape[1] * top_fraction)))
    return np.sort(chi2, axis=1)[:, ::-1][:, :m].mean(1)


def difference_score(features: np.ndarray, lag: int, top_fraction: float) -> np.ndarray:
    """Score of one face span: the smaller of the differences to a past and a future reference frame.

    Past reference: frame ``t - L`` (clamped to the span's first frame). Future reference: frame ``t + L``; where
    that is past the span's end, frame ``t - 2L`` (clamped) stands in for it (module docstring, step 3).

    Args:
        features: (T, B, 59) LBP histograms of consecutive face frames.
        lag: L in frames (>= 1).
    Returns:
        float64 (T,), 0 at t = 0.
    """
    T = len(features)
    t = np.arange(T)
    back = block_difference(features, features[np.maximum(t - lag, 0)], top_fraction)
    other = np.where(t + lag < T, t + lag, np.maximum(t - 2 * lag, 0))
    return np.minimum(back, block_difference(features, features[other], top_fraction))


def _gray(crops: np.ndarray, blur: int) -> np.ndarray:
    import cv2

    arr = np.asarray(crops)
    if arr.ndim == 4:
        arr = np.stack([cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2GRAY) for x in arr])
    if blur and blur > 1:
        k = int(blur) | 1
        arr = np.stack([cv2.GaussianBlur(x, (k, k), 0) for x in arr])
    return arr


# ----------------------------------------------------------------------------------------------- spotting
@dataclass
class SpotResult:
    """Output of the spotter for one video.

    Attributes:
        intervals: predicted intervals (0-based inclusive frames of the source video).
        scores: float (N,) smoothed score per frame; NaN on frames without a face.
        k: the ``k`` used, frames. fps: frames per second used for the second-based settings.
        stats: counts: ``face_spans``, ``short_spans`` (too short for any interval, skipped), ``no_face_frames``,
            ``candidates``, ``too_short``, ``too_long``, ``kept``.
    """

    intervals: list[Interval]
    scores: np.ndarray
    k: int
    fps: float
    stats: dict[str, int]


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), (np.flatnonzero(d == -1) - 1).tolist()))


def spot_crops(crops: np.ndarray, has_face: np.ndarray | None, fps: float,
               cfg: BaselineConfig | None = None) -> SpotResult:
    """Spot expressions in face crops of one video.

    Args:
        crops: uint8 (N, H, W, 3) RGB or (N, H, W) grey face crops (rows without a face are ignored).
        has_face: bool (N,) frames with a face (``None``: all).
        fps: frames per second of the video (> 0).
        cfg: parameters (default ``BaselineConfig()``).
    Returns:
        :class:`SpotResult`.
    Raises:
        ValueError: bad shapes or fps.
    """
    cfg = cfg or BaselineConfig()
    crops = np.asarray(crops)
    if crops.ndim not in (3, 4) or (crops.ndim == 4 and crops.shape[-1] != 3):
        raise ValueError(f"crops must be (N, H, W, 3) RGB or (N, H, W) grey, got shape {crops.shape}")
    n = len(crops)
    has_face = np.ones(n, dtype=bool) if has_face is None else np.asarray(has_face, dtype=bool)
    if has_face.shape != (n,):
        raise ValueError(f"has_face must have shape ({n},), got {has_face.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    k = cfg.k(fps)
    lag = 2 * k
    min_len = max(1, int(round(cfg.micro_min_s * fps)))
    micro_max = max(min_len, int(round(cfg.micro_max_s * fps)))
    smooth = max(1, int(round(cfg.smooth_s * fps)))
    gap = max(0, int(round(cfg.merge_gap_s * fps)))
    stats = {"face_spans": 0, "short_spans": 0, "no_face_frames": int((~has_face).sum()),
             "candidates": 0, "too_short": 0, "too_long": 0, "kept": 0}
    scores = np.full(n, np.nan)
    spans = _spans(has_face)
    for a, b in spans:
        stats["face_spans"] += 1
        if b - a + 1 < max(2, min_len):
            stats["short_spans"] += 1
            continue
        feats = lbp_histograms(_gray(crops[a:b + 1], cfg.blur), cfg.grid)
        scores[a:b + 1] = smooth_scores(difference_score(feats, lag, cfg.top_fraction), smooth)
    valid = scores[~np.isnan(scores)]
    intervals: list[Interval] = []
    if valid.size:
        thr = resolve_threshold(valid, cfg.threshold)  # one threshold per video, over all its face frames
        for a, b in spans:
            seg = scores[a:b + 1]
            if np.isnan(seg).any():
                continue
            found = scores_to_intervals(seg, "macro", smooth=1, threshold=thr, min_len=min_len, max_len=None,
                                        merge_gap=gap, mode=cfg.mode, k=k, stats=stats)
            for iv in found:
                kind = "micro" if len(iv) <= micro_max else "macro"
                intervals.append(Interval(iv.onset + a, iv.offset + a, kind, iv.score))
    return SpotResult(intervals, scores, k, float(fps), stats)


def spot_video_file(video: str | Path, cfg: BaselineConfig | None = None) -> SpotResult:
    """Track and crop the face (:func:`fertrain.preprocess.extract_faces`), then :func:`spot_crops`.

    Raises:
        DatasetError: the video cannot be read. ImportError / FileNotFoundError: no face detector or landmark
        model. ValueError: the container reports no fps.
    """
    from fertrain.preprocess import FaceOptions, extract_faces

    cfg = cfg or BaselineConfig()
    faces = extract_faces(video, FaceOptions.from_dict({"size": cfg.size, "margin": cfg.margin, **cfg.face_options}))
    track = faces.track
    if not track.fps > 0:
        raise ValueError(f"video {video}: the container reports no fps; cannot convert the seconds in the config")
    return spot_crops(faces.frames, track.has_face, track.fps, cfg)


# ----------------------------------------------------------------------------------------------- labels
def read_spotting_labels(path: str | Path) -> dict[str, list[Interval]]:
    """Ground-truth intervals per video file name from a CSV ``video,onset,apex,offset,type``.

    Frames 0-based inclusive; ``type`` macro or micro; ``apex`` is checked (onset <= apex <= offset) but unused.

    Raises:
        DatasetError: missing file or column, or a bad row (names file, line and value).
    """
    from fertrain.data.records import DatasetError

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"spotting labels {path} do not exist")
    out: dict[str, list[Interval]] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"video", "onset", "offset", "type"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise DatasetError(f"{path}: expected columns video,onset,apex,offset,type, got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                onset, offset = int(row["onset"]), int(row["offset"])
                iv = Interval(onset, offset, row["type"].strip().lower())
                if row.get("apex") not in (None, ""):
                    apex = int(row["apex"])
                    if not onset <= apex <= offset:
                        raise ValueError(f"apex {apex} outside [onset {onset}, offset {offset}]")
            except (TypeError, ValueError) as e:
                raise DatasetError(f"{path}, line {line}: {e} (row {dict(row)})") from e
            out.setdefault(Path(row["video"].strip()).name, []).append(iv)
    return out


# ----------------------------------------------------------------------------------------------- CLI
def _videos(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in (".mp4", ".avi", ".mov"))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"--videos: {p} is neither a video file nor a folder")
    return out


def no_ground_truth(m: dict[str, Any], kind: str) -> bool:
    """True where ``kind`` has no ground truth in ``m`` (TP + FN = 0): recall, and so F1, are undefined."""
    return int(m[f"{kind}/tp"]) + int(m[f"{kind}/fn"]) == 0


def _fmt(name: str, m: dict[str, Any]) -> str:
    parts = [f"{name:<28}"]
    for kind in (*KINDS, "overall"):
        f1 = "n/a" if no_ground_truth(m, kind) else f"{m[f'{kind}/f1']:.3f}"
        parts.append(f"{kind} TP/FP/FN {int(m[f'{kind}/tp'])}/{int(m[f'{kind}/fp'])}/{int(m[f'{kind}/fn'])} F1 {f1}")
    return "  ".join(parts)


def _undefined_to_null(m: dict[str, float]) -> dict[str, float | None]:
    """``compute()`` dict with recall/F1 of kinds without ground truth set to None (``null`` in JSON, not 0)."""
    out: dict[str, float | None] = dict(m)
    for kind in (*KINDS, "overall"):
        if no_ground_truth(m, kind):
            out[f"{kind}/recall"] = out[f"{kind}/f1"] = None
    return out


def find_config(value: str | Path | None) -> Path:
    """The baseline config file: ``value`` as a path, else ``<config_dir>/<value>[.yaml]`` (the configs shipped in
    the package); ``None``: the packaged ``spotting_baseline.yaml``.

    Raises:
        FileNotFoundError: neither exists (names both places).
    """
    from fertrain.config import config_dir

    name = "spotting_baseline.yaml" if value is None else str(value)
    path = Path(name)
    if value is not None and path.is_file():
        return path
    for cand in (config_dir() / name, config_dir() / f"{name}.yaml"):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"--config {name}: no such file, and not in the packaged configs ({config_dir()})")


def run(videos: Sequence[str | Path], labels: str | Path, out: str | Path,
        cfg: BaselineConfig | None = None, only_labelled: bool = False, protocol: str = "fertrain") -> dict[str, Any]:
    """Spot every video, evaluate against ``labels`` (spotting F1 under ``protocol``,
    :class:`~fertrain.metrics.spotting.SpottingF1`) and write ``out/result_log.csv`` (MEGC-style),
    ``out/predictions.csv`` and ``out/summary.json``. Recall and F1 of a kind without ground truth are ``None``.

    A video without a label row counts as having no ground truth (all its predictions are FP) unless
    ``only_labelled``, in which case it is skipped and listed. Labelled videos not given are listed too.

    Returns:
        The summary dict: ``per_video`` {name: per-video compute() dict}, ``pooled`` (summed counts),
        ``skipped``, ``not_given``, ``stats``, ``config``.
    """
    import torch  # noqa: F401  (before anything that may load decord; torchmetrics needs it anyway)

    from fertrain.metrics.spotting import SpottingF1

    cfg = cfg or BaselineConfig()
    gt = read_spotting_labels(labels)
    paths = _videos(videos)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metric = SpottingF1(protocol=protocol)
    per_video: dict[str, dict[str, Any]] = {}
    stats: dict[str, dict[str, int]] = {}
    skipped: list[str] = []
    pred_rows: list[dict[str, Any]] = []
    for path in paths:
        name = path.name
        if only_labelled and name not in gt:
            skipped.append(name)
            continue
        res = spot_video_file(path, cfg)
        per_video[name] = _undefined_to_null(metric(res.intervals, gt.get(name, []), name))
        stats[name] = {**res.stats, "k": res.k}
        pred_rows += [{"video": name, "onset": iv.onset, "offset": iv.offset, "kind": iv.kind,
                       "score": round(iv.score, 6)} for iv in res.intervals]
        print(_fmt(name, per_video[name]))
        print(f"{'':<28}predicted {[(iv.onset, iv.offset, iv.kind) for iv in res.intervals]}  "
              f"truth {[(iv.onset, iv.offset, iv.kind) for iv in gt.get(name, [])]}  stats {res.stats}")
    pooled = _undefined_to_null(metric.compute())
    print(_fmt(f"POOLED ({len(per_video)} videos)", pooled))
    not_given = sorted(set(gt) - set(per_video))
    if skipped:
        print(f"skipped (no label row, --only-labelled): {skipped}")
    if not_given:
        print(f"labelled but not among --videos (not evaluated): {not_given}")
    metric.write_result_log(out / "result_log.csv")
    with (out / "predictions.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["video", "onset", "offset", "kind", "score"])
        w.writeheader()
        w.writerows(pred_rows)
    summary = {"per_video": per_video, "pooled": pooled, "skipped": skipped, "not_given": not_given,
               "stats": stats, "config": dataclasses.asdict(cfg), "protocol": metric.protocol}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"written: {out / 'result_log.csv'}, {out / 'predictions.csv'}, {out / 'summary.json'}")
    return summary


@guarded("python -m fertrain.spotting.baseline")
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fertrain.spotting.baseline``; exit status per :mod:`fertrain.cli` (2 on bad input)."""
    from fertrain.spotting.protocols import PRESETS

    parser = argparse.ArgumentParser(prog="python -m fertrain.spotting.baseline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", nargs="+", required=True, help="video files and/or folders of videos")
    parser.add_argument("--labels", required=True, help="CSV video,onset,apex,offset,type (0-based frames)")
    parser.add_argument("--out", required=True, help="output folder (result_log.csv, predictions.csv, summary.json)")
    parser.add_argument("--config", default=None,
                        help="YAML of BaselineConfig fields: a path or a name in the packaged configs "
                             "(default: the packaged spotting_baseline.yaml)")
    parser.add_argument("--only-labelled", action="store_true", help="skip videos without a label row (listed)")
    parser.add_argument("--protocol", default="fertrain", choices=list(PRESETS),
                        help="evaluation protocol (docs/spotting_protocols.md)")
    args = parser.parse_args(argv)
    path = find_config(args.config)
    try:
        cfg = BaselineConfig.from_yaml(path)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{path}: {e}") from None
    print(f"config: {path}")
    run(args.videos, args.labels, args.out, cfg, args.only_labelled, args.protocol)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
