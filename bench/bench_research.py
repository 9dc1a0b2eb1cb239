"""Benchmark of the issue's bar: a built-in research run against the method library.

    .venv/bin/python bench/bench_research.py                      # 3 agents x 10 minutes
    .venv/bin/python bench/bench_research.py --run RUN_ID         # summarise a finished run
    .venv/bin/python bench/bench_research.py --minutes 3 --agents 2 --dataset synthetic

Prints the best method of ``aar baselines --seeds 5`` (mean public PGR over 5 seeds), the
research run's best server-scored result (public PGR, exact, and private PGR, from the
admin view of the leaderboard), the wall time, evaluations used, ranked results, and how
many findings built on another one. Needs ``aar setup -d DATASET`` first.
"""

from __future__ import annotations

import argparse
import json
import time

from aar.research.layout import RunPaths
from aar.research.orchestrator import ResearchConfig, default_encoders, research


def best_baseline(dataset: str, seeds: int) -> dict[str, float | str]:
    from aar.experiments.sweep import sweep

    weak, strong = default_encoders(dataset, None, None)
    t0 = time.perf_counter()
    rows = sweep(dataset, None, tuple(range(seeds)), weak, strong)
    top = rows[0]
    return {"method": top["method"], "pgr": top["pgr"]["mean"], "low": top["pgr"]["low"],
            "high": top["pgr"]["high"],
            "seconds": round(time.perf_counter() - t0, 1),
            "all": {r["method"]: round(r["pgr"]["mean"], 4) for r in rows}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="sentiment")
    p.add_argument("--agents", type=int, default=3)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--run", default=None, help="summarise this finished run instead")
    p.add_argument("--skip-baselines", action="store_true")
    args = p.parse_args()

    base = None if args.skip_baselines else best_baseline(args.dataset, args.seeds)
    if args.run:
        info = json.loads(RunPaths.of(args.run).info.read_text())
    else:
        t0 = time.perf_counter()
        info = research(ResearchConfig(dataset=args.dataset, agents=args.agents,
                                       minutes=args.minutes, live_view=False))
        info["bench_wall_s"] = round(time.perf_counter() - t0, 1)
    s = info["summary"]
    b = s.get("best") or {}
    print(f"dataset {info['dataset']} ({info['weak']} -> {info['strong']}), run {info['run_id']}")
    if base is not None:
        print(f"best library method (aar baselines, {args.seeds} seeds): {base['method']} "
              f"PGR {base['pgr']:.3f} [{base['low']:.3f}, {base['high']:.3f}]  "
              f"[{base['seconds']} s]")
        print(f"  all methods: {json.dumps(base['all'])}")
    if b:
        pub, priv = b["public_pgr_ci"], b["private_pgr_ci"]
        print(f"best research result: finding #{b['finding']} by {b['author']}: public PGR "
              f"{pub['mean']:.3f} [{pub['low']:.3f}, {pub['high']:.3f}], private PGR "
              f"{priv['mean']:.3f} [{priv['low']:.3f}, {priv['high']:.3f}]")
        print(f"  {b['title']}")
    print(f"time {s['minutes']} min, {s['evaluations']} evaluations, {s['results']} ranked "
          f"results from {len(s['authors_with_results'])} researchers, "
          f"{s.get('findings', '?')} findings, {s.get('findings_building_on_others')} building "
          "on another researcher's")
    if base is not None and b:
        verdict = "ABOVE" if b["public_pgr"] > base["pgr"] else "NOT above"
        print(f"verdict: research best {b['public_pgr']:.3f} is {verdict} the best library "
              f"method {base['pgr']:.3f}")


if __name__ == "__main__":
    main()
