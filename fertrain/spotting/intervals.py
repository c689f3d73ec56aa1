"""Expression intervals in frame indices and their temporal IoU.

Frames are 0-based and both ends are inclusive, as in the CAS(ME)^2 and SAMM-LV annotation sheets (onset and
offset frame numbers) and the MEGC2020 evaluation: the length of ``[onset, offset]`` is ``offset - onset + 1``.
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
    """Temporal intersection over union of two intervals, frames counted inclusively (MEGC2020).

    ``|a ∩ b| / |a ∪ b|`` with ``|[s, e]| = e - s + 1``; 0.0 for disjoint intervals. The kinds are not compared
    (matching by kind is the metric's job).
    """
    inter = min(a.offset, b.offset) - max(a.onset, b.onset) + 1
    if inter <= 0:
        return 0.0
    return inter / (len(a) + len(b) - inter)
