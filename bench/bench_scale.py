"""Benchmark the executors: experiments per minute on a Ray cluster of one node and of two
nodes (started on this machine, one CPU each), and the per-task overhead of a Ray task
against a bare local run.

An experiment is one library method (``--method``) fitted on ``--dataset`` for one seed in
the sandbox. ``--tasks`` experiments (distinct seeds) go to the cluster at once; the rate
is experiments / wall time. The overhead: the same one-seed experiment run ``--repeat``
times one after another in-process (``fit_predict``, no sandbox), in this machine's
sandbox (the local executor) and as a Ray task on the one-node cluster; medians.

    .venv/bin/python bench/bench_scale.py [--dataset synthetic] [--tasks 16] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

# Ray reads its authentication settings when first imported: one token for this driver
# and the nodes it starts.
os.environ.setdefault("RAY_AUTH_MODE", "token")
TOKEN = os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))


def rate(cluster_address: str, exp: Any, tasks: int, work: Path) -> dict[str, float]:
    from aar.execution.ray_cluster import RayExecutor

    with RayExecutor(cluster_address) as ex:
        ex.run(exp.with_seeds((10_000 - 1,)), work)  # warm: bundle on every node, workers up
        ex.run(exp.with_seeds((10_000 - 2,)), work)
        t0 = time.perf_counter()
        futs = [ex.submit(exp.with_seeds((s,)), work) for s in range(tasks)]
        nodes = [f.result().nodes[0] for f in futs]
        wall = time.perf_counter() - t0
    return {"seconds": round(wall, 2), "experiments_per_min": round(tasks / wall * 60, 1),
            "nodes_used": len(set(nodes))}


def timed(fn: Any, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--method", default="self_train")
    ap.add_argument("--tasks", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="aar-bench-scale-"))
    os.environ.setdefault("AAR_HOME", str(home / "home"))
    from aar.cli import _encoders
    from aar.data.prepare import prepare
    from aar.execution import Experiment
    from aar.execution.local import LocalExecutor
    from aar.execution.local_cluster import LocalRayCluster
    from aar.execution.ray_cluster import RayExecutor
    from aar.methods import resolve_method
    from aar.research.orchestrator import prepare_dataset
    from aar.w2s.context import examples_of, fit_predict

    weak, strong = _encoders(args.dataset, None, None)
    prepare_dataset(args.dataset, weak, strong)
    ws = prepare(args.dataset).workspace
    spec = resolve_method(args.method)
    exp = Experiment(spec.source_file, ws, weak, strong, (0,), method_name=spec.name)
    work = home / "work"
    work.mkdir()
    load0 = os.getloadavg()[0]
    figures: dict[str, Any] = {"dataset": args.dataset, "method": spec.name,
                               "tasks": args.tasks, "cpus": os.cpu_count()}
    examples = examples_of(ws, weak, strong)
    figures["in_process_s"] = round(timed(lambda: fit_predict(
        spec, ws, weak, strong, 0, spec.resolve_params({}), examples), args.repeat), 3)
    local = LocalExecutor(1)
    figures["local_sandbox_s"] = round(timed(lambda: local.run(exp, work), args.repeat), 3)
    root = Path(tempfile.mkdtemp(prefix="aar-ray-", dir="/tmp"))
    try:
        with LocalRayCluster(root, token=TOKEN) as c:
            c.start_head(cpus=1)
            with RayExecutor(c.address) as ex:
                ex.run(exp, work)  # warm
                figures["ray_task_s"] = round(timed(lambda: ex.run(exp, work), args.repeat), 3)
            figures["one_node"] = rate(c.address, exp, args.tasks, work)
            c.add_node(cpus=1)
            figures["two_nodes"] = rate(c.address, exp, args.tasks, work)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    figures["ratio_two_over_one"] = round(figures["two_nodes"]["experiments_per_min"]
                                          / figures["one_node"]["experiments_per_min"], 2)
    figures["ray_overhead_vs_local_sandbox_s"] = round(
        figures["ray_task_s"] - figures["local_sandbox_s"], 3)
    figures["sandbox_overhead_vs_in_process_s"] = round(
        figures["local_sandbox_s"] - figures["in_process_s"], 3)
    figures["load_average_1min_before_after"] = [round(load0, 2),
                                                 round(os.getloadavg()[0], 2)]
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
