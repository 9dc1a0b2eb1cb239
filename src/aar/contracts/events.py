"""The events of a research run: one typed model per kind, one union keyed on ``kind``.

Every researcher of a run appends events to ``<run>/agents/<agent>/events.jsonl``, one JSON
object a line, each with ``t`` (ISO 8601 UTC, seconds), ``agent`` and ``kind``. The
orchestrator tails them for its observers (the monitor); the report, the judge and a
resumed researcher read them back.

- Writers go through :func:`new_event` (``RunPaths.append_event`` does): an unknown kind,
  an unknown field or a field of the wrong type is a programming error and raises
  ``ValueError`` before anything is written. The line written is the fields as given
  (``event_line``), so the file keeps the keys and bytes older versions wrote.
- Readers go through :func:`parse_event` / :func:`read_events` and read attributes. A kind
  this version does not know (written by a newer or an older aar), or a known kind whose
  fields do not fit its model, is kept as an :class:`UnknownEvent` with an
  :class:`UnknownEventWarning`, never a crash: the fields are still there
  (``payload()``). Fields a newer version added to a known kind are kept too.

The transcript of an LLM researcher (``transcript.jsonl``) is a different log: its entries
are conversation turns keyed ``type`` (``session``, ``user``, ``assistant``, ...), which
the server's transcript mirror stores as ``kind``; they are not these events.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from aar.contracts import Named, problems

JsonObject = dict[str, Any]


class StopReason(Named):
    """Why a researcher stopped: a ``stop`` event's ``reason`` (and its status's). A
    reason may also be free text where an error or a signal ended it (``error: ...``,
    ``killed``)."""

    DONE = "done"  # it ended its turn without calling a tool (or its search was done)
    ERROR = "error"  # the model's API failed or the model refused to go on
    FAILURES = "failures"  # too many failed turns in a row
    ORCHESTRATOR = "stopped by the orchestrator"  # the run's deadline, or a user's stop
    BUDGET_SECONDS = "budget:seconds"
    BUDGET_USD = "budget:usd"
    BUDGET_TOKENS = "budget:tokens"
    BUDGET_EVALS = "budget:evals"  # its evaluation budget is spent: it is not restarted

    @classmethod
    def budget(cls, limit: str) -> StopReason:
        """The reason for a spent budget: ``limit`` is seconds, usd, tokens or evals."""
        return cls(f"budget:{limit}")


class ResearcherState(Named):
    """A researcher's state in its status file and on the server."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


class UnknownEventWarning(UserWarning):
    """An event this version of aar cannot read as its kind's model (kept generic)."""


class BaseEvent(BaseModel):
    """What every event has; the rest of its fields are its kind's model's."""

    model_config = ConfigDict(extra="allow", frozen=True)

    t: str  # ISO 8601 UTC, seconds
    agent: str
    kind: str

    def as_dict(self) -> JsonObject:
        """The event as its JSON line holds it (the fields it was written with)."""
        return self.model_dump(exclude_unset=True)

    def payload(self) -> JsonObject:
        """The fields beyond ``t``, ``agent`` and ``kind``."""
        return {k: v for k, v in self.as_dict().items() if k not in ("t", "agent", "kind")}



class Start(BaseEvent):
    """A researcher started (or resumed) its session."""

    kind: Literal["start"] = "start"
    direction: str  # the starting direction's title
    backend: str | None = None  # LLM researchers and ``aar mcp``: the backend
    resumed: bool | None = None  # the built-in search: it continued a population
    families: list[str] | None = None  # the built-in search: the method families


class Stop(BaseEvent):
    """A researcher ended, with its final note (written by the orchestrator when the
    process died before it could)."""

    kind: Literal["stop"] = "stop"
    reason: str  # done | error | budget:<what> | stopped by the orchestrator | killed ...
    final_note: str
    usd: float | None = None  # LLM researchers: what the session cost
    tokens: int | None = None
    usd_per_hour: float | None = None
    stats: JsonObject | None = None  # LLM researchers: LLMResearcher.stats()


class BudgetStop(BaseEvent):
    """The orchestrator asked a researcher to stop (a budget or the deadline)."""

    kind: Literal["budget_stop"] = "budget_stop"
    reason: str


class ToolCall(BaseEvent):
    """One tool call of an LLM researcher."""

    kind: Literal["tool_call"] = "tool_call"
    tool: str
    args: JsonObject | None = None  # long string arguments cut to 300 characters
    ok: bool | None = None
    result: str | None = None  # its first 500 characters


class Usage(BaseEvent):
    """One model call of an LLM researcher."""

    kind: Literal["usage"] = "usage"
    input_tokens: int | None = None
    output_tokens: int | None = None
    usd: float | None = None
    seconds: float | None = None


class LLMStats(BaseEvent):
    """An LLM researcher's counters so far (``LLMResearcher.stats()``)."""

    kind: Literal["llm_stats"] = "llm_stats"
    checks: dict[str, int] | None = None  # calls by check: ok, tool_error, malformed ...
    by_tool: dict[str, int] | None = None
    calls: int | None = None
    malformed: int | None = None
    malformed_rate: float | None = None
    text_calls: int | None = None
    no_tool_call: int | None = None
    nudges: int | None = None
    compactions: int | None = None
    llm_seconds: float | None = None
    output_tokens_per_s: float | None = None


