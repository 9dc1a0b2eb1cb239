"""The neutral conversation format every backend speaks, and the Backend protocol.

A conversation is a list of turns:

* :class:`UserTurn` — text from the harness (the first message, a resume or final-note request);
* :class:`AssistantTurn` — the model's text and tool calls, with token usage and stop reason;
* :class:`ToolResultsTurn` — the results of the previous assistant turn's tool calls.

An assistant turn may carry ``provider_blocks``: the provider's own content blocks
(e.g. Anthropic thinking blocks with their signatures), replayed verbatim to the same
provider so that tool use with thinking keeps working; other providers ignore them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aar.errors import AarError

ToolChoice = Literal["auto", "none"]


class BackendError(AarError):
    """A model call failed for good (after the SDK's own retries); one line, no traceback."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True)
class CallUsage:
    """Tokens of one model call. ``input_tokens`` excludes cache reads and writes."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    estimated: bool = False  # the server reported no usage; counts are chars/4 estimates

    @property
    def total_tokens(self) -> int:
        return (self.input_tokens + self.output_tokens + self.cache_write_tokens
                + self.cache_read_tokens)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cache_read_tokens": self.cache_read_tokens,
        }
        if self.estimated:
            data["estimated"] = True
        return data


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str | None = None  # the model's text when it was not a JSON object
    parse_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "name": self.name, "arguments": self.arguments}
        if self.raw_arguments is not None:
            data["raw_arguments"] = self.raw_arguments
        if self.parse_error is not None:
            data["parse_error"] = self.parse_error
        return data


@dataclass(frozen=True)
class UserTurn:
    text: str


@dataclass(frozen=True)
class AssistantTurn:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: CallUsage = field(default_factory=CallUsage)
    stop_reason: str = ""
    model: str = ""
    provider: str = ""
    provider_blocks: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    name: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class ToolResultsTurn:
    results: tuple[ToolResult, ...]


Message = UserTurn | AssistantTurn | ToolResultsTurn


class ToolSpec(Protocol):
    """What a backend needs of a tool (``aar.agents.tools.Tool`` satisfies it)."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def input_schema(self) -> dict[str, Any]: ...


class Backend(Protocol):
    """One model behind one API. ``complete`` makes one call (the SDK retries inside it)."""

    provider: str
    model: str

    def complete(
        self,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        max_tokens: int | None = None,
        tool_choice: ToolChoice = "auto",
        temperature: float | None = None,
    ) -> AssistantTurn: ...


def parse_arguments(raw: str | None) -> tuple[dict[str, Any], str | None]:
    """Tool-call arguments from a JSON string: (arguments, parse error or None)."""
    if raw is None or raw.strip() == "":
        return {}, None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return {}, f"{exc.msg} at position {exc.pos}"
    if not isinstance(value, dict):
        return {}, f"expected a JSON object, got {type(value).__name__}"
    return value, None


def estimate_tokens(*texts: str) -> int:
    """A rough token count (4 characters a token) for servers that report no usage."""
    return sum(len(t) for t in texts) // 4 + 1
