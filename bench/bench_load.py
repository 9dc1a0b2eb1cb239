"""Benchmark one evaluation server under 9 and 27 concurrent researchers, on SQLite and on
PostgreSQL.

For each database and each number of researchers: a fresh database (SQLite in a temp
``AAR_HOME``; PostgreSQL: a fresh database of a throw-away cluster started here with
Debian's ``initdb``, fsync on), ``python -m aar.server.main --db URL`` on a free loopback
port, one token per researcher, and one client thread per researcher sending
``--evals`` evaluations (5,000 test ids each, the weak teacher's soft labels plus noise,
under an ``Idempotency-Key`` as the researchers send them). Prints evaluations/s, p50/p99
latency, errors, and lost writes (acknowledged evaluations missing from the database),
checked row by row afterwards.

    .venv/bin/python bench/bench_load.py [--researchers 9 27] [--evals 20] [--db sqlite postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_server import bodies, free_port, wait_ready


def stored_ids(url: str) -> set[int]:
    from sqlalchemy import create_engine, select

    from aar.server.db import Submission

    engine = create_engine(url)
    with engine.connect() as c:
        out = {int(i) for (i,) in c.execute(select(Submission.id))}
    engine.dispose()
    return out


def one(db_url: str, n: int, evals: int, key: str, ids: list[str], soft: np.ndarray,
        home: Path) -> dict[str, Any]:
    from aar.server.main import create_token

    tokens = [create_token(f"r{i}", budget_per_hour=10**6, budget_total=10**6,
                           db_url=db_url) for i in range(n)]
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1"
    log = open(home / f"server-{n}.log", "w")  # noqa: SIM115
    server = subprocess.Popen([sys.executable, "-m", "aar.server.main", "--port", str(port),
                               "--db", db_url], stdout=log, stderr=subprocess.STDOUT)
    payloads = [bodies(key, ids, soft, a, evals + 1) for a in range(n)]
    lat: list[list[float]] = [[] for _ in range(n)]
    acked: list[list[int]] = [[] for _ in range(n)]
    errors: list[str] = []
    try:
        wait_ready(url, tokens[0], server, Path(log.name))
        start = threading.Barrier(n + 1)

        def researcher(a: int) -> None:
            transport = httpx.HTTPTransport(
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
            with httpx.Client(base_url=url, timeout=60, transport=transport, headers={
                    "Authorization": f"Bearer {tokens[a]}",
                    "Content-Type": "application/json"}) as c:
                c.post("/evaluations", content=payloads[a][0],  # warm: untimed
                       headers={"Idempotency-Key": uuid.uuid4().hex})
                start.wait()
                for body in payloads[a][1:]:
                    t = time.perf_counter()
                    try:
                        r = c.post("/evaluations", content=body,
                                   headers={"Idempotency-Key": uuid.uuid4().hex})
                    except httpx.HTTPError as exc:
                        errors.append(type(exc).__name__)
                        continue
                    lat[a].append(time.perf_counter() - t)
                    if r.status_code == 201:
                        acked[a].append(int(r.json()["id"]))
                    else:
                        errors.append(f"{r.status_code} {r.text[:100]}")

        threads = [threading.Thread(target=researcher, args=(a,)) for a in range(n)]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    ms = np.array([x for row in lat for x in row]) * 1000
    ok = [i for row in acked for i in row]
    stored = stored_ids(db_url)
    return {"researchers": n, "evaluations": n * evals, "seconds": round(wall, 2),
            "evals_per_s": round(len(ok) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "errors": len(errors), "acknowledged": len(ok),
            "lost_writes": len(set(ok) - stored), "duplicates": len(ok) - len(set(ok))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--researchers", type=int, nargs="+", default=[9, 27])
    ap.add_argument("--evals", type=int, default=20, help="evaluations per researcher")
    ap.add_argument("--n-test", type=int, default=5000)
    ap.add_argument("--db", nargs="+", default=["sqlite", "postgres"],
                    choices=["sqlite", "postgres"])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="aar-bench-load-"))
    os.environ["AAR_HOME"] = str(home)
    from aar.data.prepare import prepare
    from aar.data.registry import SplitSizes
    from aar.server.pgcluster import PgCluster, available
    from aar.w2s import baselines

    prep = prepare(f"synthetic:n={args.n_test + 2000}", SplitSizes(300, 1700, args.n_test))
    baselines.weak_teacher(prep, "syn_weak")
    baselines.ceiling(prep, "syn_strong")
    ids = prep.workspace.ids("test")
    soft = np.load(prep.workspace.weak_path("syn_weak"))["test"]
    load0 = os.getloadavg()[0]
    rows = []
    pg: PgCluster | None = None
    try:
        for db in args.db:
            if db == "postgres":
                if not available():
                    print("PostgreSQL is not installed (initdb): skipped", file=sys.stderr)
                    continue
                pg = PgCluster(Path(tempfile.mkdtemp(prefix="aar-pg-")), durable=True).start()
            for n in args.researchers:
                url = (pg.create_database(f"load_{n}") if db == "postgres" and pg
                       else f"sqlite:///{home / f'load-{n}.db'}")
                row = {"db": db, **one(url, n, args.evals, prep.key, ids, soft, home)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        if pg is not None:
            pg.stop()
            shutil.rmtree(pg.root, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    print(f"\n{'db':9} {'researchers':>11} {'evals/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'errors':>6} {'lost':>5}")
    for r in rows:
        print(f"{r['db']:9} {r['researchers']:>11} {r['evals_per_s']:>8} {r['p50_ms']:>7} "
              f"{r['p99_ms']:>7} {r['errors']:>6} {r['lost_writes']:>5}")
    print(f"cpus {os.cpu_count()}, load average before/after "
          f"{load0:.2f}/{os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
