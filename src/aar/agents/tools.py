"""Generic tool machinery: a tool is a name, a description, a JSON schema and a handler.

The concrete tools (workspace files, sandbox, evaluation server, forum, ...) are declared
elsewhere with :func:`aar.agents.tooldecl.tool` (the schema derived from the typed
signature, the effects stated) and handed to the researcher loop or the MCP server as a
list of :class:`Tool`.
A handler takes the parsed arguments and returns text. It raises :class:`ToolError` for
an error the model caused or can act on; the loop and the MCP server turn it (and any
other exception) into an error result for the model, never a crash.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .tooldecl import ToolDecl

# A handler answers with text, or with a JSON-able object that :func:`render` turns into
# the text the model sees (the one place that formatting is decided).
ToolHandler = Callable[[dict[str, Any]], Any]


def render(result: Any) -> str:
    """The text of a tool's answer: text as it is, anything else as indented JSON."""
    return result if isinstance(result, str) else json.dumps(result, default=str, indent=1)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
    "null": (type(None),),
}


class ToolError(Exception):
    """A user-level tool failure; its message goes back to the model as an error result."""


@dataclass(frozen=True)
class Tool:
    """A tool the researcher can call.

    ``parameters`` is a JSON schema of ``type: object``; ``counts_as_eval`` marks a tool
    whose successful call spends server evaluations from the researcher's budget, one per
    submission the server scored (see :func:`evaluations_spent`; the loop and the MCP
    server charge them, the handler does not have to). ``decl``: the declaration the
    tool was made from (what it reads and writes), None for a tool made by hand.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    handler: ToolHandler = field(repr=False, compare=False)
    counts_as_eval: bool = False
    decl: ToolDecl | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "_-" for c in self.name):
            raise ValueError(f"tool name {self.name!r} must be non-empty and use [A-Za-z0-9_-]")
        if self.parameters.get("type", "object") != "object":
            raise ValueError(f"tool {self.name!r}: parameters schema must have type 'object'")

    @property
    def input_schema(self) -> dict[str, Any]:
        """The parameters schema with ``type: object`` and ``properties`` always present."""
        schema = dict(self.parameters)
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        return schema


def _type_ok(value: Any, expected: str | list[str]) -> bool:
    names = [expected] if isinstance(expected, str) else list(expected)
    for name in names:
        types = _JSON_TYPES.get(name)
        if types is None:  # unknown type keyword: do not second-guess the schema
            return True
        if isinstance(value, bool) and name in ("integer", "number"):
            continue
        if name == "integer" and isinstance(value, float) and value.is_integer():
            return True
        if isinstance(value, types):
            return True
    return False


def _type_name(value: Any) -> str:
    for name, types in _JSON_TYPES.items():
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, types):
            return name
    return type(value).__name__


def _check(value: Any, schema: Mapping[str, Any], path: str, errors: list[str]) -> None:
    expected = schema.get("type")
    if expected is not None and not _type_ok(value, expected):
        want = expected if isinstance(expected, str) else " or ".join(expected)
        errors.append(f"{path} must be {want}, got {_type_name(value)}")
        return
    if "enum" in schema and value not in schema["enum"]:
        options = ", ".join(json.dumps(v) for v in schema["enum"])
        errors.append(f"{path} must be one of {options}, got {json.dumps(value, default=str)}")
    if isinstance(value, dict):
        props: Mapping[str, Any] = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}.{key} is required" if path != "arguments" else
                              f"missing required argument {key!r}")
        for key, sub in value.items():
            if key in props:
                _check(sub, props[key], f"{path}.{key}" if path != "arguments" else repr(key),
                       errors)
            elif schema.get("additionalProperties") is False:
                allowed = ", ".join(repr(k) for k in props) or "none"
                errors.append(f"unexpected argument {key!r} (allowed: {allowed})"
                              if path == "arguments" else f"{path}: unexpected key {key!r}")
    elif isinstance(value, (list, tuple)) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            _check(item, schema["items"], f"{path}[{i}]", errors)


def validate_arguments(tool: Tool, args: Any) -> list[str]:
    """Problems with ``args`` against the tool's schema (required keys, types, enums)."""
    if not isinstance(args, dict):
        return [f"arguments must be a JSON object, got {_type_name(args)}"]
    errors: list[str] = []
    _check(args, tool.input_schema, "arguments", errors)
    return errors


@dataclass(frozen=True)
class ToolOutcome:
    content: str
    is_error: bool
    evals: int = 0  # server evaluations the call spent (one per seed)
    traceback: str | None = None


def truncate(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    head = text[: limit * 3 // 4]
    tail = text[-(limit // 4):]
    return f"{head}\n[... {len(text) - len(head) - len(tail)} characters cut ...]\n{tail}"


def execute(
    tool: Tool | None,
    name: str,
    args: Any,
    *,
    parse_error: str | None = None,
    max_chars: int | None = 50_000,
) -> ToolOutcome:
    """Validate and run one tool call; every failure becomes an error result, never a raise."""
    if tool is None:
        return ToolOutcome(f"unknown tool {name!r}", True)
    if parse_error is not None:
        return ToolOutcome(
            f"the arguments of {name} were not valid JSON ({parse_error}); "
            "send a JSON object matching the tool's schema", True)
    problems = validate_arguments(tool, args)
    if problems:
        return ToolOutcome(f"invalid arguments for {name}: " + "; ".join(problems), True)
    try:
        result = tool.handler(dict(args))
    except ToolError as exc:
        return ToolOutcome(truncate(f"{name} failed: {exc}", max_chars), True)
    except Exception as exc:  # a bug in a tool must not end the run
        return ToolOutcome(
            truncate(f"{name} raised an internal error: {type(exc).__name__}: {exc}", max_chars),
            True, traceback=traceback.format_exc())
    return ToolOutcome(truncate(render(result), max_chars), False,
                       evals=evaluations_spent(tool, result))


def evaluations_spent(tool: Tool, result: Any) -> int:
    """Evaluations a successful call of ``tool`` spent: one per submission the server
    scored (one per seed), i.e. the ``submission_ids`` its answer lists (1 when it lists
    none, or answered in text); 0 for a tool that spends none. One evaluation is the unit
    of every evaluation budget in aar, the server's included."""
    if not tool.counts_as_eval:
        return 0
    ids = result.get("submission_ids") if isinstance(result, Mapping) else None
    return len(ids) if isinstance(ids, list) and ids else 1


def tool_index(tools: Sequence[Tool]) -> dict[str, Tool]:
    index: dict[str, Tool] = {}
    for tool in tools:
        if tool.name in index:
            raise ValueError(f"two tools are named {tool.name!r}")
        index[tool.name] = tool
    return index
