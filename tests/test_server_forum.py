"""Forum and leaderboard semantics: typed findings, results need five seeds, claims are
never ranked, votes, comments, search, pagination, since, code snapshots."""

# Fixtures come from test_server_support (imported below); tests take them as arguments.

from __future__ import annotations

import base64
import json
import time
from typing import Any

import numpy as np
from test_server_support import DATASET, Env, live_server, tar_bytes

API = "/api/v1"


def _submit_seeds(env: Env, headers: dict[str, str], preds: list, method: str) -> list[int]:
    out = []
    for seed, p in enumerate(preds):
        r = env.evaluate(headers, p, seed=seed, method=method)
        assert r.status_code == 201, r.text
        out.append(r.json()["id"])
    return out


def _post(env: Env, headers: dict[str, str], **body: object) -> object:
    return env.client.post(f"{API}/findings", json=body, headers=headers)


def _records() -> list[Any]:
    """The run records in $AAR_HOME/results (the template's 5-seed vanilla run)."""
    from aar.experiments.runner import records

    return list(records())


def _post_references(env: Env) -> list[dict]:
    """What the orchestrator does at a run's start: post the library runs it finds."""
    from aar.experiments.runner import reference_body

    out = []
    for rec in _records():
        ref = reference_body(rec)
        assert ref is not None
        r = env.client.post(f"{API}/admin/references", headers=env.admin,
                            json=ref.model_dump(mode="json"))
        assert r.status_code in (200, 201), r.text
        out.append(r.json())
    return out


def test_result_rules(env: Env) -> None:
    alice, bob = env.agent("alice"), env.agent("bob")
    subs = _submit_seeds(env, alice, env.t.preds, "vanilla")
    before = env.counts()
    r = _post(env, alice, type="result", title="t", dataset=DATASET, submissions=subs[:4])
    assert r.status_code == 400 and "at least 5" in r.json()["error"]
    r = _post(env, bob, type="result", title="t", dataset=DATASET, submissions=subs)
    assert r.status_code == 404 and "of yours" in r.json()["error"]
    r = _post(env, alice, type="result", title="t", dataset=DATASET, submissions=subs[:1] * 5)
    assert r.status_code == 400 and "twice" in r.json()["error"]
    r = _post(env, alice, type="result", title="t", submissions=[])
    assert r.status_code == 400
    r = _post(env, alice, type="opinion", title="t")
    assert r.status_code == 422 and "type" in r.json()["error"]
    r = env.client.post(f"{API}/findings", headers={**alice, "Content-Type": "application/json"},
                        content='{"type": "insight", "title": "t", "metrics": {"pgr": Infinity}}')
    assert r.status_code in (400, 422) and "pgr" in r.json()["error"]
    assert env.counts() == before
    # Seeds must be distinct: five submissions all labelled seed 0 are not five seeds.
    same = [env.evaluate(alice, env.noisy(k), seed=0).json()["id"] for k in range(5)]
    r = _post(env, alice, type="result", title="t", dataset=DATASET, submissions=same)
    assert r.status_code == 400 and "distinct seeds" in r.json()["error"]
    r = _post(env, alice, type="result", title="vanilla", dataset=DATASET, submissions=subs)
    assert r.status_code == 201, r.text
    # A submission backs one ranked result only.
    r = _post(env, alice, type="result", title="again", dataset=DATASET, submissions=subs)
    assert r.status_code == 409 and "already backs" in r.json()["error"]
    # Other types may link submissions freely.
    r = _post(env, alice, type="negative", title="again, as a note", submissions=subs[:2])
    assert r.status_code == 201 and r.json()["submissions"] == subs[:2]


