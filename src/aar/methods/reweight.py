"""Reweighting: per-example weights from the weak teacher's reliability."""

from __future__ import annotations

import numpy as np

from aar.methods import method
from aar.methods.blocks import cross_fit
from aar.w2s.context import MethodContext, Predictor


def reliability(soft: np.ndarray) -> np.ndarray:
    """1 - H(p)/log 2 of the weak soft label: 1 where the teacher is sure, 0 at p = 0.5."""
    p = np.clip(np.asarray(soft, dtype=np.float64), 1e-9, 1 - 1e-9)
    return 1.0 + (p * np.log2(p) + (1 - p) * np.log2(1 - p))


@method("reweight")
def reweight(ctx: MethodContext, *, gamma: float = 1.0, delta: float = 1.0,
             folds: int = 4, floor: float = 0.01, l2: float | None = None) -> Predictor:
    """Weight each weak label by the teacher's reliability and the strong prior's assent.

    Importance reweighting for noisy labels (Liu & Tao 2016; in W2S, e.g. Guo et al. 2024):
    weight_i = reliability_i^gamma * agreement_i^delta, where reliability is 1 minus the
    normalised entropy of the weak soft label (low where the teacher is unsure) and
    agreement is the out-of-fold strong head's probability of the weak label (low where the
    strong model's view contradicts it).
    gamma, delta: exponents (0 switches a factor off); folds: cross-fitting folds for the
    strong prior; floor: smallest weight; l2: ridge of the head.
    """
    x = ctx.strong_features["unlabeled"]
    hard = ctx.weak_hard["unlabeled"].astype(np.float64)
    w = np.ones(len(hard))
    if gamma:
        w *= reliability(ctx.weak_soft["unlabeled"]) ** gamma
    if delta:
        prior = cross_fit(x, hard, rng=ctx.rng, folds=folds,
                          l2=ctx.default_l2 if l2 is None else l2)
        w *= np.where(hard == 1, prior, 1 - prior) ** delta
    w = np.maximum(w, floor)
    head = ctx.train_strong(hard, weights=w / w.mean(), l2=l2)
    return head
