"""The LLM researcher loop: model -> tool calls -> results, persisted as it happens.

``LLMResearcher.run`` drives one researcher until the model ends its turn without calling a
tool (``done``), a budget limit is reached (``budget:<seconds|usd|tokens|evals>``), the
model API fails for good (``error``) or, with ``max_failures``, the model failed that many
turns in a row (``failures``).

Small models (the local backend) make real mistakes; the loop absorbs them. A malformed call
(not JSON, an unknown tool, a missing or ill-typed argument) gets a short corrective result
(with ``call_hints``: the tools' names or the tool's signature); with ``nudge`` a turn with
no tool call gets a reminder instead of ending the run; with ``context_tokens`` (the
model's window) the oldest turns are dropped before the prompt would overflow it, leaving
the first message and a note of what was dropped. Every tool result is checked as ``ok``,
``tool_error`` (the tool ran and failed), ``bad_json``, ``unknown_tool``,
``bad_arguments`` or (with ``call_hints``) ``repeated``: a call identical to one already
run since the last call that worked for the first time (only such a call can change what
the others answer: the same write or read again changes nothing) is not run again; it is
answered that it would change nothing. These counts, nudges, compactions, calls per tool
and the model's seconds and tokens per second are in ``Outcome.counts``, the ``end`` event
and the summary. ``mirror_turn`` shapes an
event for the server's copy of the transcript (the dashboard's researcher page).

Persistence. Every event is one JSON line in the transcript, flushed and fsync'd before the
loop moves on: the session header, each user message, each assistant turn (text, tool
calls, token usage, dollars), a ``tool_start`` line before a tool runs and a
``tool_result`` line after, and an ``end`` line with the final note. An event is
*acknowledged* once its line is on disk; a killed run loses nothing acknowledged (a model
call in flight when the process dies is lost, and billed by the provider).

Resume (``resume=True``, the CLI's ``--resume``) rebuilds the conversation and the usage
(tokens, dollars, evaluations, wall time) from the transcript and goes on:

* a torn last line (the process died mid-write) is dropped;
* an assistant turn whose tool calls lack results is completed first. A call with a
  ``tool_start`` line but no result was running when the process died: it may or may not
  have taken effect (a submission may have reached the server), so it is **not re-run**;
  it gets an error result saying it was interrupted, and the model decides what to do.
  A call that never started is run now (budget permitting): the model asked for it and
  nothing of it happened yet;
* a conversation at rest (the last assistant turn called no tool, e.g. after a budget stop
  with a bigger budget now) continues with ``resume_message``; otherwise the model is
  called straight away. ``first_message`` is only used for an empty transcript.

Budgets are checked before every model call and every tool call; the model never holds
the :class:`Budget`. A tool flagged ``counts_as_eval`` charges its evaluations (one per
seed, as the server counts them) when it
succeeds. When a limit is reached the remaining tool calls of the turn are answered "not
run", and the harness writes the final note itself: why it stopped, the usage and
$/hour, the last assistant message and the last tool calls. If the dollars and tokens left
cover it (estimated from the last call's prompt size), one more model call is made with
tools disabled (``tool_choice: none``), asking the model for a short final note, which is
appended. The output of each call is capped by the tokens left.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aar.contracts import transcript as tx
from aar.contracts.events import StopReason
from aar.errors import AarError

from .backends.base import (
    AssistantTurn,
    Backend,
    BackendError,
    CallUsage,
    Message,
    ToolCall,
    ToolResult,
    ToolResultsTurn,
    UserTurn,
    estimate_tokens,
)
from .budget import Budget, Usage
from .pricing import PriceTable, load_prices
from .tools import Tool, execute, tool_index, validate_arguments

TRANSCRIPT_VERSION = 1
DEFAULT_RESUME_MESSAGE = (
    "The run was resumed after a stop. Budget used so far: {budget}. Continue your research "
    "from where you left off.")
FINAL_NOTE_REQUEST = (
    "Your {which} budget is exhausted and the run stops now; no more tools can be called. "
    "Write a short final note (at most {words} words): what you tried, what you found "
    "(with the numbers), what you would do next.")
CONTINUE_AFTER_CUTOFF = (
    "Your last reply was cut off at the output token limit. Continue, and keep replies "
    "shorter.")
_MAX_CUTOFF_NUDGES = 3
NO_TOOL_NUDGE = (
    "You did not call a tool, so nothing happened. Reply with one tool call, as a JSON "
    'object: {"name": "<tool>", "arguments": {...}}. Tools: {tools}.')
COMPACTED_NOTE = (
    "[{dropped} earlier messages were dropped to fit the model's context window. Calls so "
    "far: {calls}. Your notes (the notes tool) and your files are still there.]")
MALFORMED = ("bad_json", "unknown_tool", "bad_arguments")
FAILED = (*MALFORMED, "repeated")  # checks of calls that count towards ``max_failures``
RETRY_TEMPERATURE = 1.0  # with call_hints, the sampling temperature after a failed turn
REPEATED = (
    "not run: this is the same call as {which}, which {how} (its result is above); "
    "repeating it changes nothing. {advice}")
_STOP_TEXT = {
    "seconds": "the wall-time budget is used up",
    "usd": "the dollar budget is used up",
    "tokens": "the token budget is used up",
    "evals": "the evaluation budget is used up",
}


@dataclass(frozen=True)
class Outcome:
    reason: StopReason
    final_note: str
    usage: Usage
    error: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def usd_per_hour(self) -> float | None:
        return self.usage.usd_per_hour

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "final_note": self.final_note,
                "usage": self.usage.to_dict(), "error": self.error, "stats": self.stats}


class Transcript:
    """An append-only JSONL file; each :meth:`append` is flushed and fsync'd."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> list[tx.Entry]:
        """All complete entries; a torn last line is cut off the file."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut < len(data):  # the process died while writing the last line
            with open(self.path, "r+b") as f:
                f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())
            data = data[:cut]
        entries: list[tx.Entry] = []
        for n, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AarError(
                    f"transcript {self.path} is corrupt at line {n} ({exc.msg}); "
                    "repair or move it before resuming") from None
            if isinstance(event, dict) and "type" in event:
                entries.append(tx.parse_entry(event))
        return entries

    def append(self, entry: tx.Entry) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = entry.line() + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


@dataclass
class _Replay:
    messages: list[Message]
    usage: Usage
    pending: AssistantTurn | None  # last assistant turn whose tool calls lack results
    done_results: dict[str, ToolResult]
    started: set[str]
    sessions: int


def mirror_turn(ev: tx.Entry, seq: int) -> dict[str, Any] | None:
    """A transcript entry as the server's transcript mirror takes it (``TurnIn``); None
    for bookkeeping entries (session headers, tool starts)."""
    turn: dict[str, Any] = {"seq": seq, "kind": ev.type}
    if isinstance(ev, tx.UserMessage):
        turn["text"] = _short(ev.text, 7900)
    elif isinstance(ev, tx.Assistant):
        u = ev.usage
        turn |= {"text": _short(ev.text, 7900),
                 "calls": [_short(f"{c.name}({json.dumps(c.arguments)})", 1900)
                           for c in ev.tool_calls[:16]],
                 "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                 "usd": ev.usd, "seconds": ev.call_s}
    elif isinstance(ev, tx.ToolResult):
        turn |= {"text": _short(ev.content, 2000), "tool": ev.name[:64],
                 "ok": not ev.is_error, "seconds": ev.duration_s or 0.0}
    elif isinstance(ev, tx.Compaction):
        turn["text"] = (f"context compacted: {ev.dropped} messages dropped "
                        f"({ev.estimated_before} -> {ev.estimated_after} tokens)")
    elif isinstance(ev, tx.Error):
        turn["text"] = _short(ev.message, 7900)
    elif isinstance(ev, tx.End):
        turn["text"] = _short(ev.final_note, 7900)
    else:
        return None
    return turn


def _assistant_from_entry(ev: tx.Assistant) -> AssistantTurn:
    u = ev.usage
    return AssistantTurn(
        text=ev.text,
        tool_calls=tuple(ToolCall(c.id, c.name, dict(c.arguments), c.raw_arguments,
                                  c.parse_error) for c in ev.tool_calls),
        usage=CallUsage(u.input_tokens, u.output_tokens, u.cache_write_tokens,
                        u.cache_read_tokens, u.estimated),
        stop_reason=ev.stop_reason,
        model=ev.model,
        provider=ev.provider,
        provider_blocks=tuple(ev.provider_blocks),
    )


def replay(events: Sequence[tx.Entry]) -> _Replay:
    """Rebuild the conversation and the usage from transcript entries."""
    messages: list[Message] = []
    usage = Usage()
    pending: AssistantTurn | None = None
    results: dict[str, ToolResult] = {}
    started: set[str] = set()
    sessions = 0

    def flush(final: bool) -> None:
        nonlocal pending, results, started
        if pending is None:
            return
        calls = pending.tool_calls
        if final and any(c.id not in results for c in calls):
            return  # left for the resume to complete
        ordered = tuple(
            results.get(c.id) or ToolResult(c.id, c.name, "interrupted: no result was recorded",
                                            True)
            for c in calls)
        messages.append(ToolResultsTurn(ordered))
        pending, results, started = None, {}, set()

    for ev in events:
        usage.seconds = max(usage.seconds, ev.seconds)
        if isinstance(ev, tx.Session):
            sessions += 1
        elif isinstance(ev, tx.UserMessage):
            flush(False)
            messages.append(UserTurn(ev.text))
        elif isinstance(ev, tx.Assistant):
            flush(False)
            turn = _assistant_from_entry(ev)
            messages.append(turn)
            u = turn.usage
            usage.input_tokens += u.input_tokens
            usage.output_tokens += u.output_tokens
            usage.cache_write_tokens += u.cache_write_tokens
            usage.cache_read_tokens += u.cache_read_tokens
            usage.usd += ev.usd
            usage.llm_seconds += ev.call_s
            usage.llm_calls += 1
            if turn.tool_calls:
                pending = turn
        elif isinstance(ev, tx.ToolStart):
            started.add(ev.call_id)
        elif isinstance(ev, tx.ToolResult):
            results[ev.call_id] = ToolResult(ev.call_id, ev.name, ev.content, ev.is_error)
            if ev.counted:
                usage.tool_calls += 1
            usage.evals += ev.evaluations
            if pending is not None and all(c.id in results for c in pending.tool_calls):
                flush(False)
    flush(True)
    return _Replay(messages, usage, pending, results, started, sessions)


def signature(tool: Tool) -> str:
    """``name(a: string, b?: integer)``: the tool's arguments, optional ones marked ``?``."""
    schema = tool.input_schema
    required = set(schema.get("required", []))
    args = ", ".join(f"{k}{'' if k in required else '?'}: {v.get('type', 'any')}"
                     for k, v in schema.get("properties", {}).items())
    return f"{tool.name}({args})"


