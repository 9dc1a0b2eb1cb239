"""The server SIGKILLed mid-load and restarted on the same database: clients that retry
(``Client(retry_s=...)``, evaluations and findings under an ``Idempotency-Key``) lose
nothing that was acknowledged and make nothing twice. Checked in the database record by
record: submissions, their idempotency keys, the audit log, findings. Runs on SQLite, and
on PostgreSQL with the rest of the server suite (``AAR_TEST_DB=postgres``)."""


from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from test_server_support import DATASET, Template

from aar.client import Client
from aar.research.live import free_port
from aar.server.main import create_token

AGENTS, EVALS = 4, 12


def _start(port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "aar.server.main", "--host", "127.0.0.1", "--port",
             str(port)], env=os.environ.copy(), stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True)


def _ready(url: str, token: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/api/v1/me", headers={"Authorization": f"Bearer {token}"},
                         timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not start")


def _records(names: list[str]) -> dict[str, Any]:
    from sqlalchemy import create_engine, select

    from aar.server import db as m
    from aar.settings import get_settings

    engine = create_engine(get_settings().db_url)
    with engine.connect() as c:
        agent = {n: i for i, n in c.execute(select(m.Agent.id, m.Agent.name))}
        subs = list(c.execute(select(m.Submission.id, m.Submission.agent_id,
                                     m.Submission.seed)))
        keys = list(c.execute(select(m.RequestKey.agent_id, m.RequestKey.kind,
                                     m.RequestKey.target_id)))
        audit = [int(t) for (t,) in c.execute(select(m.AuditEntry.target).where(
            m.AuditEntry.action == "evaluation.score"))]
        finds = list(c.execute(select(m.Finding.id, m.Finding.agent_id)))
    engine.dispose()
    return {"agent": {n: agent[n] for n in names}, "subs": subs, "keys": keys,
            "audit": audit, "finds": finds}


def test_server_killed_mid_load_loses_nothing_acknowledged(
        home: Path, template: Template, tmp_path: Path) -> None:
    names = [f"load{k}" for k in range(AGENTS)]
    tokens = [create_token(n, budget_per_hour=10**6, budget_total=10**6) for n in names]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    server = _start(port, log)
    _ready(url, tokens[0], server)
    acked: list[list[int]] = [[] for _ in names]
    findings: list[list[int]] = [[] for _ in names]
    errors: list[str] = []

    def agent(k: int) -> None:
        rng = np.random.default_rng(k)
        try:
            with Client(url, tokens[k], retry_s=90, timeout=10) as c:
                for seed in range(EVALS):
                    p = np.clip(template.soft[0] + rng.normal(0, 0.05, template.soft.shape[1]),
                                0, 1)
                    acked[k].append(int(c.evaluate(DATASET, p.tolist(), ids=template.ids,
                                                   seed=seed, method=f"m{k}").id))
                f = c.post_finding("result", f"load {k}", dataset=DATASET,
                                   submissions=acked[k][:5])
                findings[k].append(int(f.id))
        except Exception as exc:  # collected: the assertion below names it
            errors.append(f"{names[k]}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=agent, args=(k,)) for k in range(AGENTS)]
    for t in threads:
        t.start()
    try:
        deadline = time.time() + 60
        while sum(map(len, acked)) < AGENTS * 2 and time.time() < deadline:
            time.sleep(0.01)
        os.killpg(server.pid, signal.SIGKILL)  # mid-load: requests in flight
        server.wait()
        at_kill = sum(map(len, acked))
        assert 0 < at_kill < AGENTS * EVALS
        time.sleep(0.5)
        server = _start(port, log)
        for t in threads:
            t.join(180)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    assert not errors, errors
    r = _records(names)
    for k, n in enumerate(names):
        mine = sorted(s.id for s in r["subs"] if s.agent_id == r["agent"][n])
        assert len(acked[k]) == EVALS == len(set(acked[k]))
        assert mine == sorted(acked[k])  # nothing lost, nothing made twice
        seeds = {s.id: s.seed for s in r["subs"]}
        assert [seeds[i] for i in acked[k]] == list(range(EVALS))
        keyed = sorted(x.target_id for x in r["keys"]
                       if x.agent_id == r["agent"][n] and x.kind == "evaluation")
        assert keyed == mine  # one idempotency key per submission
        assert sorted(a for a in r["audit"] if a in set(mine)) == mine  # audited once each
        f_mine = [f.id for f in r["finds"] if f.agent_id == r["agent"][n]]
        assert f_mine == findings[k] and len(f_mine) == 1


def test_a_repeated_idempotency_key_is_answered_not_redone(
        home: Path, template: Template) -> None:
    from test_server_support import live_server

    from aar.server.idempotency import HEADER

    with live_server() as srv:
        admin = Client(srv.url, srv.admin_token)
        token = admin.create_token("again").token
        h = {"Authorization": f"Bearer {token}", HEADER: "k-1"}
        body = {"dataset": DATASET, "ids": template.ids, "probs": template.preds[0],
                "seed": 0, "method": "m"}
        first = httpx.post(f"{srv.url}/api/v1/evaluations", json=body, headers=h).json()
        again = httpx.post(f"{srv.url}/api/v1/evaluations", json={**body, "seed": 1},
                           headers=h).json()
        assert again["id"] == first["id"] and again["replayed"] is True
        assert again["public"] == first["public"] and again["seed"] == 0
        mine = httpx.get(f"{srv.url}/api/v1/evaluations", headers=h).json()
        assert mine["total"] == 1
        r = httpx.post(f"{srv.url}/api/v1/findings", headers=h,
                       json={"type": "insight", "title": "x"})
        assert r.status_code == 409  # the key named an evaluation
        bad = httpx.post(f"{srv.url}/api/v1/evaluations", json=body,
                         headers={**h, HEADER: "no spaces"})
        assert bad.status_code == 400
        admin.close()


@pytest.mark.parametrize("status", [503])
def test_the_client_retries_only_what_is_safe(status: int) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("Idempotency-Key") or request.method)
        if len(calls) < 3:
            return httpx.Response(status, json={"error": "restarting"})
        return httpx.Response(201, json={  # an EvaluationOut: the client reads it as one
            "id": 1, "dataset": DATASET, "dataset_key": DATASET, "seed": None,
            "method": None, "transductive": False, "created": None, "public": None})

    c = Client("http://x", "t", retry_s=5, transport=httpx.MockTransport(handler))
    assert c.evaluate(DATASET, [0.5], ids=["a"]).id == 1
    assert len(calls) == 3 and len(set(calls)) == 1  # one key, sent three times
    calls.clear()
    with pytest.raises(Exception, match="503"):
        c.create_token("x")  # not idempotent: not repeated
    assert len(calls) == 1


def test_a_body_the_client_cannot_read_is_a_one_line_error() -> None:
    """The client reads each answer as its route's model: a body that does not fit (a
    server of another version) is an AarError naming the model and the field."""
    from aar.errors import AarError

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"name": "a", "role": "agent", "run": None})

    c = Client("http://x", "t", transport=httpx.MockTransport(handler))
    with pytest.raises(AarError, match=r"cannot read \(MeOut: budget: Field required\)"):
        c.me()
