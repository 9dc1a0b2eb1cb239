"""The evaluation server through its HTTP API (FastAPI TestClient): auth, roles, budgets,
bad input (4xx, nothing written), rationed scores, audit, probing flags."""

# Fixtures come from test_server_support (imported below); tests take them as arguments.

from __future__ import annotations

import json

import numpy as np
import pytest
from test_server_support import DATASET, Env

API = "/api/v1"


# ----------------------------------------------------------------------------- auth, roles


def test_every_route_needs_a_valid_token(env: Env) -> None:
    c = env.client
    routes = [("GET", "/me"), ("GET", "/info"), ("GET", "/datasets"),
              ("GET", f"/datasets/{DATASET}"), ("POST", "/evaluations"),
              ("GET", "/evaluations"), ("GET", "/evaluations/1"), ("POST", "/archives"),
              ("GET", "/archives/" + "0" * 64), ("POST", "/findings"), ("GET", "/findings"),
              ("GET", "/findings/1"), ("POST", "/findings/1/votes"),
              ("POST", "/findings/1/comments"), ("GET", "/findings/1/comments"),
              ("GET", f"/leaderboard?dataset={DATASET}"), ("POST", "/admin/tokens"),
              ("GET", "/admin/tokens"), ("DELETE", "/admin/tokens/1"),
              ("GET", "/admin/agents"), ("PATCH", "/admin/agents/x"),
              ("GET", "/admin/flags"), ("POST", "/admin/flags"), ("PATCH", "/admin/flags/1"),
              ("GET", "/admin/audit"), ("PUT", "/status"), ("GET", "/status"),
              ("POST", "/transcript"), ("GET", "/transcript"), ("POST", "/admin/references"),
              ("POST", "/admin/verifications")]
    schema = c.get(f"{API}/openapi.json").json()  # the schema itself is public
    listed = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert len(listed) == len(routes)
    for headers in ({}, {"Authorization": "Bearer aar_not-a-real-token"},
                    {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}):
        for method, path in routes:
            r = c.request(method, API + path, headers=headers, json={})
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.json()["error"]


def test_every_json_route_declares_its_response_model(env: Env) -> None:
    """The OpenAPI schema documents each response: every /api/v1 route that answers JSON
    names a model of aar.contracts.api for its success status, and the schema of that
    model is complete (its fields are the keys the route answers with)."""
    from aar.contracts import api as contracts

    schema = env.client.get(f"{API}/openapi.json").json()
    models = schema["components"]["schemas"]
    checked = 0
    for path, ops in schema["paths"].items():
        assert path.startswith(API), path
        for method, op in ops.items():
            ok = [code for code in op["responses"] if code.startswith("2")]
            assert len(ok) == 1, (method, path, ok)
            content = op["responses"][ok[0]]["content"]
            if "application/octet-stream" in content:  # a download: bytes, not JSON
                assert path == f"{API}/archives/{{sha256}}"
                continue
            ref = content["application/json"]["schema"].get("$ref", "")
            name = ref.rsplit("/", 1)[-1]
            assert name and hasattr(contracts, name), (method, path, "no response model")
            assert models[name]["properties"], (method, path, name)
            checked += 1
    assert checked == 30


def test_roles_and_revocation(env: Env) -> None:
    c = env.client
    alice = env.agent("alice")
    assert c.get(f"{API}/me", headers=alice).json()["role"] == "agent"
    for method, path in [("GET", "/admin/tokens"), ("POST", "/admin/tokens"),
                         ("GET", "/admin/audit"), ("GET", "/admin/flags"),
                         ("GET", "/admin/agents"), ("DELETE", "/admin/tokens/1"),
                         ("PATCH", "/admin/agents/alice"), ("POST", "/admin/references"),
                         ("POST", "/admin/verifications"),
                         ("GET", f"/leaderboard?dataset={DATASET}&split=private")]:
        r = c.request(method, API + path, headers=alice, json={"name": "mallory"})
        assert r.status_code == 403, (path, r.text)
        assert "admin" in r.json()["error"]
    tokens = c.get(f"{API}/admin/tokens", headers=env.admin).json()["items"]
    assert all("hash" not in json.dumps(t) for t in tokens)
    alice_id = next(t["id"] for t in tokens if t["name"] == "alice")
    assert c.delete(f"{API}/admin/tokens/{alice_id}", headers=env.admin).json() == {
        "revoked": 1}
    assert c.get(f"{API}/me", headers=alice).status_code == 401
    # Stored hashed: the plain token is nowhere in the database.
    from sqlalchemy import select

    from aar.server.db import Token

    with env.app.state.db.read() as s:
        hashes = list(s.scalars(select(Token.token_hash)))
    assert env.tokens["alice"] not in hashes and len(hashes[0]) == 64


def test_admin_token_is_created_once(home: object) -> None:
    from test_server_support import make_app

    first = make_app()
    assert first.state.initial_admin_token.startswith("aar_")
    second = make_app()
    assert second.state.initial_admin_token is None
    first.state.db.dispose()
    second.state.db.dispose()


