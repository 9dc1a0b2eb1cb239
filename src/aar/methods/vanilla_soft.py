"""Vanilla with soft labels: cross-entropy to the weak teacher's probabilities."""

from __future__ import annotations

from aar.methods import method
from aar.w2s.context import MethodContext, Predictor


@method("vanilla_soft")
def vanilla_soft(ctx: MethodContext, *, l2: float | None = None) -> Predictor:
    """Strong head trained by cross-entropy to the weak soft labels (Burns et al. 2023).

    Soft targets carry the teacher's confidence: an example the teacher is unsure of pulls
    the student little either way (knowledge distillation, Hinton et al. 2015).
    l2: ridge penalty of the logistic head, in units of one example's loss.
    """
    head = ctx.train_strong(ctx.weak_soft["unlabeled"], l2=l2)
    return head
