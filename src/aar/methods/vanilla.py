"""Vanilla weak-to-strong: train the strong head on the weak teacher's hard labels."""

from __future__ import annotations

from aar.methods import method
from aar.w2s.context import MethodContext, Predictor


@method("vanilla")
def vanilla(ctx: MethodContext, *, l2: float | None = None) -> Predictor:
    """Strong head on hard weak labels (Burns et al. 2023, the naive W2S baseline).

    l2: ridge penalty of the logistic head, in units of one example's loss.
    """
    head = ctx.train_strong(ctx.weak_hard["unlabeled"], l2=l2)
    return head
