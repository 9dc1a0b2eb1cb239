"""Product of experts: the student's out-of-fold prior times the weak label."""

from __future__ import annotations

import numpy as np

from aar.methods import method
from aar.methods.blocks import cross_fit, estimate_prior, prior_hard, product_of_experts
from aar.w2s.context import MethodContext, Predictor


@method("product")
def product(ctx: MethodContext, *, beta: float = 1.0, rounds: int = 1, hard: bool = True,
            folds: int = 4, l2: float | None = None) -> Predictor:
    """Train on a product-of-experts target: strong prior^beta x weak label.

    Product of experts (Hinton 2002) between the strong student's view and the weak
    teacher: target log-odds = beta * logit(out-of-fold strong prediction) + logit(weak soft
    label), with the surplus copy of the class prior divided out. Where the teacher is
    unsure the strong prior decides; where both are sure and disagree the more confident
    wins. Rounds repeat it with the new target as the strong head's training labels.
    beta: weight of the strong prior; rounds: repetitions; hard: prior-matched hard
    target (else soft); folds: cross-fitting folds; l2: ridge of the head.
    """
    x = ctx.strong_features["unlabeled"]
    weak = ctx.weak_soft["unlabeled"]
    prior = estimate_prior(weak)
    target = weak
    for _ in range(rounds):
        strong = cross_fit(x, target, rng=ctx.rng, folds=folds,
                          l2=ctx.default_l2 if l2 is None else l2)
        target = product_of_experts([strong, weak], [beta, 1.0], prior=prior)
        if hard:
            target = prior_hard(target, prior).astype(np.float64)
    head = ctx.train_strong(target, l2=l2)
    return head
