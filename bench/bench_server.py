"""Benchmark the evaluation server: concurrent agent clients on loopback against SQLite.

Starts ``python -m aar.server.main`` on a free 127.0.0.1 port with a fresh ``AAR_HOME``
(a synthetic dataset with ``--n-test`` test ids), creates one token per agent with a large
budget, and runs ``--agents`` client threads (httpx, keep-alive) that each send
``--evals`` evaluations of realistic predictions (the weak teacher's soft labels plus
noise). Every agent is an account of its own (no run), so the account budget never binds.
Prints evaluations per second, p50/p99 latency, errors, and checks that every
accepted evaluation is in the database afterwards. Traffic goes to loopback only and the
run stops by itself.

    .venv/bin/python bench/bench_server.py [--agents 9] [--evals 120] [--n-test 5000]

Goal (issue #4): >= 200 evaluations/s, p99 <= 100 ms, 0 errors, 0 lost writes.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

GOAL = {"evals_per_s": 200.0, "p99_ms": 100.0}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(home: Path, n_test: int, agents: int) -> tuple[str, list[str], list[str], np.ndarray]:
    """Prepare the dataset and baselines, create the tokens; returns (dataset key, ids,
    tokens, weak soft labels on test)."""
    os.environ["AAR_HOME"] = str(home)
    from aar.data.prepare import prepare
    from aar.data.registry import SplitSizes
    from aar.server.main import create_token
    from aar.w2s import baselines

    n = n_test + 2000
    prep = prepare(f"synthetic:n={n}", SplitSizes(300, 1700, n_test))
    baselines.weak_teacher(prep, "syn_weak")
    baselines.ceiling(prep, "syn_strong")
    ids = prep.workspace.ids("test")
    soft = np.load(prep.workspace.weak_path("syn_weak"))["test"]
    tokens = [create_token(f"bench-{i}", budget_per_hour=10**6, budget_total=10**6)
              for i in range(agents)]
    return prep.key, ids, tokens, soft


def bodies(key: str, ids: list[str], soft: np.ndarray, agent: int, count: int) -> list[bytes]:
    """Distinct, plausible submissions: a weak-teacher seed's soft labels plus noise."""
    rng = np.random.default_rng(agent)
    out = []
    for k in range(count):
        base = np.asarray(soft, dtype=np.float64)  # the one weak teacher's soft labels
        probs = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)
        out.append(json.dumps({"dataset": key, "ids": ids, "probs": np.round(probs, 6).tolist(),
                               "seed": k, "method": f"bench-{agent}"}).encode())
    return out


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and its descendants (Linux /proc; else None)."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
    try:
        tick = os.sysconf("SC_CLK_TCK")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    except (OSError, ValueError, IndexError):
        return None
    if pid not in stats:
        return None
    tree, total, grew = {pid}, 0.0, True
    while grew:
        grew = False
        for p, (parent, _) in stats.items():
            if parent in tree and p not in tree:
                tree.add(p)
                grew = True
    for p in tree:
        total += stats[p][1]
    return total