def check_call(call: ToolCall, index: dict[str, Tool]) -> str:
    """How a call is formed: ``bad_json``, ``unknown_tool``, ``bad_arguments`` or ``ok``."""
    if call.parse_error is not None:
        return "bad_json"
    tool = index.get(call.name)
    if tool is None:
        return "unknown_tool"
    return "bad_arguments" if validate_arguments(tool, call.arguments) else "ok"


def _drop_echo(messages: list[Message]) -> None:
    """A failed turn that repeats the failed turn before it word for word replaces it in
    the context: copies of a mistake make a small model copy it again (the transcript file
    keeps both)."""
    if len(messages) < 4:
        return
    before, before_results, turn, results = messages[-4:]
    if (isinstance(before, AssistantTurn) and isinstance(turn, AssistantTurn)
            and isinstance(before_results, ToolResultsTurn)
            and isinstance(results, ToolResultsTurn)
            and before.text == turn.text and before.tool_calls
            and [(c.name, c.arguments) for c in before.tool_calls]
            == [(c.name, c.arguments) for c in turn.tool_calls] and all(
                r.is_error for r in before_results.results)):
        del messages[-4:-2]


def repaired_arguments(tool: Tool, args: dict[str, Any]) -> dict[str, Any] | None:
    """``args`` without the keys the tool does not take and without values that are JSON
    schemas (what small models copy from the tool list) — when that makes a valid call
    that differs from ``args``; else None."""
    props = tool.input_schema.get("properties", {})
    fixed = {k: v for k, v in args.items() if k in props and not (
        isinstance(v, dict) and (isinstance(v.get("properties"), dict)
                                 or v.get("type") == "object"))}
    if fixed == args or validate_arguments(tool, fixed):
        return None
    return fixed


