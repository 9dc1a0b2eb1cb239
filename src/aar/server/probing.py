"""The probing detector: flags submissions that look like label probing, not research.

Pure functions over prediction arrays (workspace test order). A flag is advisory: the
submission is still scored; the flag goes to the audit log and the admin dashboard.

- ``duplicate``: identical to an earlier submission of the same agent, or of another
  researcher of its run. The server answers such a repeat from the account's Ladder
  without a new query (a deterministic method's seeds repeat), so it raises no flag.
- ``near_duplicate``: differs from an earlier submission in only a few predictions
  (at most ``max(3, 0.5% of n)``), or flips only that few hard labels while every other
  probability stays within 1e-3: one-prediction-at-a-time probing.
- ``hard_labels``: (almost) every prediction is exactly 0 or 1: not a model's output.
- ``hard_label_tuning``: a hard-label submission close (at most 5% of hard labels apart)
  to an earlier hard-label one: a 0/1 pattern tuned submission after submission.
- ``constant``: every prediction is the same value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aar.contracts.flags import FlagKind

CHANGE_TOL = 1e-6
NOISE_TOL = 1e-3
HARD_FRACTION = 0.99
TUNING_FRACTION = 0.05


@dataclass(frozen=True)
class ProbeFlag:
    kind: FlagKind
    detail: dict[str, Any] = field(default_factory=dict)


def few(n: int) -> int:
    """How many changed predictions count as 'only a few'."""
    return max(3, math.ceil(0.005 * n))


def is_hard(p: np.ndarray) -> bool:
    return bool(np.mean((p == 0) | (p == 1)) >= HARD_FRACTION)


def inspect(new: np.ndarray, previous: list[tuple[int, np.ndarray]]) -> list[ProbeFlag]:
    """Flags for ``new`` given the earlier submissions ``(id, predictions)`` of the agent
    (or of its run) on the same dataset, most recent first."""
    flags: list[ProbeFlag] = []
    n = len(new)
    hard = is_hard(new)
    if n and float(new.max()) == float(new.min()):
        flags.append(ProbeFlag(FlagKind.CONSTANT, {"value": float(new[0])}))
    elif hard:
        flags.append(ProbeFlag(FlagKind.HARD_LABELS, {"fraction_0_or_1": float(
            np.mean((new == 0) | (new == 1)))}))
    k = few(n)
    same_shape = [(sid, old) for sid, old in previous if old.shape == new.shape]
    if not same_shape or n == 0:
        return flags
    ids = [sid for sid, _ in same_shape]
    olds = np.stack([old for _, old in same_shape])  # (earlier submissions, n)
    diff = np.abs(olds - new)
    changed = np.count_nonzero(diff > CHANGE_TOL, axis=1)
    flipped = (olds >= 0.5) != (new >= 0.5)
    hard_changes = np.count_nonzero(flipped, axis=1)
    if (changed == 0).any():
        flags.append(ProbeFlag(FlagKind.DUPLICATE, {"of": ids[int(np.argmax(changed == 0))]}))
        return flags
    noise_only = np.where(flipped, 0.0, diff).max(axis=1) <= NOISE_TOL
    near = (changed <= k) | ((hard_changes <= k) & noise_only)
    if near.any():
        j = int(np.argmin(np.where(near, changed, n + 1)))
        flags.append(ProbeFlag(FlagKind.NEAR_DUPLICATE, {
            "of": ids[j], "changed": int(changed[j]), "hard_changes": int(hard_changes[j]),
            "threshold": k}))
    if hard:
        old_hard = np.mean((olds == 0) | (olds == 1), axis=1) >= HARD_FRACTION
        tuned = old_hard & (hard_changes <= TUNING_FRACTION * n)
        if tuned.any():
            j = int(np.argmax(tuned))
            flags.append(ProbeFlag(FlagKind.HARD_LABEL_TUNING, {
                "of": ids[j], "hard_changes": int(hard_changes[j])}))
    return flags