def wait_ready(url: str, token: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """Wait up to a minute for the server at ``url`` (the API root) to answer ``/me``."""
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(f"{url}/me", headers={"Authorization": f"Bearer {token}"},
                         timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.time() > deadline or server.poll() is not None:
            raise SystemExit(f"server did not start; see {log}")
        time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=9)
    ap.add_argument("--evals", type=int, default=120, help="evaluations per agent")
    ap.add_argument("--n-test", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=3, help="untimed evaluations per agent")
    ap.add_argument("--workers", type=int, default=1, help="server processes")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    load0 = os.getloadavg()[0]  # other work on the machine skews the figures: report it
    home = Path(tempfile.mkdtemp(prefix="aar-bench-"))
    t0 = time.perf_counter()
    key, ids, tokens, soft = setup(home, args.n_test, args.agents)
    print(f"setup: {len(ids)} test ids, {args.agents} agents, {time.perf_counter() - t0:.1f} s")
    port = free_port()
    env = {**os.environ, "AAR_HOME": str(home)}
    log = open(home / "server.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "aar.server.main", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(args.workers)],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_ready(url, tokens[0], server, home / "server.log")
        payloads = [bodies(key, ids, soft, a, args.evals + args.warmup)
                    for a in range(args.agents)]
        latencies: list[list[float]] = [[] for _ in range(args.agents)]
        accepted: list[list[int]] = [[] for _ in range(args.agents)]
        errors: list[list[str]] = [[] for _ in range(args.agents)]
        start = threading.Barrier(args.agents + 1)

        def agent(a: int) -> None:
            headers = {"Authorization": f"Bearer {tokens[a]}",
                       "Content-Type": "application/json"}
            # TCP_NODELAY: a 200 kB body goes out in several writes; without it Nagle's
            # algorithm and delayed ACKs add up to 40 ms to a request.
            transport = httpx.HTTPTransport(
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
            with httpx.Client(base_url=url, headers=headers, timeout=30,
                              transport=transport) as client:
                for k in range(args.warmup):
                    r = client.post("/evaluations", content=payloads[a][k])
                    if r.status_code == 201:
                        accepted[a].append(r.json()["id"])
                start.wait()
                for k in range(args.warmup, args.warmup + args.evals):
                    t = time.perf_counter()
                    try:
                        r = client.post("/evaluations", content=payloads[a][k])
                    except httpx.HTTPError as exc:
                        errors[a].append(type(exc).__name__)
                        continue
                    latencies[a].append(time.perf_counter() - t)
                    if r.status_code == 201:
                        accepted[a].append(r.json()["id"])
                    else:
                        errors[a].append(f"{r.status_code} {r.text[:100]}")

        threads = [threading.Thread(target=agent, args=(a,)) for a in range(args.agents)]
        for t in threads:
            t.start()
        start.wait()
        t_start = time.perf_counter()
        server_cpu0, client_cpu0 = cpu_seconds(server.pid), time.process_time()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t_start
        server_cpu1, client_cpu1 = cpu_seconds(server.pid), time.process_time()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    lat = np.array([x for row in latencies for x in row]) * 1000
    ok_ids = [i for row in accepted for i in row]
    errs = [e for row in errors for e in row]
    timed = args.agents * args.evals
    with sqlite3.connect(home / "aar.db") as conn:
        stored = {r[0] for r in conn.execute("SELECT id FROM submissions")}
        audited = conn.execute(
            "SELECT count(*) FROM audit WHERE action = 'evaluation.score'").fetchone()[0]
    lost = len(set(ok_ids) - stored)
    figures = {
        "agents": args.agents, "test_ids": len(ids), "evaluations": timed,
        "seconds": round(wall, 3), "evals_per_s": round((timed - len(errs)) / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
        "errors": len(errs), "accepted": len(ok_ids), "stored": len(stored),
        "audited_scores": audited, "lost_writes": lost,
        "cpus": os.cpu_count(), "workers": args.workers,
        "load_average_1min_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "server_cpu_ms_per_eval": None if server_cpu0 is None or server_cpu1 is None else
        round((server_cpu1 - server_cpu0) / timed * 1000, 2),
        "client_cpu_ms_per_eval": round((client_cpu1 - client_cpu0) / timed * 1000, 2),
    }
    print(json.dumps(figures, indent=1))
    if errs:
        print("first errors:", errs[:3])
    met = (figures["evals_per_s"] >= GOAL["evals_per_s"] and figures["p99_ms"] is not None
           and figures["p99_ms"] <= GOAL["p99_ms"] and not errs and not lost
           and len(stored) == len(ok_ids))
    print(f"goal (>= {GOAL['evals_per_s']:.0f}/s, p99 <= {GOAL['p99_ms']:.0f} ms, 0 errors, "
          f"0 lost writes): {'met' if met else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
