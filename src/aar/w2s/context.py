"""The label-free context a method receives.

Everything here comes from the workspace export and the feature cache: texts and ids of
each split, the weak teacher's soft labels, weak and strong features, a strong-head
trainer, and a seeded random generator. No ground-truth label of any split and nothing
about which test ids are public is reachable from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aar.data.store import WORKSPACE_SPLITS, Workspace
from aar.errors import AarError
from aar.w2s.features import split_features
from aar.w2s.heads import LogisticHead, fit_logistic

DEFAULT_L2 = 1.0


@dataclass
class MethodContext:
    dataset: str
    seed: int
    ids: dict[str, list[str]]  # "labeled", "unlabeled", "test"
    texts: dict[str, list[str]]
    weak_soft: dict[str, np.ndarray]  # "unlabeled", "test": P(y=1) from this seed's teacher
    weak_soft_seeds: dict[str, np.ndarray]  # same, every weak seed: shape (n_seeds, n)
    weak_features: dict[str, np.ndarray]
    strong_features: dict[str, np.ndarray]
    rng: np.random.Generator
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def weak_hard(self) -> dict[str, np.ndarray]:
        return {s: (p >= 0.5).astype(np.int64) for s, p in self.weak_soft.items()}

    def train_strong(
        self,
        target: np.ndarray,
        weights: np.ndarray | None = None,
        *,
        x: np.ndarray | None = None,
        l2: float = DEFAULT_L2,
        max_iter: int = 200,
        init: LogisticHead | None = None,
    ) -> LogisticHead:
        """Fit a logistic head on strong features (``unlabeled`` unless ``x`` is given) to
        soft or hard ``target`` with optional per-example ``weights``."""
        feats = self.strong_features["unlabeled"] if x is None else x
        return fit_logistic(feats, target, weights, l2=l2, max_iter=max_iter, init=init)

    def predict_test(self, head: LogisticHead) -> np.ndarray:
        return head.predict_proba(self.strong_features["test"])


def load_weak_soft(ws: Workspace, weak: str) -> dict[str, np.ndarray]:
    path = ws.weak_path(weak)
    if not path.exists():
        raise AarError(
            f"no weak labels from {weak!r} for {ws.manifest['dataset']}; "
            f"run `aar setup --dataset {ws.manifest['dataset']} --weak {weak}` first"
        )
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def build_context(
    ws: Workspace, weak: str, strong: str, seed: int, params: dict[str, Any] | None = None
) -> MethodContext:
    """Assemble the context for one seed from the workspace alone."""
    soft_all = load_weak_soft(ws, weak)
    n_seeds = soft_all["test"].shape[0]
    if not 0 <= seed < n_seeds:
        raise AarError(f"seed {seed} out of range: the weak teacher has {n_seeds} seeds")
    return MethodContext(
        dataset=ws.manifest["dataset"],
        seed=seed,
        ids={s: ws.ids(s) for s in WORKSPACE_SPLITS},
        texts={s: ws.texts(s) for s in WORKSPACE_SPLITS},
        weak_soft={s: soft_all[s][seed].astype(np.float64) for s in soft_all},
        weak_soft_seeds=soft_all,
        weak_features=split_features(ws, weak),
        strong_features=split_features(ws, strong),
        rng=np.random.default_rng(seed),
        params=dict(params or {}),
    )
