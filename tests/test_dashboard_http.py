"""The dashboard over plain HTTP (no browser): login and sessions, CSRF and origin checks,
admin-only pages, forms that vote, comment and review flags, error pages for bad input,
and the server-sent events stream."""

# Fixtures come from test_server_support (imported below); tests take them as arguments.

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_server_support import DATASET, Env, live_server, tar_bytes

CODE = b"import numpy as np\n\n\ndef method(ctx):\n    '''smooth'''\n    return ctx.weak\n"


@dataclass
class Site:
    env: Env
    admin_token: str
    alice: str
    bob: str
    result: int  # alice's result finding, with a code snapshot
    follow_up: int  # bob's insight that builds on it
    flag: int  # an open probing flag on alice


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def login(client: TestClient, token: str, next_url: str = "/") -> str:
    """Log in through the form; returns the page's CSRF token for later forms."""
    page = client.get(f"/login?next={next_url}")
    assert page.status_code == 200
    r = client.post("/login", data={"csrf": csrf_of(page.text), "token": token,
                                    "next": next_url}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/").text)


@pytest.fixture
def site(env: Env) -> Iterator[Site]:
    import base64

    admin_token = env.admin["Authorization"].split()[1]
    alice_h, bob_h = env.agent("alice"), env.agent("bob")
    subs = [env.evaluate(alice_h, env.noisy(k), seed=k).json()["id"] for k in range(5)]
    arch = env.client.post("/api/v1/archives", headers=alice_h, json={
        "filename": "m.tar.gz",
        "data_b64": base64.b64encode(tar_bytes({"method.py": CODE})).decode()}).json()
    f = env.client.post("/api/v1/findings", headers=alice_h, json={
        "type": "result", "title": "kNN smoothing of weak labels", "body": "It helps.",
        "dataset": DATASET, "submissions": subs, "archive": arch["sha256"],
        "metrics": {"pgr": 0.5}}).json()
    g = env.client.post("/api/v1/findings", headers=bob_h, json={
        "type": "insight", "title": "smoothing plus filtering", "body": "Builds on it.",
        "builds_on": [f["id"]]}).json()
    flag = env.client.post("/api/v1/admin/flags", headers=env.admin, json={
        "agent": "alice", "kind": "vault_read", "severity": "high", "finding_id": f["id"],
        "evidence": "read_file('/vault/labels.npy') in tool call 12"})
    assert flag.status_code == 201, flag.text
    yield Site(env, admin_token, env.tokens["alice"], env.tokens["bob"], f["id"], g["id"],
               flag.json()["id"])


def test_login_sets_a_session_cookie_not_the_token(site: Site) -> None:
    c = site.env.client
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F"
    page = c.get("/login")
    assert "Token" in page.text and page.headers["content-security-policy"]
    bad = c.post("/login", data={"csrf": csrf_of(page.text), "token": "aar_wrong"},
                 follow_redirects=False)
    assert bad.status_code == 401 and "not valid" in bad.text
    assert "aar_session" not in bad.headers.get("set-cookie", "")
    r = c.post("/login", data={"csrf": csrf_of(page.text), "token": site.admin_token,
                               "next": "/forum"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/forum"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("aar_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert site.admin_token not in cookie and site.admin_token[4:20] not in cookie
    home_page = c.get("/")
    assert home_page.status_code == 200
    assert "alice" in home_page.text and "bob" in home_page.text
    assert site.admin_token not in home_page.text


def test_login_refuses_foreign_forms_and_open_redirects(site: Site) -> None:
    c = site.env.client
    csrf = csrf_of(c.get("/login").text)
    assert c.post("/login", data={"token": site.admin_token},
                  follow_redirects=False).status_code == 403
    evil = c.post("/login", data={"csrf": csrf, "token": site.admin_token},
                  headers={"Origin": "http://evil.example"}, follow_redirects=False)
    assert evil.status_code == 403 and "another site" in evil.text
    for target in ("//evil.example/x", "http://evil.example/", "/\\evil"):
        csrf = csrf_of(c.get("/login").text)
        r = c.post("/login", data={"csrf": csrf, "token": site.admin_token, "next": target},
                   follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        c.cookies.delete("aar_session")


def test_every_page_renders_for_an_admin(site: Site) -> None:
    c = site.env.client
    login(c, site.admin_token)
    board = c.get("/leaderboard")
    assert board.status_code == 200
    assert "weak teacher" in board.text and "strong ceiling" in board.text
    assert "private PGR" in board.text and "Held off the board" in board.text
    assert "<svg" in c.get("/pgr").text and "alice" in c.get("/pgr").text
    forum = c.get("/forum?type=result")
    assert "kNN smoothing" in forum.text and "smoothing plus filtering" not in forum.text
    assert "smoothing plus filtering" in c.get("/forum?q=filtering").text
    page = c.get(f"/forum/{site.result}")
    assert 'class="hl"' in page.text and "method.py" in page.text  # highlighted code
    assert f'href="/forum/{site.follow_up}"' in page.text  # built on by
    assert f'href="/forum/{site.result}"' in c.get(f"/forum/{site.follow_up}").text
    over = c.get("/oversight")
    assert over.status_code == 200 and f'id="flag-{site.flag}"' in over.text
    assert "read_file(&#39;/vault/labels.npy&#39;)" in over.text  # the evidence, escaped
    audit = c.get("/audit?action=finding.create")
    assert audit.status_code == 200 and "finding.create" in audit.text
    assert "evaluation.score" not in audit.text.split("<tbody>")[1]
    assert c.get("/audit?actor=bob&since=2020-01-01T00:00").status_code == 200
    css = c.get("/static/dash.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_agents_are_refused_admin_pages_and_private_scores(site: Site) -> None:
    c = site.env.client
    csrf = login(c, site.bob)
    for path in ("/oversight", "/audit"):
        r = c.get(path)
        assert r.status_code == 403 and "for admins" in r.text
        assert r.headers["content-type"].startswith("text/html")
    before = site.env.counts()
    r = c.post(f"/oversight/flags/{site.flag}", data={
        "csrf": csrf, "decision": "reject", "reason": "mine"}, follow_redirects=False)
    assert r.status_code == 403 and site.env.counts() == before
    board = c.get("/leaderboard").text
    assert "private PGR" not in board and "Oversight" not in c.get("/").text
    # Agents see the board as the API shows it: alice's result (another account) is
    # listed, its values hidden.
    assert "as the Ladder released it to your run" in board
    assert "kNN smoothing of weak labels" in board and ">hidden</small>" in board
    assert "the values the Ladder released" in c.get("/pgr").text  # not exact scores


def test_vote_and_comment_through_forms(site: Site) -> None:
    c = site.env.client
    csrf = login(c, site.bob)
    r = c.post(f"/forum/{site.result}/vote", data={"csrf": csrf, "value": "1"},
               follow_redirects=False)
    assert r.status_code == 303
    r = c.post(f"/forum/{site.result}/comment", data={"csrf": csrf, "body": "<b>re</b>run"},
               follow_redirects=False)
    assert r.status_code == 303
    page = c.get(f"/forum/{site.result}").text
    assert "&lt;b&gt;re&lt;/b&gt;run" in page and "<b>re</b>run" not in page  # escaped
    f = site.env.client.get(f"/api/v1/findings/{site.result}", headers=site.env.admin).json()
    assert f["votes"] == 1 and f["comments"] == 1


BAD_FORMS = [
    ("/forum/{r}/vote", {"value": "1"}, 403, "security token"),  # no CSRF token
    ("/forum/{r}/vote", {"csrf": "stale", "value": "1"}, 403, "security token"),
    ("/forum/{r}/vote", {"csrf": "@", "value": "7"}, 400, "between -1 and 1"),
    ("/forum/{r}/vote", {"csrf": "@", "value": "up"}, 400, "whole number"),
    ("/forum/{f}/vote", {"csrf": "@", "value": "1"}, 403, "own finding"),
    ("/forum/999999/vote", {"csrf": "@", "value": "1"}, 404, "no finding"),
    ("/forum/{r}/comment", {"csrf": "@", "body": "   "}, 400, "empty"),
    ("/forum/{r}/comment", {"csrf": "@", "body": "x" * 20_001}, 400, "longer than"),
    ("/forum/{r}/comment", {"csrf": "@", "body": "a\x00b"}, 400, "NUL"),
    ("/oversight/flags/{flag}", {"csrf": "@", "decision": "reject"}, 403, "for admins"),
]


def test_bad_forms_change_nothing(site: Site) -> None:
    c = site.env.client
    csrf = login(c, site.bob)
    for path, form, status, words in BAD_FORMS:
        before = site.env.counts()
        url = path.format(r=site.result, f=site.follow_up, flag=site.flag)
        data = {k: csrf if v == "@" else v for k, v in form.items()}
        r = c.post(url, data=data, follow_redirects=False)
        assert r.status_code == status and words in r.text, (path, form, r.text[-800:])
        assert r.headers["content-type"].startswith("text/html")
        assert site.env.counts() == before, (path, form)


def test_post_from_another_origin_or_as_json_is_refused(site: Site) -> None:
    c = site.env.client
    csrf = login(c, site.bob)
    before = site.env.counts()
    r = c.post(f"/forum/{site.result}/vote", data={"csrf": csrf, "value": "1"},
               headers={"Origin": "http://evil.example"}, follow_redirects=False)
    assert r.status_code == 403
    r = c.post(f"/forum/{site.result}/vote", json={"csrf": csrf, "value": 1})
    assert r.status_code == 415
    assert site.env.counts() == before


def test_admin_reviews_a_flag_with_a_reason(site: Site) -> None:
    c = site.env.client
    csrf = login(c, site.admin_token)
    before = site.env.counts()
    r = c.post(f"/oversight/flags/{site.flag}", data={"csrf": csrf, "decision": "reject"})
    assert r.status_code == 400 and "reason" in r.text and site.env.counts() == before
    r = c.post(f"/oversight/flags/{site.flag}", data={"csrf": csrf, "decision": "maybe",
                                                      "reason": "x"})
    assert r.status_code == 400
    r = c.post(f"/oversight/flags/{site.flag}", data={
        "csrf": csrf, "decision": "reject", "reason": "the path was a decoy, not the vault"},
        follow_redirects=False)
    assert r.status_code == 303
    flag = next(f for f in c.get("/api/v1/admin/flags", headers=site.env.admin).json()["items"]
                if f["id"] == site.flag)
    assert flag["state"] == "rejected" and flag["reviewer"] == "admin"
    again = c.post(f"/oversight/flags/{site.flag}", data={
        "csrf": csrf, "decision": "accept", "reason": "changed my mind"})
    assert again.status_code == 409 and "already" in again.text
    assert "the path was a decoy" in c.get("/oversight?state=rejected").text
    assert "flag.rejected" in c.get("/audit?action=flag.rejected").text


BAD_URLS = [
    ("/forum?type=bogus", 400, "unknown finding type"),
    ("/forum?page=0", 400, "between 1"),
    ("/forum/abc", 400, "whole number"),
    ("/forum/424242", 404, "no finding"),
    ("/audit?since=yesterday", 400, "since must be"),
    ("/oversight?state=maybe", 400, "unknown flag state"),
    ("/leaderboard?dataset=nope", 404, "no scored dataset"),
    ("/no-such-page", 404, "no page"),
    ("/static/nothing.js", 404, "no static file"),
    ("/events?timeout=999", 400, "between 1 and 60"),
]


def test_bad_urls_get_error_pages(site: Site) -> None:
    c = site.env.client
    login(c, site.admin_token)
    for path, status, words in BAD_URLS:
        r = c.get(path)
        assert r.status_code == status and words in r.text, (path, r.text[-600:])
        assert r.headers["content-type"].startswith("text/html")


def test_api_errors_stay_json(site: Site) -> None:
    r = site.env.client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]
    r = site.env.client.get("/api/v1/findings?limit=0", headers=site.env.admin)
    assert r.status_code == 422 and "error" in r.json()


def use_cookie(c: TestClient, value: str) -> None:
    c.cookies.clear()
    c.cookies.set("aar_session", value)


def test_sessions_end_with_logout_revocation_or_tampering(site: Site) -> None:
    c = site.env.client
    csrf = login(c, site.bob)
    cookie = c.cookies.get("aar_session")
    assert cookie
    use_cookie(c, cookie[:-2] + ("00" if cookie[-2:] != "00" else "11"))
    assert c.get("/", follow_redirects=False).status_code == 303
    use_cookie(c, cookie)
    assert c.get("/").status_code == 200
    r = c.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    use_cookie(c, cookie)  # a copy kept after logout is refused too
    assert c.get("/", follow_redirects=False).status_code == 303
    login(c, site.alice)
    tid = next(t["id"] for t in c.get("/api/v1/admin/tokens", headers=site.env.admin).json()[
        "items"] if t["name"] == "alice")
    c.delete(f"/api/v1/admin/tokens/{tid}", headers=site.env.admin)
    assert c.get("/", follow_redirects=False).status_code == 303


def test_events_stream_reports_changes(site: Site, tmp_path: Path) -> None:
    c = site.env.client
    assert c.get("/events?timeout=1").status_code == 401
    login(c, site.admin_token)
    with c.stream("GET", "/events?timeout=1&v=stale") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    assert "event: change" in text and '"what"' in text
    version = re.search(r'data-version="([0-9a-f]+)"', c.get("/").text)
    assert version
    with c.stream("GET", f"/events?timeout=1&v={version.group(1)}") as r:
        assert "event: change" not in r.read().decode()  # nothing changed since the page


def test_charts_are_plain_svg_with_escaped_labels() -> None:
    from datetime import datetime, timedelta

    from aar.server.dashboard.charts import best_so_far, pgr_chart, sparkline

    t0 = datetime(2026, 12, 1, 12)
    pts = [(t0 + timedelta(minutes=k), v) for k, v in enumerate([0.2, 0.1, 0.5, 0.4, 0.7])]
    assert [v for _, v in best_so_far(pts)] == [0.2, 0.5, 0.7]
    svg = str(pgr_chart("<script>", pts, t0, t0 + timedelta(minutes=10), 0.3, "vanilla",
                        -0.05, 1.05))
    assert svg.startswith("<svg") and "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count("<circle") == 5 and "vanilla 0.30" in svg and "10 min" in svg
    assert "<path" not in str(sparkline([], t0, t0, None))  # nothing to draw, no crash


def test_admins_see_verification_tables_agents_do_not(site: Site) -> None:
    """``aar verify`` posts its table (``POST /admin/verifications``); the dashboard shows
    the posted tables, never a file of a run folder."""
    import json
    import os

    cell = {"mean": 0.41, "ci95": 0.05, "n": 3}
    table = {
        "run": "run-7", "dataset": DATASET, "t": "2026-12-01T18:00:00+00:00", "rows": [
            {"finding": site.result, "title": "kNN smoothing", "author": "alice",
             "cells": {"public (seen)": cell, "held-out math": {**cell, "mean": 0.12},
                       "re-split": {"error": "timeout"},
                       "private (unbiased)": {"mean": 0.8, "low": 0.7, "high": 0.91},
                       "pair l3->minilm": {"mean": None, "status": "gap too small"}},
             "reproduces": False, "gap": 0.29, "seeds_fresh": [5, 6, 7]},
            {"finding": 99, "error": "finding 99 has no code snapshot to re-run"}]}
    c = site.env.client
    admin = {"Authorization": f"Bearer {site.admin_token}"}
    url = "/api/v1/admin/verifications"
    # A table left in a run folder is not read.
    run = Path(os.environ["AAR_HOME"]) / "runs" / "run-file"
    run.mkdir(parents=True)
    (run / "verify.json").write_text(json.dumps({**table, "run": "run-file"}))
    # Admins only; an invalid table is refused whole.
    assert c.post(url, json=table).status_code == 401
    r = c.post(url, json=table, headers={"Authorization": f"Bearer {site.bob}"})
    assert r.status_code == 403
    for bad, field in [({**table, "rows": [{"title": "no finding"}]}, "rows.0.finding"),
                       ({**table, "run": ""}, "run"), ({**table, "surprise": 1}, "surprise"),
                       ({k: v for k, v in table.items() if k != "dataset"}, "dataset"),
                       ({**table, "rows": [{"finding": 1, "cells": {"x": {"mean": "hi"}}}]},
                        "rows.0.cells.x.mean")]:
        r = c.post(url, json=bad, headers=admin)
        assert r.status_code == 422 and field in r.json()["error"], (field, r.text)
    login(c, site.admin_token)
    assert "Verification" not in c.get("/leaderboard").text
    c.cookies.clear()
    r = c.post(url, json={**table, "rows": []}, headers=admin)
    assert r.status_code == 201 and r.json()["rows"] == 0, r.text
    r = c.post(url, json=table, headers=admin)  # the run's newer table replaces it
    assert r.status_code == 200 and r.json()["replaced"] and r.json()["rows"] == 2
    login(c, site.admin_token)
    page = c.get("/leaderboard").text
    assert "Verification · run run-7" in page and "held-out math" in page
    assert "0.12 ± 0.05" in page and ">NO<" in page and "no code snapshot" in page
    assert "0.80 [0.70, 0.91]" in page and "gap too small" in page
    assert "run-file" not in page
    c.cookies.clear()
    login(c, site.bob)
    assert "Verification" not in c.get("/leaderboard").text


def test_aar_verify_posts_its_table_to_the_runs_server(site: Site) -> None:
    """The Verifier writes verify.json and posts the same table through its admin client
    (after every step, so a long verification shows on the dashboard as it goes); a
    server that refuses it costs the table nothing."""
    import json
    import os

    from aar.client import Client
    from aar.contracts.api import VerificationRow
    from aar.oversight.verify import Verifier, read_table
    from aar.research.layout import RunPaths

    paths = RunPaths(Path(os.environ["AAR_HOME"]) / "runs" / "run-v")
    paths.root.mkdir(parents=True)
    paths.info.write_text(json.dumps({"dataset": DATASET}))
    said: list[str] = []
    with live_server() as srv, Client(srv.url, srv.admin_token) as admin:
        partial = VerificationRow.model_validate(
            {"finding": site.result, "partial": True,
             "cells": {"fresh seeds": {"mean": 0.33, "low": 0.2, "high": float("nan"),
                                       "per_seed": [0.3, float("nan")]}}})
        result = Verifier(paths, admin, progress=said.append)._save(partial)
        written = read_table(paths.root / "verify.json")
        assert written is not None
        (row,) = written.rows
        assert row.partial and row.cells["fresh seeds"].per_seed[0] == 0.3
        with Client(srv.url, site.bob) as agent:
            Verifier(paths, agent, progress=said.append)._save()
    assert result.run == "run-v" and result.rows == [partial]
    assert (paths.root / "verify.json").exists()  # the file stays the run's record
    assert len(said) == 1 and "not posted" in said[0] and "403" in said[0]
    c = site.env.client
    login(c, site.admin_token)
    page = c.get("/leaderboard").text
    assert "Verification · run run-v" in page and "fresh seeds" in page
    assert "0.33" in page


def test_a_researchers_page_shows_its_costs_findings_and_transcript(site: Site) -> None:
    c = site.env.client
    auth = {"Authorization": f"Bearer {site.env.tokens['alice']}"}
    r = c.put("/api/v1/status", headers=auth, json={
        "run_id": "run-t", "state": "running", "direction": "local model",
        "tokens": 1234, "compute_s": 88.0})
    assert r.status_code == 200, r.text
    r = c.post("/api/v1/transcript", headers=auth, json={"run_id": "run-t", "turns": [
        {"seq": 0, "kind": "user", "text": "Begin your research."},
        {"seq": 1, "kind": "assistant", "calls": ['run_method({"path": "template.py"})'],
         "input_tokens": 1000, "output_tokens": 40, "seconds": 8.0},
        {"seq": 2, "kind": "tool_result", "tool": "run_method", "ok": False,
         "text": "failed: <script>alert(1)</script>"}]})
    assert r.status_code == 200, r.text
    login(c, site.admin_token)
    assert 'href="/researchers/alice"' in c.get("/").text
    page = c.get("/researchers/alice").text
    assert "Begin your research." in page and "run_method ok" not in page
    assert "run_method error" in page and "&lt;script&gt;alert(1)" in page
    assert "<script>alert(1)" not in page
    assert "1.2k tokens" in page and "88 s" in page
    assert "5.0" in page  # 40 output tokens in 8 s
    assert f'href="/forum/{site.result}"' in page  # alice's finding
    assert c.get("/researchers/nobody").status_code == 404
    c.cookies.clear()
    login(c, site.alice)
    assert c.get("/researchers/alice").status_code == 200
    r = c.get("/researchers/bob")
    assert r.status_code == 403 and "for admins" in r.text


def test_overview_shows_the_latest_run_unless_asked(site: Site) -> None:
    c = site.env.client
    for name, run in (("alice", "run-a"), ("bob", "run-b")):
        r = c.put("/api/v1/status", headers={"Authorization": f"Bearer {site.env.tokens[name]}"},
                  json={"run_id": run, "state": "running", "direction": f"{name}'s idea"})
        assert r.status_code == 200, r.text
    login(c, site.admin_token)
    latest = c.get("/").text
    assert 'id="r-bob"' in latest and 'id="r-alice"' not in latest
    every = c.get("/?run=").text
    assert 'id="r-bob"' in every and 'id="r-alice"' in every
    assert 'id="r-alice"' in c.get("/?run=run-a").text
    r = c.get("/?run=nope")
    assert r.status_code == 404 and "no research run" in r.text
