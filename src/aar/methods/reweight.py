"""Reweighting: per-example weights from the weak teacher's reliability."""

from __future__ import annotations

import numpy as np

from aar.methods import method
from aar.methods.blocks import combine_seeds, cross_fit
from aar.w2s.context import MethodContext


def reliability(seeds: np.ndarray) -> np.ndarray:
    """1 - H(p̄)/log 2 of the seed-averaged soft label: 1 where all weak seeds are sure and
    agree, 0 where they are unsure or split."""
    p = np.clip(combine_seeds(seeds, "mean"), 1e-9, 1 - 1e-9)
    return 1.0 + (p * np.log2(p) + (1 - p) * np.log2(1 - p))


@method("reweight")
def reweight(ctx: MethodContext, *, gamma: float = 1.0, delta: float = 1.0,
             folds: int = 4, floor: float = 0.01, l2: float = 1.0) -> np.ndarray:
    """Weight each weak label by the teacher's reliability and the strong prior's assent.

    Importance reweighting for noisy labels (Liu & Tao 2016; in W2S, e.g. Guo et al. 2024):
    weight_i = reliability_i^gamma * agreement_i^delta, where reliability is 1 minus the
    normalised entropy of the label averaged over all weak-teacher seeds (low where the
    teachers are unsure or disagree) and agreement is the out-of-fold strong head's
    probability of the weak label (low where the strong model's view contradicts it).
    gamma, delta: exponents (0 switches a factor off); folds: cross-fitting folds for the
    strong prior; floor: smallest weight; l2: ridge of the head.
    """
    x = ctx.strong_features["unlabeled"]
    hard = ctx.weak_hard["unlabeled"].astype(np.float64)
    w = np.ones(len(hard))
    if gamma:
        w *= reliability(ctx.weak_soft_seeds["unlabeled"]) ** gamma
    if delta:
        prior = cross_fit(x, hard, rng=ctx.rng, folds=folds, l2=l2)
        w *= np.where(hard == 1, prior, 1 - prior) ** delta
    w = np.maximum(w, floor)
    head = ctx.train_strong(hard, weights=w / w.mean(), l2=l2)
    return ctx.predict_test(head)