class FileWrite(BaseEvent):
    """A researcher wrote a file of its workspace."""

    kind: Literal["file_write"] = "file_write"
    path: str  # relative to the workspace
    bytes: int | None = None


class SandboxRun(BaseEvent):
    """Code ran in the sandbox: a method file over seeds, or a script (``run_python``)."""

    kind: Literal["sandbox_run"] = "sandbox_run"
    file: str  # relative to the workspace; ``<code>`` for inline code
    seeds: list[int] = Field(default_factory=list)
    params: JsonObject | None = None
    ok: bool
    diagnostics: JsonObject | None = None  # label-free diagnostics of the predictions
    error: str | None = None
    seconds: float | None = None
    executor: str | None = None  # local | ray
    nodes: list[str] | None = None  # where it ran (Ray)
    mode: str | None = None  # run_python: the sandbox's isolation mode


class Evaluation(BaseEvent):
    """A method was submitted to the server, one submission per seed."""

    kind: Literal["evaluation"] = "evaluation"
    submission_ids: list[int]
    method: str | None = None
    file: str | None = None
    seeds: list[int] | None = None
    params: JsonObject | None = None
    public_pgr: float | None = None  # the released public PGR, if one was released
    released: bool | None = None
    ladder_best_pgr: float | None = None
    diagnostics: JsonObject | None = None
    transductive: bool | None = None


class Finding(BaseEvent):
    """A researcher posted a finding to the forum."""

    kind: Literal["finding"] = "finding"
    finding_id: int
    title: str
    type: str  # the finding's type: result, idea, negative, ...
    builds_on: list[int] = Field(default_factory=list)
    public_pgr: float | None = None
    file: str | None = None  # the method file its code snapshot came from


class ForumRead(BaseEvent):
    """The built-in search read the forum and the leaderboard."""

    kind: Literal["forum_read"] = "forum_read"
    results_seen: int
    new_findings: int


class UnknownEvent(BaseEvent):
    """An event of a kind this version does not know, or one whose fields do not fit its
    kind's model: kept with all its fields (``payload()``), read by nobody's rules."""


KnownEvent = Annotated[
    Start | Stop | BudgetStop | ToolCall | Usage | LLMStats | FileWrite | SandboxRun
    | Evaluation | Finding | ForumRead,
    Field(discriminator="kind"),
]
Event = KnownEvent | UnknownEvent

KINDS: dict[str, type[BaseEvent]] = {
    m.model_fields["kind"].default: m
    for m in (Start, Stop, BudgetStop, ToolCall, Usage, LLMStats, FileWrite, SandboxRun,
              Evaluation, Finding, ForumRead)
}
_KNOWN: TypeAdapter[KnownEvent] = TypeAdapter(KnownEvent)


def new_event(kind: str, *, t: str, agent: str, **data: Any) -> Event:
    """A new event, checked strictly: the kind must be known, every field declared by its
    model and of its type. Raises ``ValueError`` (a programming error, not a user's)."""
    model = KINDS.get(kind)
    if model is None:
        raise ValueError(f"no event kind {kind!r} (known: {', '.join(sorted(KINDS))}); "
                         "add a model for it in aar.contracts.events")
    fields = set(model.model_fields) - {"t", "agent", "kind"}
    extra = sorted(set(data) - fields)
    if extra:
        raise ValueError(f"{kind} event: no field {', '.join(map(repr, extra))} "
                         f"(its fields: {', '.join(sorted(fields))})")
    try:
        return model.model_validate({"t": t, "agent": agent, "kind": kind, **data},
                                    strict=True)  # type: ignore[return-value]
    except ValidationError as exc:
        raise ValueError(f"ill-typed {kind} event: {problems(exc, 5)}") from None


def event_line(ev: Event) -> str:
    """The JSON line (without its newline) that stores ``ev``: the fields it was made or
    read with, in that order."""
    return json.dumps(ev.as_dict(), default=str)


def parse_event(obj: Any) -> Event:
    """An event from its JSON object (a dict, or a JSON line). A kind this version does
    not know, or fields that do not fit the kind's model, give an :class:`UnknownEvent`
    and an :class:`UnknownEventWarning`. Raises ``ValueError`` when ``obj`` is not an
    event at all (not a JSON object, or no ``t``, ``agent`` and ``kind``)."""
    if isinstance(obj, str | bytes):
        obj = json.loads(obj)  # ValueError on a torn line
    if not isinstance(obj, dict):
        raise ValueError(f"an event is a JSON object, not {type(obj).__name__}")
    kind = obj.get("kind")
    if isinstance(kind, str) and kind in KINDS:
        try:
            return _KNOWN.validate_python(obj)
        except ValidationError as exc:
            why = f"its fields do not fit the {kind} model ({problems(exc, 5)})"
    else:
        why = "this version of aar does not know that kind"
    try:
        ev = UnknownEvent.model_validate(obj)
    except ValidationError as exc:
        raise ValueError(f"not an event: {problems(exc, 5)}") from None
    warnings.warn(f"a {ev.kind!r} event was kept as a generic event: {why}",
                  UnknownEventWarning, stacklevel=2)
    return ev


def read_events(path: Path) -> list[Event]:
    """Every event of an ``events.jsonl``, in order; [] when there is none. A line that is
    not an event (a torn last line from a crash mid-write) is skipped."""
    if not path.exists():
        return []
    out: list[Event] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(parse_event(line))
        except ValueError:
            continue
    return out
