"""Benchmark: the whole method library on one dataset with features cached.

    .venv/bin/python bench/bench_baselines.py [--dataset sentiment] [--seeds 5]

Prints each method's public PGR and accuracy (mean with a 95% paired-bootstrap interval
over seeds and test examples; "gap too small" where PGR means nothing), weak agreement and
seconds,
and the wall time of the whole table (the issue's target: two minutes on two cores).
Run ``aar setup -d DATASET`` first so that encoding is not part of the figure.
"""

from __future__ import annotations

import argparse
import time

from aar.experiments.sweep import sweep


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
    print(f"{'method':18} {'PGR [95% CI]':>24} {'acc':>6} {'agree':>6} {'s':>6}")
    for r in rows:
        p = r["pgr"]
        cell = (f"{p['mean']:.3f} [{p['low']:.3f}, {p['high']:.3f}]" if r["gap_ok"]
                else "gap too small")
        name = r["method"] + (" (T)" if r["transductive"] else "")
        print(f"{name:18} {cell:>24} {r['accuracy']['mean']:>6.3f} "
              f"{r['weak_agreement']:>6.3f} {r['seconds']:>6.1f}")
    print(f"whole table: {total:.1f} s")


if __name__ == "__main__":
    main()
