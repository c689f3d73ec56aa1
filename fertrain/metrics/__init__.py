"""Metrics: recognition (UAR/WAR) and spotting F1. Plots live in :mod:`fertrain.report.plots`."""

from fertrain.metrics.recognition import RecognitionMetrics, uar_war_from_confmat

__all__ = ["RecognitionMetrics", "uar_war_from_confmat"]
