"""Unit tests of the researcher machinery: tools, budget, prices, transcript, loop edge cases."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from aar.agents.backends import (
    AssistantTurn,
    CallUsage,
    Message,
    ToolCall,
    ToolResult,
    ToolResultsTurn,
    ToolSpec,
    UserTurn,
    make_backend,
)
from aar.agents.backends.anthropic_backend import to_anthropic_messages
from aar.agents.backends.base import parse_arguments
from aar.agents.backends.openai_backend import to_openai_messages
from aar.agents.budget import Budget, Usage
from aar.agents.llm import LLMResearcher, Transcript, replay
from aar.agents.pricing import (
    ModelPrice,
    PriceTable,
    Rates,
    cost,
    cost_per_hour,
    default_prices,
    load_prices,
)
from aar.agents.tools import (
    Tool,
    ToolError,
    execute,
    render,
    truncate,
    validate_arguments,
)
from aar.contracts import transcript as tx
from aar.errors import AarError

SCHEMA = {
    "type": "object",
    "properties": {
        "path": {"type": "string"},
        "seeds": {"type": "array", "items": {"type": "integer"}},
        "mode": {"type": "string", "enum": ["fast", "full"]},
        "ratio": {"type": "number"},
        "flag": {"type": "boolean"},
        "opt": {"type": ["string", "null"]},
    },
    "required": ["path"],
    "additionalProperties": False,
}


def echo_tool(**kw: Any) -> Tool:
    return Tool("echo", "Echo the path.", SCHEMA, lambda a: a["path"], **kw)


# ------------------------------------------------------------------ tools
def test_validation_messages() -> None:
    tool = echo_tool()
    assert validate_arguments(tool, {"path": "a", "seeds": [1, 2], "mode": "fast", "ratio": 1,
                                     "flag": True, "opt": None}) == []
    problems = validate_arguments(tool, {"seeds": [1, "x"], "mode": "slow", "ratio": "1",
                                         "flag": 1, "extra": 3})
    text = "; ".join(problems)
    assert "missing required argument 'path'" in text
    assert "'seeds'[1] must be integer, got string" in text
    assert 'must be one of "fast", "full"' in text
    assert "'ratio' must be number, got string" in text
    assert "'flag' must be boolean, got integer" in text
    assert "unexpected argument 'extra'" in text
    assert validate_arguments(tool, [1]) == ["arguments must be a JSON object, got array"]
    # an integral float is an integer; a bool is not a number
    assert validate_arguments(tool, {"path": "a", "seeds": [1.0]}) == []
    assert validate_arguments(tool, {"path": "a", "ratio": True}) != []


def test_execute_never_raises() -> None:
    def crash(args: dict[str, Any]) -> str:
        raise RuntimeError("boom")

    def user_error(args: dict[str, Any]) -> str:
        raise ToolError("file not found: x.py")

    ok = execute(echo_tool(), "echo", {"path": "p"})
    assert (ok.content, ok.is_error, ok.evals) == ("p", False, 0)
    bad = execute(echo_tool(), "echo", {})
    assert bad.is_error and "invalid arguments for echo" in bad.content
    crashed = execute(Tool("c", "", {"type": "object"}, crash), "c", {})
    assert crashed.is_error and "RuntimeError: boom" in crashed.content
    assert crashed.traceback and "RuntimeError" in crashed.traceback
    err = execute(Tool("u", "", {"type": "object"}, user_error), "u", {})
    assert err.is_error and err.content == "u failed: file not found: x.py"
    assert execute(None, "nope", {}).content == "unknown tool 'nope'"
    parse = execute(echo_tool(), "echo", {}, parse_error="Expecting value at position 0")
    assert parse.is_error and "not valid JSON" in parse.content
    evals = execute(echo_tool(counts_as_eval=True), "echo", {"path": "p"})
    assert evals.evals == 1  # a result that lists no submissions: one evaluation
    five = execute(Tool("s", "", {"type": "object"}, lambda a: {"submission_ids": [1, 2, 3, 4, 5]},
                        counts_as_eval=True), "s", {})
    assert five.evals == 5  # one evaluation per submission (seed) the server scored
    assert five.content == render({"submission_ids": [1, 2, 3, 4, 5]})  # what the model sees
    failed_eval = execute(Tool("u", "", {"type": "object"}, user_error, counts_as_eval=True),
                          "u", {})
    assert failed_eval.evals == 0  # a failed submission spends no evaluation
    as_json = execute(Tool("j", "", {"type": "object"}, lambda a: {"x": 1}), "j", {})
    assert as_json.content == '{\n "x": 1\n}'


def test_tool_definition_checks() -> None:
    with pytest.raises(ValueError):
        Tool("bad name", "", {"type": "object"}, lambda a: "")
    with pytest.raises(ValueError):
        Tool("t", "", {"type": "array"}, lambda a: "")
    assert Tool("t", "", {}, lambda a: "").input_schema == {"type": "object", "properties": {}}


def test_truncate_keeps_head_and_tail() -> None:
    text = "a" * 1000 + "b" * 1000
    out = truncate(text, 400)
    assert out.startswith("a" * 300) and out.endswith("b" * 100) and "characters cut" in out
    assert truncate("short", 400) == "short"


def test_parse_arguments() -> None:
    assert parse_arguments('{"a": 1}') == ({"a": 1}, None)
    assert parse_arguments("") == ({}, None)
    assert parse_arguments("[1]")[1] == "expected a JSON object, got list"
    assert "position" in str(parse_arguments("{a")[1])


# ------------------------------------------------------------------ budget
def test_budget_limits_and_remaining() -> None:
    now = [0.0]
    b = Budget(max_seconds=60, max_usd=1.0, max_tokens=1000, max_evals=2, clock=lambda: now[0])
    b.start()
    assert b.exhausted() is None
    b.charge_llm(400, 100, 50, 50, usd=0.25)
    left = b.remaining()
    assert left == {"seconds": 60.0, "usd": 0.75, "tokens": 400.0, "evals": 2.0}
    b.charge_eval()
    b.charge_eval()
    assert b.exhausted() == "evals"
    b2 = Budget(max_seconds=60, clock=lambda: now[0])
    b2.start(Usage(seconds=30.0, usd=0.5))
    now[0] = 29.0
    assert b2.exhausted() is None
    now[0] = 30.0
    assert b2.exhausted() == "seconds" and b2.usage().usd == 0.5
    assert Budget().exhausted() is None and Budget().remaining()["usd"] is None
    with pytest.raises(ValueError):
        Budget(max_usd=-1)


def test_budget_thread_safe() -> None:
    b = Budget()

    def work() -> None:
        for _ in range(1000):
            b.charge_llm(1, 1, 0, 0, usd=0.001)
            b.charge_eval()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    u = b.usage()
    assert u.input_tokens == 8000 and u.evals == 8000 and u.llm_calls == 8000
    assert u.usd == pytest.approx(8.0)


def test_usage_round_trip_and_rate() -> None:
    u = Usage(input_tokens=10, output_tokens=5, usd=2.0, seconds=1800.0)
    assert u.total_tokens == 15 and u.usd_per_hour == pytest.approx(4.0)
    assert Usage.from_dict(u.to_dict()) == u
    assert Usage().usd_per_hour is None
    assert cost_per_hour(22.0, 3600.0) == 22.0 and cost_per_hour(1.0, 0.0) is None


# ------------------------------------------------------------------ prices
def test_default_price_table() -> None:
    table = default_prices()
    price, known = table.lookup("claude-opus-5-5")
    assert known and price.rates == Rates(4.0, 20.0, 5.0, 0.2)
    assert table.resolve("claude-haiku-4-5-20251001") == "claude-haiku-4-5"
    assert table.resolve("gpt-4o-2024-08-06") == "gpt-4o"
    assert table.resolve("gpt-4o-mini-2024-07-18") == "gpt-4o-mini"
    assert table.resolve("openai/gpt-6.2-sol") == "gpt-6.2-sol"
    assert table.resolve("claude-opus-5-7") is None  # an unknown version is not guessed
    price, known = table.lookup("llama3.1:8b")
    assert not known and price.rates == Rates()
    one_m = CallUsage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert cost("claude-sonnet-5-5", one_m) == pytest.approx(12.0)
    assert cost("qwen2.5-coder", one_m) == 0.0


def test_long_context_rates() -> None:
    table = default_prices()
    short = CallUsage(input_tokens=50_000, output_tokens=1000, cache_read_tokens=40_000)
    long = CallUsage(input_tokens=50_000, output_tokens=1000, cache_read_tokens=60_000)
    assert table.cost("claude-haiku-5-5", short) == pytest.approx(
        (50_000 * 0.1 + 1000 * 0.5 + 40_000 * 0.01) / 1e6)
    assert table.cost("claude-haiku-5-5", long) == pytest.approx(
        (50_000 * 0.5 + 1000 * 2.5 + 60_000 * 0.05) / 1e6)
    big = CallUsage(input_tokens=300_000, output_tokens=1_000)
    assert table.cost("gpt-6.2-sol", big) == pytest.approx((300_000 * 4 + 1000 * 15) / 1e6)


def test_user_prices_merge_over_defaults(tmp_path: Path, aar_home: Path) -> None:
    aar_home.mkdir(parents=True, exist_ok=True)
    (aar_home / "prices.toml").write_text(
        '[models."claude-opus-5-5"]\noutput = 30.0\n\n'
        '[models."my-local-llama"]\ninput = 0.5\noutput = 1.0\n')
    extra = tmp_path / "p.toml"
    extra.write_text('[default]\ninput = 1.0\noutput = 2.0\n[models."my-local-llama"]\n'
                     'cache_read = 0.1\n')
    table = load_prices(extra)
    assert table.lookup("claude-opus-5-5")[0].rates == Rates(4.0, 30.0, 5.0, 0.2)
    assert table.lookup("my-local-llama")[0].rates == Rates(0.5, 1.0, 0.5, 0.1)
    # merged key by key: the shipped [default] cache prices (0) stay
    assert table.lookup("unknown")[0].rates == Rates(1.0, 2.0, 0.0, 0.0)
    assert len(table.sources) == 3
    assert load_prices(include_home=False).lookup("claude-opus-5-5")[0].rates.output == 20.0


def test_bad_price_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[models.x\n")
    with pytest.raises(AarError, match="not valid TOML"):
        load_prices(bad)
    bad.write_text('[models."x"]\ninput = -1\noutput = 1\n')
    with pytest.raises(AarError, match="non-negative"):
        load_prices(bad)
    bad.write_text('[models."x"]\ninput = 1\n')
    with pytest.raises(AarError, match="needs at least"):
        load_prices(bad)
    with pytest.raises(AarError, match="does not exist"):
        load_prices(tmp_path / "missing.toml")


# ------------------------------------------------------------------ message conversion
CONVO: list[Message] = [
    UserTurn("start"),
    AssistantTurn("thinking aloud", (ToolCall("t1", "echo", {"path": "a"}),
                                     ToolCall("t2", "echo", {}, "{bad", "Expecting"))),
    ToolResultsTurn((ToolResult("t1", "echo", "a"), ToolResult("t2", "echo", "bad json", True))),
    UserTurn("final note please"),
]


def test_anthropic_conversion_merges_user_turns() -> None:
    msgs = to_anthropic_messages(CONVO)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[1]["content"][1] == {"type": "tool_use", "id": "t1", "name": "echo",
                                     "input": {"path": "a"}}
    last = msgs[2]["content"]
    assert [b["type"] for b in last] == ["tool_result", "tool_result", "text"]
    assert last[1]["is_error"] is True


def test_openai_conversion() -> None:
    msgs = to_openai_messages("sys", CONVO)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "tool", "user"]
    assert msgs[2]["tool_calls"][1]["function"]["arguments"] == "{bad"
    assert msgs[4]["content"] == "ERROR: bad json"


def test_make_backend_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(AarError, match="ANTHROPIC_API_KEY"):
        make_backend("anthropic")
    with pytest.raises(AarError, match="OPENAI_API_KEY"):
        make_backend("openai")
    local = make_backend("openai", "llama3", base_url="http://127.0.0.1:1/v1")
    assert local.model == "llama3"
    with pytest.raises(AarError, match="unknown backend"):
        make_backend("gemini")


# ------------------------------------------------------------------ loop with a fake backend
class FakeBackend:
    provider = "fake"

    def __init__(self, turns: list[AssistantTurn]) -> None:
        self.model = "fake-model"
        self.turns = list(turns)
        self.seen: list[list[Message]] = []

    def complete(self, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec], *,
                 max_tokens: int | None = None, tool_choice: str = "auto",
                 temperature: float | None = None) -> AssistantTurn:
        self.seen.append(list(messages))
        return self.turns.pop(0)


PRICES = PriceTable({"fake-model": ModelPrice(Rates(1.0, 2.0, 1.0, 1.0))})


def run_fake(tmp_path: Path, turns: list[AssistantTurn], tools: list[Tool],
             **kw: Any) -> tuple[Any, FakeBackend]:
    backend = FakeBackend(turns)
    r = LLMResearcher(backend, None, tools, kw.pop("budget", Budget()), tmp_path / "t.jsonl",
                      "system", PRICES, **kw)
    return r.run("go"), backend


def test_cutoff_reply_is_nudged_then_done(tmp_path: Path) -> None:
    turns = [AssistantTurn("partial", stop_reason="max_tokens"),
             AssistantTurn("finished", stop_reason="end_turn")]
    outcome, backend = run_fake(tmp_path, turns, [])
    assert outcome.reason == "done"
    last = backend.seen[1][-1]
    assert isinstance(last, UserTurn) and "cut off" in last.text


def test_refusal_is_an_error(tmp_path: Path) -> None:
    outcome, _ = run_fake(tmp_path, [AssistantTurn("", stop_reason="refusal")], [])
    assert outcome.reason == "error" and outcome.error and "refused" in outcome.error


def test_crashing_tool_records_traceback_and_loop_goes_on(tmp_path: Path) -> None:
    def crash(args: dict[str, Any]) -> str:
        raise ZeroDivisionError("x")

    tools = [Tool("crash", "", {"type": "object"}, crash)]
    turns = [AssistantTurn("", (ToolCall("a", "crash", {}), ToolCall("b", "missing", {})),
                           CallUsage(10, 10)),
             AssistantTurn("ok", (), CallUsage(10, 10))]
    outcome, backend = run_fake(tmp_path, turns, tools, max_tool_output_chars=1000)
    assert outcome.reason == "done"
    results = backend.seen[1][-1]
    assert isinstance(results, ToolResultsTurn)
    assert "ZeroDivisionError" in results.results[0].content
    assert results.results[1].content == "unknown tool 'missing'"
    ev = Transcript(tmp_path / "t.jsonl").load()
    assert any(isinstance(e, tx.ToolResult) and e.traceback for e in ev)
    assert outcome.usage.usd == pytest.approx(2 * (10 * 1.0 + 10 * 2.0) / 1e6)


def test_final_note_skipped_when_unaffordable(tmp_path: Path) -> None:
    turns = [AssistantTurn("", (ToolCall("a", "echo", {"path": "x"}),), CallUsage(900, 100))]
    outcome, backend = run_fake(tmp_path, turns, [echo_tool()],
                                budget=Budget(max_tokens=1000))
    assert outcome.reason == "budget:tokens"
    assert len(backend.seen) == 1  # no final call: no tokens left for it
    assert "Last assistant message" not in outcome.final_note
    assert "echo(" in outcome.final_note  # the last tool calls are summarised


def test_unknown_model_price_is_flagged(tmp_path: Path) -> None:
    backend = FakeBackend([AssistantTurn("done", (), CallUsage(10, 10))])
    r = LLMResearcher(backend, "mystery-model", [], Budget(), tmp_path / "t.jsonl", "s",
                      PRICES)
    outcome = r.run("go")
    assert backend.model == "mystery-model"
    assert "not in the price table" in outcome.final_note
    first = Transcript(tmp_path / "t.jsonl").load()[0]
    assert isinstance(first, tx.Session) and first.price_known is False


def test_transcript_torn_line_and_corruption(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    t = Transcript(path)
    t.append(tx.UserMessage(text="a"))
    with open(path, "a") as f:
        f.write('{"type": "assis')
    assert [e.as_dict() for e in t.load()] == [{"type": "user", "text": "a"}]
    assert path.read_text().endswith("\n")  # the torn line is cut off the file
    t.append(tx.UserMessage(text="b"))
    assert [e.text for e in t.load() if isinstance(e, tx.UserMessage)] == ["a", "b"]
    path.write_text('{"type": "user"}\nnot json\n{"type": "user"}\n')
    with pytest.raises(AarError, match="corrupt at line 2"):
        t.load()


def test_transcript_entries_are_typed_and_lines_keep_their_bytes(tmp_path: Path) -> None:
    """Every line the loop writes reads back as its entry type's model and serialises to
    the same bytes; lines of older versions (``charged_eval``, no ``kind``) still read."""
    def crash(args: dict[str, Any]) -> str:
        raise ZeroDivisionError("x")

    turns = [AssistantTurn("", (ToolCall("a", "crash", {}), ToolCall("b", "missing", {})),
                           CallUsage(10, 10)),
             AssistantTurn("partial", stop_reason="max_tokens"),
             AssistantTurn("done", (), CallUsage(10, 10))]
    run_fake(tmp_path, turns, [Tool("crash", "", {"type": "object"}, crash)])
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    entries = [tx.parse_entry(line) for line in lines]
    assert [type(e).__name__ for e in entries] == [
        "Session", "UserMessage", "Assistant", "ToolStart", "ToolResult", "ToolStart",
        "ToolResult", "Assistant", "UserMessage", "Assistant", "End"]
    assert [e.line() for e in entries] == lines
    assert all(list(json.loads(line))[-2:] == ["t", "seconds"] for line in lines)
    old = tx.parse_entry('{"type": "tool_result", "call_id": "a", "content": "ok", '
                         '"charged_eval": true, "t": 1.0, "seconds": 2.0}')
    assert isinstance(old, tx.ToolResult) and old.evaluations == 1 and old.counted
    other = tx.parse_entry('{"type": "future_thing", "x": 1}')
    assert isinstance(other, tx.UnknownEntry) and other.as_dict()["x"] == 1
    with pytest.raises(ValueError):
        tx.parse_entry("[1, 2]")


def test_replay_rebuilds_conversation_and_usage() -> None:
    evs: list[dict[str, Any]] = [
        {"type": "session", "seconds": 0},
        {"type": "user", "text": "go", "seconds": 1},
        {"type": "assistant", "text": "", "usd": 0.5, "seconds": 5,
         "usage": {"input_tokens": 10, "output_tokens": 2},
         "tool_calls": [{"id": "a", "name": "s", "arguments": {}},
                        {"id": "b", "name": "s", "arguments": {}}]},
        {"type": "tool_start", "call_id": "a", "seconds": 5},
        {"type": "tool_result", "call_id": "a", "name": "s", "content": "ok",
         "evals": 5, "seconds": 9},
        {"type": "end", "reason": "x", "seconds": 12.5},
    ]
    state = replay([tx.parse_entry(e) for e in evs])
    assert [type(m).__name__ for m in state.messages] == ["UserTurn", "AssistantTurn"]
    assert state.pending is not None and set(state.done_results) == {"a"}
    assert state.usage.usd == 0.5 and state.usage.evals == 5 and state.usage.seconds == 12.5
    assert state.usage.input_tokens == 10 and state.sessions == 1
    # a transcript written when a call charged one evaluation whatever its seeds
    old = {"type": "tool_result", "call_id": "a", "name": "s", "content": "ok",
           "charged_eval": True, "seconds": 9}
    assert replay([tx.parse_entry(e) for e in [*evs[:4], old, evs[5]]]).usage.evals == 1


def test_on_event_sees_every_event(tmp_path: Path) -> None:
    seen: list[str] = []
    backend = FakeBackend([AssistantTurn("hi", (), CallUsage(1, 1))])
    LLMResearcher(backend, None, [], Budget(), tmp_path / "t.jsonl", "s", PRICES,
                  on_event=lambda e: seen.append(e.type)).run("go")
    assert seen == ["session", "user", "assistant", "end"]
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert [json.loads(x)["type"] for x in lines] == seen
