"""Benchmark: a 5-seed `aar run vanilla` with features cached, and `aar setup` by step.

    .venv/bin/python bench/run_vanilla.py [--dataset sentiment] [--repeats 3]

Prints the wall time of each setup step (the first run pays for downloads and encoding;
later runs show the cached cost) and of the 5-seed run, best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import resource
import time

from aar.data.prepare import prepare
from aar.experiments.runner import RunConfig, run
from aar.w2s import baselines
from aar.w2s.features import split_features


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="sentiment")
    ap.add_argument("--weak", default="l3")
    ap.add_argument("--strong", default="mpnet")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    steps: dict[str, float] = {}
    t = time.perf_counter()
    prep = prepare(a.dataset)
    steps["prepare (fetch, build, split)"] = time.perf_counter() - t
    for enc in (a.weak, a.strong):
        t = time.perf_counter()
        split_features(prep.workspace, enc)
        steps[f"encode {enc}"] = time.perf_counter() - t
    t = time.perf_counter()
    baselines.ensure(prep, a.weak, a.strong)
    steps["baselines (cross-validated)"] = time.perf_counter() - t
    print(f"setup steps on {a.dataset} (this process; cached steps show the cached cost):")
    for k, v in steps.items():
        print(f"  {k:32s} {v:8.2f} s")

    times = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        rec = run(RunConfig("vanilla", a.dataset, a.weak, a.strong, (0, 1, 2, 3, 4)))
        times.append(time.perf_counter() - t)
    pgr = rec["summary"]["test_public"]["pgr"]
    print(f"aar run vanilla --dataset {a.dataset} --seeds 5 (features cached): "
          f"best {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s "
          f"over {a.repeats} runs; PGR {pgr['mean']:.3f} [{pgr['low']:.3f}, {pgr['high']:.3f}]")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
