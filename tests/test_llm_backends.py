"""Protocol tests of the LLM backends through the official SDKs against local servers.

Each test starts a threaded HTTP server on 127.0.0.1 that speaks the provider's wire
format (non-streaming ``POST /v1/messages`` for Anthropic, ``POST /v1/chat/completions``
for OpenAI) and plays a scripted conversation: tool calls, bad arguments, a 429 with
``retry-after: 0`` that the SDK must retry, a final text. The researcher loop runs against
it through the real ``anthropic`` / ``openai`` clients.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aar.agents.backends import BackendError, make_backend
from aar.agents.budget import Budget
from aar.agents.llm import LLMResearcher, Transcript
from aar.agents.pricing import ModelPrice, PriceTable, Rates
from aar.agents.tools import Tool, ToolError

MODEL = "test-model"
RATES = Rates(input=3.0, output=15.0, cache_write=3.75, cache_read=0.3)
PRICES = PriceTable({MODEL: ModelPrice(RATES)})
PROVIDERS = ["anthropic", "openai"]


# ------------------------------------------------------------------ scripted wire servers
@dataclass
class Step:
    """One scripted reply: a model turn, or an HTTP error."""

    text: str = ""
    calls: list[tuple[str, str, Any]] = field(default_factory=list)  # (id, name, args|raw)
    usage: tuple[int, int, int, int] = (100, 20, 0, 0)  # input, output, cache write, read
    stop: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    thinking: str | None = None  # anthropic only: a thinking block before the text
    raw: dict[str, Any] | None = None  # a reply body sent verbatim

    def cost(self) -> float:
        i, o, cw, cr = self.usage
        return (i * RATES.input + o * RATES.output + cw * RATES.cache_write
                + cr * RATES.cache_read) / 1e6


def rate_limited() -> Step:
    return Step(status=429, headers={"retry-after": "0"})


def _anthropic_body(step: Step, request: dict[str, Any]) -> dict[str, Any]:
    if step.status != 200:
        kind = "rate_limit_error" if step.status == 429 else "api_error"
        return {"type": "error", "error": {"type": kind, "message": f"scripted {step.status}"}}
    content: list[dict[str, Any]] = []
    if step.thinking is not None:
        content.append({"type": "thinking", "thinking": step.thinking, "signature": "sig-123"})
    if step.text:
        content.append({"type": "text", "text": step.text})
    for call_id, name, args in step.calls:
        content.append({"type": "tool_use", "id": call_id, "name": name, "input": args})
    i, o, cw, cr = step.usage
    return {
        "id": "msg_test", "type": "message", "role": "assistant", "model": request["model"],
        "content": content, "stop_reason": step.stop or ("tool_use" if step.calls else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": i, "output_tokens": o, "cache_creation_input_tokens": cw,
                  "cache_read_input_tokens": cr},
    }


def _openai_body(step: Step, request: dict[str, Any]) -> dict[str, Any]:
    if step.status != 200:
        kind = "rate_limit_exceeded" if step.status == 429 else "server_error"
        return {"error": {"message": f"scripted {step.status}", "type": kind, "param": None,
                          "code": kind}}
    message: dict[str, Any] = {"role": "assistant", "content": step.text or None}
    if step.calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function",
             "function": {"name": name,
                          "arguments": args if isinstance(args, str) else json.dumps(args)}}
            for call_id, name, args in step.calls]
    i, o, cw, cr = step.usage
    details: dict[str, int] = {"cached_tokens": cr}
    if cw:
        details["cache_write_tokens"] = cw
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0,
        "model": request["model"],
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": step.stop or ("tool_calls" if step.calls else "stop")}],
        "usage": {"prompt_tokens": i + cw + cr, "completion_tokens": o,
                  "total_tokens": i + cw + cr + o, "prompt_tokens_details": details},
    }


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class WireServer:
    """A local server speaking one provider's wire format, replying from a script."""

    def __init__(self, provider: str, script: list[Step]) -> None:
        self.provider = provider
        self.script = list(script)
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                with server.lock:
                    server.requests.append(Seen(self.path, headers, body))
                    step = server.script.pop(0) if server.script else None
                expected = "/v1/messages" if provider == "anthropic" else "/v1/chat/completions"
                if self.path != expected:
                    self._send(404, {"error": {"message": f"no route {self.path}"}}, {})
                elif step is None:  # 400: the SDKs do not retry it, so a test fails fast
                    self._send(400, {"error": {"type": "invalid_request_error",
                                               "message": "script exhausted"}}, {})
                elif step.raw is not None:
                    self._send(step.status, step.raw, step.headers)
                else:
                    render = _anthropic_body if provider == "anthropic" else _openai_body
                    self._send(step.status, render(step, body), step.headers)

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)

    @property
    def base_url(self) -> str:
        root = f"http://127.0.0.1:{self.port}"
        return root if self.provider == "anthropic" else root + "/v1"

    def model_requests(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests]


