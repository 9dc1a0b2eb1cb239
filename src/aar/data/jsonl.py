"""``jsonl:/path/file.jsonl``: a user's own data, one JSON object per line.

Two formats, detected per file from the first record's keys:

- binary: ``{"id": ..., "question": "...", "choice": "...", "label": 0|1|true|false}``;
  the text is ``question + "\\n" + choice``, e.g. a question and one candidate answer
  that is right (1) or wrong (0).
- preference: ``{"id": ..., "prompt": "...", "first": "...", "second": "...",
  "label": "A"|"B"}``; each pair becomes one binary example with the text
  ``prompt + "\\nResponse A: " + first + "\\nResponse B: " + second`` and label 1 when
  the first response is preferred.

An optional ``"group"`` (string) keeps records together in one split. Ids must be unique;
the dataset's ids are ``opaque_id("jsonl", id)``. Blank lines are skipped. Anything
malformed stops the build with ``FILE:LINE: what is wrong``.

``dedupe`` (used by every built-in dataset) lives here: it removes repeated texts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aar.data.registry import Built, Example, SplitSizes, dataset, opaque_id
from aar.errors import AarError

NAME = "jsonl"
BINARY_KEYS = ("id", "question", "choice", "label")
PREFERENCE_KEYS = ("id", "prompt", "first", "second", "label")
FORMATS = {"binary": BINARY_KEYS, "preference": PREFERENCE_KEYS}
_TRUE = {"1", "true"}
_FALSE = {"0", "false"}


def dedupe(examples: Iterable[Example]) -> list[Example]:
    """Keep the first example of each distinct text; drop texts seen with both labels."""
    examples = list(examples)
    labels: dict[str, set[int]] = {}
    for ex in examples:
        labels.setdefault(ex.text, set()).add(ex.label)
    seen: set[str] = set()
    out = []
    for ex in examples:
        if ex.text in seen or len(labels[ex.text]) > 1:
            continue
        seen.add(ex.text)
        out.append(ex)
    return out


def detect_format(record: Mapping[str, Any]) -> str | None:
    """``"binary"``, ``"preference"`` or None, from which keys a record has."""
    if "question" in record and "choice" in record:
        return "binary"
    if "prompt" in record and "first" in record and "second" in record:
        return "preference"
    return None


def binary_label(value: Any) -> int:
    """0/1, true/false (also as strings) -> 0 or 1; anything else raises ValueError."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    if isinstance(value, float) and value in (0.0, 1.0):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return int(value.strip().lower() in _TRUE)
    raise ValueError(f"label must be 0, 1, true or false, got {value!r}")


def preference_label(value: Any) -> int:
    """"A" -> 1, "B" -> 0; anything else raises ValueError."""
    if isinstance(value, str) and value.strip().upper() in ("A", "B"):
        return int(value.strip().upper() == "A")
    raise ValueError(f'label must be "A" or "B", got {value!r}')


def _text_field(record: Mapping[str, Any], key: str) -> str:
    value = record[key]
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string, got {type(value).__name__}")
    return value.strip()


def record_text_label(record: Mapping[str, Any], fmt: str) -> tuple[str, int]:
    """(text, label) of one record in a reference format; ValueError says what is wrong."""
    missing = [k for k in FORMATS[fmt] if k != "id" and k not in record]
    if missing:
        raise ValueError(
            f"missing key {missing[0]!r} (the {fmt} format needs {', '.join(FORMATS[fmt])})"
        )
    if fmt == "binary":
        text = f"{_text_field(record, 'question')}\n{_text_field(record, 'choice')}"
        return text.strip(), binary_label(record["label"])
    text = (f"{_text_field(record, 'prompt')}\nResponse A: {_text_field(record, 'first')}"
            f"\nResponse B: {_text_field(record, 'second')}")
    return text.strip(), preference_label(record["label"])


def record_id(record: Mapping[str, Any]) -> str:
    value = record.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise ValueError(f"'id' must be a non-empty string or integer, got {value!r}")
    return str(value).strip()


def read_jsonl(path: Path) -> list[Example]:
    """Examples of a jsonl file in file order (see the module docstring)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AarError(
            f"{path}: no such file; pass an existing file: --dataset jsonl:PATH"
        ) from None
    except OSError as e:
        raise AarError(f"{path}: cannot read ({e.strerror or e})") from None
    fmt: str | None = None
    first_line: dict[str, int] = {}
    examples: list[Example] = []
    for lineno, line in enumerate(raw.splitlines(), start=1):
        where = f"{path}:{lineno}"
        try:
            decoded = line.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()
        except UnicodeDecodeError:
            raise AarError(f"{where}: not UTF-8 text; save the file as UTF-8") from None
        if not decoded:
            continue
        try:
            record = json.loads(decoded)
        except json.JSONDecodeError as e:
            raise AarError(
                f"{where}: not valid JSON ({e.msg} at column {e.colno}); "
                "each line must be one JSON object"
            ) from None
        if not isinstance(record, dict):
            raise AarError(f"{where}: expected a JSON object, got {type(record).__name__}")
        if fmt is None:
            fmt = detect_format(record)
            if fmt is None:
                raise AarError(
                    f"{where}: unknown record format (keys: {', '.join(sorted(record)) or '-'}); "
                    f"use {{{', '.join(BINARY_KEYS)}}} or {{{', '.join(PREFERENCE_KEYS)}}}"
                )
        try:
            if "id" not in record:
                raise ValueError(f"missing key 'id' (the {fmt} format needs "
                                 f"{', '.join(FORMATS[fmt])})")
            uid = record_id(record)
            text, label = record_text_label(record, fmt)
            group = record.get("group")
            if group is not None and not isinstance(group, str | int):
                raise ValueError(f"'group' must be a string or integer, got {group!r}")
        except ValueError as e:
            raise AarError(f"{where}: {e}") from None
        if uid in first_line:
            raise AarError(
                f"{where}: duplicate id {uid!r} (first on line {first_line[uid]}); "
                "ids must be unique"
            )
        first_line[uid] = lineno
        examples.append(Example(opaque_id(NAME, uid), text, label,
                                None if group is None else str(group)))
    if not examples:
        raise AarError(f"{path}: no records; write one JSON object per line")
    return dedupe(examples)


@dataset(
    NAME,
    description="your own data: jsonl:/path/file.jsonl with {id,question,choice,label} "
    "or {id,prompt,first,second,label: A|B} records",
    sizes=SplitSizes(500, 2000, 1000),
    version="1",
    takes_arg=True,
)
def build(params: Mapping[str, str]) -> Built:
    return Built(read_jsonl(Path(params["arg"]).expanduser()))