# ----------------------------------------------------------------------------- evaluation


def test_evaluation_is_rationed_and_private_is_hidden(env: Env) -> None:
    alice = env.agent("alice")
    r = env.evaluate(alice, env.t.preds[0], seed=0)
    assert r.status_code == 201, r.text
    out = r.json()
    pub = out["public"]
    assert pub["released"] is True and pub["from_submission"] == out["id"]
    assert round(pub["accuracy"] / 0.01, 6).is_integer()  # on the eta grid, not a count
    assert "scores" not in out and "test_private" not in json.dumps(out)
    assert out["budget"]["used_total"] == 1
    # The admin sees exact public and private scores of that submission.
    sub = env.client.get(f"{API}/evaluations/{out['id']}", headers=env.admin).json()
    assert set(sub["scores"]) == {"test_public", "test_private"}
    assert abs(sub["scores"]["test_public"]["accuracy"] - pub["accuracy"]) < 0.02
    # The agent's own listing shows what it was told, nothing more.
    mine = env.client.get(f"{API}/evaluations", headers=alice).json()["items"]
    assert mine[0]["public"] == pub and "scores" not in mine[0]
    # Every score is in the audit log, with both halves.
    audit = env.client.get(f"{API}/admin/audit?action=evaluation.score",
                           headers=env.admin).json()["items"]
    assert audit[0]["target"] == str(out["id"])
    assert set(audit[0]["detail"]) >= {"test_public", "test_private", "reported"}


def test_a_worse_submission_gets_the_previous_answer(env: Env) -> None:
    alice = env.agent("alice")
    good = env.evaluate(alice, env.t.preds[0], seed=0).json()["public"]
    bad = env.evaluate(alice, 1 - np.asarray(env.t.preds[0]), seed=1).json()["public"]
    assert bad["released"] is False
    assert bad["accuracy"] == good["accuracy"] and bad["from_submission"] == good[
        "from_submission"]


def test_ids_may_come_in_any_order(env: Env) -> None:
    alice = env.agent("alice")
    ids, probs = np.array(env.t.ids), np.asarray(env.t.preds[0])
    order = np.random.default_rng(0).permutation(len(ids))
    a = env.evaluate(alice, probs, seed=0).json()
    b = env.evaluate(alice, probs[order], ids=ids[order].tolist(), seed=1).json()
    sa = env.client.get(f"{API}/evaluations/{a['id']}", headers=env.admin).json()["scores"]
    sb = env.client.get(f"{API}/evaluations/{b['id']}", headers=env.admin).json()["scores"]
    assert sa == sb


