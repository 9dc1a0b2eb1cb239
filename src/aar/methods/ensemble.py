"""Ensemble of weak teachers: combine all weak-teacher seeds before training."""

from __future__ import annotations

import numpy as np

from aar.methods import method
from aar.methods.blocks import combine_seeds, estimate_prior, prior_hard
from aar.w2s.context import MethodContext


@method("ensemble")
def ensemble(ctx: MethodContext, *, how: str = "mean", teachers: int = 16, hard: bool = True,
             l2: float = 1.0) -> np.ndarray:
    """Train on the combined labels of several weak teachers (bagging, Breiman 1996).

    The workspace holds the weak teacher trained with every seed (each on its own bootstrap
    of the labeled split); combining them averages out the variance of any one teacher's
    errors before the student sees them. This seed's teacher is always included, the
    others are drawn with ``ctx.rng``.
    how: mean (average probability), logit (average log-odds) or vote; teachers: how many
    (1..all); hard: prior-matched hard labels (else soft); l2: ridge of the head.
    """
    seeds = ctx.weak_soft_seeds["unlabeled"]
    n = len(seeds)
    others = [s for s in ctx.rng.permutation(n) if s != ctx.seed % n]
    pick = [ctx.seed % n, *others[:max(0, min(teachers, n) - 1)]]
    soft = combine_seeds(seeds[pick], how)
    target = prior_hard(soft, estimate_prior(soft)).astype(np.float64) if hard else soft
    head = ctx.train_strong(target, l2=l2)
    return ctx.predict_test(head)
