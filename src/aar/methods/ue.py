"""Unsupervised elicitation: find the most mutually predictable labelling, no weak labels."""

from __future__ import annotations

import numpy as np

from aar.errors import AarError
from aar.methods import method
from aar.methods.blocks import coherence_search, principal_components, prior_hard
from aar.w2s.context import MethodContext


@method("ue")
def ue(ctx: MethodContext, *, dims: int = 32, restarts: int = 4, iters: int = 8,
       prior: float = 0.5, sign: str = "weak", transductive: bool = True,
       l2: float = 1.0) -> np.ndarray:
    """Label search for maximal mutual predictability on strong features (ICM-style).

    Unsupervised elicitation after Internal Coherence Maximisation (Wen et al. 2025):
    search the labelling of the unlabeled (and, with ``transductive``, test) texts that a
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
    steps per start; prior: assumed P(y=1); sign: weak|none;
    transductive: include test features in the search; l2: ridge of the heads.
    """
    if sign not in ("weak", "none"):
        raise AarError(f"ue: sign must be 'weak' or 'none', got {sign!r}")
    splits = ("unlabeled", "test") if transductive else ("unlabeled",)
    x = np.concatenate([ctx.strong_features[s] for s in splits])
    z = principal_components(x, dims)
    best: tuple[float, np.ndarray] | None = None
    for r in range(min(restarts, z.shape[1])):
        y, score, _ = coherence_search(z, prior_hard(z[:, r], prior), prior=prior,
                                       iters=iters, l2=l2)
        if best is None or score > best[0]:
            best = (score, y)
    assert best is not None
    head = ctx.train_strong(best[1].astype(np.float64), x=x, l2=l2)
    p = ctx.predict_test(head)
    if sign == "weak":
        mine = head.predict_proba(ctx.strong_features["unlabeled"]) >= 0.5
        if np.mean(mine == (ctx.weak_hard["unlabeled"] == 1)) < 0.5:
            p = 1 - p
    return p