BAD = {
    "unknown dataset": (lambda e, b: {**b, "dataset": "no-such-data"}, 404, "unknown dataset"),
    "unknown id": (lambda e, b: {**b, "ids": ["zzz", *b["ids"][1:]]}, 400, "unknown id"),
    "missing ids": (lambda e, b: {**b, "ids": b["ids"][:-3], "probs": b["probs"][:-3]}, 400,
                    "missing predictions for 3"),
    "duplicate id": (lambda e, b: {**b, "ids": [b["ids"][1], *b["ids"][1:]]}, 400,
                     "duplicate id"),
    "length mismatch": (lambda e, b: {**b, "probs": b["probs"][:-1]}, 400, "entries but"),
    "above 1": (lambda e, b: {**b, "probs": [1.5, *b["probs"][1:]]}, 400, "outside [0, 1]"),
    "below 0": (lambda e, b: {**b, "probs": [*b["probs"][:-1], -0.1]}, 400,
                "outside [0, 1]"),
    "train split": (lambda e, b: {**b, "split": "labeled"}, 400, "only the test split"),
    "private split": (lambda e, b: {**b, "split": "test_private"}, 400, "only the test"),
    "not a number": (lambda e, b: {**b, "probs": ["high", *b["probs"][1:]]}, 422,
                     "invalid probs.0"),
    "extra field": (lambda e, b: {**b, "labels": [1]}, 422, "invalid labels"),
    "no ids": (lambda e, b: {k: v for k, v in b.items() if k != "ids"}, 422, "invalid ids"),
    "negative seed": (lambda e, b: {**b, "seed": -1}, 422, "invalid seed"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_evaluations_are_refused_and_nothing_is_written(env: Env, case: str) -> None:
    alice = env.agent("alice")
    before = env.counts()
    body = {"dataset": DATASET, "ids": env.t.ids, "probs": env.t.preds[0], "seed": 0}
    change, status, message = BAD[case]
    r = env.client.post(f"{API}/evaluations", json=change(env, body), headers=alice)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert env.counts() == before


def test_split_ids_named_only_where_public(env: Env) -> None:
    """An unlabeled id is named as such; a labeled id (a vault secret) is just unknown, the
    same answer as an id that exists nowhere."""
    from aar.data.prepare import prepare

    prep = prepare(DATASET)
    unlabeled = prep.workspace.ids("unlabeled")[0]
    labeled = prep.vault.splits["labeled"][0]
    alice = env.agent("alice")
    answers = {}
    for name, sid in (("unlabeled", unlabeled), ("labeled", labeled), ("none", "no-such-id")):
        r = env.evaluate(alice, env.t.preds[0], ids=[sid, *env.t.ids[1:]])
        assert r.status_code == 400, r.text
        answers[name] = r.json()["error"]
    assert "unlabeled split" in answers["unlabeled"]
    assert "labeled" not in answers["labeled"].replace(repr(labeled), "")
    assert answers["labeled"].replace(repr(labeled), "X") == \
        answers["none"].replace(repr("no-such-id"), "X")


def test_nan_malformed_json_and_oversize_bodies(env: Env) -> None:
    alice = {**env.agent("alice"), "Content-Type": "application/json"}
    before = env.counts()
    probs = list(env.t.preds[0])
    body = json.dumps({"dataset": DATASET, "ids": env.t.ids, "probs": probs})
    nan = body.replace(json.dumps(probs[7]), "NaN", 1)
    for raw, status, message in [
        (nan, 400, "finite"),
        (body.replace(json.dumps(probs[7]), "Infinity", 1), 400, "finite"),
        (body[:-20], 400, "malformed JSON"),
        ("{'dataset': 1}", 400, "malformed JSON"),
        ("", 400, "malformed JSON"),
        ("[1, 2, 3]", 422, "invalid"),
    ]:
        r = env.client.post(f"{API}/evaluations", content=raw, headers=alice)
        assert r.status_code == status, (raw[:40], r.text)
        assert message in r.json()["error"], r.json()
    big = b'{"dataset": "' + b"x" * (9 << 20) + b'"}'
    r = env.client.post(f"{API}/evaluations", content=big, headers=alice)
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert env.counts() == before


def test_budget_per_hour_and_total(env: Env) -> None:
    hourly = env.agent("hourly", budget_per_hour=3, budget_total=100)
    for k in range(3):
        assert env.evaluate(hourly, env.noisy(k), seed=k).status_code == 201
    before = env.counts()
    r = env.evaluate(hourly, env.noisy(9), seed=9)
    assert r.status_code == 429 and "3 per hour" in r.json()["error"]
    assert int(r.headers["Retry-After"]) > 3000
    assert env.counts() == before
    total = env.agent("total", budget_per_hour=100, budget_total=2)
    for k in range(2):
        assert env.evaluate(total, env.noisy(k), seed=k).status_code == 201
    r = env.evaluate(total, env.noisy(5), seed=5)
    assert r.status_code == 429 and "2 in total" in r.json()["error"]
    me = env.client.get(f"{API}/me", headers=total).json()["budget"]
    assert me == {"per_hour": 100, "total": 2, "used_last_hour": 2, "used_total": 2}
    # An admin raises the budget; the change is audited.
    r = env.client.patch(f"{API}/admin/agents/total", json={"budget_total": 3},
                         headers=env.admin)
    assert r.status_code == 200
    assert env.evaluate(total, env.noisy(5), seed=5).status_code == 201
    actions = [e["action"] for e in env.client.get(f"{API}/admin/audit",
                                                   headers=env.admin).json()["items"]]
    assert "agent.budget" in actions


def test_probing_is_flagged_for_admins(env: Env) -> None:
    alice = env.agent("alice")
    base = np.asarray(env.t.preds[0])
    env.evaluate(alice, base, seed=0)
    probe = base.copy()
    probe[3] = 1 - probe[3]
    r = env.evaluate(alice, probe, seed=1)
    assert r.status_code == 201 and "flags" not in r.json()  # the agent is not told
    hard = (base >= 0.5).astype(float)
    env.evaluate(alice, hard, seed=2)
    hard[:5] = 1 - hard[:5]
    env.evaluate(alice, hard, seed=3)
    flags = env.client.get(f"{API}/admin/flags", headers=env.admin).json()["items"]
    kinds = {f["kind"] for f in flags}
    assert {"near_duplicate", "hard_labels", "hard_label_tuning"} <= kinds
    assert all(f["agent"] == "alice" for f in flags)
    audit = env.client.get(f"{API}/admin/audit?action=flag.probing",
                           headers=env.admin).json()
    assert audit["total"] == len(flags)
    agents = env.client.get(f"{API}/admin/agents", headers=env.admin).json()["items"]
    assert next(a for a in agents if a["name"] == "alice")["flags"] == len(flags)


def test_info_states_the_guarantee(env: Env) -> None:
    alice = env.agent("alice")
    info = env.client.get(f"{API}/info", params={"dataset": DATASET}, headers=alice).json()
    g = info["guarantee"]
    assert g["eta"] == 0.01 and g["n_public"] == len(env.t.public_idx)
    assert 0 < g["bits_revealed_at_most"] < 400
    ds = env.client.get(f"{API}/datasets/{DATASET}", headers=alice).json()
    assert ds["ids"] == env.t.ids and ds["key"] == env.t.key
    assert [d["key"] for d in env.client.get(f"{API}/datasets",
                                             headers=alice).json()["items"]] == [env.t.key]