@contextmanager
def serve(provider: str, script: list[Step]) -> Iterator[WireServer]:
    server = WireServer(provider, script)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def backend_for(server: WireServer, max_retries: int = 2) -> Any:
    return make_backend(server.provider, MODEL, api_key="test-key", base_url=server.base_url,
                        max_retries=max_retries, timeout=20, max_tokens=4096)


# ------------------------------------------------------------------ helpers on requests
def last_tool_results(provider: str, request: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool results the request sends back, as {id, content, is_error}."""
    out = []
    if provider == "anthropic":
        for block in request["messages"][-1]["content"]:
            if block.get("type") == "tool_result":
                out.append({"id": block["tool_use_id"], "content": block["content"],
                            "is_error": block.get("is_error", False)})
    else:
        msgs = list(request["messages"])
        while msgs and msgs[-1]["role"] == "user":  # a harness message after the results
            msgs.pop()
        for msg in reversed(msgs):
            if msg["role"] != "tool":
                break
            text = msg["content"]
            out.insert(0, {"id": msg["tool_call_id"], "content": text,
                           "is_error": text.startswith("ERROR: ")})
    return out


def last_user_text(provider: str, request: dict[str, Any]) -> str:
    msg = request["messages"][-1]
    assert msg["role"] == "user"
    if provider == "anthropic":
        return "\n".join(b["text"] for b in msg["content"] if b.get("type") == "text")
    return str(msg["content"])


def events(path: Path) -> list[dict[str, Any]]:
    """The transcript's lines as written (the file format, not the typed entries)."""
    Transcript(path).load()  # cuts a torn last line, as a resume would
    return [json.loads(line) for line in path.read_text().splitlines()]


ADD_SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
              "required": ["a", "b"]}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def tools(self) -> list[Tool]:
        def add(args: dict[str, Any]) -> str:
            self.calls.append(("add", args))
            return str(args["a"] + args["b"])

        def lookup(args: dict[str, Any]) -> str:
            self.calls.append(("lookup", args))
            raise ToolError(f"no entry named {args['key']!r}")

        def submit(args: dict[str, Any]) -> str:
            self.calls.append(("submit", args))
            return "PGR 0.42"

        return [
            Tool("add", "Add two integers.", ADD_SCHEMA, add),
            Tool("lookup", "Look up a key.", {"type": "object", "properties": {
                "key": {"type": "string"}}, "required": ["key"]}, lookup),
            Tool("submit", "Submit predictions for evaluation.", {"type": "object",
                 "properties": {"name": {"type": "string"}}, "required": ["name"]}, submit,
                 counts_as_eval=True),
        ]


SYSTEM = "You are a weak-to-strong researcher. " * 200  # long: the prompt worth caching


def researcher(server: WireServer, rec: Recorder, tmp_path: Path, budget: Budget | None = None,
               **kw: Any) -> LLMResearcher:
    return LLMResearcher(backend_for(server), MODEL, rec.tools(), budget or Budget(),
                         tmp_path / "transcript.jsonl", SYSTEM, PRICES, **kw)


def main_script(provider: str) -> list[Step]:
    bad_args: Any = {"a": "two"} if provider == "anthropic" else '{"a": 2, "b": '
    return [
        Step("I will add.", [("c1", "add", {"a": 2, "b": 3})], (1000, 50, 4000, 0),
             thinking="need a sum" if provider == "anthropic" else None),
        rate_limited(),
        Step("", [("c2", "add", bad_args)], (30, 40, 0, 4000)),
        Step("", [("c3", "lookup", {"key": "gap"})], (60, 30, 0, 4100)),
        Step("Sum is 5. Done.", [], (80, 25, 0, 4200)),
    ]


