"""Early stopping on a weak-labelled validation slice (no true labels)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from aar.methods import method
from aar.methods.blocks import fold_ids
from aar.w2s.context import MethodContext, Predictor

if TYPE_CHECKING:  # torch is imported when the method runs, not when it is listed
    from aar.w2s.trainers import GDHead


@method("early_stop")
def early_stop(ctx: MethodContext, *, val_frac: float = 0.2, epochs: int = 40,
               patience: int = 0, hidden: int = 0, lr: float = 1e-3,
               batch_size: int = 256) -> Predictor:
    """Stop training where agreement with held-out *weak* labels peaks.

    Early stopping against label noise (e.g. Li et al. 2020; Burns et al. 2023 use true
    labels for it, we may not): hold out ``val_frac`` of the unlabeled set with its weak
    labels, train on the rest by gradient descent, and keep the epoch whose predictions
    agree most with the held-out weak labels. When weak errors are random with respect to
    the strong features, agreement with them is highest where true accuracy is, and it
    falls once the student starts memorising the training slice's weak errors.
    val_frac: held-out fraction (0: no hold-out, all epochs on everything); epochs:
    maximum epochs; patience: stop after this many epochs without improvement (0 = run
    all); hidden: 0 = linear student, > 0 = MLP width; lr, batch_size: the Adam run.
    """
    from aar.w2s.trainers import fit_gd

    x = ctx.strong_features["unlabeled"]
    hard = ctx.weak_hard["unlabeled"]
    seed = int(ctx.rng.integers(2**31))
    if val_frac <= 0:  # no hold-out: the same student trained for all epochs
        head, _ = fit_gd(x, hard.astype(np.float64), seed=seed, hidden=hidden, epochs=epochs,
                         lr=lr, batch_size=batch_size)
        return head
    n_folds = max(2, round(1 / val_frac))
    val = fold_ids(len(hard), n_folds, ctx.rng) == 0

    def agreement(head: GDHead) -> float:
        return float(np.mean((head.logits(x[val]) >= 0) == (hard[val] == 1)))

    head, _ = fit_gd(x[~val], hard[~val].astype(np.float64), seed=seed,
                     hidden=hidden, epochs=epochs, lr=lr, batch_size=batch_size,
                     evaluate=agreement, patience=patience)
    return head
