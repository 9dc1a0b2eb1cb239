"""The server on PostgreSQL: migrations, the evaluation hot path, budgets, the Ladder's row
lock, findings with search (ILIKE), votes, the leaderboard, the audit log.

Runs on a fresh database of the session's throw-away cluster (``pg_cluster`` in
conftest.py: wherever Debian's ``postgresql`` is installed), or on ``AAR_TEST_PG_URL``
when it names a scratch database (its public schema is dropped), e.g.
``postgresql+psycopg://aar:aar@127.0.0.1:5432/aar_test``. CI also runs the whole server
suite on PostgreSQL (``AAR_TEST_DB=postgres``).
"""

# Fixtures come from test_server_support (imported below); tests take them as arguments.

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_server_support import DATASET, Env, make_app

API = "/api/v1"


@pytest.fixture
def pg(pg_cluster: Any) -> str:
    """A fresh PostgreSQL database's URL."""
    url = os.environ.get("AAR_TEST_PG_URL")
    if url:
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        return url
    if pg_cluster is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql) and "
                    "AAR_TEST_PG_URL is not set")
    return str(pg_cluster.create_database())


def test_postgres_fuzz_finds_no_5xx(home: Path, template: object, pg: str) -> None:
    from schemathesis import GenerationMode, openapi
    from test_server_fuzz import fuzz

    app = make_app(db_url=pg)
    with TestClient(app) as client:  # type: ignore[arg-type]
        env = Env(app, client, {"Authorization": f"Bearer {app.state.initial_admin_token}"},
                  template)  # type: ignore[arg-type, attr-defined]
        alice = env.agent("alice")
        env.evaluate(alice, env.noisy(0), seed=0)
        schema = openapi.from_asgi("/api/v1/openapi.json", app)
        failures: list[str] = []
        for result in schema.get_all_operations():
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz(result.ok(), mode, [env.admin, alice], failures)
        assert not failures, "\n".join(failures[:10])
    app.state.db.dispose()  # type: ignore[attr-defined]


def test_postgres_end_to_end(home: Path, template: object, pg: str) -> None:
    app = make_app(db_url=pg)
    assert app.state.db.dialect == "postgresql"
    with TestClient(app) as client:
        env = Env(app, client, {"Authorization": f"Bearer {app.state.initial_admin_token}"},
                  template)  # type: ignore[arg-type]
        alice = env.agent("alice", budget_per_hour=7, budget_total=50)
        bob = env.agent("bob")
        subs = []
        for seed, p in enumerate(env.t.preds):
            r = env.evaluate(alice, p, seed=seed, method="vanilla")
            assert r.status_code == 201, r.text
            subs.append(r.json()["id"])
        probe = np.asarray(env.t.preds[0])
        probe[0] = 1 - probe[0]
        assert env.evaluate(alice, probe, seed=7).status_code == 201
        assert env.evaluate(alice, env.noisy(1), seed=8).status_code == 201
        r = env.evaluate(alice, env.noisy(2), seed=9)
        assert r.status_code == 429 and "7 per hour" in r.json()["error"]
        flags = client.get(f"{API}/admin/flags", headers=env.admin).json()["items"]
        assert {f["kind"] for f in flags} == {"near_duplicate"}
        f = client.post(f"{API}/findings", headers=alice, json={
            "type": "result", "title": "Vanilla baseline", "body": "kNN smoothing next",
            "dataset": DATASET, "submissions": subs, "metrics": {"pgr": 0.4}}).json()
        r = client.post(f"{API}/findings", headers=alice, json={
            "type": "result", "title": "again", "dataset": DATASET, "submissions": subs})
        assert r.status_code == 409
        assert client.post(f"{API}/findings/{f['id']}/votes", json={"value": 1},
                           headers=bob).json()["votes"] == 1
        assert client.post(f"{API}/findings/{f['id']}/comments", json={"body": "ok"},
                           headers=bob).status_code == 201
        hits = client.get(f"{API}/findings", params={"q": "smoothing"}, headers=bob).json()
        assert [h["id"] for h in hits["items"]] == [f["id"]]
        board = client.get(f"{API}/leaderboard", params={"dataset": DATASET,
                                                          "split": "private"},
                           headers=env.admin).json()
        assert board["entries"][0]["finding"] == f["id"] and board["entries"][0]["n_seeds"] == 5
        mine = client.get(f"{API}/evaluations", headers=alice).json()
        assert mine["total"] == 7 and "scores" not in mine["items"][0]
        audit = client.get(f"{API}/admin/audit", params={"action": "evaluation.score"},
                           headers=env.admin).json()
        assert audit["total"] == 7
    app.state.db.dispose()
