"""Linear probe heads on frozen features: logistic regression fitted with L-BFGS.

Targets may be soft (probabilities in [0, 1]) and every example may carry a weight, so
hard labels, soft labels, filtering (weight 0) and reweighting are one function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit
from threadpoolctl import threadpool_limits


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
