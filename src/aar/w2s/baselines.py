"""Fixed baselines: the weak teacher and the strong ceiling, over many seeds.

- Weak teacher, seed s: a logistic head on weak-encoder features, trained on a bootstrap
  sample (seeded by s) of the ``labeled`` split with its true labels. Its soft labels on
  ``unlabeled`` and ``test`` go to the workspace (``weak/<encoder>.npz``, one row per seed).
- Strong ceiling, seed s: a logistic head on strong-encoder features trained on a bootstrap
  sample of ``unlabeled`` with its true labels.

Accuracies are scored on ``test_public`` and ``test_private`` and stored in the vault; the
fixed weak and ceiling accuracies used by PGR are their means over seeds, as in the
reference system. Everything here is trusted code: it reads the vault.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aar.data.prepare import Prepared
from aar.data.splits import PRIVATE, PUBLIC
from aar.util import atomic_write_json, read_json, stable_hash
from aar.w2s.features import split_features
from aar.w2s.heads import fit_logistic
from aar.w2s.metrics import Estimate, accuracy, estimate

N_SEEDS = 16
HEAD_L2 = 1.0
BASELINE_VERSION = "2"  # bump when the head or the bootstrap changes


@dataclass(frozen=True)
class Baseline:
    """Per-seed test accuracies of one baseline model (weak teacher or ceiling)."""

    role: str
    encoder: str
    acc: dict[str, list[float]]  # split -> per-seed accuracy

    def fixed(self, split: str = PUBLIC) -> float:
        return float(np.mean(self.acc[split]))

    def spread(self, split: str = PUBLIC) -> Estimate:
        return estimate(self.acc[split])


def _bootstrap(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 7919]).integers(0, n, n)


def _test_index(prep: Prepared) -> dict[str, np.ndarray]:
    """Positions of the public and private ids inside the workspace's merged test split."""
    pos = {i: k for k, i in enumerate(prep.workspace.ids("test"))}
    return {s: np.array([pos[i] for i in prep.vault.splits[s]]) for s in (PUBLIC, PRIVATE)}


def _score_rows(prep: Prepared, test_probs: np.ndarray) -> dict[str, list[float]]:
    idx = _test_index(prep)
    return {
        s: [accuracy(row[idx[s]], prep.vault.split_labels(s)) for row in test_probs]
        for s in (PUBLIC, PRIVATE)
    }


def weak_teacher(
    prep: Prepared, weak: str, n_seeds: int = N_SEEDS,
    progress: Callable[[int], None] | None = None,
) -> Baseline:
    """Train (or load) the weak teacher; writes its soft labels to the workspace."""
    name = f"{weak}-{stable_hash([BASELINE_VERSION, HEAD_L2, n_seeds], 8)}"
    vault_file = prep.vault.root / "baselines" / f"weak-{name}.json"
    ws_file = prep.workspace.weak_path(weak)
    if vault_file.exists() and ws_file.exists():
        return Baseline("weak", weak, read_json(vault_file))
    feats = split_features(prep.workspace, weak, progress)
    y = prep.vault.split_labels("labeled")
    soft: dict[str, list[np.ndarray]] = {"unlabeled": [], "test": []}
    for seed in range(n_seeds):
        b = _bootstrap(len(y), seed)
        head = fit_logistic(feats["labeled"][b], y[b], l2=HEAD_L2)
        for split in soft:
            soft[split].append(head.predict_proba(feats[split]).astype(np.float32))
    arrays = {s: np.stack(v) for s, v in soft.items()}
    ws_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = ws_file.with_suffix(".tmp.npz")
    np.savez(tmp, unlabeled=arrays["unlabeled"], test=arrays["test"])
    tmp.replace(ws_file)
    acc = _score_rows(prep, arrays["test"])
    atomic_write_json(vault_file, acc)
    return Baseline("weak", weak, acc)


def ceiling(
    prep: Prepared, strong: str, n_seeds: int = N_SEEDS,
    progress: Callable[[int], None] | None = None,
) -> Baseline:
    """Train (or load) the strong ceiling: the strong head on true unlabeled labels."""
    name = f"{strong}-{stable_hash([BASELINE_VERSION, HEAD_L2, n_seeds], 8)}"
    vault_file = prep.vault.root / "baselines" / f"ceiling-{name}.json"
    if vault_file.exists():
        return Baseline("ceiling", strong, read_json(vault_file))
    feats = split_features(prep.workspace, strong, progress)
    y = prep.vault.split_labels("unlabeled")
    rows = []
    for seed in range(n_seeds):
        b = _bootstrap(len(y), seed)
        head = fit_logistic(feats["unlabeled"][b], y[b], l2=HEAD_L2)
        rows.append(head.predict_proba(feats["test"]))
    acc = _score_rows(prep, np.stack(rows))
    atomic_write_json(vault_file, acc)
    return Baseline("ceiling", strong, acc)