def test_leaderboard_ranks_server_scores_not_claims(env: Env) -> None:
    alice, bob = env.agent("alice"), env.agent("bob")
    _post_references(env)
    good = _submit_seeds(env, alice, env.t.preds, "vanilla")
    weak = [np.asarray(env.t.soft[k]) for k in range(5)]
    poor = _submit_seeds(env, bob, weak, "copy-the-teacher")
    assert _post(env, alice, type="result", title="vanilla", dataset=DATASET,
                 submissions=good, metrics={"pgr": 0.1}).status_code == 201
    assert _post(env, bob, type="result", title="teacher copy", dataset=DATASET,
                 submissions=poor, metrics={"pgr": 0.99}).status_code == 201
    # A result with fewer than 5 seeds never appears (it cannot even be posted), and
    # hypotheses with claimed metrics are not ranked.
    assert _post(env, bob, type="hypothesis", title="it will be great", dataset=DATASET,
                 metrics={"pgr": 1.5}).status_code == 201
    # The admin's public board: exact values, ranked by the server's PGR, with
    # paired-bootstrap intervals over seeds and test examples.
    full = env.client.get(f"{API}/leaderboard", params={"dataset": DATASET},
                          headers=env.admin).json()
    assert full["gap_ok"] and full["status"] is None
    assert [e["title"] for e in full["entries"]] == ["vanilla", "teacher copy"]
    top, second = full["entries"]
    assert top["rank"] == 1 and top["claimed"] == {"pgr": 0.1} and top["n_seeds"] == 5
    assert second["claimed"] == {"pgr": 0.99} and top["pgr"] > second["pgr"]
    ci = top["pgr_ci"]
    assert ci["low"] < top["pgr"] < ci["high"] and top["pgr_se"] > 0
    # An agent sees its own result at the value the Ladder released to it (and its PGR
    # from the published baselines); another account's result is listed without values.
    answers = [env.client.get(f"{API}/evaluations/{sid}", headers=bob).json()["public"]
               for sid in poor]
    released = [a["accuracy"] for a in answers if a["released"]]
    board = env.client.get(f"{API}/leaderboard", params={"dataset": DATASET},
                           headers=bob).json()
    by = {e["title"]: e for e in board["entries"]}
    own, other = by["teacher copy"], by["vanilla"]
    assert own["accuracy"] == max(released) and own["rank"] == 1
    pub = board["baselines"]
    assert own["pgr"] == round((own["accuracy"] - pub["weak"]) / (pub["ceiling"] - pub["weak"]),
                               4)
    # Its interval comes from public numbers only (released accuracy, published baselines,
    # n): the same for anyone who knows them, wider than the admin's paired bootstrap.
    lo, hi = own["pgr_ci"]["low"], own["pgr_ci"]["high"]
    assert lo < own["pgr"] < hi and hi - lo > ci["high"] - ci["low"] - 0.05
    assert other["accuracy"] is other["pgr"] is other["rank"] is None
    assert "another run" in other["hidden"]
    assert board["coarsened"] and round(own["accuracy"] / 0.01, 6).is_integer()
    info = env.client.get(f"{API}/info", params={"dataset": DATASET}, headers=bob).json()
    assert {k: info["published_baselines"][k] for k in pub} == pub
    assert all(round(v / 0.01, 6).is_integer() for v in pub.values())
    refs = {r["name"]: r for r in board["reference"]}
    assert refs["weak teacher (syn_weak)"]["pgr"] == 0.0
    assert refs["strong ceiling (syn_strong)"]["pgr"] == 1.0
    assert "method vanilla" in refs and refs["method vanilla"]["rank"] is None
    # The final ranking (private half) is for admins, with exact numbers.
    final = env.client.get(f"{API}/leaderboard", params={"dataset": DATASET,
                                                          "split": "private"},
                           headers=env.admin).json()
    assert final["split"] == "test_private" and not final["coarsened"]
    assert [e["title"] for e in final["entries"]] == ["vanilla", "teacher copy"]
    assert final["entries"][0]["pgr_se"] > 0
    # The vanilla reference row and alice's vanilla result are the same predictions.
    vref = next(r for r in final["reference"] if r["name"] == "method vanilla")
    assert abs(vref["pgr"] - final["entries"][0]["pgr"]) < 0.02


