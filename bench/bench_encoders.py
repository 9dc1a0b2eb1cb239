"""Benchmark: encoder throughput and memory on real sentiment snippets.

    .venv/bin/python bench/bench_encoders.py [--n 512] [--encoders l3 minilm smollm mpnet]

For each encoder: model load time, texts per second (features not cached: a fresh
feature directory is used), and peak resident memory of this process so far.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

from aar.data.prepare import prepare
from aar.models.registry import parse_encoder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--encoders", nargs="+", default=["l3", "minilm", "smollm", "mpnet"])
    a = ap.parse_args()
    texts = prepare("sentiment").workspace.all_texts()[: a.n]
    os.environ["AAR_FEATURES_DIR"] = tempfile.mkdtemp(prefix="aar-bench-features-")
    print(f"{'encoder':8} {'dim':>4} {'load s':>7} {'texts/s':>8} {'peak RSS MB':>12}")
    for name in a.encoders:
        t = time.perf_counter()
        model = parse_encoder(name).factory()
        load = time.perf_counter() - t
        model.encode(texts[:8])  # warm-up
        t = time.perf_counter()
        model.encode(texts)
        rate = len(texts) / (time.perf_counter() - t)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{name:8} {model.dim:>4} {load:>7.1f} {rate:>8.0f} {rss:>12.0f}")


if __name__ == "__main__":
    main()
