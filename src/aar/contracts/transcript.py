"""The transcript of an LLM researcher: one typed model per entry, one union keyed on ``type``.

``<run>/agents/<agent>/transcript.jsonl`` is the conversation as it happened, one JSON object
a line, fsync'd before the loop moves on (:mod:`aar.agents.llm`). Each entry has ``type``
(its model below), ``t`` (Unix time) and ``seconds`` (the researcher's wall time so far).
It is a different log from the run's events (:mod:`aar.contracts.events`, keyed ``kind``):
it is replayed to resume a conversation, and its ``user`` entries have a ``kind`` of their
own (why the message was sent), so the key stays ``type`` and transcripts written by every
earlier version resume unchanged.

- Writers build the entry's model (mypy checks the fields; pydantic the types) and store
  :meth:`Entry.line`: the fields as given, ``t`` and ``seconds`` last.
- Readers go through :func:`parse_entry` / :func:`read_transcript` and read attributes. An
  entry of a type this version does not know, or whose fields do not fit its model, is kept
  as an :class:`UnknownEntry` (its fields still there); nobody replays it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

JsonObject = dict[str, Any]


class CallRecord(BaseModel):
    """One tool call as the model made it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    name: str
    arguments: JsonObject = Field(default_factory=dict)
    raw_arguments: str | None = None  # the model's text when it was not a JSON object
    parse_error: str | None = None


class TokenCounts(BaseModel):
    """Tokens of one model call (``input_tokens`` excludes cache reads and writes)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    estimated: bool = False  # the server reported no usage; counts are chars/4 estimates


class Entry(BaseModel):
    """What every transcript entry has."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    t: float | None = None  # Unix time of the write
    seconds: float = 0.0  # the researcher's wall time so far, over every session

    def as_dict(self) -> JsonObject:
        """The entry as its JSON line holds it: ``type``, the fields it was made or read
        with, then ``t`` and ``seconds``."""
        data = self.model_dump(exclude_unset=True, exclude={"type", "t", "seconds"})
        tail = self.model_dump(include={"t", "seconds"}, exclude_unset=True)
        return {"type": self.type, **data, **tail}

    def line(self) -> str:
        """The JSON line (without its newline) that stores the entry."""
        return json.dumps(self.as_dict(), ensure_ascii=False, default=str)


class Session(Entry):
    """A session of the loop began (the first, or a resume)."""

    type: Literal["session"] = "session"
    v: int = 1  # the transcript format's version
    n: int = 1  # which session, from 1
    provider: str = ""
    model: str | None = None
    price_known: bool = True
    tools: list[str] = Field(default_factory=list)
    system_sha256: str = ""
    limits: JsonObject = Field(default_factory=dict)
    resumed: bool = False


class UserMessage(Entry):
    """A message the harness sent the model."""

    type: Literal["user"] = "user"
    kind: str = ""  # first | resume | nudge | continue | final_request
    text: str = ""


class Assistant(Entry):
    """One model call's answer: text, tool calls, tokens and dollars."""

    type: Literal["assistant"] = "assistant"
    text: str = ""
    tool_calls: list[CallRecord] = Field(default_factory=list)
    stop_reason: str = ""
    model: str = ""
    provider: str = ""
    provider_blocks: list[JsonObject] = Field(default_factory=list)
    usage: TokenCounts = Field(default_factory=TokenCounts)
    usd: float = 0.0
    final: bool = False  # the final-note call (tools disabled)
    call_s: float = 0.0  # seconds the call took


class ToolStart(Entry):
    """A tool call is about to run (a start without a result: it was interrupted)."""

    type: Literal["tool_start"] = "tool_start"
    call_id: str
    name: str = ""


class ToolResult(Entry):
    """What a tool call answered."""

    type: Literal["tool_result"] = "tool_result"
    call_id: str
    name: str = ""
    content: str = ""
    is_error: bool = False
    status: str = "ok"  # ok | error | skipped (a budget was spent) | interrupted
    check: str | None = None  # ok | tool_error | bad_json | unknown_tool | ... | repeated
    evals: int = 0  # server evaluations the call spent (one per seed)
    charged_eval: bool | None = None  # transcripts before ``evals``: one evaluation or none
    duration_s: float | None = None
    traceback: str | None = None

    @property
    def evaluations(self) -> int:
        """Evaluations spent, read from either version of the field."""
        if "evals" in self.model_fields_set or self.charged_eval is None:
            return self.evals
        return int(self.charged_eval)

    @property
    def counted(self) -> bool:
        """Whether the call ran (skipped and interrupted calls did not)."""
        return self.status not in ("skipped", "interrupted")


class Error(Entry):
    """A model call failed for good."""

    type: Literal["error"] = "error"
    message: str = ""
    status: int | None = None  # the API's HTTP status, if it answered


class Compaction(Entry):
    """The oldest turns were dropped to fit the model's context window."""

    type: Literal["compaction"] = "compaction"
    dropped: int = 0
    kept: int = 0
    estimated_before: int = 0
    estimated_after: int = 0
    context_tokens: int | None = None


class End(Entry):
    """The loop ended, with its final note."""

    type: Literal["end"] = "end"
    reason: str = ""
    final_note: str = ""
    usage: JsonObject = Field(default_factory=dict)
    error: str | None = None
    stats: JsonObject = Field(default_factory=dict)


class UnknownEntry(Entry):
    """An entry of a type this version does not know, or one whose fields do not fit its
    type's model: kept with all its fields, replayed by nobody."""


_MODELS = (Session, UserMessage, Assistant, ToolStart, ToolResult, Error, Compaction, End)
KnownEntry = Annotated[
    Session | UserMessage | Assistant | ToolStart | ToolResult | Error | Compaction | End,
    Field(discriminator="type"),
]
TYPES: frozenset[str] = frozenset(m.model_fields["type"].default for m in _MODELS)
_KNOWN: TypeAdapter[KnownEntry] = TypeAdapter(KnownEntry)


def parse_entry(obj: Any) -> Entry:
    """An entry from its JSON object (a dict, or a JSON line). Raises ``ValueError`` when
    ``obj`` is not an entry at all (not a JSON object, or no ``type``)."""
    if isinstance(obj, str | bytes):
        obj = json.loads(obj)  # ValueError on a torn line
    if not isinstance(obj, dict):
        raise ValueError(f"a transcript entry is a JSON object, not {type(obj).__name__}")
    if obj.get("type") in TYPES:
        try:
            return _KNOWN.validate_python(obj)
        except ValidationError:
            pass
    try:
        return UnknownEntry.model_validate(obj)
    except ValidationError as exc:
        raise ValueError(f"not a transcript entry: {exc.errors()[0]['msg']}") from None


def read_transcript(path: Path) -> list[Entry]:
    """Every entry of a ``transcript.jsonl``, in order; [] when there is none. A line that is
    not an entry (a torn last line) is skipped."""
    if not path.exists():
        return []
    out: list[Entry] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(parse_entry(line))
        except ValueError:
            continue
    return out
