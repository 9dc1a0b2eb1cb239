"""Pure metric functions: accuracy, AUROC, PGR, and confidence intervals over seeds."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.stats import rankdata

# Below this weak-to-ceiling gap a PGR is mostly noise (DESIGN.md §4).
MIN_GAP = 0.08


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((np.asarray(probs) >= 0.5).astype(int) == np.asarray(labels)))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve via the rank-sum statistic (ties count half)."""
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pgr(transfer: float, weak: float, ceiling: float) -> float:
    """Performance gap recovered; NaN when the ceiling does not beat the weak teacher."""
    gap = ceiling - weak
    if not gap > 0:
        return float("nan")
    return (transfer - weak) / gap


@dataclass(frozen=True)
class Estimate:
    """Mean over seeds with a 95% t-interval half-width and the standard error."""

    mean: float
    ci: float
    se: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.ci:.3f}"

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci95": self.ci, "se": self.se, "n": self.n}


def estimate(values: list[float] | np.ndarray) -> Estimate:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(v.mean())
    if n == 1:
        return Estimate(mean, float("nan"), float("nan"), 1)
    se = float(v.std(ddof=1) / math.sqrt(n))
    return Estimate(mean, float(stats.t.ppf(0.975, n - 1) * se), se, n)


def gap_warning(weak: float, ceiling: float) -> str | None:
    """A sentence for the user when the gap is too small for PGR to mean much."""
    gap = ceiling - weak
    if not gap > 0:
        return (f"the strong ceiling ({ceiling:.3f}) does not beat the weak teacher "
                f"({weak:.3f}): PGR is undefined; pick a stronger model or fewer labels")
    if gap < MIN_GAP:
        return (f"gap ceiling - weak is only {gap:.3f} (< {MIN_GAP}): PGR is noisy; "
                "use a stronger model or fewer labeled examples")
    return None
