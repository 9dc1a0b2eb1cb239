"""Pure metric functions: accuracy, AUROC, PGR, confidence intervals over seeds, and the
paired bootstrap over seeds and test examples behind every PGR interval."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

# Below this weak-to-ceiling gap (or when the gap's interval reaches below it) a PGR is
# reported as "gap too small": never ranked, never averaged. Pick pairs whose gap is
# nearer 0.08 for PGR to mean much (DESIGN.md §4).
MIN_GAP = 0.05
N_BOOT = 2000


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((np.asarray(probs) >= 0.5).astype(int) == np.asarray(labels)))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: P(score_pos > score_neg) + P(tie) / 2 (the rank-sum
    statistic with ties counted half), with one sort of each class instead of ranking
    everything. The one AUROC of the code base: the scorer and the server both use it."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = s[y], np.sort(s[~y])
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    below = np.searchsorted(neg, pos, side="left")
    upto = np.searchsorted(neg, pos, side="right")
    return float((below.sum() + 0.5 * (upto - below).sum()) / (len(pos) * len(neg)))


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


@dataclass(frozen=True)
class Interval:
    """A point estimate with a 95% percentile interval [low, high] from the bootstrap."""

    mean: float
    low: float
    high: float
    n: int  # seeds behind it

    def __str__(self) -> str:
        if not math.isfinite(self.mean):
            return "n/a"
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def as_dict(self) -> dict[str, float]:
        # ``ci95`` (half the interval's width) keeps the shape of an ``Estimate``
        return {"mean": self.mean, "low": self.low, "high": self.high,
                "ci95": (self.high - self.low) / 2, "n": self.n}


NAN_INTERVAL = Interval(float("nan"), float("nan"), float("nan"), 0)


def _pct(values: np.ndarray, mean: float, n: int) -> Interval:
    v = values[np.isfinite(values)]
    if len(v) == 0 or not math.isfinite(mean):
        return Interval(mean, float("nan"), float("nan"), n)
    lo, hi = np.percentile(v, [2.5, 97.5])
    return Interval(mean, float(lo), float(hi), n)


@dataclass(frozen=True)
class PairedBootstrap:
    """Intervals for transfer accuracy, the baselines, their gap and PGR, resampling the
    test examples (the same resample for the method and both baselines: paired) and the
    method's seeds together. ``pgr`` is NaN with an empty interval when the gap is too
    small (its point estimate below ``MIN_GAP`` or its interval reaching below it)."""

    accuracy: Interval
    weak: Interval
    ceiling: Interval
    gap: Interval
    pgr: Interval

    @property
    def gap_ok(self) -> bool:
        return gap_ok(self.gap)

    @property
    def above_ceiling(self) -> bool:
        """The transfer accuracy is above the ceiling's interval: a result to review."""
        return above_interval(self.accuracy.mean, self.ceiling.high)


def gap_ok(gap: Interval) -> bool:
    return math.isfinite(gap.low) and gap.mean >= MIN_GAP and gap.low >= MIN_GAP


def above_interval(value: float, high: float) -> bool:
    """Whether ``value`` lies above an interval's upper end (an undefined end never is)."""
    return math.isfinite(high) and value > high


@functools.lru_cache(maxsize=4)
def _resample_counts(n: int, n_boot: int, seed: int) -> tuple[np.ndarray, Mapping[str, Any]]:
    """How often each of ``n`` test examples appears in each of ``n_boot`` resamples: the
    same resamples for every result on a test set of that size (computed once, read-only),
    so scoring a leaderboard costs one product per result. Also returns the generator's
    state after drawing them."""
    rng = np.random.default_rng([seed, 20261202])
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    counts.flags.writeable = False
    return counts, rng.bit_generator.state


def paired_bootstrap(correct: np.ndarray, weak_correct: np.ndarray,
                     ceiling_correct: np.ndarray, *, n_boot: int = N_BOOT,
                     seed: int = 0) -> PairedBootstrap:
    """``correct``: (seeds, n) 0/1 correctness of the method's predictions on n test
    examples; ``weak_correct`` and ``ceiling_correct``: (n,) the baselines'."""
    c = np.atleast_2d(np.asarray(correct, dtype=np.float64))
    wk = np.asarray(weak_correct, dtype=np.float64)
    cl = np.asarray(ceiling_correct, dtype=np.float64)
    s, n = c.shape
    counts, after = _resample_counts(n, n_boot, seed)
    acc_rows = counts @ c.T / n  # (B, seeds): each seed's accuracy on each resample
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = after  # the seeds' resampling continues the same stream
    pick = rng.integers(0, s, size=(n_boot, s))
    acc_b = np.take_along_axis(acc_rows, pick, axis=1).mean(axis=1)
    weak_b, ceil_b = counts @ wk / n, counts @ cl / n
    gap_b = ceil_b - weak_b
    acc, weak, ceil = float(c.mean()), float(wk.mean()), float(cl.mean())
    gap = _pct(gap_b, ceil - weak, 1)
    if gap_ok(gap):
        with np.errstate(divide="ignore", invalid="ignore"):
            pgr_b = np.where(gap_b > 0, (acc_b - weak_b) / gap_b, np.nan)
        pgr_i = _pct(pgr_b, (acc - weak) / (ceil - weak), s)
    else:
        pgr_i = NAN_INTERVAL
    return PairedBootstrap(_pct(acc_b, acc, s), _pct(weak_b, weak, 1), _pct(ceil_b, ceil, 1),
                           gap, pgr_i)


def gap_warning(weak: float, ceiling: float) -> str | None:
    """A sentence for the user when the gap is too small for PGR to mean much."""
    gap = ceiling - weak
    if not gap > 0:
        return (f"the strong ceiling ({ceiling:.3f}) does not beat the weak teacher "
                f"({weak:.3f}): PGR is undefined; pick a stronger model or fewer labels")
    if gap < MIN_GAP:
        return (f"gap too small: ceiling - weak is only {gap:.3f} (< {MIN_GAP}), so PGR is "
                "not reported; use a stronger model or fewer labeled examples")
    return None