# ------------------------------------------------------------------ the scripted conversation
@pytest.mark.parametrize("provider", PROVIDERS)
def test_scripted_conversation(provider: str, tmp_path: Path) -> None:
    script = main_script(provider)
    rec = Recorder()
    with serve(provider, script) as server:
        r = researcher(server, rec, tmp_path)
        outcome = r.run("Find a method that beats vanilla.")
    assert outcome.reason == "done", outcome.final_note
    assert outcome.final_note.startswith("Sum is 5. Done.")

    reqs = server.model_requests()
    # 4 model turns + 1 retried 429: the SDK repeated the identical request
    assert len(reqs) == 5
    assert reqs[1] == reqs[2]
    assert server.requests[2].headers.get("x-stainless-retry-count") == "1"

    # the tool handlers ran with the right arguments; the bad call never reached a handler
    assert rec.calls == [("add", {"a": 2, "b": 3}), ("lookup", {"key": "gap"})]
    r1 = last_tool_results(provider, reqs[1])
    assert r1 == [{"id": "c1", "content": "5", "is_error": False}]
    r3 = last_tool_results(provider, reqs[3])
    assert len(r3) == 1 and r3[0]["is_error"] and r3[0]["id"] == "c2"
    if provider == "anthropic":
        assert "'a' must be integer" in r3[0]["content"]
        assert "missing required argument 'b'" in r3[0]["content"]
    else:
        assert "not valid JSON" in r3[0]["content"]
        # the malformed arguments are replayed verbatim to the server
        call = reqs[3]["messages"][-2]["tool_calls"][0]
        assert call["function"]["arguments"] == '{"a": 2, "b": '
    r4 = last_tool_results(provider, reqs[4])
    assert r4[0]["is_error"] and "no entry named 'gap'" in r4[0]["content"]

    # the transcript has every turn, in order, and is valid JSONL
    ev = events(tmp_path / "transcript.jsonl")
    kinds = [e["type"] for e in ev]
    turn = ["assistant", "tool_start", "tool_result"]
    assert kinds == ["session", "user", *turn, *turn, *turn, "assistant", "end"]
    assert ev[-1]["reason"] == "done"

    # usage and dollars: scripted token counts x the price table
    ok = [s for s in script if s.status == 200]
    u = outcome.usage
    assert u.input_tokens == sum(s.usage[0] for s in ok)
    assert u.output_tokens == sum(s.usage[1] for s in ok)
    assert u.cache_write_tokens == sum(s.usage[2] for s in ok)
    assert u.cache_read_tokens == sum(s.usage[3] for s in ok)
    assert u.usd == pytest.approx(sum(s.cost() for s in ok))
    per_call = [e["usd"] for e in ev if e["type"] == "assistant"]
    assert per_call == pytest.approx([s.cost() for s in ok])
    assert u.llm_calls == 4 and u.tool_calls == 3 and u.evals == 0
    assert u.usd_per_hour is not None and u.usd_per_hour > 0


