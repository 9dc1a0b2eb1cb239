"""Students trained by gradient descent (torch, CPU): a linear head or a one-hidden-layer MLP.

The logistic heads of ``aar.w2s.heads`` are fitted to convergence by L-BFGS; some methods
need a *training trajectory* instead: a loss that changes during training (``logconf``'s
warm-up), or a stopping point chosen on held-out data (``early_stop``). ``fit_gd`` gives
both through two hooks, and with ``hidden > 0`` a student flexible enough to memorise weak
errors. Deterministic: initialisation and shuffling draw from a ``torch.Generator`` seeded
by the caller (no global random state), and the CPU kernels used are deterministic for a
fixed thread count, so a record re-runs bit-identically on the same machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

import numpy as np
import torch
from scipy.special import expit

from aar.w2s.heads import Standardizer

if TYPE_CHECKING:
    from aar.w2s.context import Examples

# loss(logits, target, weights, progress in [0, 1]) -> scalar; target and weights are
# the batch's rows. The default is weighted binary cross-entropy to (soft) targets.
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


@dataclass(frozen=True)
class GDHead:
    """P(y=1 | x) = sigmoid(w2 · relu(W1 · standardize(x) + b1) + b2), or linear when
    ``w1`` is None. Same interface as ``LogisticHead`` (``logits``, ``predict_proba``)."""

    std: Standardizer
    w1: np.ndarray | None
    b1: np.ndarray | None
    w2: np.ndarray
    b2: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        z = self.std(x).astype(np.float32)
        if self.w1 is not None and self.b1 is not None:
            z = np.maximum(z @ self.w1 + self.b1, 0.0)
        return (z @ self.w2 + self.b2).astype(np.float64)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return expit(self.logits(x))

    def predict(self, examples: Examples) -> np.ndarray:
        """A head is a predictor: P(y=1) of ``examples`` from their strong features."""
        return self.predict_proba(examples.strong_features)


def bce(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
        progress: float) -> torch.Tensor:
    """Weighted cross-entropy to soft targets, averaged over the batch's weight."""
    del progress
    per = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (weights * per).sum() / weights.sum().clamp_min(1e-12)


def fit_gd(
    x: np.ndarray,
    target: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    seed: int,
    hidden: int = 0,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    loss: LossFn = bce,
    evaluate: Callable[[GDHead], float] | None = None,
    patience: int = 0,
    threads: int = 1,
) -> tuple[GDHead, list[float]]:
    """Train by Adam on shuffled minibatches for ``epochs`` epochs.

    With ``evaluate`` (a head -> score, higher is better, called after every epoch) the
    head of the best epoch is returned (the earliest on ties), and training stops once
    ``patience`` > 0 epochs pass without improvement. Returns (head, per-epoch scores).
    ``threads``: torch threads while training (restored after). One thread is fastest
    for these small matrices on a busy machine, and keeps results independent of the
    machine's core count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        return _fit_gd(x, target, weights, seed=seed, hidden=hidden, epochs=epochs, lr=lr,
                       batch_size=batch_size, weight_decay=weight_decay, loss=loss,
                       evaluate=evaluate, patience=patience)
    finally:
        torch.set_num_threads(before)


def _fit_gd(
    x: np.ndarray, target: np.ndarray, weights: np.ndarray | None, *, seed: int,
    hidden: int, epochs: int, lr: float, batch_size: int, weight_decay: float,
    loss: LossFn, evaluate: Callable[[GDHead], float] | None, patience: int,
) -> tuple[GDHead, list[float]]:
    std = Standardizer.fit(x)
    xt = torch.from_numpy(std(x).astype(np.float32))
    tt = torch.from_numpy(np.clip(np.asarray(target, dtype=np.float32), 0.0, 1.0))
    wt = torch.from_numpy(np.ones(len(tt), dtype=np.float32) if weights is None
                          else np.asarray(weights, dtype=np.float32))
    gen = torch.Generator().manual_seed(int(seed))
    n, d = xt.shape
    params: list[torch.Tensor] = []
    if hidden > 0:
        w1 = (torch.randn(d, hidden, generator=gen) * (2.0 / d) ** 0.5).requires_grad_()
        b1 = torch.zeros(hidden, requires_grad=True)
        w2 = (torch.randn(hidden, generator=gen) * (1.0 / hidden) ** 0.5).requires_grad_()
        params += [w1, b1]
    else:
        w1 = b1 = None
        w2 = torch.zeros(d, requires_grad=True)
    b2 = torch.zeros((), requires_grad=True)
    params += [w2, b2]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)

    def forward(z: torch.Tensor) -> torch.Tensor:
        if w1 is not None and b1 is not None:
            z = torch.relu(z @ w1 + b1)
        return z @ w2 + b2

    def snapshot() -> GDHead:
        return GDHead(std, _np(w1), _np(b1), _np(w2), float(b2.detach()))

    steps_per_epoch = max(1, -(-n // batch_size))
    total = epochs * steps_per_epoch
    scores: list[float] = []
    best: tuple[float, GDHead] | None = None
    since_best = 0
    step = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            value = loss(forward(xt[idx]), tt[idx], wt[idx], step / total)
            opt.zero_grad()
            value.backward()
            opt.step()
            step += 1
        if evaluate is not None:
            head = snapshot()
            score = float(evaluate(head))
            scores.append(score)
            if best is None or score > best[0]:
                best, since_best = (score, head), 0
            else:
                since_best += 1
                if patience > 0 and since_best >= patience:
                    break
    if best is not None:
        return best[1], scores
    return snapshot(), scores


@overload
def _np(t: torch.Tensor) -> np.ndarray: ...
@overload
def _np(t: None) -> None: ...
def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().numpy().copy()
