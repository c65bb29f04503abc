"""Statistics for comparing models scored on the same test rows: a bootstrap interval for accuracy and McNemar's
exact test on the rows where two models disagree."""

from __future__ import annotations

import numpy as np

BOOTSTRAP = 2000


def bootstrap_ci(correct: np.ndarray, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the accuracy, from a per-row correct/incorrect array."""
    correct = np.asarray(correct, dtype=bool)
    if len(correct) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), (BOOTSTRAP, len(correct)))].mean(1)
    tail = 100 * (1 - level) / 2
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: is model a right where b is wrong more often than the reverse?"""
    from scipy.stats import binomtest

    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
