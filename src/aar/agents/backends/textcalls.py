"""Tool calls written as text, for models whose server returns no structured ``tool_calls``.

Small local models (Qwen2.5-Coder on llama.cpp with its own chat template) answer a
request with tools by *writing* the call: ``<tool_call>{"name": ..., "arguments": ...}
</tool_call>``, a fenced ```json block, or a bare JSON object. :func:`parse_text_calls`
finds every JSON object in the text that has a string ``name``; ``arguments`` (or
``parameters``) may be an object or a JSON string. Text that plainly tries a call but is
not valid JSON gives a call with ``parse_error`` set, so the model is told what was wrong.
A small model's habits are read too: Python's ``True``/``False``/``None`` outside strings,
Python's triple-quoted strings (three double quotes) and unquoted keys (``{label: "x"}``)
become JSON's ``true``/``false``/``null``, strings and quoted keys (a call read with the
last two is the reply's last).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from .base import ToolCall, ToolSpec

MAX_TEXT_CALLS = 4
_NAME = re.compile(r'"name"\s*:\s*"([A-Za-z0-9_\-]+)"')
_decoder = json.JSONDecoder()
_PY_LITERALS = re.compile(r"\b(True|False|None)\b")
_AS_JSON = {"True": "true", "False": "false", "None": "null"}


_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_]\w*)(\s*:)")


def _outside_strings(text: str, start: int, fix: Callable[[str], str]) -> str:
    """``text`` with ``fix`` applied to what lies outside JSON strings after ``start``."""
    out = [text[:start]]
    for k, part in enumerate(re.split(r'("(?:[^"\\]|\\.)*")', text[start:])):
        out.append(part if k % 2 else fix(part))
    return "".join(out)


def _json_literals(part: str) -> str:  # the same length: positions do not move
    return _PY_LITERALS.sub(lambda m: _AS_JSON[m.group(1)], part)


def _quoted_keys(part: str) -> str:
    return _BARE_KEY.sub(lambda m: f'{m.group(1)}"{m.group(2)}"{m.group(3)}', part)


_TRIPLE = re.compile(r'"""(.*?)"""', re.S)


def _decode_at(text: str, i: int) -> tuple[Any, int]:
    """The JSON value at ``i`` and where it ends, read leniently (see the module doc)."""
    try:
        return _decoder.raw_decode(text, i)
    except json.JSONDecodeError:
        pass
    try:
        return _decoder.raw_decode(_outside_strings(text, i, _json_literals), i)
    except json.JSONDecodeError:
        pass
    tail = _TRIPLE.sub(lambda m: json.dumps(m.group(1)), text[i:])
    tail = _outside_strings(tail, 0, lambda part: _quoted_keys(_json_literals(part)))
    obj, _ = _decoder.raw_decode(tail, 0)
    return obj, len(text)  # positions moved: nothing after this call is read


def _call_from(obj: dict[str, Any], call_id: str, raw: str) -> ToolCall:
    name = str(obj["name"])
    args: Any = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as exc:
            return ToolCall(call_id, name, {}, args, f"{exc.msg} at position {exc.pos}")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return ToolCall(call_id, name, {}, raw,
                        f"'arguments' must be a JSON object, got {type(args).__name__}")
    return ToolCall(call_id, name, args)


def parse_text_calls(text: str, id_prefix: str) -> list[ToolCall]:
    """The tool calls written in ``text`` (at most :data:`MAX_TEXT_CALLS`)."""
    calls: list[ToolCall] = []
    i = text.find("{")
    while i != -1 and len(calls) < MAX_TEXT_CALLS:
        try:
            obj, end = _decode_at(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        if isinstance(obj, dict) and isinstance(obj.get("name"), str):
            calls.append(_call_from(obj, f"{id_prefix}_{len(calls)}", text[i:end]))
        i = text.find("{", end)
    if calls:
        return calls
    m = _NAME.search(text)
    if m is not None and ("arguments" in text or "parameters" in text):
        start = text.rfind("{", 0, m.start())
        raw = text[start if start != -1 else m.start():]
        try:
            _decoder.raw_decode(raw.strip())
            error = "the call is not a JSON object with 'name' and 'arguments'"
        except json.JSONDecodeError as exc:
            error = f"{exc.msg} at position {exc.pos}"
        return [ToolCall(f"{id_prefix}_0", m.group(1), {}, raw[:2000], error)]
    return []


def call_schema(tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """A JSON schema that admits exactly one call of one of ``tools``:
    ``{"name": <a tool>, "arguments": <that tool's input schema>}``. A server that
    constrains its output by a schema (llama.cpp's ``response_format``) then cannot produce
    a malformed call, an unknown tool or an argument of the wrong type."""
    return {"anyOf": [
        {"type": "object",
         "properties": {"name": {"const": t.name}, "arguments": t.input_schema},
         "required": ["name", "arguments"], "additionalProperties": False}
        for t in tools]}
