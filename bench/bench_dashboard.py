"""Benchmark the dashboard's overview page with 9 researchers and 1,000 findings.

Starts ``python -m aar.server.main`` on a free 127.0.0.1 port with a fresh ``AAR_HOME``
(a synthetic dataset), seeds it through the API (9 agents reporting their status, each with
``--evals`` scored submissions; 1,000 findings, a tenth of them results that link five
seeds, with votes and comments), logs in through the login form, and measures:

- page weight: bytes of the overview's HTML + CSS + JS (and gzipped);
- server response time of ``GET /`` (p50/p95 over ``--requests``);
- in headless Chromium (``/usr/bin/chromium`` via Playwright, when present): first
  contentful paint and DOMContentLoaded from the Performance API (median of ``--loads``).

    .venv/bin/python bench/bench_dashboard.py [--findings 1000] [--evals 40]

Traffic goes to loopback only and the run stops by itself.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

AGENTS = 9
DIRECTIONS = ["unsupervised elicitation", "data reweighting", "W2S + elicitation",
              "noisy channel posterior", "distillation tricks", "simplicity bias",
              "high-value labels", "evolutionary search", "interpretability probes"]
CHROMIUM = os.environ.get("AAR_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


# The paint entry may land after "load": wait for it (buffered) for up to 3 s.
FCP_JS = """() => new Promise(resolve => {
  const nav = performance.getEntriesByType('navigation')[0];
  const done = fcp => resolve([fcp, nav.domContentLoadedEventEnd, nav.responseStart]);
  new PerformanceObserver(list => {
    const p = list.getEntriesByName('first-contentful-paint')[0];
    if (p) done(p.startTime);
  }).observe({type: 'paint', buffered: true});
  setTimeout(() => done(-1), 3000);
})"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(home: Path) -> tuple[str, list[str], np.ndarray]:
    os.environ["AAR_HOME"] = str(home)
    from aar.data.prepare import prepare as prep_dataset
    from aar.data.registry import SplitSizes
    from aar.w2s import baselines

    prep = prep_dataset("synthetic:n=3000", SplitSizes(300, 1700, 1000))
    baselines.weak_teacher(prep, "syn_weak")
    baselines.ceiling(prep, "syn_strong")
    soft = np.load(prep.workspace.weak_path("syn_weak"))["test"]
    return prep.key, prep.workspace.ids("test"), soft