def _short(text: str, limit: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + " [...]"


class LLMResearcher:
    """One LLM researcher: a backend, tools, a budget and a transcript file.

    ``model`` (if given) replaces the backend's model; it also names the price-table entry.
    ``prices`` defaults to the shipped table merged with ``$AAR_HOME/prices.toml``.
    ``on_event`` sees every transcript event after it is written (for progress display).
    """

    def __init__(
        self,
        backend: Backend,
        model: str | None,
        tools: Sequence[Tool],
        budget: Budget,
        transcript_path: str | Path,
        system_prompt: str,
        prices: PriceTable | None = None,
        *,
        resume: bool = True,
        final_call: bool = True,
        final_note_words: int = 250,
        final_note_tokens: int = 2048,
        max_tool_output_chars: int | None = 50_000,
        on_event: Callable[[tx.Entry], None] | None = None,
        nudge: bool = False,
        max_failures: int | None = None,
        context_tokens: int | None = None,
        reserve_tokens: int = 1024,
        call_hints: bool = False,
    ) -> None:
        if model is not None:
            backend.model = model
        self.backend = backend
        self.tools = list(tools)
        self._index = tool_index(self.tools)
        self.budget = budget
        self.transcript = Transcript(transcript_path)
        self.system_prompt = system_prompt
        self.prices = prices if prices is not None else load_prices()
        self.resume = resume
        self.final_call = final_call
        self.final_note_words = final_note_words
        self.final_note_tokens = final_note_tokens
        self.max_tool_output_chars = max_tool_output_chars
        self.on_event = on_event
        self.nudge = nudge
        self.max_failures = max_failures
        self.context_tokens = context_tokens
        self.reserve_tokens = reserve_tokens
        self.call_hints = call_hints
        self.counts: Counter[str] = Counter()
        self._failures = 0  # failed turns in a row (only malformed or repeated calls, no call)
        self._fail_reason = ""
        self._scale = 1.0  # real prompt tokens / estimated ones, from the last call
        self._last_prompt_tokens: int | None = None
        self._last_tools: list[tuple[ToolCall, ToolResult]] = []
        self._last_run: tuple[str, str] | None = None  # the last well-formed call's key
        # the small-model guard: the workspace "state" moves on (epoch + 1) when a call that
        # never worked before works; a call already run in this state is not run again
        self._epoch = 0
        self._ran: dict[tuple[str, str], tuple[int, bool]] = {}  # key -> (epoch, failed)
        self._worked: set[tuple[str, str]] = set()
        self.price_known = self.prices.lookup(self.model)[1]

    @property
    def model(self) -> str:
        return self.backend.model

    # -- persistence ---------------------------------------------------------------------
    def _write(self, entry: tx.Entry) -> None:
        entry = entry.model_copy(update={"t": round(time.time(), 3),
                                         "seconds": round(self.budget.usage().seconds, 3)})
        self.transcript.append(entry)
        self._tally(entry)
        if self.on_event is not None:
            self.on_event(entry)

    def _tally(self, ev: tx.Entry) -> None:
        if isinstance(ev, tx.ToolResult):
            self.counts[ev.check or ev.status or "ok"] += 1
            self.counts["tool:" + ev.name] += 1
        elif isinstance(ev, tx.Assistant):
            if {"type": "text_tool_calls"} in ev.provider_blocks:
                self.counts["text_calls"] += len(ev.tool_calls)
            if not ev.tool_calls and not ev.final:
                self.counts["no_tool_call"] += 1
        elif isinstance(ev, tx.UserMessage) and ev.kind == "nudge":
            self.counts["nudges"] += 1
        elif isinstance(ev, tx.Compaction):
            self.counts["compactions"] += 1

    def stats(self) -> dict[str, Any]:
        """Counts of calls by check and by tool, nudges, compactions, model speed."""
        u = self.budget.usage()
        by_tool = {k[5:]: v for k, v in sorted(self.counts.items()) if k.startswith("tool:")}
        calls = sum(by_tool.values())
        malformed = sum(self.counts[k] for k in MALFORMED)
        return {
            "checks": {k: self.counts[k] for k in ("ok", "tool_error", *FAILED, "skipped",
                                                   "interrupted") if self.counts[k]},
            "by_tool": by_tool, "calls": calls, "malformed": malformed,
            "malformed_rate": round(malformed / calls, 3) if calls else None,
            "text_calls": self.counts["text_calls"],
            "no_tool_call": self.counts["no_tool_call"], "nudges": self.counts["nudges"],
            "compactions": self.counts["compactions"],
            "llm_seconds": round(u.llm_seconds, 1),
            "output_tokens_per_s": round(u.output_tokens / u.llm_seconds, 1)
            if u.llm_seconds > 0 else None,
        }

    # -- the run -------------------------------------------------------------------------
    def run(self, first_message: str, *,
            resume_message: str = DEFAULT_RESUME_MESSAGE) -> Outcome:
        events = self.transcript.load()
        if events and not self.resume:
            raise AarError(
                f"transcript {self.transcript.path} already holds {len(events)} events; "
                "pass --resume to continue that run, or choose a new run directory")
        state = replay(events)
        for ev in events:
            self._tally(ev)
        self.budget.start(state.usage)
        self._write(tx.Session(
            v=TRANSCRIPT_VERSION, n=state.sessions + 1,
            provider=self.backend.provider, model=self.model,
            price_known=self.price_known,
            tools=[t.name for t in self.tools],
            system_sha256=hashlib.sha256(self.system_prompt.encode()).hexdigest()[:16],
            limits=self.budget.limits(), resumed=bool(events),
        ))
        messages = state.messages
        for msg in reversed(messages):
            if isinstance(msg, AssistantTurn):
                self._last_prompt_tokens = (msg.usage.input_tokens + msg.usage.cache_read_tokens
                                            + msg.usage.cache_write_tokens)
                break
        if not messages:
            self._user(messages, first_message, "first")
        elif state.pending is not None:
            self._complete_pending(state, messages)
        elif isinstance(messages[-1], AssistantTurn):
            self._user(messages, resume_message.format(budget=self.budget.describe()), "resume")
        return self._loop(messages)

    def _user(self, messages: list[Message], text: str, kind: str) -> None:
        self._write(tx.UserMessage(kind=kind, text=text))
        messages.append(UserTurn(text))

    def _complete_pending(self, state: _Replay, messages: list[Message]) -> None:
        assert state.pending is not None
        turn = state.pending
        results: list[ToolResult] = []
        for call in turn.tool_calls:
            done = state.done_results.get(call.id)
            if done is not None:
                results.append(done)
            elif call.id in state.started:
                result = ToolResult(
                    call.id, call.name,
                    "interrupted: the run stopped while this call was running, so it may or "
                    "may not have taken effect. Check the current state before repeating it.",
                    True)
                self._write(tx.ToolResult(call_id=call.id, name=call.name,
                                          content=result.content, is_error=True,
                                          status="interrupted", evals=0))
                results.append(result)
            else:
                results.append(self._call_tool(call)[0])
        messages.append(ToolResultsTurn(tuple(results)))

    def _loop(self, messages: list[Message]) -> Outcome:
        cutoffs = 0
        while True:
            which = self.budget.exhausted()
            if which is not None:
                return self._stop(which, messages)
            try:
                turn = self._call_model(messages, self._output_cap(None), "auto")
            except BackendError as exc:
                self._write(tx.Error(message=str(exc), status=exc.status))
                return self._finish(StopReason.ERROR, messages, error=str(exc))
            messages.append(turn)
            if turn.tool_calls:
                done = [self._call_tool(call) for call in turn.tool_calls]
                messages.append(ToolResultsTurn(tuple(result for result, _ in done)))
                cutoffs = 0
                checks = [check for _, check in done]
                if any(check not in FAILED for check in checks):
                    self._failures = 0
                    continue
                if self.call_hints:
                    _drop_echo(messages)
                if self._failed(f"{'repeated' if 'repeated' in checks else 'malformed'} "
                                  f"tool calls ({', '.join(checks)})"):
                    return self._finish(StopReason.FAILURES, messages, error=self._fail_reason)
                continue
            if turn.stop_reason in ("max_tokens", "length") and cutoffs < _MAX_CUTOFF_NUDGES:
                cutoffs += 1
                self._user(messages, CONTINUE_AFTER_CUTOFF, "continue")
                continue
            if turn.stop_reason == "refusal":
                return self._finish(StopReason.ERROR, messages,
                                    error="the model refused to continue")
            if not self.nudge:
                return self._finish(StopReason.DONE, messages)
            if self._failed("a turn without a tool call"):
                return self._finish(StopReason.FAILURES, messages, error=self._fail_reason)
            tools = ", ".join(signature(t) for t in self.tools)
            self._user(messages, NO_TOOL_NUDGE.replace("{tools}", tools), "nudge")

    def _failed(self, what: str) -> bool:
        """Count one failed turn; True when ``max_failures`` in a row were reached."""
        self._failures += 1
        self._fail_reason = (f"{self._failures} failed turns in a row (the last: {what}); "
                             "the model made no valid new tool call")
        return self.max_failures is not None and self._failures >= self.max_failures

    # -- context -------------------------------------------------------------------------
    def _estimate(self, messages: Sequence[Message]) -> int:
        """The prompt's size in tokens: a character estimate scaled by the last real count."""
        parts = [self.system_prompt, json.dumps([t.input_schema for t in self.tools])]
        for m in messages:
            if isinstance(m, UserTurn):
                parts.append(m.text)
            elif isinstance(m, AssistantTurn):
                parts.append(m.text)
                parts.extend(json.dumps(c.arguments) for c in m.tool_calls)
            else:
                parts.extend(r.content for r in m.results)
        return int(estimate_tokens(*parts) * self._scale) + 8 * len(messages)

    def _compact(self, messages: list[Message]) -> None:
        """Drop the oldest turns (whole assistant + results pairs) until half the window's
        room for the conversation is free; the first message stays, with a note of what
        was dropped."""
        if self.context_tokens is None:
            return
        limit = self.context_tokens - self.reserve_tokens
        before = self._estimate(messages)
        if before <= limit or len(messages) < 3:
            return
        cuts = [i for i in range(2, len(messages)) if isinstance(messages[i], AssistantTurn)]
        if not cuts:
            return
        target = (limit + self._estimate(messages[:1])) // 2  # half the room left free
        cut = next((i for i in cuts
                    if self._estimate([messages[0], *messages[i:]]) <= target), cuts[-1])
        dropped = messages[1:cut]
        calls = Counter(c.name for m in dropped if isinstance(m, AssistantTurn)
                        for c in m.tool_calls)
        first = messages[0]
        head = first.text if isinstance(first, UserTurn) else ""
        note = COMPACTED_NOTE.format(dropped=len(dropped), calls=", ".join(
            f"{k} x{v}" for k, v in calls.most_common()) or "none")
        messages[:cut] = [UserTurn(f"{head}\n\n{note}".strip())]
        self._write(tx.Compaction(dropped=len(dropped), kept=len(messages),
                                  estimated_before=before,
                                  estimated_after=self._estimate(messages),
                                  context_tokens=self.context_tokens))

    def _output_cap(self, wanted: int | None) -> int | None:
        left = self.budget.remaining()["tokens"]
        if left is None:
            return wanted
        cap = max(1, int(left))
        return cap if wanted is None else min(wanted, cap)

    def _call_model(self, messages: list[Message], max_tokens: int | None,
                    tool_choice: str, *, final: bool = False) -> AssistantTurn:
        self._compact(messages)
        estimate = self._estimate(messages)
        t0 = time.monotonic()
        # a small model that failed answers the same context the same way: sample wider
        hot = self.call_hints and self._failures > 0 and not final
        turn = self.backend.complete(self.system_prompt, messages, self.tools,
                                     max_tokens=max_tokens,
                                     tool_choice="none" if tool_choice == "none" else "auto",
                                     temperature=RETRY_TEMPERATURE if hot else None)
        call_s = time.monotonic() - t0
        u = turn.usage
        usd = self.prices.cost(self.model, u)
        self.budget.charge_llm(u.input_tokens, u.output_tokens, u.cache_write_tokens,
                               u.cache_read_tokens, usd, seconds=call_s)
        self._last_prompt_tokens = u.input_tokens + u.cache_read_tokens + u.cache_write_tokens
        if not u.estimated and self._last_prompt_tokens > 0:
            self._scale *= self._last_prompt_tokens / max(estimate, 1)
        if final and turn.tool_calls:  # tools were disabled; never leave calls unanswered
            turn = replace(turn, tool_calls=(), provider_blocks=tuple(
                b for b in turn.provider_blocks if b.get("type") == "text"))
        self._write(tx.Assistant(
            text=turn.text,
            tool_calls=[tx.CallRecord.model_validate(c.to_dict()) for c in turn.tool_calls],
            stop_reason=turn.stop_reason, model=turn.model, provider=turn.provider,
            provider_blocks=list(turn.provider_blocks),
            usage=tx.TokenCounts.model_validate(u.to_dict()),
            usd=usd, final=final, call_s=round(call_s, 3),
        ))
        return turn

    def _call_tool(self, call: ToolCall) -> tuple[ToolResult, str]:
        """Run one call (budget permitting); its result and its check."""
        which = self.budget.exhausted()
        if which is not None:
            result = ToolResult(call.id, call.name,
                                f"not run: the {which} budget is exhausted", True)
            self._write(tx.ToolResult(call_id=call.id, name=call.name, content=result.content,
                                      is_error=True, status="skipped", evals=0))
            self._last_tools.append((call, result))
            return result, "skipped"
        key = (call.name, json.dumps(call.arguments, sort_keys=True, default=str))
        before = self._ran.get(key)
        if (self.call_hints and call.parse_error is None and before is not None
                and before[0] == self._epoch):
            failed = before[1]
            result = ToolResult(call.id, call.name, REPEATED.format(
                which="your last one" if key == self._last_run else "an earlier one",
                how="failed" if failed else "succeeded",
                advice="Change the arguments or the file, or call another tool." if failed
                else "Take the next step with another tool."), True)
            self._write(tx.ToolResult(call_id=call.id, name=call.name, content=result.content,
                                      is_error=True, status="error", check="repeated",
                                      evals=0))
            self._last_tools.append((call, result))
            return result, "repeated"
        self._write(tx.ToolStart(call_id=call.id, name=call.name))
        t0 = time.monotonic()
        tool = self._index.get(call.name)
        check = check_call(call, self._index)
        outcome = execute(tool, call.name, call.arguments,
                          parse_error=call.parse_error, max_chars=self.max_tool_output_chars)
        if check == "ok" and outcome.is_error:
            check = "tool_error"
        if self.call_hints and check in MALFORMED:
            outcome = replace(outcome, content=outcome.content + self._hint(check, tool, call))
        self.budget.charge_tool_call()
        if outcome.evals:
            self.budget.charge_eval(outcome.evals)
        entry = tx.ToolResult(
            call_id=call.id, name=call.name, content=outcome.content,
            is_error=outcome.is_error, status="error" if outcome.is_error else "ok",
            check=check, evals=outcome.evals, duration_s=round(time.monotonic() - t0, 3))
        if outcome.traceback:
            entry = entry.model_copy(update={"traceback": outcome.traceback})
        self._write(entry)
        result = ToolResult(call.id, call.name, outcome.content, outcome.is_error)
        self._last_run = key if check in ("ok", "tool_error") else None
        if check == "ok" and key not in self._worked:
            self._worked.add(key)
            self._epoch += 1
        if check in ("ok", "tool_error"):
            self._ran[key] = (self._epoch, check == "tool_error")
        self._last_tools.append((call, result))
        self._last_tools = self._last_tools[-5:]
        return result, check

    def _hint(self, check: str, tool: Tool | None, call: ToolCall) -> str:
        if tool is not None:
            fixed = repaired_arguments(tool, call.arguments)
            if fixed is None:
                return f". Call it as {signature(tool)}."
            example = json.dumps({"name": tool.name, "arguments": fixed})
            prev = self._last_tools[-1][0] if self._last_tools else None
            again = (prev is not None and (prev.name, prev.arguments)
                     == (call.name, call.arguments))
            return (f". Call it as {signature(tool)}; without the unknown arguments and "
                    f"schemas, your call is valid: {example}"
                    + (". You sent the same invalid call again: send that one instead."
                       if again else ""))
        tools = ", ".join(signature(t) for t in self.tools)
        return (f". The tools are: {tools}. Write one call as "
                '{"name": "<tool>", "arguments": {...}}, with <tool> one of these names.')

    # -- stopping ------------------------------------------------------------------------
    def _final_affordable(self, messages: Sequence[Message]) -> bool:
        prompt = self._last_prompt_tokens
        if prompt is None:
            prompt = estimate_tokens(self.system_prompt, *(
                m.text for m in messages if isinstance(m, UserTurn | AssistantTurn)))
        prompt += estimate_tokens(FINAL_NOTE_REQUEST)
        need_tokens = prompt + self.final_note_tokens
        left = self.budget.remaining()
        if left["tokens"] is not None and left["tokens"] < need_tokens:
            return False
        if left["usd"] is not None:
            rates = self.prices.lookup(self.model)[0]
            worst = CallUsage(input_tokens=prompt, output_tokens=self.final_note_tokens)
            if left["usd"] < rates.cost(worst):
                return False
        return True

    def _stop(self, which: str, messages: list[Message]) -> Outcome:
        model_note: str | None = None
        error: str | None = None
        if self.final_call and self._final_affordable(messages):
            request = FINAL_NOTE_REQUEST.format(which=which, words=self.final_note_words)
            self._user(messages, request, "final_request")
            try:
                turn = self._call_model(messages, self._output_cap(self.final_note_tokens),
                                        "none", final=True)
            except BackendError as exc:
                error = str(exc)
                self._write(tx.Error(message=error, status=exc.status))
            else:
                messages.append(turn)
                model_note = turn.text.strip() or None
        return self._finish(StopReason.budget(which), messages, model_note=model_note, error=error)

    def _summary(self, reason: StopReason, messages: Sequence[Message], error: str | None) -> str:
        u = self.budget.usage()
        if reason == StopReason.DONE:
            head = "The researcher finished (it ended its turn without calling a tool)."
        elif reason == StopReason.FAILURES:
            head = f"The run stopped: {error}."
        elif reason == StopReason.ERROR:
            head = f"The run stopped on an error: {error}."
        else:
            which = reason.split(":", 1)[1]
            head = f"The run stopped because {_STOP_TEXT.get(which, which + ' ran out')}."
        rate = u.usd_per_hour
        lines = [
            head,
            f"Usage: {u.llm_calls} model calls, {u.tool_calls} tool calls, {u.evals} "
            f"evaluations; {u.total_tokens} tokens (input {u.input_tokens}, output "
            f"{u.output_tokens}, cache write {u.cache_write_tokens}, cache read "
            f"{u.cache_read_tokens}); ${u.usd:.4f} over {u.seconds / 60:.1f} min"
            + (f" (${rate:.2f} per researcher-hour)." if rate is not None else "."),
            f"Budget: {self.budget.describe()}.",
        ]
        st = self.stats()
        if st["calls"] or st["no_tool_call"]:
            checks = ", ".join(f"{k} {v}" for k, v in st["checks"].items())
            tools = ", ".join(f"{k} {v}" for k, v in st["by_tool"].items())
            lines.append(
                f"Tool calls: {st['calls']} ({checks}); by tool: {tools or 'none'}; "
                f"{st['text_calls']} written as text; {st['no_tool_call']} turns without a "
                f"call; {st['compactions']} compactions.")
        if st["output_tokens_per_s"] is not None:
            lines.append(f"Model time {st['llm_seconds']} s, {st['output_tokens_per_s']} "
                         "output tokens/s.")
        if not self.price_known:
            lines.append(f"Model {self.model!r} is not in the price table; its calls were "
                         "priced with [default]. Add it to $AAR_HOME/prices.toml.")
        last = next((m for m in reversed(messages) if isinstance(m, AssistantTurn)
                     and m.text.strip()), None)
        if last is not None and reason != StopReason.DONE:
            lines.append(f"Last assistant message: {_short(last.text)}")
        if self._last_tools and reason != StopReason.DONE:
            shown = "; ".join(
                f"{c.name}({_short(json.dumps(c.arguments), 120)}) -> "
                f"{'error' if r.is_error else 'ok'}: {_short(r.content, 160)}"
                for c, r in self._last_tools[-3:])
            lines.append(f"Last tool calls: {shown}")
        return "\n".join(lines)

    def _finish(self, reason: StopReason, messages: Sequence[Message], *,
                model_note: str | None = None, error: str | None = None) -> Outcome:
        note = self._summary(reason, messages, error)
        if reason == StopReason.DONE:
            last = messages[-1] if messages else None
            if isinstance(last, AssistantTurn) and last.text.strip():
                note = last.text.strip() + "\n\n" + note
        if model_note:
            note += "\n\nResearcher's final note:\n" + model_note
        usage = self.budget.usage()
        stats = self.stats()
        self._write(tx.End(reason=reason, final_note=note, usage=usage.to_dict(), error=error,
                           stats=stats))
        return Outcome(reason, note, usage, error, stats)
