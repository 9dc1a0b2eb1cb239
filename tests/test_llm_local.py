"""The local backend: tool calls written as text, a small model's mistakes (bad JSON,
unknown tool, missing argument, no call), failures in a row, context compaction (scripted);
and ``aar research --backend local`` with the real Qwen2.5-Coder-0.5B on llama.cpp."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from test_server_support import DATASET

from aar.agents.backends import (
    AssistantTurn,
    CallUsage,
    Message,
    ToolCall,
    ToolResultsTurn,
    ToolSpec,
    UserTurn,
)
from aar.agents.backends.openai_backend import TEXT_CALLS, OpenAIBackend, to_openai_messages
from aar.agents.backends.textcalls import call_schema, parse_text_calls
from aar.agents.budget import Budget
from aar.agents.llm import LLMResearcher, Transcript
from aar.agents.local_model import check_local_model, llama_missing
from aar.agents.pricing import ModelPrice, PriceTable, Rates
from aar.agents.tools import Tool
from aar.contracts import transcript as tx
from aar.errors import AarError

ECHO = Tool("echo", "Echo the path.", {
    "type": "object", "properties": {"path": {"type": "string"}, "n": {"type": "integer"}},
    "required": ["path"], "additionalProperties": False}, lambda a: f"echo {a['path']}")
PRICES = PriceTable({"fake-model": ModelPrice(Rates())})


# ------------------------------------------------------------------ parsing calls from text
def test_parse_text_calls_in_every_form_the_model_writes() -> None:
    tagged = '<tool_call>\n{"name": "echo", "arguments": {"path": "a"}}\n</tool_call>'
    fenced = 'Let me look.\n```json\n{"name": "echo", "arguments": {"path": "b"}}\n```'
    bare = 'I call {"name": "echo", "parameters": {"path": "c"}} now'
    as_string = '{"name": "echo", "arguments": "{\\"path\\": \\"d\\"}"}'
    for text, path in ((tagged, "a"), (fenced, "b"), (bare, "c"), (as_string, "d")):
        [call] = parse_text_calls(text, "x")
        assert (call.name, call.arguments, call.parse_error) == ("echo", {"path": path}, None)
    two = parse_text_calls('{"name": "a", "arguments": {}} and {"name": "b"}', "t")
    assert [c.name for c in two] == ["a", "b"] and two[1].id == "t_1"
    nested = '{"name": "write_file", "arguments": {"content": "{\\"name\\": \\"no\\"}"}}'
    assert [c.name for c in parse_text_calls(nested, "n")] == ["write_file"]
    [py] = parse_text_calls('{"name": "echo", "arguments": {"path": "True x", "a": True, '
                            '"b": [False, None]}}', "y")
    assert py.parse_error is None and py.arguments == {"path": "True x", "a": True,
                                                       "b": [False, None]}
    triple = '{"name": "echo", "arguments": {"path": """a "b"\n c""", "n": 1, "x": None}}'
    [tq] = parse_text_calls(f"```json\n{triple}\n```", "z")
    assert tq.parse_error is None and tq.arguments == {"path": 'a "b"\n c', "n": 1, "x": None}
    [bare] = parse_text_calls('{"name": "echo", "arguments": {path: "a:b", n: 2}}', "k")
    assert bare.parse_error is None and bare.arguments == {"path": "a:b", "n": 2}
    assert parse_text_calls("I think PGR {0.5} is fine.", "p") == []
    assert parse_text_calls('```json\n{"accuracy": 0.8}\n```', "p") == []
    [bad] = parse_text_calls('```json\n{"name": "echo", "arguments": {"path": "a",}}\n```', "q")
    assert bad.name == "echo" and bad.parse_error and bad.raw_arguments
    [bad_args] = parse_text_calls('{"name": "echo", "arguments": [1]}', "r")
    assert bad_args.parse_error and "object" in bad_args.parse_error


def _chat_reply(content: str) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "qwen0.5b",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}}


def test_openai_backend_reads_calls_from_text_and_replays_them_as_text() -> None:
    reply = 'Reading.\n```json\n{"name": "echo", "arguments": {"path": "x"}}\n```'
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=_chat_reply(reply))

    client = openai.OpenAI(api_key="k", base_url="http://llm.test/v1", max_retries=0,
                           http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    backend = OpenAIBackend("qwen0.5b", client=client, text_tool_calls=True)
    turn = backend.complete("sys", [UserTurn("go")], [ECHO])
    assert [(c.name, c.arguments) for c in turn.tool_calls] == [("echo", {"path": "x"})]
    assert TEXT_CALLS in turn.provider_blocks and turn.usage.output_tokens == 20
    assert seen[0]["tools"][0]["function"]["name"] == "echo"
    # replayed as the text the model wrote (no structured calls), the result as a tool message
    results = ToolResultsTurn((ECHO_RESULT := _result(turn.tool_calls[0].id),))
    msgs = to_openai_messages("sys", [UserTurn("go"), turn, results])
    assert msgs[2] == {"role": "assistant", "content": reply}
    assert msgs[3]["role"] == "tool" and msgs[3]["tool_call_id"] == ECHO_RESULT.call_id
    assert backend.complete("sys", [UserTurn("go")], [ECHO], tool_choice="none").tool_calls == ()
    assert "temperature" not in seen[-1]
    backend.complete("sys", [UserTurn("go")], [ECHO], temperature=1.0)
    assert seen[-1]["temperature"] == 1.0
    assert "response_format" not in seen[-1]
    plain = OpenAIBackend("qwen0.5b", client=client)  # off by default: text stays text
    assert plain.complete("sys", [UserTurn("go")], [ECHO]).tool_calls == ()
    # constrained: the request carries the schema of one call; the reply is read as a call
    strict = OpenAIBackend("qwen0.5b", client=client, constrained_calls=True)
    assert [c.name for c in strict.complete("sys", [UserTurn("go")], [ECHO]).tool_calls] \
        == ["echo"]
    fmt = seen[-1]["response_format"]
    assert fmt["type"] == "json_object" and fmt["schema"] == call_schema([ECHO])
    assert fmt["schema"]["anyOf"][0]["properties"]["arguments"] == ECHO.input_schema
    strict.complete("sys", [UserTurn("go")], [ECHO], tool_choice="none")
    assert "response_format" not in seen[-1]  # a turn that must not call is not constrained


def _result(call_id: str) -> Any:
    from aar.agents.backends import ToolResult

    return ToolResult(call_id, "echo", "echo x")


# ------------------------------------------------------------------ a small model's mistakes
class Scripted:
    provider = "fake"

    def __init__(self, turns: list[AssistantTurn]) -> None:
        self.model = "fake-model"
        self.turns = list(turns)
        self.seen: list[list[Message]] = []
        self.temperatures: list[float | None] = []

    def complete(self, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec], *,
                 max_tokens: int | None = None, tool_choice: str = "auto",
                 temperature: float | None = None) -> AssistantTurn:
        self.seen.append(list(messages))
        self.temperatures.append(temperature)
        return self.turns.pop(0) if self.turns else AssistantTurn("I am thinking.")


def _turn(*calls: ToolCall, text: str = "", tokens: int = 10) -> AssistantTurn:
    return AssistantTurn(text, calls, CallUsage(tokens, 10))


def _run(tmp_path: Path, turns: list[AssistantTurn], **kw: Any) -> tuple[Any, Scripted]:
    backend = Scripted(turns)
    r = LLMResearcher(backend, None, [ECHO], Budget(max_seconds=60), tmp_path / "t.jsonl",
                      "system", PRICES, nudge=True, call_hints=True, final_call=False, **kw)
    return r.run("go"), backend


def test_malformed_calls_get_corrections_and_are_counted(tmp_path: Path) -> None:
    turns = [
        _turn(ToolCall("a", "echo", {}, '{"path": "x",}', "Expecting value at position 13")),
        _turn(ToolCall("b", "ecko", {"path": "x"})),
        _turn(ToolCall("d", "echo", {"path": "ok"})),
        _turn(ToolCall("c", "echo", {"n": "two"})),
        AssistantTurn("I will now echo the file."),
    ]  # then the script only talks: turns without a call
    outcome, backend = _run(tmp_path, turns, max_failures=3)
    answers = [seen[-1] for seen in backend.seen]
    bad_json, unknown, ok, missing = (a.results[0].content for a in answers[1:5]
                                      if isinstance(a, ToolResultsTurn))
    assert "not valid JSON" in bad_json and "echo(path: string, n?: integer)" in bad_json
    assert unknown.startswith("unknown tool 'ecko'")
    assert "The tools are: echo(path: string" in unknown
    assert ok == "echo ok"
    assert "missing required argument 'path'" in missing and "'n' must be integer" in missing
    nudge = answers[5]
    assert isinstance(nudge, UserTurn) and "did not call a tool" in nudge.text
    assert "echo(path: string" in nudge.text
    # after a failed turn the model samples wider; the valid call resets both
    assert backend.temperatures == [None, 1.0, 1.0, None, 1.0, 1.0]
    # the valid call reset the count; bad arguments and two turns without a call end it
    assert outcome.reason == "failures" and len(backend.seen) == 6
    assert outcome.error and "3 failed turns in a row" in outcome.error
    s = outcome.stats
    assert s["checks"] == {"ok": 1, "bad_json": 1, "unknown_tool": 1, "bad_arguments": 1}
    assert s["by_tool"] == {"echo": 3, "ecko": 1} and s["malformed"] == 3
    assert s["malformed_rate"] == 0.75 and s["no_tool_call"] == 2 and s["nudges"] == 1
    assert "Tool calls: 4 (ok 1, bad_json 1" in outcome.final_note
    assert "3 failed turns in a row" in outcome.final_note
    end = Transcript(tmp_path / "t.jsonl").load()[-1]
    assert isinstance(end, tx.End) and end.stats["malformed"] == 3


def test_a_failed_turn_repeated_word_for_word_replaces_its_copy(tmp_path: Path) -> None:
    bad = AssistantTurn('{"name": "nope"}', (ToolCall("b", "nope", {}),), CallUsage(10, 10))
    other = AssistantTurn('{"name": "nah"}', (ToolCall("n", "nah", {}),), CallUsage(10, 10))
    _, backend = _run(tmp_path, [bad, bad, bad, other], max_failures=5)
    texts = [[m.text for m in seen if isinstance(m, AssistantTurn)] for seen in backend.seen]
    # the context keeps one copy of the repeated mistake; a different one is kept beside it
    assert texts[1:] == [[bad.text], [bad.text], [bad.text], [bad.text, other.text]]
    assert len([e for e in Transcript(tmp_path / "t.jsonl").load()
                if isinstance(e, tx.Assistant)]) >= 4  # the record keeps every turn


def test_failures_in_a_row_are_reset_by_a_valid_call(tmp_path: Path) -> None:
    bad = ToolCall("b", "nope", {})
    turns = [_turn(bad), _turn(bad), _turn(ToolCall("g", "echo", {"path": "p"})),
             _turn(bad), _turn(bad), _turn(bad)]
    outcome, backend = _run(tmp_path, turns, max_failures=3)
    assert outcome.reason == "failures" and len(backend.seen) == 6
    assert "malformed tool calls (unknown_tool)" in (outcome.error or "")


def test_a_call_repeating_the_last_one_is_not_run_again(tmp_path: Path) -> None:
    ran: list[str] = []
    fails = Tool("fails", "Always fails.", {"type": "object"},
                 lambda a: ran.append("fails") or (_ for _ in ()).throw(AarError("boom")))
    echo = Tool("echo", ECHO.description, ECHO.input_schema,
                lambda a: ran.append("echo") or f"echo {a['path']}")
    same = ToolCall("s", "echo", {"path": "p"})
    turns = [_turn(same), _turn(same), _turn(ToolCall("o", "echo", {"path": "q"})),
             _turn(ToolCall("f", "fails", {})), _turn(ToolCall("g", "fails", {})),
             _turn(ToolCall("h", "fails", {}))]
    backend = Scripted(turns)
    r = LLMResearcher(backend, None, [echo, fails], Budget(max_seconds=60),
                      tmp_path / "t.jsonl", "system", PRICES, nudge=True, call_hints=True,
                      final_call=False, max_failures=2)
    outcome = r.run("go")
    answers = [seen[-1].results[0].content for seen in backend.seen[1:]]
    assert answers[1].startswith("not run: this is the same call as your last one, which "
                                 "succeeded") and "Take the next step" in answers[1]
    assert "boom" in answers[3] and "which failed" in answers[4]
    assert "Change the arguments" in answers[4]
    # only calls that differ from the one before ran; two repeats in a row end the run
    assert ran == ["echo", "echo", "fails"]
    assert outcome.reason == "failures" and "repeated tool calls" in (outcome.error or "")
    assert outcome.stats["checks"] == {"ok": 2, "tool_error": 1, "repeated": 3}
    # a frontier model (no call hints) may repeat a call: it runs
    backend = Scripted([_turn(same), _turn(same)])
    LLMResearcher(backend, None, [echo], Budget(max_seconds=60), tmp_path / "u.jsonl",
                  "system", PRICES).run("go")
    assert ran[3:] == ["echo", "echo"]


def test_a_call_with_unknown_arguments_and_a_schema_is_shown_repaired(tmp_path: Path) -> None:
    tool = Tool("run", "Run.", {
        "type": "object", "properties": {"path": {"type": "string"},
                                         "params": {"type": "object"}},
        "required": ["path"], "additionalProperties": False}, lambda a: f"ran {a['path']}")
    schema = {"type": "object", "properties": {"l2": {"type": "number"}}}
    turns = [_turn(ToolCall("a", "run", {"path": "t.py", "params": schema,
                                         "additionalProperties": False})),
             _turn(ToolCall("b", "run", {"params": {"l2": 1.0}})),  # cannot be repaired
             _turn(ToolCall("c", "run", {"path": "t.py", "x": 1})),
             _turn(ToolCall("d", "run", {"path": "t.py", "x": 1}))]
    backend = Scripted(turns)
    LLMResearcher(backend, None, [tool], Budget(max_seconds=60), tmp_path / "t.jsonl",
                  "system", PRICES, nudge=True, call_hints=True, final_call=False,
                  max_failures=5).run("go")
    first, second, third, fourth = (seen[-1].results[0].content for seen in backend.seen[1:5])
    assert "unexpected argument 'additionalProperties'" in first
    assert first.endswith('your call is valid: {"name": "run", "arguments": {"path": "t.py"}}')
    assert "missing required argument 'path'" in second and "your call is valid" not in second
    assert "again" not in third and fourth.endswith("send that one instead.")


def test_a_cycle_of_failing_calls_is_caught_until_a_call_works(tmp_path: Path) -> None:
    ran: list[str] = []

    def flaky(a: dict[str, Any]) -> str:
        ran.append(a["path"])
        if a["path"] != "ok":
            raise AarError(f"no file {a['path']}")
        return "fine"

    tool = Tool("use", "Use a file.", ECHO.input_schema, flaky)
    a, b, ok = ({"path": "a"}, {"path": "b"}, {"path": "ok"})
    turns = [_turn(ToolCall(str(i), "use", args))
             for i, args in enumerate([a, b, a, ok, a, ok, a])]
    backend = Scripted(turns)
    outcome = LLMResearcher(backend, None, [tool], Budget(max_seconds=60),
                            tmp_path / "t.jsonl", "system", PRICES, nudge=True,
                            call_hints=True, final_call=False, max_failures=9).run("go")
    answers = [seen[-1].results[0].content for seen in backend.seen[1:8]]
    assert answers[2].startswith("not run: this is the same call as an earlier one, which "
                                 "failed")
    # after a new call worked, 'a' may work again; the same call working again is no news
    assert ran == ["a", "b", "ok", "a"] and answers[5].startswith("not run")
    assert "which succeeded" in answers[5] and answers[6].startswith("not run")
    assert outcome.stats["checks"] == {"ok": 1, "tool_error": 3, "repeated": 3}


def test_a_json_schema_given_as_params_gets_a_clear_error() -> None:
    from aar.agents.tools import ToolError
    from aar.research.tools import method_params

    assert method_params({"params": {"l2": 1.0}}, "submit") == {"l2": 1.0}
    assert method_params({}, "submit") == {}
    with pytest.raises(ToolError, match="looks like a JSON schema"):
        method_params({"params": {"type": "object", "properties": {"l2": {"type": "number"}}}},
                      "submit")
    with pytest.raises(ToolError) as e:  # the tool's own arguments put inside params
        method_params({"path": "t.py", "params": {"seeds": [0, 1], "label": "x", "l2": 2}},
                      "submit")
    assert str(e.value).endswith('call: {"name": "submit", "arguments": {"path": "t.py", '
                                 '"seeds": [0, 1], "label": "x", "params": {"l2": 2}}}')


def test_without_nudge_a_turn_without_a_call_still_ends_the_run(tmp_path: Path) -> None:
    backend = Scripted([AssistantTurn("All done.")])
    r = LLMResearcher(backend, None, [ECHO], Budget(), tmp_path / "t.jsonl", "system", PRICES)
    outcome = r.run("go")
    assert outcome.reason == "done" and outcome.stats["nudges"] == 0


def test_context_is_compacted_before_it_overflows(tmp_path: Path) -> None:
    long = Tool("long", "A long output.", {"type": "object"}, lambda a: "z" * 1200)
    turns = [_turn(ToolCall(f"c{i}", "long", {}), tokens=0) for i in range(12)]
    backend = Scripted(turns)
    r = LLMResearcher(backend, None, [long], Budget(max_seconds=60), tmp_path / "t.jsonl",
                      "system", PRICES, nudge=True, max_failures=1, final_call=False,
                      context_tokens=1500, reserve_tokens=200)
    outcome = r.run("first message")
    assert outcome.reason == "failures"  # the script ran out of calls
    sizes = [r._estimate(seen) for seen in backend.seen]
    assert max(sizes) <= 1300, sizes
    assert outcome.stats["compactions"] >= 2
    compacted = next(seen for seen in backend.seen if "dropped" in str(seen[0]))
    head = compacted[0]
    assert isinstance(head, UserTurn) and head.text.startswith("first message")
    assert "long x" in head.text and isinstance(compacted[1], AssistantTurn)
    events = Transcript(tmp_path / "t.jsonl").load()
    comp = [e for e in events if isinstance(e, tx.Compaction)]
    assert comp and comp[0].estimated_after < comp[0].estimated_before
    # every call's results follow its own call, after compaction too
    for seen in backend.seen:
        for prev, msg in pairwise(seen):
            if isinstance(msg, ToolResultsTurn):
                assert isinstance(prev, AssistantTurn)
                assert [c.id for c in prev.tool_calls] == [x.call_id for x in msg.results]


def test_local_backend_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AarError, match="unknown local model 'qwen9b'"):
        check_local_model("qwen9b")
    import aar.agents.local_model as lm

    monkeypatch.setattr(lm.importlib.util, "find_spec", lambda name: None)
    assert "pip install -e '.[local]'" in (llama_missing() or "")


# ------------------------------------------------------------------ the real model
DIRECTION = """# Run the template

