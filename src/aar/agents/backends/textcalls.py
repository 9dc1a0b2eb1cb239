"""Tool calls written as text, for models whose server returns no structured ``tool_calls``.

Small local models (Qwen2.5-Coder on llama.cpp with its own chat template) answer a
request with tools by *writing* the call: ``<tool_call>{"name": ..., "arguments": ...}
</tool_call>``, a fenced ```json block, or a bare JSON object. :func:`parse_text_calls`
finds every JSON object in the text that has a string ``name``; ``arguments`` (or
``parameters``) may be an object or a JSON string. Text that plainly tries a call but is
not valid JSON gives a call with ``parse_error`` set, so the model is told what was wrong.
Python's ``True``/``False``/``None`` outside strings and Python's triple-quoted strings
(three double quotes; a small model's habits) are read as JSON's ``true``/``false``/``null``
and JSON strings (a call read that way is the reply's last).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .base import ToolCall

MAX_TEXT_CALLS = 4
_NAME = re.compile(r'"name"\s*:\s*"([A-Za-z0-9_\-]+)"')
_decoder = json.JSONDecoder()
_PY_LITERALS = re.compile(r"\b(True|False|None)\b")
_AS_JSON = {"True": "true", "False": "false", "None": "null"}


def _json_literals(text: str, start: int) -> str:
    """``text`` with Python literals outside JSON strings after ``start`` spelled as JSON
    (each has the same length, so positions do not move)."""
    out = [text[:start]]
    for k, part in enumerate(re.split(r'("(?:[^"\\]|\\.)*")', text[start:])):
        out.append(part if k % 2 else _PY_LITERALS.sub(lambda m: _AS_JSON[m.group(1)], part))
    return "".join(out)


_TRIPLE = re.compile(r'"""(.*?)"""', re.S)


def _decode_at(text: str, i: int) -> tuple[Any, int]:
    """The JSON value at ``i`` and where it ends, read leniently (see the module doc)."""
    try:
        return _decoder.raw_decode(text, i)
    except json.JSONDecodeError:
        pass
    try:
        return _decoder.raw_decode(_json_literals(text, i), i)
    except json.JSONDecodeError:
        if '"""' not in text[i:]:
            raise
    tail = _TRIPLE.sub(lambda m: json.dumps(m.group(1)), text[i:])
    obj, _ = _decoder.raw_decode(_json_literals(tail, 0), 0)
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
