"""Uncertainty for tables: bootstrap confidence intervals over folds and paired tests of two methods on the same
folds. Both through SciPy (``scipy.stats.bootstrap``, ``ttest_rel``, ``wilcoxon``); SciPy is a runtime dependency
of fertrain (and of albumentations).

Choices (ours, stated in every table that uses them): percentile bootstrap of the mean over folds,
:data:`BOOTSTRAP_RESAMPLES` resamples, 95 %, a fixed seed (:data:`BOOTSTRAP_SEED`) so a table is reproducible.
With 5 folds a percentile interval is narrow and optimistic (it cannot reach beyond the observed folds); it is shown
beside mean ± std, not instead of it. Paired tests: Student's paired t-test (``scipy.stats.ttest_rel``) and the
Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, exact null distribution for small n, zero differences dropped,
two-sided); with n = 5 folds the smallest possible Wilcoxon p is 0.0625.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


def bootstrap_ci(values: Sequence[float], n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                 confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Percentile bootstrap confidence interval of the mean of ``values`` (e.g. one metric over folds).

    Returns:
        ``(low, high)`` in the unit of ``values``, or None for fewer than 2 values.
    """
    from scipy.stats import bootstrap

    data = np.asarray([float(v) for v in values], dtype=float)
    if data.size < 2:
        return None
    if np.ptp(data) == 0:  # every resample has the same mean
        return float(data[0]), float(data[0])
    res = bootstrap((data,), np.mean, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
                    rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@dataclass(frozen=True)
class PairedResult:
    """Fold-wise comparison of method A and method B on one metric (differences ``A - B``).

    ``t_p``/``wilcoxon_p`` are None where the test is undefined (fewer than 2 folds; constant differences for t;
    all differences zero for Wilcoxon); ``why`` then says which.
    """

    n: int
    mean_diff: float | None
    ci: tuple[float, float] | None
    t_stat: float | None
    t_p: float | None
    wilcoxon_stat: float | None
    wilcoxon_p: float | None
    wilcoxon_n: int  # non-zero differences the signed-rank test used
    why: str = ""


def paired_tests(a: Sequence[float], b: Sequence[float], n_resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> PairedResult:
    """Paired t-test and Wilcoxon signed-rank test of ``a - b`` over folds, with a bootstrap CI of the mean
    difference.

    Args:
        a: method A's value per fold; ``b``: method B's value on the same folds, same order.

    Raises:
        ValueError: ``a`` and ``b`` differ in length.
    """
    from scipy.stats import ttest_rel, wilcoxon

    if len(a) != len(b):
        raise ValueError(f"paired values need the same folds: {len(a)} vs {len(b)} values")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = int(d.size)
    if n == 0:
        return PairedResult(0, None, None, None, None, None, None, 0, "no common fold")
    mean = float(d.mean())
    ci = bootstrap_ci(d, n_resamples, seed)
    if n < 2:
        return PairedResult(n, mean, ci, None, None, None, None, int((d != 0).sum()), "one fold: no test")
    why = []
    t_stat = t_p = None
    if np.ptp(d) == 0:
        why.append("t-test undefined: every fold has the same difference")
    else:
        res = ttest_rel(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
        t_stat, t_p = float(res.statistic), float(res.pvalue)
    w_stat = w_p = None
    nonzero = int((d != 0).sum())
    if nonzero == 0:
        why.append("Wilcoxon undefined: all differences are 0")
    else:
        with warnings.catch_warnings():  # "Sample size too small for normal approximation": exact is used for n<=50
            warnings.simplefilter("ignore", UserWarning)
            res = wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        w_stat, w_p = float(res.statistic), float(res.pvalue)
        if math.isnan(w_p):
            w_stat = w_p = None
            why.append("Wilcoxon undefined")
    return PairedResult(n, mean, ci, t_stat, t_p, w_stat, w_p, nonzero, "; ".join(why))
