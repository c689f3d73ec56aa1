"""The packaged real demo video as a small two-class window dataset (protocol ours; a demo, not a benchmark).

Media: ``fertrain/assets/demo/WolfgangLanger_Pexels.mp4`` — video by Wolfgang Langer, Pexels (Pexels licence:
free to use and modify, credit appreciated); 472 decoded frames, 23.976 fps, 640x360: one woman crying (sad),
then laughing (happy). Labels: ``fertrain/assets/demo/annotations.csv`` (``video,start_frame,end_frame,label``,
hand-made by the fertrain developers; frame indices 0-based in decoded order, inclusive, about +-3 frames):
sad 0-225, happy 230-471. See ``fertrain/assets/demo/CREDIT.md``.

Label map (fixed, our choice): ``class_names = ("sad", "happy")`` -> 0 sad, 1 happy. Annotation labels are
matched by name; a label outside ``class_names`` is an error.

Protocol (ours): each labelled segment ``[start, end]`` of ``n = end - start + 1`` frames is split by time into
three consecutive, non-overlapping spans (half-open, frames)::

    train [start, start + floor(f_train * n))
    val   [start + floor(f_train * n), start + floor((f_train + f_val) * n))
    test  [start + floor((f_train + f_val) * n), end + 1)

With ``blocks = b > 1`` each segment is first cut into ``b`` consecutive blocks of (nearly) equal length and
each block is split as above, so train/val/test interleave in time (train, val, test, train, val, test, ...).

**Interleaved chunks** (``chunk > 0``; what ``conf/data/demo.yaml`` uses): each segment is cut into consecutive
chunks of ``chunk`` frames from its first frame, and chunk ``i`` goes to split ``pattern[i % len(pattern)]``
(e.g. ``train, test, train, val``), so every split samples the whole expression (onset, apex, offset of the crying
and of the laughing) under the same conditions (same person, light, camera) instead of extrapolating to its end.
Consecutive chunks of one split form one span; a segment's last partial chunk keeps its split. With ``gap = g > 0``
the ``g`` train frames next to a val/test span are left unused, so no training frame is within ``g`` frames of an
evaluation frame. ``balance_eval`` then keeps the same number of val (and of test) windows for every class: the
class with the fewest windows sets the count, the others keep that many, evenly spaced in time (ours).

Windows of ``window`` frames start at ``lo, lo + stride, ...`` and lie wholly inside one span (the last start is
at most ``hi - window``), so no window of one split contains a frame of another split's span. The train stride is
small (overlapping windows, more samples); the eval stride is larger (default 16 frames, half the default
window; set it to ``window`` for disjoint windows). Frames on either side of a
span boundary are near-identical (one person, one shot): scores on this demo show the pipeline runs and learns
from real footage, not that a model generalises to other people.

**Faces** (``faces``; what ``conf/data/demo.yaml`` uses): the windows are read from the aligned faces of the
project's own face pipeline (:func:`fertrain.preprocess.extract_faces`: dlib HOG detection, tracking, 5-point
similarity alignment), extracted once per video and options and cached in ``cache_dir`` (``faces-<key>.npz``,
reused by ``fertrain.predict`` given the same folder). The frames are written next to it as a uint8
``(N, S, S, 3)`` RGB ``.npy`` array named by the hash of its pixels (``<stem>-faces-<12 hex>.npy``), which the
records point at (so the data fingerprint changes when the faces do). Frames are indexed as in the video (the
pipeline decodes every frame, in order), so the split is the same in frame indices with and without faces. A window
holding a frame without a face is not a face sample: every such window is counted per split and the constructor
fails, naming the no-face spans (shorten the annotated segments to leave them out); windows past the last decoded
frame fail the same way. On the packaged video every one of the 472 frames has a face.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from importlib.resources import files
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fertrain.data.records import SPLITS, ClipRecord, DatasetError

log = logging.getLogger(__name__)

DEMO_CLASS_NAMES: tuple[str, ...] = ("sad", "happy")
DEMO_FPS = 23.976  # frames per second of the packaged video
_HEADER = ["video", "start_frame", "end_frame", "label"]


def demo_asset_dir() -> Path:
    """Folder of the packaged demo assets (``fertrain/assets/demo``), installed or editable."""
    return Path(str(files("fertrain") / "assets" / "demo"))


def default_demo_video() -> Path:
    """Path of the packaged demo video ``WolfgangLanger_Pexels.mp4``."""
    return demo_asset_dir() / "WolfgangLanger_Pexels.mp4"


def default_demo_annotations() -> Path:
    """Path of the packaged demo segment labels ``annotations.csv``."""
    return demo_asset_dir() / "annotations.csv"


def split_spans(start: int, end: int, fractions: Sequence[float]) -> dict[str, tuple[int, int]]:
    """Split the inclusive segment ``[start, end]`` by time into half-open train/val/test spans (frames).

    Boundaries are ``start + floor(cumulative_fraction * n)`` with ``n = end - start + 1`` (module docstring);
    the last span ends at ``end + 1``.

    Returns:
        ``{"train": (lo, hi), "val": (lo, hi), "test": (lo, hi)}``, consecutive, covering the segment.
    """
    n = end - start + 1
    eps = 1e-9  # so that e.g. 0.29 * 100 floors to 29, not 28
    b1 = start + int(fractions[0] * n + eps)
    b2 = start + int((fractions[0] + fractions[1]) * n + eps)
    return {"train": (start, b1), "val": (b1, b2), "test": (b2, end + 1)}


def chunk_spans(start: int, end: int, chunk: int, pattern: Sequence[str], gap: int = 0) -> list[tuple[str, int, int]]:
    """Split the inclusive segment ``[start, end]`` into interleaved half-open spans ``(split, lo, hi)`` (frames).

    Chunk ``i`` = ``[start + i * chunk, min(start + (i + 1) * chunk, end + 1))`` goes to ``pattern[i % len]``;
    consecutive chunks of one split are merged. With ``gap > 0`` every train span loses ``gap`` frames on each side
    that touches a span of another split (a train span left empty is dropped).

    Raises:
        ValueError: ``chunk < 1``, ``gap < 0``, or a pattern entry that is not train/val/test.
    """
    if chunk < 1 or gap < 0:
        raise ValueError(f"chunk must be >= 1 and gap >= 0 frames, got chunk={chunk}, gap={gap}")
    bad = [p for p in pattern if p not in SPLITS]
    if not pattern or bad:
        raise ValueError(f"pattern entries must be among {SPLITS}, got {list(pattern)}")
    spans: list[list] = []
    for i, lo in enumerate(range(start, end + 1, chunk)):
        split, hi = pattern[i % len(pattern)], min(lo + chunk, end + 1)
        if spans and spans[-1][0] == split:
            spans[-1][2] = hi
        else:
            spans.append([split, lo, hi])
    out = []
    for j, (split, lo, hi) in enumerate(spans):
        if split == "train" and gap:
            lo += gap if j > 0 else 0
            hi -= gap if j < len(spans) - 1 else 0
        if hi > lo:
            out.append((split, lo, hi))
    return out


def evenly_spaced(items: Sequence, k: int) -> list:
    """``k`` of ``items`` spread evenly over the sequence (first and last kept when ``k >= 2``); all if fewer."""
    n = len(items)
    if k >= n:
        return list(items)
    if k <= 0:
        return []
    if k == 1:
        return [items[n // 2]]
    return [items[round(i * (n - 1) / (k - 1))] for i in range(k)]


def window_starts(lo: int, hi: int, window: int, stride: int) -> range:
    """First frames of the ``window``-frame windows inside the half-open span ``[lo, hi)``, every ``stride``."""
    return range(lo, hi - window + 1, stride)


def read_segments(path: Path, video_name: str, class_names: Sequence[str]) -> list[tuple[int, int, int, int]]:
    """Segments of ``video_name`` in an annotations csv as ``(start_frame, end_frame, label, line)``.

    Rows naming other videos are not this video's segments and are left out (one csv may label several
    videos). ``label`` is the index of the row's label in ``class_names``; frames are 0-based, inclusive.

    Raises:
        DatasetError: missing file, wrong header or column count, non-integer frame, ``start_frame < 0`` or
            ``end_frame < start_frame``, label not in ``class_names``, overlapping segments, or no row for
            ``video_name`` (the message names the file and line).
    """
    if not path.is_file():
        raise DatasetError(f"demo annotations file {path} does not exist (expected a csv with header "
                           f"{','.join(_HEADER)})")
    segments = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [c.strip() for c in header] != _HEADER:
            raise DatasetError(f"{path}: line 1: expected the header {','.join(_HEADER)!r}, found {header!r}")
        videos = set()
        for row in reader:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue  # blank line, not a data row
            if len(row) != len(_HEADER):
                raise DatasetError(f"{path}: line {line}: expected {len(_HEADER)} columns, found {row!r}")
            video, start, end, label = (c.strip() for c in row)
            videos.add(video)
            if video != video_name:
                continue
            try:
                start_frame, end_frame = int(start), int(end)
            except ValueError:
                raise DatasetError(f"{path}: line {line}: expected integer start_frame,end_frame, "
                                   f"found {start!r},{end!r}") from None
            if not 0 <= start_frame <= end_frame:
                raise DatasetError(f"{path}: line {line}: expected 0 <= start_frame <= end_frame, "
                                   f"found {start_frame},{end_frame}")
            if label not in class_names:
                raise DatasetError(f"{path}: line {line}: label {label!r} is not one of {tuple(class_names)}")
            segments.append((start_frame, end_frame, list(class_names).index(label), line))
    if not segments:
        raise DatasetError(f"{path}: no row for video {video_name!r}; the file labels {sorted(videos)}")
    ordered = sorted(segments)
    for (_, end_a, _, line_a), (start_b, _, _, line_b) in zip(ordered, ordered[1:]):
        if start_b <= end_a:
            raise DatasetError(f"{path}: segments at lines {line_a} and {line_b} overlap (frame {start_b} <= "
                               f"{end_a}); expected disjoint segments")
    return segments


class DemoVideo:
    """Fixed-length windows of the labelled segments of one video, split by time (protocol in module doc).

    Each window is ``ClipRecord(path=source, start_frame=s, num_frames=window, label, video_id=f"{stem}@{s}",
    fps=fps)``, ``source`` the video itself, or with ``faces`` the ``.npy`` array of its aligned faces (module
    docstring). All parsing and checks happen in the constructor. Without ``faces`` nothing is decoded and the
    video's length is not probed: annotations must stay inside it (readers clamp an over-long segment). With
    ``faces`` the face pipeline runs here (about 15 s for the packaged video on one CPU core; a cache hit costs
    milliseconds).

    Args:
        video: video file; default the packaged ``WolfgangLanger_Pexels.mp4``.
        annotations: ``video,start_frame,end_frame,label`` csv; only rows whose ``video`` equals the file name of
            ``video`` are used. Default the packaged ``annotations.csv``.
        window: frames per window (the clip the sampler sees).
        train_stride: frames between consecutive train window starts.
        eval_stride: frames between consecutive val/test window starts; ``window`` gives disjoint windows.
        split_fractions: ``(train, val, test)`` fractions of each segment, in time order; non-negative, sum 1.
        fps: frame rate of ``video`` (frames per second); the default is the packaged video's.
        blocks: cut each segment into this many consecutive blocks of (nearly) equal length and split *each
            block* by ``split_fractions``; with ``blocks > 1`` every split samples every phase of an expression
            (onset, apex, offset) while splits stay frame-disjoint. Ours; 1 = one time split per segment.
        chunk: frames per interleaved chunk (module docstring); ``0`` (default) uses ``blocks`` and
            ``split_fractions`` instead.
        pattern: the splits of consecutive chunks, repeated (used when ``chunk > 0``).
        gap: train frames left unused next to every val/test span (used when ``chunk > 0``).
        balance_eval: keep the same number of val windows, and of test windows, for every class (evenly spaced).
        faces: None: whole decoded frames (pixels of the video). A mapping of
            :class:`fertrain.preprocess.FaceOptions` fields (``{}`` for the defaults): the aligned faces of the
            face pipeline, uint8 ``(S, S, 3)`` RGB per frame, ``S = faces["size"]`` pixels (module docstring).
        cache_dir: with ``faces``: the folder for the face cache and the frame array (required: the DataLoader
            reads the frames from there).

    Raises:
        ValueError: an argument is out of range, bad face options, or ``faces`` without ``cache_dir``.
        DatasetError: the video or annotations are missing or malformed, a split has no window of some class
            (segment spans shorter than ``window``), or with ``faces``: a window holds a frame without a face or
            past the last decoded frame; the message names the file, line, spans or frames.
        ImportError, FileNotFoundError: with ``faces``: the face detector or landmark model is not installed.
    """

    class_names: tuple[str, ...] = DEMO_CLASS_NAMES

    def __init__(
        self,
        video: str | Path | None = None,
        annotations: str | Path | None = None,
        window: int = 32,
        train_stride: int = 4,
        eval_stride: int = 16,
        split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
        fps: float | None = DEMO_FPS,
        blocks: int = 1,
        chunk: int = 0,
        pattern: Sequence[str] = ("train", "test", "train", "val"),
        gap: int = 0,
        balance_eval: bool = False,
        faces: Mapping[str, Any] | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        if blocks < 1:
            raise ValueError(f"DemoVideo blocks must be >= 1, got {blocks}")
        if window < 1 or train_stride < 1 or eval_stride < 1:
            raise ValueError(f"DemoVideo needs window, train_stride, eval_stride >= 1; got {window}, "
                             f"{train_stride}, {eval_stride}")
        fractions = tuple(float(f) for f in split_fractions)
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
            raise ValueError(f"DemoVideo split_fractions must be 3 non-negative (train, val, test) fractions "
                             f"summing to 1, got {tuple(split_fractions)}")
        self.video = Path(video) if video is not None else default_demo_video()
        self.annotations = Path(annotations) if annotations is not None else default_demo_annotations()
        self.window = window
        if not self.video.is_file():
            raise DatasetError(f"demo video {self.video} does not exist (expected a video file; the packaged one "
                               f"is {default_demo_video()})")
        segments = read_segments(self.annotations, self.video.name, self.class_names)
        #: with ``faces``: what the face pipeline found (:meth:`_extract_faces`); None for whole frames
        self.face_report: dict[str, Any] | None = None
        #: the file the records read: the video, or the ``.npy`` array of its aligned faces
        self.source = self.video
        has_face = None
        if faces is not None:
            if cache_dir is None:
                raise ValueError("DemoVideo faces need a cache_dir (the face frames are read from an array there)")
            self.source, has_face = self._extract_faces(dict(faces), Path(cache_dir))

        #: ``(label, split, lo, hi)`` for every segment and split: half-open spans in frames.
        self.spans: list[tuple[int, str, int, int]] = []
        self._records: dict[str, list[ClipRecord]] = {s: [] for s in SPLITS}
        if chunk > 0:
            for start, end, label, _ in segments:
                self.spans += [(label, split, lo, hi) for split, lo, hi in chunk_spans(start, end, chunk, pattern, gap)]
        else:
            blocked = []  # each segment cut into `blocks` consecutive blocks, each block split by time
            for start, end, label, _ in segments:
                n = end - start + 1
                edges = [start + (n * b) // blocks for b in range(blocks + 1)]
                blocked += [(lo, hi - 1, label) for lo, hi in zip(edges, edges[1:])]
            for start, end, label in blocked:
                self.spans += [(label, split, lo, hi) for split, (lo, hi) in split_spans(start, end, fractions).items()]
        for label, split, lo, hi in self.spans:
            stride = train_stride if split == "train" else eval_stride
            self._records[split] += [
                ClipRecord(path=self.source, label=label, video_id=f"{self.video.stem}@{s}", num_frames=window,
                           start_frame=s, fps=fps)
                for s in window_starts(lo, hi, window, stride)]
        #: windows per class of each split before balancing: ``{split: {class index: count}}`` (logged, counted)
        self.available = {split: {c: sum(r.label == c for r in recs) for c in range(len(self.class_names))}
                          for split, recs in self._records.items()}
        if balance_eval:
            for split in ("val", "test"):
                keep = min(self.available[split].values())
                self._records[split] = [r for c in range(len(self.class_names)) for r in
                                        evenly_spaced([r for r in self._records[split] if r.label == c], keep)]
                dropped = {self.class_names[c]: n - keep for c, n in self.available[split].items() if n > keep}
                if dropped:
                    log.info("demo %s: %d windows per class (balanced; left out %s)", split, keep, dropped)
        for split, recs in self._records.items():
            absent = set(range(len(self.class_names))) - {r.label for r in recs}
            if absent:
                spans = [f"{self.class_names[lab]} [{lo}, {hi})" for lab, sp, lo, hi in self.spans if sp == split]
                raise DatasetError(
                    f"{self.annotations}: split {split!r} has no {window}-frame window of class(es) "
                    f"{sorted(self.class_names[c] for c in absent)} for {self.video.name}; its spans are "
                    f"{', '.join(spans)} (frames, half-open). Use a smaller window or longer segments.")
        if has_face is not None:
            self._check_faces(has_face)

    def _extract_faces(self, faces: dict[str, Any], cache_dir: Path) -> tuple[Path, np.ndarray]:
        """Run (or reuse) the face pipeline on the video; ``(frame array path, has_face (N,) bool)``."""
        from fertrain.preprocess import FaceOptions, extract_faces

        options = FaceOptions.from_dict(faces)  # ValueError names an unknown key
        extracted = extract_faces(self.video, options, cache_dir=cache_dir)  # OpenCV single-threaded inside
        frames = np.ascontiguousarray(extracted.frames)  # (N, S, S, 3) uint8 RGB, zeros without a face
        digest = hashlib.sha256(frames.tobytes()).hexdigest()[:12]
        path = cache_dir / f"{self.video.stem}-faces-{digest}.npy"
        if not path.is_file():  # content-addressed: an existing file holds these very pixels
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, frames)
            tmp.replace(path)
        has_face = np.asarray(extracted.has_face, dtype=bool)
        self.face_report = {
            "frames": int(len(frames)), "frames_with_face": int(has_face.sum()),
            "no_face_spans": [list(map(int, span)) for span in extracted.no_face_spans()],
            "detector": extracted.track.detector, "options": options.to_dict(), "array": str(path)}
        log.info("demo faces: %d of %d frames of %s have a face (%s); %s", has_face.sum(), len(frames),
                 self.video.name, extracted.track.detector, path)
        return path, has_face

    def _check_faces(self, has_face: np.ndarray) -> None:
        """Fail when a window of any split holds a frame without a face or past the last frame (counted)."""
        n = len(has_face)
        bad: dict[str, list[int]] = {}
        for split, recs in self._records.items():
            for r in recs:
                end = r.start_frame + r.num_frames
                if end > n or not has_face[r.start_frame:end].all():
                    bad.setdefault(split, []).append(r.start_frame)
        if bad:
            counts = ", ".join(f"{split} {len(starts)} of {len(self._records[split])} (first at frame "
                               f"{starts[0]})" for split, starts in bad.items())
            spans = (self.face_report or {}).get("no_face_spans")
            raise DatasetError(
                f"{self.annotations}: windows of {self.video.name} hold frames without a face or past its last "
                f"frame ({n} decoded frames; no-face spans {spans}, 0-based inclusive): {counts}. A frame without a "
                f"face is no face sample: shorten the annotated segments to leave these frames out.")

    def records(self, split: str) -> list[ClipRecord]:
        """Window records of ``split`` (``"train"``, ``"val"`` or ``"test"``), in time order per segment.

        Raises:
            ValueError: unknown ``split``.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return list(self._records[split])