def test_votes_comments_search_pagination_since(env: Env) -> None:
    alice, bob, carol = env.agent("alice"), env.agent("bob"), env.agent("carol")
    ids = []
    for k in range(7):
        r = _post(env, alice, type="insight", title=f"finding {k}",
                  body=f"kNN **smoothing** number {k}" if k % 2 else "confidence filter")
        ids.append(r.json()["id"])
    c = env.client
    # One vote per agent: voting again replaces; 0 withdraws; no self-votes.
    assert c.post(f"{API}/findings/{ids[0]}/votes", json={"value": 1},
                  headers=bob).json()["votes"] == 1
    assert c.post(f"{API}/findings/{ids[0]}/votes", json={"value": 1},
                  headers=bob).json()["votes"] == 1
    assert c.post(f"{API}/findings/{ids[0]}/votes", json={"value": -1},
                  headers=carol).json()["votes"] == 0
    assert c.post(f"{API}/findings/{ids[0]}/votes", json={"value": 0},
                  headers=carol).json()["votes"] == 1
    r = c.post(f"{API}/findings/{ids[0]}/votes", json={"value": 1}, headers=alice)
    assert r.status_code == 403
    assert c.post(f"{API}/findings/{ids[0]}/votes", json={"value": 5},
                  headers=bob).status_code == 422
    assert c.post(f"{API}/findings/999/votes", json={"value": 1},
                  headers=bob).status_code == 404
    # Comments.
    assert c.post(f"{API}/findings/{ids[1]}/comments", json={"body": "tried it: works"},
                  headers=bob).status_code == 201
    com = c.get(f"{API}/findings/{ids[1]}/comments", headers=carol).json()
    assert com["total"] == 1 and com["items"][0]["author"] == "bob"
    assert c.post(f"{API}/findings/{ids[1]}/comments", json={"body": ""},
                  headers=bob).status_code == 422
    # Full-text search (FTS5; stemming: "smoothed" finds "smoothing").
    hits = c.get(f"{API}/findings", params={"q": "smoothed"}, headers=carol).json()
    assert hits["total"] == 3 and all("finding" in h["title"] for h in hits["items"])
    assert c.get(f"{API}/findings", params={"q": "confidence filter"},
                 headers=carol).json()["total"] == 4
    assert c.get(f"{API}/findings", params={"q": "\"*("},
                 headers=carol).status_code == 400
    # Pagination, newest activity first.
    page1 = c.get(f"{API}/findings", params={"limit": 3}, headers=carol).json()
    page2 = c.get(f"{API}/findings", params={"limit": 3, "offset": 3},
                  headers=carol).json()
    assert page1["total"] == 7 and page1["next_offset"] == 3
    got = [f["id"] for f in page1["items"] + page2["items"]]
    assert len(set(got)) == 6
    assert page1["items"][0]["id"] == ids[1]  # the latest activity: bob's comment
    # Since: what is new after a point in time.
    mark = page1["now"]
    time.sleep(0.01)
    c.post(f"{API}/findings/{ids[4]}/comments", json={"body": "new"}, headers=bob)
    new = _post(env, carol, type="error", title="bug in the loader").json()["id"]
    fresh = c.get(f"{API}/findings", params={"since": mark}, headers=alice).json()
    assert {f["id"] for f in fresh["items"]} == {ids[4], new}
    by_type = c.get(f"{API}/findings", params={"type": "error"}, headers=alice).json()
    assert [f["id"] for f in by_type["items"]] == [new]
    assert c.get(f"{API}/findings", params={"type": "gossip"},
                 headers=alice).status_code == 422
    one = c.get(f"{API}/findings/{ids[1]}", headers=alice).json()
    assert one["body"].startswith("kNN") and one["comments"] == 1
    # Every change is in the audit log.
    actions = {e["action"] for e in c.get(f"{API}/admin/audit", params={"limit": 200},
                                          headers=env.admin).json()["items"]}
    assert {"finding.create", "finding.vote", "comment.create"} <= actions


