"""Auxiliary confidence loss: the student's own hardened predictions, with warm-up."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from aar.methods import method
from aar.methods.blocks import estimate_prior
from aar.w2s.context import MethodContext, Predictor

if TYPE_CHECKING:  # torch is imported when the method runs, not when it is listed
    import torch

    from aar.w2s.trainers import LossFn


def confidence_loss(alpha_max: float, warmup: float, prior: float) -> LossFn:
    """Burns et al.'s auxiliary confidence loss for binary logits.

    loss = (1 - a) * CE(f, weak) + a * CE(f, hard(f)), where hard(f) sets to 1 the
    ``prior`` fraction of the batch with the highest logits (the threshold adapts to the
    class prior, so hardening never pushes a batch onto one class) and ``a`` ramps
    linearly from 0 to ``alpha_max`` over the first ``warmup`` fraction of training.
    For K classes the same hardening is ``blocks.balanced_argmax``.
    """
    import torch

    def loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
             progress: float) -> torch.Tensor:
        a = alpha_max * min(1.0, progress / warmup) if warmup > 0 else alpha_max
        with torch.no_grad():
            n_pos = round(prior * len(logits))
            own = torch.zeros_like(logits)
            if n_pos > 0:
                own[torch.argsort(logits, descending=True, stable=True)[:n_pos]] = 1.0
        mixed = (1 - a) * target + a * own
        per = torch.nn.functional.binary_cross_entropy_with_logits(logits, mixed,
                                                                   reduction="none")
        return (weights * per).sum() / weights.sum().clamp_min(1e-12)

    return loss


@method("logconf")
def logconf(ctx: MethodContext, *, alpha: float = 0.75, warmup: float = 0.2, epochs: int = 20,
            hidden: int = 0, lr: float = 1e-3, batch_size: int = 256,
            weight_decay: float = 0.0) -> Predictor:
    """Auxiliary confidence loss (Burns et al. 2023): trust your own confident predictions.

    The student is trained by gradient descent on a mix of the weak labels and its own
    hardened predictions, the mix weight warming up from 0 to ``alpha`` over the first
    ``warmup`` fraction of training: early on it learns what the weak labels agree on;
    later, instead of bending to fit the weak errors it disagrees with, it is rewarded for
    confidence in its own view. Hardening uses a batch threshold at the class prior (mean
    weak soft label), so it stays balanced (and extends to K classes by balanced argmax).
    alpha: final weight of the self-target; warmup: fraction of training to reach it;
    epochs, lr, batch_size, weight_decay: the Adam run; hidden: 0 for a linear student,
    > 0 for a one-hidden-layer MLP of that width (flexible enough to memorise).
    """
    from aar.w2s.trainers import fit_gd

    weak = ctx.weak_soft["unlabeled"]
    loss = confidence_loss(alpha, warmup, estimate_prior(weak))
    head, _ = fit_gd(ctx.strong_features["unlabeled"], (weak >= 0.5).astype(np.float64),
                     seed=int(ctx.rng.integers(2**31)), hidden=hidden, epochs=epochs, lr=lr,
                     batch_size=batch_size, weight_decay=weight_decay, loss=loss)
    return head