def seed(url: str, admin: str, key: str, ids: list[str], soft: np.ndarray, evals: int,
         findings: int) -> None:
    rng = np.random.default_rng(0)
    with httpx.Client(base_url=f"{url}/api/v1", timeout=60) as c:
        head = {"Authorization": f"Bearer {admin}"}
        tokens = []
        for i in range(AGENTS):
            r = c.post("/admin/tokens", headers=head, json={
                "name": f"researcher-{i + 1}", "budget_per_hour": 10**6, "budget_total": 500})
            tokens.append({"Authorization": f"Bearer {r.raise_for_status().json()['token']}"})
        subs: list[list[int]] = []
        for i, h in enumerate(tokens):
            mine = []
            for k in range(evals):
                base = soft[(i + k) % len(soft)].astype(np.float64)
                probs = np.clip(base + rng.normal(0, 0.02 + 0.002 * k, base.shape), 0, 1)
                r = c.post("/evaluations", headers=h, json={
                    "dataset": key, "ids": ids, "probs": np.round(probs, 5).tolist(),
                    "seed": k, "method": f"idea-{k // 5}"})
                mine.append(r.raise_for_status().json()["id"])
            subs.append(mine)
            c.put("/status", headers=h, json={
                "run_id": "bench", "direction": DIRECTIONS[i], "state": "running",
                "best_pgr": round(float(rng.uniform(0.3, 0.9)), 3), "evals": evals,
                "findings": findings // AGENTS, "usd": round(float(rng.uniform(5, 60)), 2),
                "tokens": int(rng.integers(10**5, 10**7)), "compute_s": 1000.0,
            }).raise_for_status()
        types = ["hypothesis", "insight", "negative", "error"]
        made: list[int] = []
        for n in range(findings):
            i = n % AGENTS
            body: dict[str, Any] = {"title": f"idea {n}: {DIRECTIONS[i]} variant {n // AGENTS}",
                                    "body": "Tried it over five seeds. " * 20,
                                    "metrics": {"pgr": round(float(rng.uniform(0, 1)), 3)}}
            start = (n // AGENTS) * 5
            if n % 10 == 0 and start + 5 <= evals:
                body.update(type="result", dataset=key, submissions=subs[i][start:start + 5])
            else:
                body["type"] = types[n % len(types)]
            if made and n % 3 == 0:
                body["builds_on"] = [made[int(rng.integers(len(made)))]]
            r = c.post("/findings", headers=tokens[i], json=body)
            made.append(r.raise_for_status().json()["id"])
            if n % 4 == 0:
                c.post(f"/findings/{made[-1]}/votes", headers=tokens[(i + 1) % AGENTS],
                       json={"value": 1})
                c.post(f"/findings/{made[-1]}/comments", headers=tokens[(i + 2) % AGENTS],
                       json={"body": "reproduced"})


def login(url: str, token: str) -> str:
    with httpx.Client(base_url=url) as c:
        page = c.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf
        r = c.post("/login", data={"csrf": csrf.group(1), "token": token, "next": "/"})
        assert r.status_code == 303, f"login failed: {r.status_code}"
        value = c.cookies.get("aar_session")
        assert value, "login failed"
        return value


def browser_timings(url: str, cookie: str, loads: int) -> dict[str, float] | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("chromium: skipped (playwright is not installed)")
        return None
    if not Path(CHROMIUM).exists():
        print(f"chromium: skipped (no {CHROMIUM})")
        return None
    fcp, dcl, ttfb = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1280, "height": 860})
        ctx.add_cookies([{"name": "aar_session", "value": cookie, "url": url}])
        page = ctx.new_page()
        for k in range(loads + 1):
            page.goto(f"{url}/", wait_until="load")
            if k == 0:
                continue  # the first load warms the caches (CSS, JS, the server's)
            timing = page.evaluate(FCP_JS)
            fcp.append(timing[0])
            dcl.append(timing[1])
            ttfb.append(timing[2])
        browser.close()
    return {"fcp_ms": statistics.median(fcp), "dcl_ms": statistics.median(dcl),
            "ttfb_ms": statistics.median(ttfb)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--findings", type=int, default=1000)
    ap.add_argument("--evals", type=int, default=40, help="scored submissions per agent")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--loads", type=int, default=7, help="page loads in Chromium")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="aar-bench-dash-"))
    admin = "aar_" + secrets.token_urlsafe(32)
    proc = None
    try:
        t = time.perf_counter()
        key, ids, soft = prepare(home)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "AAR_HOME": str(home), "AAR_ADMIN_TOKEN": admin}
        proc = subprocess.Popen([sys.executable, "-m", "aar.server.main", "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while True:
            try:
                httpx.get(f"{url}/login", timeout=1)
                break
            except httpx.TransportError:
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.2)
        seed(url, admin, key, ids, soft, args.evals, args.findings)
        print(f"seeded {AGENTS} researchers, {AGENTS * args.evals} submissions, "
              f"{args.findings} findings in {time.perf_counter() - t:.1f} s")
        cookie = login(url, admin)
        with httpx.Client(base_url=url, cookies={"aar_session": cookie}, timeout=120) as c:
            t0 = time.perf_counter()
            html = c.get("/").raise_for_status().content
            cold = (time.perf_counter() - t0) * 1000
            assert b"researcher-9" in html, "the overview does not list the researchers"
            css = c.get("/static/dash.css").content
            js = c.get("/static/dash.js").content
            times = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                c.get("/").raise_for_status()
                times.append((time.perf_counter() - t0) * 1000)
        total = len(html) + len(css) + len(js)
        zipped = sum(len(gzip.compress(b)) for b in (html, css, js))
        print(f"page weight: {total / 1024:.1f} KiB (HTML {len(html) / 1024:.1f} + CSS "
              f"{len(css) / 1024:.1f} + JS {len(js) / 1024:.1f}); gzipped {zipped / 1024:.1f} "
              "KiB; no images, fonts or other requests")
        times.sort()
        print(f"server GET /: p50 {statistics.median(times):.1f} ms, p95 "
              f"{times[int(0.95 * (len(times) - 1))]:.1f} ms over {len(times)} requests "
              f"(first request after start: {cold:.0f} ms)")
        b = browser_timings(url, cookie, args.loads)
        if b:
            print(f"chromium (median of {args.loads} loads): first contentful paint "
                  f"{b['fcp_ms']:.0f} ms, DOMContentLoaded {b['dcl_ms']:.0f} ms, "
                  f"response start {b['ttfb_ms']:.0f} ms")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
