"""Run several methods on one dataset and rank them: the data behind ``aar baselines``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from aar.data.splits import PUBLIC
from aar.methods import METHODS
from aar.w2s.runner import RunConfig, run


def weak_agreement(record: dict[str, Any], weak_test: np.ndarray) -> float:
    """Mean agreement of a method's hard test predictions with its seed's weak labels."""
    agree = [np.mean((np.asarray(s["predictions"]) >= 0.5) == (weak_test[s["seed"]] >= 0.5))
             for s in record["seeds"]]
    return float(np.mean(agree))


def sweep(
    dataset: str, methods: list[str] | None, seeds: tuple[int, ...], weak: str, strong: str,
    on_done: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run each method; returns rows sorted by mean public PGR (best first)."""
    from aar.data.prepare import prepare
    from aar.w2s.context import load_weak_soft

    rows = []
    for name in methods or METHODS.names():
        rec = run(RunConfig(name, dataset, weak, strong, seeds))
        weak_test = load_weak_soft(prepare(dataset).workspace, weak)["test"]
        s = rec["summary"][PUBLIC]
        row = {
            "method": rec["config"]["method"], "pgr": s["pgr"], "accuracy": s["accuracy"],
            "auroc": s["auroc"], "weak": s["weak"], "ceiling": s["ceiling"],
            "weak_agreement": weak_agreement(rec, weak_test),
            "seconds": rec["seconds"], "record": rec["path"],
        }
        rows.append(row)
        if on_done:
            on_done(name, row)
    return sorted(rows, key=lambda r: -np.nan_to_num(r["pgr"]["mean"], nan=-np.inf))