def test_code_snapshots(env: Env) -> None:
    alice, bob = env.agent("alice"), env.agent("bob")
    c = env.client
    data = tar_bytes({"method.py": b"def run(ctx):\n    return ctx\n"})
    up = c.post(f"{API}/archives", json={"data_b64": base64.b64encode(data).decode()},
                headers=alice)
    assert up.status_code == 201, up.text
    sha = up.json()["sha256"]
    again = c.post(f"{API}/archives", json={"data_b64": base64.b64encode(data).decode()},
                   headers=alice)
    assert again.json()["sha256"] == sha  # content-addressed
    r = _post(env, alice, type="insight", title="code", archive=sha)
    assert r.status_code == 201 and r.json()["archive"] == sha
    assert c.get(f"{API}/archives/{sha}", headers=bob).content == data
    before = env.counts()
    for payload, status, message in [
        (tar_bytes({"../evil.py": b"x"}), 400, "'..'"),
        (tar_bytes({"/abs.py": b"x"}), 400, "absolute"),
        (tar_bytes({"ok.py": b"x"}, symlink="link"), 400, "link"),
        (b"\x00" * 100, 400, "not a tar or zip"),
        (b"x" * (1 << 20) + b"x", 413, "limit"),
    ]:
        r = c.post(f"{API}/archives", json={"data_b64": base64.b64encode(payload).decode()},
                   headers=alice)
        assert r.status_code == status and message in r.json()["error"], r.text
    r = c.post(f"{API}/archives", json={"data_b64": "%%%not base64"}, headers=alice)
    assert r.status_code == 400 and "base64" in r.json()["error"]
    r = _post(env, alice, type="insight", title="code", archive="0" * 64)
    assert r.status_code == 404 and "upload it first" in r.json()["error"]
    assert env.counts() == before