def test_anthropic_request_shape(tmp_path: Path) -> None:
    """cache_control on the system prompt, the tools and the newest message; thinking replayed."""
    rec = Recorder()
    with serve("anthropic", main_script("anthropic")) as server:
        researcher(server, rec, tmp_path).run("go")
    first, second = server.model_requests()[0], server.model_requests()[1]
    assert first["system"] == [{"type": "text", "text": SYSTEM,
                                "cache_control": {"type": "ephemeral"}}]
    assert first["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert [t["name"] for t in first["tools"]] == ["add", "lookup", "submit"]
    assert first["tools"][0]["input_schema"]["required"] == ["a", "b"]
    assert first["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert first["model"] == MODEL and first["max_tokens"] == 4096
    headers = server.requests[0].headers
    assert "test-key" in (headers.get("x-api-key", ""), headers.get("authorization", "")[7:])
    assert headers.get("anthropic-version")
    # the thinking block (with its signature) goes back verbatim before the tool use
    assistant = second["messages"][1]
    assert assistant["role"] == "assistant"
    assert assistant["content"][0] == {"type": "thinking", "thinking": "need a sum",
                                       "signature": "sig-123"}
    assert assistant["content"][-1]["type"] == "tool_use"
    assert second["messages"][2]["content"][0]["type"] == "tool_result"


def test_openai_request_shape(tmp_path: Path) -> None:
    rec = Recorder()
    with serve("openai", main_script("openai")) as server:
        researcher(server, rec, tmp_path).run("go")
    first, second = server.model_requests()[0], server.model_requests()[1]
    assert first["messages"][0] == {"role": "system", "content": SYSTEM}
    assert first["messages"][1] == {"role": "user", "content": "go"}
    assert first["tools"][0] == {"type": "function", "function": {
        "name": "add", "description": "Add two integers.", "parameters": ADD_SCHEMA}}
    assert first["max_tokens"] == 4096  # local endpoint: the classic parameter
    assert server.requests[0].headers.get("authorization") == "Bearer test-key"
    assistant = second["messages"][2]
    assert assistant["role"] == "assistant" and assistant["tool_calls"][0]["id"] == "c1"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"a": 2, "b": 3}
    assert second["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "5"}


def _bare_reply(tool_calls: list[dict[str, Any]] | None, text: str) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": text or None}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "local",
            "choices": [{"index": 0, "message": msg,
                         "finish_reason": "tool_calls" if tool_calls else "stop"}]}


def test_openai_local_server_without_usage_or_ids(tmp_path: Path) -> None:
    """llama.cpp-style replies: no usage block, no tool-call id; usage is estimated."""
    rec = Recorder()
    script = [
        Step(raw=_bare_reply([{"id": "", "type": "function", "function": {
            "name": "add", "arguments": '{"a": 1, "b": 1}'}}], "")),
        Step(raw=_bare_reply(None, "ok")),
    ]
    with serve("openai", script) as server:
        outcome = researcher(server, rec, tmp_path, Budget(max_tokens=100_000)).run("go")
    assert outcome.reason == "done"
    assert rec.calls == [("add", {"a": 1, "b": 1})]
    ev = [e for e in events(tmp_path / "transcript.jsonl") if e["type"] == "assistant"]
    assert ev[0]["usage"]["estimated"] is True and ev[0]["usage"]["input_tokens"] > 100
    call_id = ev[0]["tool_calls"][0]["id"]
    assert call_id  # an id was generated
    assert server.model_requests()[1]["messages"][-1]["tool_call_id"] == call_id
    assert outcome.usage.total_tokens > 0


# ------------------------------------------------------------------ retries exhausted
@pytest.mark.parametrize("provider", PROVIDERS)
def test_retries_exhausted_is_a_clean_error(provider: str, tmp_path: Path) -> None:
    busy = [Step(status=503, headers={"retry-after": "0"}) for _ in range(2)]
    rec = Recorder()
    with serve(provider, busy) as server:
        r = LLMResearcher(backend_for(server, max_retries=1), MODEL, rec.tools(), Budget(),
                          tmp_path / "t.jsonl", SYSTEM, PRICES)
        outcome = r.run("go")
    assert len(server.requests) == 2  # first try + one SDK retry
    assert outcome.reason == "error"
    assert outcome.error is not None and "503" in outcome.error
    assert "\n" not in outcome.error
    ev = events(tmp_path / "t.jsonl")
    assert [e["type"] for e in ev][-2:] == ["error", "end"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_backend_raises_backend_error(provider: str) -> None:
    with serve(provider, [Step(status=400)]) as server:
        backend = backend_for(server, max_retries=0)
        with pytest.raises(BackendError) as info:
            backend.complete("sys", [], [])
    assert info.value.status == 400 and not info.value.retryable


# ------------------------------------------------------------------ budgets
def many_adds(n: int, usage: tuple[int, int, int, int] = (1000, 100, 0, 0)) -> list[Step]:
    return [Step("", [(f"c{i}", "add", {"a": i, "b": 1})], usage) for i in range(n)]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_budget_usd_stops_cleanly(provider: str, tmp_path: Path) -> None:
    per_call = Step(usage=(1000, 100, 0, 0)).cost()  # $0.0045
    rec = Recorder()
    with serve(provider, many_adds(10)) as server:
        budget = Budget(max_usd=per_call * 2.5)
        outcome = researcher(server, rec, tmp_path, budget).run("go")
    assert outcome.reason == "budget:usd"
    assert len(server.requests) == 3  # the third call crossed the limit; no final call
    assert len(rec.calls) == 2  # ... and its tool call was not run
    assert outcome.usage.usd == pytest.approx(per_call * 3)
    assert "dollar budget is used up" in outcome.final_note
    assert "$0.0135" in outcome.final_note
    end = events(tmp_path / "transcript.jsonl")[-1]
    assert end["type"] == "end" and end["reason"] == "budget:usd"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_budget_tokens_stops_and_caps_output(provider: str, tmp_path: Path) -> None:
    rec = Recorder()
    with serve(provider, many_adds(10)) as server:
        budget = Budget(max_tokens=2500)
        outcome = researcher(server, rec, tmp_path, budget).run("go")
    assert outcome.reason == "budget:tokens"
    assert outcome.usage.total_tokens == 3300
    assert len(server.requests) == 3
    key = "max_tokens"
    caps = [r[key] for r in server.model_requests()]
    assert caps == [2500, 1400, 300]  # the output cap follows the tokens left
    assert "token budget is used up" in outcome.final_note


@pytest.mark.parametrize("provider", PROVIDERS)
def test_budget_seconds_stops_with_model_final_note(provider: str, tmp_path: Path) -> None:
    now = [0.0]
    rec = Recorder()
    tools = rec.tools()

    def slow_add(args: dict[str, Any]) -> str:
        now[0] += 60.0  # each tool call takes a simulated minute
        return str(args["a"] + args["b"])

    tools[0] = Tool("add", "Add two integers.", ADD_SCHEMA, slow_add)
    script = [*many_adds(2), Step("Final note: sums work.", [], (500, 30, 0, 0))]
    with serve(provider, script) as server:
        budget = Budget(max_seconds=100, clock=lambda: now[0])
        r = LLMResearcher(backend_for(server), MODEL, tools, budget,
                          tmp_path / "t.jsonl", SYSTEM, PRICES)
        outcome = r.run("go")
    assert outcome.reason == "budget:seconds"
    assert outcome.usage.seconds == pytest.approx(120.0)
    final_req = server.model_requests()[-1]
    # one last call with tools disabled, asking for the final note
    if provider == "anthropic":
        assert final_req["tool_choice"] == {"type": "none"}
    else:
        assert final_req["tool_choice"] == "none"
    assert "seconds budget is exhausted" in last_user_text(provider, final_req)
    assert "wall-time budget is used up" in outcome.final_note
    assert outcome.final_note.endswith("Final note: sums work.")
    ev = events(tmp_path / "t.jsonl")
    assert [e["type"] for e in ev][-3:] == ["user", "assistant", "end"]
    assert ev[-2]["final"] is True


@pytest.mark.parametrize("provider", PROVIDERS)
def test_budget_evals_via_tool_that_charges(provider: str, tmp_path: Path) -> None:
    rec = Recorder()
    script = [
        Step("", [("s1", "submit", {"name": "a"}), ("s2", "submit", {"name": "b"})]),
        Step("Submitted once; PGR 0.42.", [], (200, 20, 0, 0)),
    ]
    with serve(provider, script) as server:
        budget = Budget(max_evals=1)
        outcome = researcher(server, rec, tmp_path, budget).run("go")
    assert outcome.reason == "budget:evals"
    assert rec.calls == [("submit", {"name": "a"})]  # the second submission never ran
    assert outcome.usage.evals == 1
    final_req = server.model_requests()[-1]
    results = last_tool_results(provider, final_req)
    assert [r["is_error"] for r in results] == [False, True]
    assert "not run: the evals budget is exhausted" in results[1]["content"]
    assert outcome.final_note.endswith("Submitted once; PGR 0.42.")
    assert "evaluation budget is used up" in outcome.final_note


# ------------------------------------------------------------------ resume
@pytest.mark.parametrize("provider", PROVIDERS)
def test_resume_from_truncated_transcript(provider: str, tmp_path: Path) -> None:
    """Cut the transcript after the first acknowledged tool result (plus a torn line)."""
    rec = Recorder()
    path = tmp_path / "transcript.jsonl"
    with serve(provider, main_script(provider)) as server:
        full = researcher(server, rec, tmp_path).run("go")
    assert full.reason == "done"
    lines = path.read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if json.loads(line)["type"] == "tool_result")
    path.write_text("".join(lines[: cut + 1]) + lines[cut + 1][:25])  # a torn last line

    rec2 = Recorder()
    rest = [Step("", [("c3", "lookup", {"key": "gap"})], (60, 30, 0, 4100)),
            Step("Sum is 5. Done.", [], (80, 25, 0, 4200))]
    with serve(provider, rest) as server2:
        outcome = researcher(server2, rec2, tmp_path).run("go")
    assert outcome.reason == "done"
    # the acknowledged add(2, 3) was not run again; the conversation went on from its result
    assert rec2.calls == [("lookup", {"key": "gap"})]
    first = server2.model_requests()[0]
    assert last_tool_results(provider, first) == [{"id": "c1", "content": "5", "is_error": False}]
    # usage carries over: the first turn (from the transcript) plus the two new ones
    first_step = main_script(provider)[0]
    assert outcome.usage.usd == pytest.approx(first_step.cost() + sum(s.cost() for s in rest))
    assert outcome.usage.llm_calls == 3
    ev = events(path)
    assert sum(1 for e in ev if e["type"] == "session") == 2
    assert all(isinstance(e, dict) for e in ev)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_resume_after_kill_during_tool_call(provider: str, tmp_path: Path) -> None:
    """A call that was running when the process died is reported interrupted, not re-run;
    a call of the same turn that never started is run on resume."""

    class Killed(BaseException):
        pass

    runs: list[str] = []

    def submit(args: dict[str, Any]) -> str:
        runs.append(args["name"])
        if len(runs) == 1:
            raise Killed()  # the process dies inside the first submission
        return "PGR 0.5"

    tools = [Tool("submit", "Submit.", {"type": "object", "properties": {
        "name": {"type": "string"}}, "required": ["name"]}, submit, counts_as_eval=True)]
    path = tmp_path / "t.jsonl"
    turn = Step("", [("s1", "submit", {"name": "a"}), ("s2", "submit", {"name": "b"})])
    with serve(provider, [turn]) as server, pytest.raises(Killed):
        LLMResearcher(backend_for(server), MODEL, tools, Budget(max_evals=5), path, SYSTEM,
                      PRICES).run("go")
    assert [e["type"] for e in events(path)][-1] == "tool_start"

    with serve(provider, [Step("Done.", [], (10, 5, 0, 0))]) as server2:
        outcome = LLMResearcher(backend_for(server2), MODEL, tools, Budget(max_evals=5), path,
                                SYSTEM, PRICES).run("go")
    assert outcome.reason == "done"
    assert runs == ["a", "b"]  # "a" not repeated; "b" (never started) ran on resume
    results = last_tool_results(provider, server2.model_requests()[0])
    assert results[0]["is_error"] and "interrupted" in results[0]["content"]
    assert results[1] == {"id": "s2", "content": "PGR 0.5", "is_error": False}
    assert outcome.usage.evals == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_resume_after_budget_stop_continues_with_bigger_budget(provider: str,
                                                               tmp_path: Path) -> None:
    rec = Recorder()
    per_call = Step().cost()
    with serve(provider, many_adds(1, (100, 20, 0, 0))) as server:
        first = researcher(server, rec, tmp_path, Budget(max_usd=per_call / 2)).run("go")
    assert first.reason == "budget:usd"
    with serve(provider, [Step("Done now.", [], (100, 20, 0, 0))]) as server2:
        outcome = researcher(server2, rec, tmp_path, Budget(max_usd=1.0)).run("go")
    assert outcome.reason == "done"
    req = server2.model_requests()[0]
    # the stop left the turn's tool call answered "not run", so the model is called straight
    # away with that result (no resume message); it may call the tool again
    results = last_tool_results(provider, req)
    assert results[0]["is_error"] and "not run: the usd budget" in results[0]["content"]
    assert rec.calls == []
    assert outcome.usage.usd == pytest.approx(2 * per_call)


def test_refuses_to_clobber_without_resume(tmp_path: Path) -> None:
    from aar.errors import AarError

    rec = Recorder()
    with serve("openai", [Step("hi")]) as server:
        researcher(server, rec, tmp_path).run("go")
        with pytest.raises(AarError, match="--resume"):
            researcher(server, rec, tmp_path, resume=False).run("go")
