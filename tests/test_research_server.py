"""Server additions for research runs, over HTTP: findings that build on others and the
researchers' live status (``PUT``/``GET /api/v1/status``)."""


from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_server_support import DATASET, Template

from aar.client import Client, ServerError
from aar.research.live import LiveServer


@pytest.fixture
def live(home: Path) -> Iterator[tuple[str, str]]:
    token = "aar_" + secrets.token_urlsafe(24)
    with LiveServer(admin_token=token, noise_seed=0) as srv:
        yield srv.url, token


def test_builds_on_is_validated_and_returned(live: tuple[str, str]) -> None:
    url, admin_token = live
    with Client(url, admin_token) as admin:
        alice = Client(url, admin.create_token("alice").token)
        bob = Client(url, admin.create_token("bob").token)
    first = alice.post_finding("insight", "kNN smoothing helps",
                               metrics={"method": "knn", "params": {"k": 50}, "seeds": [0, 1]})
    assert first.builds_on == []
    assert first.claimed_metrics["params"] == {"k": 50}
    second = bob.post_finding("hypothesis", "more rounds", builds_on=[first.id])
    assert second.builds_on == [first.id]
    assert bob.finding(second.id).builds_on == [first.id]
    listed = {f.id: f for f in alice.findings().items}
    assert listed[second.id].builds_on == [first.id]
    for bad in ([second.id + 100], [first.id, first.id]):
        with pytest.raises(ServerError) as e:
            bob.post_finding("insight", "dangling", builds_on=bad)
        assert e.value.status == 400 and "builds_on" in e.value.message
    raw = httpx.post(f"{url}/api/v1/findings", headers={
        "Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
        content='{"type": "insight", "title": "t", "metrics": {"x": {"y": NaN}}}')
    assert raw.status_code in (400, 422) and "x" in raw.json()["error"]
    assert alice.findings().total == 2


def test_transcripts_are_mirrored_by_their_researcher_and_read_by_admins(
        live: tuple[str, str]) -> None:
    url, admin_token = live
    admin = Client(url, admin_token)
    alice = Client(url, admin.create_token("alice").token)
    bob = Client(url, admin.create_token("bob").token)
    assert alice.transcript().items == []
    turns = [{"seq": 0, "kind": "user", "text": "Begin."},
             {"seq": 1, "kind": "assistant", "text": "", "calls": ['read_file({"path": "a"})'],
              "input_tokens": 900, "output_tokens": 20, "seconds": 2.5},
             {"seq": 2, "kind": "tool_result", "tool": "read_file", "ok": False,
              "text": "no such file <b>a</b>"}]
    assert alice.post_transcript("r1", turns[:2]).as_dict() == {"added": 2, "ignored": 0}
    assert alice.post_transcript("r1", turns[1:]).as_dict() == {"added": 1,  # a retry
                                                                "ignored": 1}
    mine = alice.transcript()
    assert mine.run_id == "r1" and [t.seq for t in mine.items] == [0, 1, 2]
    assert mine.items[1].calls == ['read_file({"path": "a"})']
    assert mine.items[1].output_tokens == 20 and mine.items[2].ok is False
    assert [t.seq for t in alice.transcript(after=0, limit=1).items] == [1]
    assert admin.transcript("alice", "r1").items == mine.items
    assert admin.transcript("alice", "other").items == []
    with pytest.raises(ServerError) as e:
        bob.transcript("alice")
    assert e.value.status == 403
    with pytest.raises(ServerError) as e:
        admin.transcript("nobody")
    assert e.value.status == 404
    for bad in ([{"seq": 5, "kind": "shout"}], [{"seq": -1, "kind": "user"}],
                [{"seq": 6, "kind": "user", "text": "x" * 9000}],
                [{"seq": 7, "kind": "user"}, {"seq": 7, "kind": "user"}],
                [{"seq": 8, "kind": "user", "extra": 1}], []):
        with pytest.raises(ServerError) as e:
            alice.post_transcript("r1", bad)
        assert e.value.status in (400, 422), bad
    assert len(alice.transcript().items) == 3  # nothing of the bad requests was kept


def test_status_is_own_for_agents_and_all_for_admins(live: tuple[str, str]) -> None:
    url, admin_token = live
    admin = Client(url, admin_token)
    alice = Client(url, admin.create_token("alice").token)
    bob = Client(url, admin.create_token("bob").token)
    assert alice.status() == []
    row = alice.put_status(run_id="r1", state="running", direction="data reweighting",
                           best_pgr=0.42, evals=5, findings=1, usd=0.5, tokens=1000,
                           compute_s=12.5)
    assert row.agent == "alice" and row.best_pgr == 0.42 and row.updated
    bob.put_status(run_id="r1", state="starting")
    alice.put_status(run_id="r1", state="stopped", evals=6, reason="wall time")
    mine = alice.status()
    assert [r.agent for r in mine] == ["alice"]
    assert mine[0].state == "stopped" and mine[0].evals == 6 and mine[0].best_pgr is None
    every = admin.status()
    assert {r.agent for r in every} == {"alice", "bob"}
    assert admin.status(run_id="other") == []
    for bad in ({"state": "dancing"}, {"state": "running", "evals": -1},
                {"state": "running", "usd": 2e9}):
        with pytest.raises(ServerError) as e:
            bob.put_status(run_id="r1", **bad)  # type: ignore[arg-type]
        assert e.value.status in (400, 422)
    assert [r.state for r in bob.status()] == ["starting"]
    _ = (Template, DATASET)
