"""A real server: uvicorn on a free loopback port, driven through ``aar.client``; and the
``python -m aar.server.main`` entry point (admin token printed once)."""

# Fixtures come from test_server_support (imported below); tests take them as arguments.

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_server_support import DATASET, Template, live_server

from aar.client import Client, ServerError, snapshot
from aar.research.live import free_port


@pytest.fixture
def live(home: Path) -> Iterator[tuple[str, str]]:
    with live_server() as srv:
        yield srv.url, srv.admin_token


def test_client_against_a_live_server(live: tuple[str, str], template: Template,
                                      tmp_path: Path) -> None:
    url, admin_token = live
    with Client(url, admin_token) as admin:
        alice = Client(url, admin.create_token("alice").token)
        bob = Client(url, admin.create_token("bob").token)
    assert alice.me().name == "alice"
    assert alice.test_ids(DATASET) == template.ids
    subs = [alice.evaluate(DATASET, p, seed=s, method="vanilla").id
            for s, p in enumerate(template.preds)]
    by_id = dict(zip(template.ids, template.preds[0], strict=True))
    again = alice.evaluate(DATASET, by_id, seed=9)  # a mapping id -> probability works too
    assert again.public.released is False
    code = tmp_path / "method"
    (code / "__pycache__").mkdir(parents=True)
    (code / "m.py").write_text("def method(ctx):\n    return ctx.weak\n")
    (code / "__pycache__" / "m.pyc").write_bytes(b"junk")
    assert snapshot(code) == snapshot(code)  # deterministic
    f = alice.post_finding("result", "vanilla, five seeds", "Plain **vanilla**.",
                           metrics={"pgr": 0.5}, dataset=DATASET, submissions=subs,
                           code=code)
    assert f.archive and len(f.submissions) == 5
    with tarfile.open(fileobj=io.BytesIO(bob.download_archive(f.archive))) as tf:
        assert tf.getnames() == ["m.py"]  # caches are left out
    assert bob.vote(f.id, 1).votes == 1
    bob.comment(f.id, "reproduced")
    assert bob.findings("vanilla").total == 1
    assert bob.comments(f.id).items[0].body == "reproduced"
    board = bob.leaderboard(DATASET)
    assert board.entries[0].finding == f.id
    with pytest.raises(ServerError) as e:
        bob.leaderboard(DATASET, split="private")
    assert e.value.status == 403
    with pytest.raises(ServerError) as e:
        alice.evaluate(DATASET, [0.5] * 3, ids=template.ids[:3])
    assert e.value.status == 400 and "missing predictions" in e.value.message
    with Client(url, admin_token) as admin:
        tid = next(t.id for t in admin.tokens() if t.name == "bob")
        admin.revoke_token(tid)
        assert any(a.name == "alice" for a in admin.agents())
        assert admin.audit(action="evaluation.score").total == 6
    with pytest.raises(ServerError) as e:
        bob.me()
    assert e.value.status == 401
    schema = httpx.get(f"{url}/api/v1/openapi.json").json()
    assert "/api/v1/evaluations" in schema["paths"]


def test_module_entry_point_prints_the_admin_token_once(home: Path) -> None:
    env = {**os.environ, "AAR_HOME": str(home)}

    def start() -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "aar.server.main", "--port", str(port)], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "evaluation server on" in line:
                break
        return proc, "".join(lines)

    proc, out = start()
    try:
        assert "admin token" in out, out
        token = out.split("admin token (shown once, keep it safe): ")[1].split()[0]
        assert "127.0.0.1" in out
        deadline = time.time() + 30
        while True:
            try:
                r = httpx.get(out.split("server on ")[1].split()[0] + "/api/v1/me",
                              headers={"Authorization": f"Bearer {token}"})
                break
            except httpx.TransportError:
                assert time.time() < deadline
                time.sleep(0.1)
        assert r.json()["role"] == "admin"
    finally:
        proc.terminate()
        proc.wait(20)
    proc, out = start()
    proc.terminate()
    proc.wait(20)
    assert "admin token" not in out
