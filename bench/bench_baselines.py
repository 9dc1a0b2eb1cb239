"""Benchmark: the whole method library on one dataset with features cached.

    .venv/bin/python bench/bench_baselines.py [--dataset sentiment] [--seeds 5]

Prints each method's public PGR (mean ± 95% CI over seeds), weak agreement and seconds,
and the wall time of the whole table (the issue's target: two minutes on two cores).
Run ``aar setup -d DATASET`` first so that encoding is not part of the figure.
"""

from __future__ import annotations

import argparse
import time

from aar.w2s.sweep import sweep


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="sentiment")
    ap.add_argument("--weak", default="l3")
    ap.add_argument("--strong", default="mpnet")
    ap.add_argument("--seeds", type=int, default=5)
    a = ap.parse_args()
    t = time.perf_counter()
    rows = sweep(a.dataset, None, tuple(range(a.seeds)), a.weak, a.strong)
    total = time.perf_counter() - t
    print(f"{a.dataset} {a.weak}->{a.strong}: weak {rows[0]['weak']:.3f}, "
          f"ceiling {rows[0]['ceiling']:.3f}")
    print(f"{'method':14} {'PGR':>7} {'± CI':>6} {'acc':>6} {'agree':>6} {'s':>6}")
    for r in rows:
        print(f"{r['method']:14} {r['pgr']['mean']:>7.3f} {r['pgr']['ci95']:>6.3f} "
              f"{r['accuracy']['mean']:>6.3f} "
              f"{r['weak_agreement']:>6.3f} {r['seconds']:>6.1f}")
    print(f"whole table: {total:.1f} s")


if __name__ == "__main__":
    main()