def test_reference_runs_are_posted_by_an_admin_and_shown_on_the_board(env: Env) -> None:
    """The server reads no result files: a library method's run reaches the leaderboard
    as a posted reference (``POST /admin/references``), validated, stored, replaced when
    posted again."""
    from sqlalchemy import func, select

    from aar.experiments.runner import reference_body
    from aar.server.db import ReferenceRun

    def stored() -> int:
        with env.app.state.db.read() as s:
            return s.scalar(select(func.count()).select_from(ReferenceRun)) or 0

    (rec,) = _records()
    body = reference_body(rec).model_dump(mode="json")  # type: ignore[union-attr]
    url = f"{API}/admin/references"
    board = env.client.get(f"{API}/leaderboard", params={"dataset": DATASET},
                           headers=env.admin).json()
    assert [r["name"] for r in board["reference"]] == ["weak teacher (syn_weak)",
                                                       "strong ceiling (syn_strong)"]
    # Admins only.
    alice = env.agent("alice")
    assert env.client.post(url, json=body).status_code == 401
    r = env.client.post(url, json=body, headers=alice)
    assert r.status_code == 403 and "admin" in r.json()["error"]
    # Invalid bodies: a 422 naming the field, nothing stored.
    for bad, field in [({**body, "seeds": []}, "seeds"), ({**body, "extra": 1}, "extra"),
                       ({**body, "run_id": "a b"}, "run_id"), ({**body, "method": ""}, "method"),
                       ({**body, "method": "v\x00"}, "method"),
                       ({**body, "seeds": [{"test_public": {"accuracy": "high"}}]}, "seeds"),
                       ({k: v for k, v in body.items() if k != "weak"}, "weak")]:
        r = env.client.post(url, json=bad, headers=env.admin)
        assert r.status_code == 422, (field, r.text)
        assert field in r.json()["error"], (field, r.json())
    r = env.client.post(url, json={**body, "dataset": "no-such-dataset"}, headers=env.admin)
    assert r.status_code == 404 and "unknown dataset" in r.json()["error"]
    assert stored() == 0
    # Posted: 201; the same run again: 200, replaced, still one row.
    r = env.client.post(url, json=body, headers=env.admin)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["run_id"] == rec["run_id"] and out["n_seeds"] == 5 and not out["replaced"]
    assert out["dataset_key"] == env.t.key and out["method"] == "vanilla"
    r = env.client.post(url, json=body, headers=env.admin)
    assert r.status_code == 200 and r.json()["replaced"] and stored() == 1
    audit = env.client.get(f"{API}/admin/audit", params={"action": "reference.post"},
                           headers=env.admin).json()
    assert audit["total"] == 2 and audit["items"][0]["target"] == rec["run_id"]
    # Too few seeds, or another pair: stored, not shown. A newer run of the same method
    # and params replaces the older one on the board.
    for run_id, change in [("few", {"seeds": body["seeds"][:2]}),
                           ("pair", {"weak": "other"}),
                           ("newer", {"created": "2999-01-01T00:00:00+00:00",
                                      "seeds": body["seeds"][:1] * 5})]:
        r = env.client.post(url, json={**body, **change, "run_id": run_id}, headers=env.admin)
        assert r.status_code == 201, r.text
    accs = [s["test_public"]["accuracy"] for s in body["seeds"]]
    full = env.client.get(f"{API}/leaderboard", params={"dataset": DATASET},
                          headers=env.admin).json()
    (row,) = [r for r in full["reference"] if r["name"] == "method vanilla"]
    assert row["run_id"] == "newer" and row["n_seeds"] == 5 and row["rank"] is None
    assert abs(row["accuracy"] - accs[0]) < 1e-9 and row["params"] == body["params"]
    # Agents see it rounded to the grid, counted in the bound's public constants.
    board = env.client.get(f"{API}/leaderboard", params={"dataset": DATASET},
                           headers=alice).json()
    (row,) = [r for r in board["reference"] if r["name"] == "method vanilla"]
    assert round(row["accuracy"] / 0.01, 6).is_integer()
    info = env.client.get(f"{API}/info", params={"dataset": DATASET}, headers=alice).json()
    assert info["bound"]["reference_rows"] == 1


def test_the_orchestrator_posts_the_library_runs_of_its_dataset(env: Env) -> None:
    """At a run's start the orchestrator posts the results it finds in $AAR_HOME/results
    for the run's dataset (library methods only; unreadable files skipped) through the
    admin client; posting again replaces."""
    from aar.client import Client
    from aar.research.orchestrator import post_references
    from aar.settings import get_settings

    (rec,) = _records()
    results = get_settings().results_dir
    (results / "broken.json").write_text("{not json")
    mine = {**rec, "run_id": "mine-1", "config": {**rec["config"], "library": False,
                                                   "method_ref": "ideas/mine.py"}}
    (results / "mine-1.json").write_text(json.dumps(mine))
    with live_server() as srv, Client(srv.url, srv.admin_token) as admin:
        assert post_references(env.t.key, admin) == 1
        assert post_references(env.t.key, admin) == 1
        assert post_references("other", admin) == 0
        board = admin.leaderboard(DATASET, split="private")
        names = [r.name for r in board.reference]
        assert names.count("method vanilla") == 1 and len(names) == 3
        # A server started by hand is told the same way from the command line.
        from typer.testing import CliRunner

        from aar.cli import app

        out = CliRunner().invoke(app, ["references", "-d", DATASET, "--server", srv.url,
                                       "--token", srv.admin_token])
        assert out.exit_code == 0, out.output
        assert f"posted 1 reference run(s) of {env.t.key}" in out.output
