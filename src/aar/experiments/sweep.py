"""Run several methods on one dataset and rank them: the data behind ``aar baselines``."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aar.data.splits import PUBLIC
from aar.experiments.runner import RunConfig, run
from aar.methods import METHODS, is_library_file, resolve_method

if TYPE_CHECKING:
    from aar.execution import ExecutorConfig


def weak_agreement(predictions: Sequence[Sequence[float]] | np.ndarray,
                   weak_test: np.ndarray) -> float:
    """Mean agreement of a method's hard test predictions (one row per seed) with the weak
    teacher's."""
    agree = [np.mean((np.asarray(row) >= 0.5) == (weak_test >= 0.5)) for row in predictions]
    return float(np.mean(agree))


def _row(ref: str, dataset: str, weak: str, strong: str,
         seeds: tuple[int, ...]) -> dict[str, Any]:
    from aar.data.prepare import prepare
    from aar.w2s.context import load_weak_soft

    rec = run(RunConfig(ref, dataset, weak, strong, seeds))
    weak_test = load_weak_soft(prepare(dataset).workspace, weak)["test"]
    s = rec["summary"][PUBLIC]
    return {
        "method": rec["config"]["method"], "transductive": rec["transductive"],
        "pgr": s["pgr"], "gap_ok": s["gap_ok"], "accuracy": s["accuracy"],
        "auroc": s["auroc"], "weak": s["weak"], "ceiling": s["ceiling"],
        "weak_agreement": weak_agreement([s["predictions"] for s in rec["seeds"]], weak_test),
        "seconds": rec["seconds"], "record": rec["path"],
    }


def _ref(name: str) -> str:
    """What a fresh process resolves to the same method: the name of a library method, the
    file of one a user registered."""
    spec = resolve_method(name)
    return name if is_library_file(spec.source_file) else f"{spec.source_file}:{spec.name}"


def _cluster_rows(
    dataset: str, names: list[str], seeds: tuple[int, ...], weak: str, strong: str,
    executor: ExecutorConfig, on_done: Callable[[str, dict[str, Any]], None] | None,
) -> list[dict[str, Any]]:
    """Each method's seeds as sandboxed experiments on ``executor`` (Ray tasks on its
    nodes, which see only the label-free export); scored here, against the vault."""
    import tempfile
    import time
    from concurrent.futures import as_completed as done

    from aar.data.prepare import prepare
    from aar.execution import Experiment, make_executor
    from aar.w2s import baselines
    from aar.w2s.context import load_weak_soft
    from aar.w2s.scoring import Scorer

    prep = prepare(dataset)
    baselines.ensure(prep, weak, strong)
    scorer = Scorer.of(prep, weak, strong)
    weak_test = load_weak_soft(prep.workspace, weak)["test"]
    rows = []
    with make_executor(executor) as ex, tempfile.TemporaryDirectory(prefix="aar-sweep-") as tmp:
        started: dict[Any, tuple[str, float]] = {}
        for name in names:
            spec = resolve_method(name)
            exp = Experiment(spec.source_file, prep.workspace, weak, strong, seeds,
                             method_name=spec.name)
            started[ex.submit(exp, Path(tmp))] = (name, time.perf_counter())
        for fut in done(started):
            name, t0 = started[fut]
            preds = fut.result().predictions
            spec = resolve_method(name)
            s = scorer.summary(preds)[PUBLIC]
            rows.append({
                "method": spec.name, "transductive": spec.transductive, "pgr": s["pgr"],
                "gap_ok": s["gap_ok"], "accuracy": s["accuracy"], "auroc": s["auroc"],
                "weak": s["weak"], "ceiling": s["ceiling"],
                "weak_agreement": weak_agreement(preds, weak_test),
                "seconds": time.perf_counter() - t0, "record": None})
            if on_done:
                on_done(name, rows[-1])
    return rows


def sweep(
    dataset: str, methods: list[str] | None, seeds: tuple[int, ...], weak: str, strong: str,
    on_done: Callable[[str, dict[str, Any]], None] | None = None, workers: int | None = None,
    executor: ExecutorConfig | None = None,
) -> list[dict[str, Any]]:
    """Run each method, ``workers`` at a time in separate processes (default: one per CPU),
    or, with a ``ray`` executor, as sandboxed experiments on the cluster; returns rows
    sorted by mean public PGR (best first; transductive methods after the others, ranked
    apart; by accuracy where the gap is too small for PGR). Each method's numbers are the
    same whatever the number of workers or the executor."""
    names = list(methods or METHODS.names())
    n = max(1, min(len(names), workers or os.cpu_count() or 1))
    rows = []
    if executor is not None and executor.kind != "local":
        rows = _cluster_rows(dataset, names, seeds, weak, strong, executor, on_done)
    elif n == 1:
        for name in names:
            rows.append(_row(name, dataset, weak, strong, seeds))
            if on_done:
                on_done(name, rows[-1])
    else:
        from aar.data.prepare import prepare
        from aar.w2s import baselines

        prep = prepare(dataset)  # set up once here, not raced by the workers
        baselines.ensure(prep, weak, strong)
        ctx = multiprocessing.get_context("spawn")  # no forked torch or BLAS thread state
        with ProcessPoolExecutor(n, mp_context=ctx) as pool:
            futures = {pool.submit(_row, _ref(m), dataset, weak, strong, seeds): m
                       for m in names}
            for fut in as_completed(futures):
                rows.append(fut.result())
                if on_done:
                    on_done(futures[fut], rows[-1])
    return sorted(rows, key=lambda r: (r["transductive"],
                                       -np.nan_to_num(r["pgr"]["mean"], nan=-np.inf),
                                       -r["accuracy"]["mean"], r["method"]))
