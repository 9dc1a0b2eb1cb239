"""LLM researchers end to end: ``aar research --backend openai`` against a local server
that speaks Chat Completions and plays a researcher who writes a method, runs it, submits
it and shares it (through the real ``openai`` SDK, the real evaluation server and the real
sandbox); a dollar budget that stops cleanly; and ``aar mcp`` driven by the ``mcp`` SDK's
own stdio client."""


from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from test_server_support import DATASET

from aar.client import Client
from aar.research.layout import RunPaths
from aar.research.live import LiveServer
from aar.research.orchestrator import ResearchConfig, issue_tokens, new_run, research

MODEL = "scripted-model"
USAGE = (1000, 100)  # prompt, completion tokens per reply
PRICES = f'[models."{MODEL}"]\ninput = 3.0\noutput = 15.0\n'  # $ per million tokens
CALL_USD = (USAGE[0] * 3.0 + USAGE[1] * 15.0) / 1e6

METHOD = '''import numpy as np
from aar.methods import method


@method("llm_plain")
def llm_plain(ctx, *, l2: float | None = None):
    # seeded jitter of the example weights: each seed's predictions differ (identical
    # seeds would be flagged as duplicate submissions and held off the board)
    weights = ctx.rng.uniform(0.8, 1.2, len(ctx.ids["unlabeled"]))
    return ctx.train_strong(ctx.weak_hard["unlabeled"].astype(float), weights, l2=l2)
'''

Reply = tuple[str, list[tuple[str, dict[str, Any]]]]  # text, tool calls


def researcher_script(messages: list[dict[str, Any]]) -> Reply:
    """The scripted researcher: its next turn from the conversation so far."""
    turn = sum(1 for m in messages if m["role"] == "assistant")
    tool_out = [m.get("content") or "" for m in messages if m["role"] == "tool"]
    path = "ideas/llm_plain.py"
    if turn == 0:
        return "", [("write_file", {"path": path, "content": METHOD}),
                    ("read_forum", {}), ("read_file", {"path": "../../secrets.json"})]
    if turn == 1:
        return "", [("run_method", {"path": path, "seeds": [0]})]
    if turn == 2:
        return "", [("submit", {"path": path})]
    if turn == 3:
        subs = json.loads(tool_out[-1])["submission_ids"]
        return "", [("share_finding", {"type": "result", "title": "plain weak labels (LLM)",
                                       "path": path, "submission_ids": subs,
                                       "seeds": [0, 1, 2, 3, 4]})]
    if turn == 4:
        return "", [("notes", {"append": "plain works"}), ("leaderboard", {}),
                    ("catch_up", {})]
    return "Final note: the plain head on weak labels is a fair baseline.", []


