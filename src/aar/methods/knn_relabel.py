"""kNN relabelling: smooth the weak labels over neighbours in the strong feature space."""

from __future__ import annotations

import numpy as np

from aar.methods import method
from aar.methods.blocks import estimate_prior, knn_graph, prior_hard, propagate
from aar.w2s.context import MethodContext, Predictor


@method("knn_relabel")
def knn_relabel(ctx: MethodContext, *, k: int = 50, rounds: int = 3, alpha: float = 0.0,
                hard: bool = True, l2: float | None = None) -> Predictor:
    """Smooth weak labels over k nearest neighbours in the strong space, then train.

    Label propagation (Zhu & Ghahramani 2002; Zhou et al. 2004) with the strong encoder's
    geometry: a weak error whose strong-space neighbours are mostly labelled correctly is
    out-voted. It relies on the strong features clustering by the true label more than by
    the weak teacher's mistakes. The smoothed scores are hardened at the class prior's
    quantile (the mean weak soft label), so shrinkage toward the mean cannot collapse the
    labels onto the majority class.
    k: neighbours (cosine, standardised strong features); rounds: propagation steps;
    alpha: weight of the original labels at every step (0 = pure neighbour averaging);
    hard: train on prior-matched hard labels (else on the smoothed soft labels);
    l2: ridge of the head (default: cross-validated on the weak labels).
    """
    x = ctx.strong_features["unlabeled"]
    soft = ctx.weak_soft["unlabeled"]
    neighbours, _ = knn_graph(x, k)
    smooth = propagate(soft, neighbours, rounds=rounds, alpha=alpha)
    prior = estimate_prior(soft)
    target = prior_hard(smooth, prior).astype(np.float64) if hard else smooth
    return ctx.train_strong(target, l2=l2)
