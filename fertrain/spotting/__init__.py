"""Expression spotting: intervals, score post-processing and a training-free feature-difference baseline."""

from fertrain.spotting.intervals import KINDS, Interval, iou
from fertrain.spotting.postprocess import k_from_annotations, scores_to_intervals, spot_video

__all__ = ["KINDS", "Interval", "iou", "k_from_annotations", "scores_to_intervals", "spot_video"]
