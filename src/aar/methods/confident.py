"""Confident-label filtering: train only on the weak labels the teacher is surest of."""

from __future__ import annotations

import numpy as np

from aar.methods import method
from aar.methods.blocks import confident_mask
from aar.w2s.context import MethodContext, Predictor


@method("confident")
def confident(ctx: MethodContext, *, keep: float = 0.5, soft: bool = False,
              l2: float | None = None) -> Predictor:
    """Train only on the most confident weak labels, kept per class (the human baseline).

    The confident-label filtering baseline of the reference system (PGR 0.23 on chat, 0.19
    on code), a standard noisy-label heuristic: when the weak teacher's errors are random
    and concentrated at low confidence, the confident part is much cleaner. The threshold
    is a quantile *within each weak class*, so the kept set keeps the class balance.
    keep: fraction of each weak class kept (0..1]; soft: train on the kept soft labels
    instead of hard ones; l2: ridge penalty of the head.
    """
    p = ctx.weak_soft["unlabeled"]
    mask = confident_mask(p, keep)
    target = p if soft else ctx.weak_hard["unlabeled"].astype(np.float64)
    head = ctx.train_strong(target, weights=mask.astype(np.float64), l2=l2)
    return head
