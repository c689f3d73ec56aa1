"""Metrics: recognition (UAR/WAR) now; spotting F1 and clip-to-video aggregation live beside it."""

from fertrain.metrics.recognition import RecognitionMetrics, plot_confusion_matrix, uar_war_from_confmat

__all__ = ["RecognitionMetrics", "plot_confusion_matrix", "uar_war_from_confmat"]
