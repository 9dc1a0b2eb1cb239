"""The one scorer (trusted code): local runs, the evaluation server and verification all
score predictions here, against the vault and the stored baselines."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from typing_extensions import TypedDict  # pydantic validates these on Python 3.11

from aar.data.prepare import Prepared
from aar.data.splits import PRIVATE, PUBLIC
from aar.errors import AarError
from aar.w2s.metrics import PairedBootstrap, auroc, estimate, paired_bootstrap, pgr

SPLITS = (PUBLIC, PRIVATE)


class SplitSummary(TypedDict):
    """One test half of a run's summary (``Scorer.summary``); each interval is a dict of
    ``mean``, ``low``, ``high``, ``ci95``, ``n`` (``auroc``: ``mean``, ``ci95``, ``se``,
    ``n``, over seeds)."""

    weak: float
    ceiling: float
    weak_ci: dict[str, float]
    ceiling_ci: dict[str, float]
    gap: dict[str, float]
    gap_ok: bool  # the gap's interval clears MIN_GAP: PGR is reported
    accuracy: dict[str, float]
    pgr: dict[str, float]
    auroc: dict[str, float]
    above_ceiling: bool  # a result to review, not to celebrate


@dataclass(frozen=True)
class SplitScore:
    accuracy: float
    auroc: float
    pgr: float


def check_predictions(probs: object, n: int) -> np.ndarray:
    """Validate a method's output: ``n`` finite probabilities in [0, 1]."""
    try:
        arr = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError):
        raise AarError("predictions must be an array of probabilities, one per test id") \
            from None
    if arr.shape != (n,):
        raise AarError(f"predictions must have shape ({n},) for the test ids, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise AarError("predictions contain NaN or infinity")
    if arr.min(initial=0.0) < 0 or arr.max(initial=0.0) > 1:
        raise AarError("predictions must be probabilities in [0, 1]")
    return arr


@dataclass(frozen=True)
class Scorer:
    """Labels of each test half, its positions in the workspace's ``test`` order, and the
    weak teacher's and ceiling's test predictions."""

    ids: list[str]  # the workspace's merged test split, in order
    index: dict[str, np.ndarray]  # split -> positions in ``ids``
    labels: dict[str, np.ndarray]  # split -> 0/1 labels, aligned with ``index``
    weak_probs: np.ndarray
    ceiling_probs: np.ndarray
    weak: str
    strong: str

    @classmethod
    def of(cls, prep: Prepared, weak: str, strong: str) -> Scorer:
        """The scorer of a prepared dataset for a (weak, strong) pair; trains the baselines
        the first time."""
        from aar.w2s import baselines

        ids = prep.workspace.ids("test")
        pos = {i: k for k, i in enumerate(ids)}
        index = {s: np.array([pos[i] for i in prep.vault.splits[s]], dtype=np.int64)
                 for s in SPLITS}
        labels = {s: prep.vault.split_labels(s) for s in SPLITS}
        return cls(ids, index, labels, baselines.weak_teacher(prep, weak).test_probs,
                   baselines.ceiling(prep, strong).test_probs, weak, strong)

    @classmethod
    def of_subset(cls, prep: Prepared, ids: list[str], weak_probs: np.ndarray,
                  ceiling_probs: np.ndarray, weak: str, strong: str) -> Scorer:
        """A scorer of the test ids ``ids`` only (a public subset, in workspace order) with
        the given baselines' predictions on them (the LoRA student's)."""
        pos = {i: k for k, i in enumerate(ids)}
        if len(pos) != len(ids) or not set(ids) <= set(prep.workspace.ids("test")):
            raise AarError("a scorer subset must be distinct ids of the test split")
        index, labels = {}, {}
        for s in SPLITS:
            kept = [i for i in prep.vault.splits[s] if i in pos]
            index[s] = np.array([pos[i] for i in kept], dtype=np.int64)
            labels[s] = np.array([prep.vault.labels[i] for i in kept], dtype=np.int64)
        return cls(list(ids), index, labels, np.asarray(weak_probs, dtype=np.float64),
                   np.asarray(ceiling_probs, dtype=np.float64), weak, strong)

    @property
    def n(self) -> int:
        return len(self.ids)

    def correct(self, probs: np.ndarray, split: str) -> np.ndarray:
        """0/1 correctness of ``probs`` (workspace test order) on the examples of ``split``."""
        return ((probs[self.index[split]] >= 0.5) == (self.labels[split] == 1)).astype(np.int8)

    @cached_property
    def fixed(self) -> dict[str, tuple[float, float]]:
        """split -> (weak accuracy, ceiling accuracy)."""
        return {s: (float(self.correct(self.weak_probs, s).mean()),
                    float(self.correct(self.ceiling_probs, s).mean())) for s in SPLITS}

    def score(self, probs: np.ndarray,
              fixed: dict[str, tuple[float, float]] | None = None) -> dict[str, SplitScore]:
        """Accuracy, AUROC and PGR of one prediction vector on each test half. ``fixed``
        overrides the baselines PGR is computed from (the server's published ones)."""
        probs = check_predictions(probs, self.n)
        out = {}
        for s in SPLITS:
            acc = float(self.correct(probs, s).mean())
            weak, ceil = (fixed or self.fixed)[s]
            out[s] = SplitScore(acc, auroc(probs[self.index[s]], self.labels[s]),
                                pgr(acc, weak, ceil))
        return out

    def bootstrap(self, rows: np.ndarray, split: str) -> PairedBootstrap:
        """Intervals over seeds and test examples for predictions ``rows`` (seeds, n)."""
        rows = np.atleast_2d(rows)
        return paired_bootstrap(np.stack([self.correct(r, split) for r in rows]),
                                self.correct(self.weak_probs, split),
                                self.correct(self.ceiling_probs, split))

    def summary(self, rows: np.ndarray) -> dict[str, SplitSummary]:
        """Per test half: baselines, gap, transfer accuracy, PGR (paired-bootstrap
        intervals), AUROC over seeds, and whether the result sits above the ceiling's
        interval (a result to review, not to celebrate)."""
        out: dict[str, SplitSummary] = {}
        for s in SPLITS:
            b = self.bootstrap(rows, s)
            aucs = [auroc(r[self.index[s]], self.labels[s]) for r in np.atleast_2d(rows)]
            out[s] = {
                "weak": b.weak.mean, "ceiling": b.ceiling.mean,
                "weak_ci": b.weak.as_dict(), "ceiling_ci": b.ceiling.as_dict(),
                "gap": b.gap.as_dict(), "gap_ok": b.gap_ok,
                "accuracy": b.accuracy.as_dict(), "pgr": b.pgr.as_dict(),
                "auroc": estimate(aucs).as_dict(),
                "above_ceiling": b.above_ceiling,
            }
        return out
