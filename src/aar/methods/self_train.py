"""Self-training: rounds of the student relabelling the unlabeled set and retraining."""

from __future__ import annotations

import numpy as np

from aar.methods import method
from aar.methods.blocks import cross_fit, estimate_prior, prior_hard
from aar.w2s.context import MethodContext, Predictor
from aar.w2s.heads import LogisticHead


@method("self_train")
def self_train(ctx: MethodContext, *, rounds: int = 2, anchor: float = 0.0,
               crossfit: bool = True, folds: int = 4, l2: float | None = None) -> Predictor:
    """Bootstrapping: the student relabels the unlabeled set for a few rounds.

    Classic self-training (Yarowsky 1995; Scudder 1965) in the W2S form of Burns et al.
    2023 ("bootstrapping"): start from the weak labels, then each round replace them by the
    student's own prior-matched hard predictions (mixed with the weak labels by ``anchor``)
    and retrain. With ``crossfit`` the relabelling predictions are out-of-fold, so the
    student cannot simply reproduce a weak error it memorised.
    rounds: relabelling rounds; anchor: weight of the weak labels in each round's target;
    crossfit: out-of-fold relabelling (else in-sample); folds: folds for it; l2: head ridge.
    """
    x = ctx.strong_features["unlabeled"]
    weak = ctx.weak_hard["unlabeled"].astype(np.float64)
    prior = estimate_prior(ctx.weak_soft["unlabeled"])
    target = weak
    head: LogisticHead | None = None
    for _ in range(rounds):
        if crossfit:
            p = cross_fit(x, target, rng=ctx.rng, folds=folds,
                          l2=ctx.default_l2 if l2 is None else l2)
        else:
            head = ctx.train_strong(target, l2=l2, init=head)
            p = head.predict_proba(x)
        target = anchor * weak + (1 - anchor) * prior_hard(p, prior)
    head = ctx.train_strong(target, l2=l2)
    return head
