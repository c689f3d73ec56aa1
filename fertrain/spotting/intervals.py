"""Expression intervals in frame indices, their temporal IoU, and raw annotation rows.

Frames are 0-based and both ends are inclusive, as the onset and offset frame numbers of the CAS(ME)^2 and SAMM-LV
annotation sheets: the length of ``[onset, offset]`` is ``offset - onset + 1``. The public evaluators differ in
how they count (:mod:`fertrain.spotting.protocols`); :func:`iou` is fertrain's own inclusive form.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("macro", "micro")


@dataclass(frozen=True)
class Interval:
    """One (ground-truth or predicted) expression interval.

    Attributes:
        onset: first frame, 0-based, inclusive.
        offset: last frame, inclusive (``offset >= onset``).
        kind: ``"macro"`` or ``"micro"``.
        score: confidence of a prediction (1.0 for ground truth); used only for ordering.

    Raises:
        ValueError: negative onset, ``offset < onset``, non-integer frames or an unknown kind.
    """

    onset: int
    offset: int
    kind: str
    score: float = 1.0

    def __post_init__(self) -> None:
        for name in ("onset", "offset"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                try:  # numpy integers are fine; convert so hashing/equality behave
                    if int(value) != value:
                        raise ValueError
                    object.__setattr__(self, name, int(value))
                except (TypeError, ValueError):
                    raise ValueError(f"Interval.{name} must be an integer frame index, got {value!r}") from None
        if self.onset < 0:
            raise ValueError(f"Interval onset must be >= 0 (0-based frame), got {self.onset}")
        if self.offset < self.onset:
            raise ValueError(f"Interval offset {self.offset} < onset {self.onset} (both inclusive frames)")
        if self.kind not in KINDS:
            raise ValueError(f"Interval kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "score", float(self.score))

    def __len__(self) -> int:
        """Number of frames, ``offset - onset + 1``."""
        return self.offset - self.onset + 1


def iou(a: Interval, b: Interval) -> float:
    """Temporal intersection over union of two intervals, frames counted inclusively.

    ``|a ∩ b| / |a ∪ b|`` with ``|[s, e]| = e - s + 1``; 0.0 for disjoint intervals, 1.0 for two equal one-frame
    intervals. The kinds are not compared (matching by kind is the metric's job). This is the IoU of SOFTNet's
    vendored ``compute_iou`` (VOC "+1" boxes) and of STRS-Metric's frame sets; it is *not* MEGC2020's ``calc_iou``
    (HeyingGithub/Baseline-project-for-MEGC2020_spotting, ``MDMD_results/result_helper.py``), which gives 0 when
    either interval has one frame and counts one shared frame between disjoint intervals (see
    :func:`fertrain.spotting.protocols.iou_megc2020`), nor AUW-GCN's exclusive ``iou_with_anchors``.
    """
    inter = min(a.offset, b.offset) - max(a.onset, b.onset) + 1
    if inter <= 0:
        return 0.0
    return inter / (len(a) + len(b) - inter)


@dataclass(frozen=True)
class AnnotationRow:
    """One annotation row as the dataset's sheet gives it, before any "not annotated" policy.

    The evaluators read the same rows differently (onset 0, offset 0, apex -1, fractional frame numbers); the
    dataset readers keep the raw row beside their own interval so that each evaluation protocol can apply its
    evaluator's policy (:class:`fertrain.spotting.protocols.GroundTruthPolicy`).

    Attributes:
        dataset: ``"casme2"`` or ``"sammlv"`` (which policy fields apply).
        kind: ``"macro"`` or ``"micro"``.
        onset, apex, offset: the sheet's frame numbers (1-based, as in the frame file names; may be fractional in
            SAMM-LV; 0 or -1 where the sheet marks "not annotated").
        first: the number of the video folder's first frame (0-based index = number - first).
        num_frames: frames of the video (for an ``offset_beyond="clamp"`` policy).
        where: ``"<workbook>, sheet '<name>', row <n>"`` for messages.
    """

    dataset: str
    kind: str
    onset: float
    apex: float
    offset: float
    first: int = 1
    num_frames: int = 0
    where: str = ""
