"""Benchmark: what the sandbox costs per run, in each mode this machine has.

    .venv/bin/python bench/bench_sandbox.py [--runs 20]

For each mode (bwrap, landlock, subprocess) it times ``python -c pass`` and
``python -c "import numpy"`` through ``run_sandboxed`` (median and 90th percentile of
``--runs`` runs, after one warm-up), and the same commands started bare with
``subprocess.run`` as the yardstick; the difference is the sandbox's overhead. It also
prints the Landlock ABI and what the probes found. Nothing here needs network.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aar.sandbox.runner import (
    Mode,
    bwrap_probe,
    clean_env,
    landlock_probe,
    run_sandboxed,
)

COMMANDS = {"python -c pass": "pass", "import numpy": "import numpy"}


def _stats(xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(0.9 * len(xs)))]
    return f"median {1000 * statistics.median(xs):7.1f} ms   p90 {1000 * p90:7.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    bw, ll = bwrap_probe(), landlock_probe()
    print(f"bwrap:    {bw.reason}")
    print(f"landlock: {ll.reason} (ABI {ll.abi}, PID cap {ll.pid_max})")
    usable: list[tuple[Mode, bool]] = [("bwrap", bw.usable), ("landlock", ll.usable),
                                       ("subprocess", True)]
    modes = [m for m, ok in usable if ok]
    with tempfile.TemporaryDirectory(prefix="aar-bench-sandbox-") as tmp:
        work = Path(tmp)
        for label, code in COMMANDS.items():
            argv = [sys.executable, "-c", code]
            bare = []
            for i in range(a.runs + 1):
                t0 = time.perf_counter()
                subprocess.run(argv, env=clean_env(str(work)), cwd=work, check=True)
                if i:
                    bare.append(time.perf_counter() - t0)
            print(f"\n{label}\n  {'bare':10} {_stats(bare)}")
            base = statistics.median(bare)
            for mode in modes:
                times = []
                for i in range(a.runs + 1):
                    t0 = time.perf_counter()
                    r = run_sandboxed(argv, workdir=work, cpu_seconds=60, memory_mb=2048,
                                      timeout_s=60, mode=mode)
                    if not r.ok:
                        raise SystemExit(f"{mode}: {r.stderr_tail()}")
                    if i:
                        times.append(time.perf_counter() - t0)
                extra = 1000 * (statistics.median(times) - base)
                print(f"  {mode:10} {_stats(times)}   overhead {extra:+7.1f} ms")


if __name__ == "__main__":
    main()