Do exactly these steps, one tool call per reply:
1. run_method with {"path": "template.py", "seeds": [0]}
2. submit with {"path": "template.py", "seeds": [0, 1, 2, 3, 4]}
3. notes with {"append": "template submitted"}
"""


@pytest.mark.skipif(llama_missing() is not None,
                    reason="llama-cpp-python[server] is not installed (pip install -e "
                           "'.[local]'); the real local-model test needs it")
@pytest.mark.timeout(900)
def test_real_local_model_runs_the_sandbox_and_submits(home: Path) -> None:
    from aar.research.layout import RunPaths
    from aar.research.orchestrator import ResearchConfig, research

    (home / "direction.md").write_text(DIRECTION)
    t0 = time.monotonic()
    info = research(ResearchConfig(dataset=DATASET, agents=1, backend="local",
                                   model="qwen0.5b", minutes=8.0, max_evals=5,
                                   directions=str(home / "direction.md"), live_view=False),
                    run_id="local")
    took = time.monotonic() - t0
    name = info["agents"][0]["name"]
    paths = RunPaths.of("local")
    events = paths.read_events(name)
    calls = [e for e in events if e.kind == "tool_call"]
    kinds = [e.kind for e in events]
    print(f"real local model: {took:.0f} s, calls {[c.tool for c in calls]}")
    assert "sandbox_run" in kinds or any(c.tool == "run_method" and c.ok for c in calls)
    assert any(c.tool == "submit" and c.ok for c in calls), calls
    assert paths.read_status(name) is not None and paths.read_status(name).evals >= 5
    stop = [e for e in events if e.kind == "stop"][-1]
    stats = stop.stats or next(e for e in reversed(events) if e.kind == "llm_stats").payload()
    assert stats["calls"] >= 2 and stats["output_tokens_per_s"] > 0
    assert (stop.usd or 0.0) == 0.0
    assert not (paths.root / "local_model.log").read_text().count("Traceback")
