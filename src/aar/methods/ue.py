"""Unsupervised elicitation: find the most mutually predictable labelling, no weak labels."""

from __future__ import annotations

import numpy as np

from aar.errors import AarError
from aar.methods import method
from aar.methods.blocks import coherence_search, principal_components, prior_hard
from aar.w2s.context import MethodContext, Predictor


@method("ue")
def ue(ctx: MethodContext, *, dims: int = 32, restarts: int = 4, iters: int = 8,
       prior: float = 0.5, sign: str = "weak", search_l2: float = 1.0,
       l2: float | None = None) -> Predictor:
    """Label search for maximal mutual predictability on strong features (ICM-style).

    Unsupervised elicitation after Internal Coherence Maximisation (Wen et al. 2025):
    search the labelling of the unlabeled texts that a
    strong head predicts best from the *other* examples (out-of-fold log-likelihood),
    subject to a class-balance constraint that rules out the trivial one-class labelling
    (ICM's consistency term; the only one available for a single binary question).
    Search: start from each of the top principal directions, alternate fitting and
    prior-matched relabelling to a fixed point, keep the most predictable labelling. No
    weak label is used to find it. Its sign is not identifiable without labels:
    ``sign="weak"`` orients it to agree with the majority of weak labels (one bit from the
    weak teacher, so then it is no longer pure UE); ``sign="none"`` keeps a label-free
    convention (each PC points to its heavier tail), as likely wrong as right.
    dims: PCA dimensions searched in; restarts: PCs tried as starts; iters: relabelling
    steps per start; prior: assumed P(y=1); sign: weak|none; search_l2: ridge of the
    search's leave-one-out fits (PCA units); l2: ridge of the final head.
    """
    if sign not in ("weak", "none"):
        raise AarError(f"ue: sign must be 'weak' or 'none', got {sign!r}")
    x = ctx.strong_features["unlabeled"]
    z = principal_components(x, dims)
    best: tuple[float, np.ndarray] | None = None
    for r in range(min(restarts, z.shape[1])):
        y, score, _ = coherence_search(z, prior_hard(z[:, r], prior), prior=prior,
                                       iters=iters, l2=search_l2)
        if best is None or score > best[0]:
            best = (score, y)
    assert best is not None
    y = best[1]
    if sign == "weak" and np.mean(y == ctx.weak_hard["unlabeled"]) < 0.5:
        y = 1 - y
    return ctx.train_strong(y.astype(np.float64), l2=l2)
