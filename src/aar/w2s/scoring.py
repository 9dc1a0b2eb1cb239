"""Scoring test predictions against the vault (trusted code)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aar.data.prepare import Prepared
from aar.data.splits import PRIVATE, PUBLIC
from aar.errors import AarError
from aar.w2s.baselines import Baseline
from aar.w2s.metrics import accuracy, auroc, pgr


@dataclass(frozen=True)
class SplitScore:
    accuracy: float
    auroc: float
    pgr: float


def check_predictions(probs: object, n: int) -> np.ndarray:
    """Validate a method's output: ``n`` finite probabilities in [0, 1]."""
    arr = np.asarray(probs, dtype=np.float64)
    if arr.shape != (n,):
        raise AarError(f"predictions must have shape ({n},) for the test ids, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise AarError("predictions contain NaN or infinity")
    if arr.min() < 0 or arr.max() > 1:
        raise AarError("predictions must be probabilities in [0, 1]")
    return arr


def score_test(
    prep: Prepared, test_probs: np.ndarray, weak: Baseline, ceiling: Baseline
) -> dict[str, SplitScore]:
    """Scores for predictions aligned with the workspace's ``test`` ids, per test half."""
    ids = prep.workspace.ids("test")
    probs = check_predictions(test_probs, len(ids))
    pos = {i: k for k, i in enumerate(ids)}
    out = {}
    for split in (PUBLIC, PRIVATE):
        idx = np.array([pos[i] for i in prep.vault.splits[split]])
        y = prep.vault.split_labels(split)
        acc = accuracy(probs[idx], y)
        out[split] = SplitScore(acc, auroc(probs[idx], y),
                                pgr(acc, weak.fixed(split), ceiling.fixed(split)))
    return out
