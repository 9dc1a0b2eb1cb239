"""Linear probe heads on frozen features: logistic regression fitted with L-BFGS.

Targets may be soft (probabilities in [0, 1]) and every example may carry a weight, so
hard labels, soft labels, filtering (weight 0) and reweighting are one function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    from aar.w2s.context import Examples


def normalize(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows (features of different encoders then share one scale)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# Stop when a step improves the loss by less than this fraction: on the testbed's
# features accuracy is flat beyond it, and the fit takes about a third of the steps.
FTOL = 1e-5


@dataclass(frozen=True)
class Standardizer:
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        return cls.fit_transform(x)[0]

    @classmethod
    def fit_transform(cls, x: np.ndarray) -> tuple[Standardizer, np.ndarray]:
        xn = normalize(x)
        std = cls(xn.mean(axis=0), xn.std(axis=0) + 1e-6)
        return std, (xn - std.mean) / std.scale

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (normalize(x) - self.mean) / self.scale


@dataclass(frozen=True)
class LogisticHead:
    """P(y=1 | x) = sigmoid(w · standardize(x) + b)."""

    w: np.ndarray
    b: float
    std: Standardizer

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.std(x) @ self.w + self.b

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return expit(self.logits(x))

    def predict(self, examples: Examples) -> np.ndarray:
        """A head is a predictor: P(y=1) of ``examples`` from their strong features."""
        return self.predict_proba(examples.strong_features)


def fit_logistic(
    x: np.ndarray,
    target: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    l2: float = 1.0,
    max_iter: int = 200,
    init: LogisticHead | None = None,
) -> LogisticHead:
    """Weighted cross-entropy to (soft) targets plus ``l2/2 * |w|^2 / n``.

    ``l2`` is in units of one example's loss, so its effect does not depend on how
    many examples carry weight. Deterministic: same inputs, same head.
    """
    t = np.clip(np.asarray(target, dtype=np.float64), 0.0, 1.0)
    if t.ndim != 1 or len(t) != len(x):
        raise ValueError(f"target must be 1-d with {len(x)} entries, got shape {t.shape}")
    w_ex = np.ones(len(t)) if weights is None else np.asarray(weights, dtype=np.float64)
    if np.any(w_ex < 0) or not np.isfinite(w_ex).all():
        raise ValueError("weights must be finite and non-negative")
    total = w_ex.sum()
    if total <= 0:
        raise ValueError("all example weights are zero: nothing to train on")
    std, z64 = (init.std, init.std(x)) if init is not None else Standardizer.fit_transform(x)
    # float32 halves the memory read per matrix-vector product, the cost of each step
    z = np.ascontiguousarray(z64, dtype=np.float32)
    d = z.shape[1]
    a = w_ex / total
    reg = l2 / total

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d], theta[d]
        s = (z @ w.astype(np.float32)).astype(np.float64) + b
        loss = -np.sum(a * (t * log_expit(s) + (1 - t) * log_expit(-s))) + 0.5 * reg * (w @ w)
        r = a * (expit(s) - t)
        grad = np.empty(d + 1)
        grad[:d] = z.T @ r.astype(np.float32) + reg * w
        grad[d] = r.sum()
        return float(loss), grad

    theta0 = np.zeros(d + 1) if init is None else np.concatenate([init.w, [init.b]])
    # The products are too small to gain from BLAS threads; waking them each step costs
    # more than they save (measured: a fit takes half the time on one thread).
    with threadpool_limits(1, user_api="blas"):
        res = minimize(loss_grad, theta0, jac=True, method="L-BFGS-B",
                       options={"maxiter": max_iter, "ftol": FTOL})
    return LogisticHead(res.x[:d].copy(), float(res.x[d]), std)


# Ridge penalties tried by cross-validation: half-decades from 0.1 to 10^4 (in units of
# one example's loss, so the same grid serves any split size).
L2_GRID: tuple[float, ...] = tuple(float(10 ** (k / 2)) for k in range(-2, 9))
CV_FOLDS = 5


@dataclass(frozen=True)
class CVResult:
    """The l2 chosen by k-fold cross-validation and every candidate's held-out scores."""

    l2: float
    log_loss: dict[float, float]  # l2 -> mean held-out cross-entropy
    accuracy: dict[float, float]  # l2 -> mean held-out accuracy


def stratified_folds(labels: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """A fold number 0..folds-1 per example, each class spread evenly over the folds."""
    y = np.asarray(labels) >= 0.5
    out = np.empty(len(y), dtype=np.int64)
    offset = 0
    for cls in (False, True):
        idx = rng.permutation(np.flatnonzero(y == cls))
        out[idx] = (np.arange(len(idx)) + offset) % folds
        offset += len(idx)
    return out


def cv_l2(
    x: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None, *,
    rng: np.random.Generator, grid: tuple[float, ...] = L2_GRID, folds: int = CV_FOLDS,
) -> CVResult:
    """Choose the ridge penalty by ``folds``-fold cross-validation: the grid value with the
    lowest mean held-out cross-entropy to ``target`` (ties: the larger penalty). Each fold
    walks the grid from the largest penalty down, warm-starting from the previous head."""
    t = np.asarray(target, dtype=np.float64)
    w = np.ones(len(t)) if weights is None else np.asarray(weights, dtype=np.float64)
    fid = stratified_folds(t, folds, rng)
    order = sorted(grid, reverse=True)
    loss = {g: 0.0 for g in order}
    acc = {g: 0.0 for g in order}
    for f in range(folds):
        train, held = fid != f, fid == f
        wh = w[held] / max(w[held].sum(), 1e-12)
        head: LogisticHead | None = None
        for g in order:
            head = fit_logistic(x[train], t[train], w[train], l2=g, init=head)
            s = head.logits(x[held])
            ce = -(t[held] * log_expit(s) + (1 - t[held]) * log_expit(-s))
            loss[g] += float(wh @ ce) / folds
            acc[g] += float(wh @ ((s >= 0) == (t[held] >= 0.5))) / folds
    best = min(order, key=lambda g: (round(loss[g], 12), -g))
    return CVResult(best, loss, acc)


def fit_logistic_cv(
    x: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None, *,
    rng: np.random.Generator, grid: tuple[float, ...] = L2_GRID, folds: int = CV_FOLDS,
) -> tuple[LogisticHead, CVResult]:
    """A head on all of ``x`` with the penalty that cross-validation chose."""
    cv = cv_l2(x, target, weights, rng=rng, grid=grid, folds=folds)
    return fit_logistic(x, target, weights, l2=cv.l2), cv
