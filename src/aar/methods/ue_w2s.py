"""Weak labels as noisy observations of a latent label: coherence search with a channel."""

from __future__ import annotations

import numpy as np

from aar.methods import method
from aar.methods.blocks import (
    coherence_search,
    confidence_bins,
    estimate_prior,
    principal_components,
    prior_hard,
)
from aar.w2s.context import MethodContext, Predictor


@method("ue_w2s")
def ue_w2s(ctx: MethodContext, *, restarts: int = 4, iters: int = 8, dims: int = 64,
           bins: int = 10, channel: float = 1.0, hard: bool = True,
           search_l2: float = 1.0, l2: float | None = None) -> Predictor:
    """Latent true labels that the strong model finds coherent and that explain the weak
    labels through a learned noisy channel (hard EM, from weak and from UE starts).

    Unsupervised elicitation (ICM, Wen et al. 2025) meets learning from noisy annotators
    (Dawid & Skene 1979; Raykar et al. 2010): the latent label y scores its mutual
    predictability under strong heads (out-of-fold log-likelihood) plus ``channel`` times
    the log-likelihood of the weak teacher's confidence bins under P(bin | y), a channel
    learned along with y ("middling-confidence weak labels are often wrong"). Coordinate
    ascent relabels by the posterior strong prior x channel, hardened at the class prior.
    Starts: the weak labels, and the top ``restarts`` principal directions of the strong
    features oriented to agree with the weak labels (the channel is symmetric under
    swapping the classes, so the orientation is the assumption "the weak teacher beats
    chance"); the best-scoring labelling trains the final head.
    restarts: PC starts besides the weak labels; iters: relabelling steps per start; dims:
    PCA dimensions of the search; bins: channel bins; channel: weight of the weak-label
    term; hard: train on the labels (else the posterior); search_l2: ridge of the
    search's leave-one-out fits (PCA units); l2: ridge of the final head.
    """
    x = ctx.strong_features["unlabeled"]
    weak = ctx.weak_soft["unlabeled"]
    prior = estimate_prior(weak)
    z = principal_components(x, dims)
    b = confidence_bins(weak, bins)
    weak_hard = prior_hard(weak, prior)
    starts = [weak_hard]
    for r in range(min(restarts, z.shape[1])):
        y = prior_hard(z[:, r], prior)
        if np.mean(y == weak_hard) < 0.5:
            y = prior_hard(-z[:, r], prior)
        starts.append(y)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for start in starts:
        y, score, post = coherence_search(z, start, prior=prior, iters=iters, l2=search_l2,
                                          weak_bins=b, n_bins=bins,
                                          channel_weight=channel)
        if best is None or score > best[0]:
            best = (score, y, post)
    assert best is not None
    target = best[1].astype(np.float64) if hard else best[2]
    head = ctx.train_strong(target, l2=l2)
    return head