@contextmanager
def chat_server(script: Callable[[list[dict[str, Any]]], Reply]) -> Iterator[str]:
    """A local Chat Completions endpoint replying from ``script``; yields its base URL."""
    counter = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            text, calls = script(body["messages"])
            counter["n"] += 1
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = [
                    {"id": f"call_{counter['n']}_{i}", "type": "function",
                     "function": {"name": name, "arguments": json.dumps(args)}}
                    for i, (name, args) in enumerate(calls)]
            data = json.dumps({
                "id": f"chatcmpl-{counter['n']}", "object": "chat.completion", "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": "tool_calls" if calls else "stop"}],
                "usage": {"prompt_tokens": USAGE[0], "completion_tokens": USAGE[1],
                          "total_tokens": sum(USAGE)},
            }).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def llm_env(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (home / "prices.toml").write_text(PRICES)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    return home


def test_openai_researcher_uses_the_research_tools(llm_env: Path) -> None:
    with chat_server(researcher_script) as base_url:
        info = research(ResearchConfig(dataset=DATASET, agents=1, backend="openai",
                                       model=MODEL, base_url=base_url, minutes=1.5,
                                       live_view=False), run_id="llm")
    name = info["agents"][0]["name"]
    paths = RunPaths.of("llm")
    events = paths.read_events(name)
    calls = [e for e in events if e.kind == "tool_call"]
    assert [c.tool for c in calls][:4] == ["write_file", "read_forum", "read_file",
                                              "run_method"]
    secret_read = calls[2]
    assert not secret_read.ok and "workspace" in secret_read.result
    assert all(c.ok for c in calls if c.tool != "read_file"), calls
    stop = [e for e in events if e.kind == "stop"][-1]
    assert stop.reason == "done" and "fair baseline" in stop.final_note
    assert stop.usd == pytest.approx(6 * CALL_USD, rel=1e-6)
    assert stop.usd_per_hour > 0
    st = paths.read_status(name)
    assert st is not None and st.evals == 5 and st.findings == 1
    assert st.usd == pytest.approx(6 * CALL_USD, rel=1e-6) and st.tokens == 6 * sum(USAGE)
    assert info["summary"]["results"] == 1
    assert info["summary"]["authors_with_results"] == [name]
    assert (paths.agent_dir(name) / "transcript.jsonl").exists()
    assert "plain works" in (paths.workspace(name) / "notes.md").read_text()
    # the orchestrator mirrored the transcript to the server, for the dashboard
    token = json.loads(paths.secrets.read_text())["admin_token"]
    with LiveServer(admin_token=token) as srv, Client(srv.url, token) as admin:
        mirrored = admin.transcript(name)
    assert mirrored.run_id == "llm"
    kinds = [t.kind for t in mirrored.items]
    assert kinds[0] == "user" and kinds.count("assistant") == 6 and kinds[-1] == "end"
    said = [t for t in mirrored.items if t.kind == "assistant"]
    assert said[0].calls[0].startswith("write_file(") and said[0].input_tokens > 0
    assert sum(t.usd for t in said) == pytest.approx(6 * CALL_USD, rel=1e-6)
    results = [t for t in mirrored.items if t.kind == "tool_result"]
    assert [t.tool for t in results][:2] == ["write_file", "read_forum"]
    assert results[2].ok is False  # the read outside the workspace


def test_dollar_budget_stops_an_llm_researcher_cleanly(llm_env: Path) -> None:
    def chatty(messages: list[dict[str, Any]]) -> Reply:
        return "", [("list_files", {})]  # never finishes on its own

    with chat_server(chatty) as base_url:
        info = research(ResearchConfig(dataset=DATASET, agents=1, backend="openai",
                                       model=MODEL, base_url=base_url, minutes=1.0,
                                       budget_usd=3.5 * CALL_USD, live_view=False),
                        run_id="broke")
    name = info["agents"][0]["name"]
    stop = [e for e in RunPaths.of("broke").read_events(name) if e.kind == "stop"][-1]
    assert stop.reason == "budget:usd"
    assert stop.final_note
    assert stop.usd <= 4 * CALL_USD + 1e-9


def text_of(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


def test_aar_mcp_serves_a_researchers_tools(home: Path) -> None:
    paths, info, secrets = new_run(ResearchConfig(dataset=DATASET, agents=1, minutes=1),
                                   "mcp-run")
    name = info["agents"][0]["name"]
    with LiveServer(admin_token=secrets["admin_token"]) as srv:
        issue_tokens(paths, info, secrets, srv.url)
        params = StdioServerParameters(command=sys.executable, args=[
            "-m", "aar", "mcp", "--run", "mcp-run", "--agent", name], env=dict(os.environ))

        async def main() -> None:
            with anyio.fail_after(120):
                async with stdio_client(params) as (read, write), \
                        ClientSession(read, write) as session:
                    init = await session.initialize()
                    assert init.server_info.name == f"aar-{name}"
                    tools = {t.name: t for t in (await session.list_tools()).tools}
                    assert {"write_file", "run_method", "submit", "share_finding",
                            "catch_up", "leaderboard", "notes"} <= set(tools)
                    ok = await session.call_tool("write_file", {"path": "ideas/m.py",
                                                                "content": METHOD})
                    assert not ok.is_error, text_of(ok)
                    listed = await session.call_tool("list_files", {})
                    assert "ideas/m.py" in text_of(listed)
                    bad = await session.call_tool("read_file", {"path": "/etc/passwd"})
                    assert bad.is_error and "absolute" in text_of(bad)
                    run = await session.call_tool("run_method", {"path": "ideas/m.py",
                                                                 "seeds": [0]})
                    assert not run.is_error, text_of(run)
                    assert "agreement_with_weak" in text_of(run)
                    post = await session.call_tool("share_finding", {
                        "type": "hypothesis", "title": "from MCP"})
                    assert not post.is_error, text_of(post)

        anyio.run(main)
        with Client(srv.url, secrets["admin_token"]) as admin:
            assert [f.author for f in admin.findings().items] == [name]
    kinds = [e.kind for e in paths.read_events(name)]
    assert kinds.count("tool_call") == 5 and "sandbox_run" in kinds
