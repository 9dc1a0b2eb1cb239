"""``jsonl:/path/file.jsonl``: a user's own data, one JSON object per line.

Two formats, detected per file from the first record's keys; they are also the formats of
the reference sandbox ("automated weak-to-strong research"), whose chat, math and code
files (``labeled_data/<task>/{train_label,train_unlabel,test}.jsonl``) import unchanged:

- binary: ``{"id": ..., "question": "...", "choice": "...", "label": 0|1|true|false}``;
  the text is ``question + "\\n" + choice``, e.g. a question and one candidate answer
  that is right (1) or wrong (0). The reference's math and code files.
- preference: ``{"id": ..., "prompt": "...", "first": "...", "second": "...",
  "label": "A"|"B"}``; each pair becomes one binary example with the text
  ``prompt + "\\nResponse A: " + first + "\\nResponse B: " + second`` and label 1 when
  the first response is preferred. The label may also be ``"first"``/``"second"`` or, as
  the reference writes it, the preferred response's index ``0``/``1`` (0: the first).
  The reference's chat files.

``id`` is optional: when a file's first record has none, every record of that file is
named by its line (the reference's files have no ids); otherwise every record needs a
unique one. The dataset's ids are ``opaque_id("jsonl", id)``. An optional ``"group"``
(string or integer), else the reference's ``"consistency_id"``, keeps records together in
one split. Other keys (the reference's ``subset``, ``difficulty``, ``answer``…) are ignored.
``jsonl:/folder`` reads every ``*.jsonl`` file in the folder, in name order. Blank lines
are skipped. Anything malformed, and a record without a label (the reference's ``data/``
copies have their labels stripped), stops the build with ``FILE:LINE: what is wrong``.

``dedupe`` (used by every built-in dataset) lives here: it removes repeated texts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aar.data.pairs import pair_text
from aar.data.registry import Built, Example, SplitSizes, dataset, opaque_id
from aar.errors import AarError

NAME = "jsonl"
BINARY_KEYS = ("id", "question", "choice", "label")
PREFERENCE_KEYS = ("id", "prompt", "first", "second", "label")
FORMATS = {"binary": BINARY_KEYS, "preference": PREFERENCE_KEYS}
GROUP_KEYS = ("group", "consistency_id")
_TRUE = {"1", "true"}
_FALSE = {"0", "false"}
_FIRST = {"a", "first", "0"}
_SECOND = {"b", "second", "1"}


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
    """1 when the first response is preferred: "A", "first" or index 0; 0 for "B",
    "second" or index 1; anything else raises ValueError."""
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return 1 - value
    if isinstance(value, str) and value.strip().lower() in _FIRST | _SECOND:
        return int(value.strip().lower() in _FIRST)
    raise ValueError(
        f'label must be "A" or "B" ("first"/"second", or the preferred response\'s index '
        f"0/1, also work), got {value!r}"
    )


def is_unlabelled(record: Mapping[str, Any]) -> bool:
    """No label, or the reference's placeholder for one (``null``, ``-1``)."""
    value = record.get("label")
    return value is None or (not isinstance(value, bool) and value == -1)


def _text_field(record: Mapping[str, Any], key: str) -> str:
    value = record[key]
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string, got {type(value).__name__}")
    return value.strip()




def record_text_label(record: Mapping[str, Any], fmt: str) -> tuple[str, int]:
    """(text, label) of one record in a reference format; ValueError says what is wrong."""
    missing = [k for k in FORMATS[fmt] if k not in ("id", "label") and k not in record]
    if missing:
        raise ValueError(
            f"missing key {missing[0]!r} (the {fmt} format needs {', '.join(FORMATS[fmt])})"
        )
    if is_unlabelled(record):
        raise ValueError(
            "no label (missing, null or -1): every record needs one; from the reference "
            "sandbox use its labeled_data/ files, not the label-stripped data/ copies"
        )
    if fmt == "binary":
        text = f"{_text_field(record, 'question')}\n{_text_field(record, 'choice')}"
        return text.strip(), binary_label(record["label"])
    text = pair_text(_text_field(record, "prompt"), _text_field(record, "first"),
                           _text_field(record, "second"))
    return text, preference_label(record["label"])


def record_id(record: Mapping[str, Any]) -> str:
    value = record.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise ValueError(f"'id' must be a non-empty string or integer, got {value!r}")
    return str(value).strip()


def record_group(record: Mapping[str, Any]) -> str | None:
    for key in GROUP_KEYS:
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"{key!r} must be a string or integer, got {value!r}")
        return str(value)
    return None


def _read_file(path: Path, line_key: str, seen: dict[str, str]) -> list[Example]:
    """Examples of one file; ``seen`` maps ids met so far (any file) to where they were."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AarError(
            f"{path}: no such file; pass an existing file or folder: --dataset jsonl:PATH"
        ) from None
    except OSError as e:
        raise AarError(f"{path}: cannot read ({e.strerror or e})") from None
    fmt: str | None = None
    with_ids = True
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
            with_ids = "id" in record
        try:
            if with_ids and "id" not in record:
                raise ValueError(f"missing key 'id' (the {fmt} format needs "
                                 f"{', '.join(FORMATS[fmt])}; ids may be left out only "
                                 "from every record of a file)")
            if not with_ids and "id" in record:
                raise ValueError("'id' on some records only: the file's first record has "
                                 "none, so records are named by their line; give every "
                                 "record an id or none")
            uid = record_id(record) if with_ids else f"{line_key}:{lineno}"
            text, label = record_text_label(record, fmt)
            group = record_group(record)
        except ValueError as e:
            raise AarError(f"{where}: {e}") from None
        if uid in seen:
            raise AarError(f"{where}: duplicate id {uid!r} (first at {seen[uid]}); "
                           "ids must be unique")
        seen[uid] = where
        examples.append(Example(opaque_id(NAME, uid), text, label, group))
    if not examples:
        raise AarError(f"{path}: no records; write one JSON object per line")
    return examples


def read_jsonl(path: Path) -> list[Example]:
    """Examples of a jsonl file, or of every ``*.jsonl`` file in a folder, in file order
    (see the module docstring)."""
    seen: dict[str, str] = {}
    if not path.is_dir():
        return dedupe(_read_file(path, "line", seen))
    files = sorted(p for p in path.iterdir() if p.suffix == ".jsonl" and p.is_file())
    if not files:
        raise AarError(f"{path}: no .jsonl files in this folder; pass a file or a folder "
                       "of .jsonl files: --dataset jsonl:PATH")
    examples: list[Example] = []
    for file in files:
        examples.extend(_read_file(file, file.name, seen))
    return dedupe(examples)


@dataset(
    NAME,
    description="your own data: jsonl:/path/file.jsonl (or a folder of them) with "
    "{id,question,choice,label} or {id,prompt,first,second,label: A|B} records; the "
    "reference sandbox's chat/math/code files import unchanged",
    sizes=SplitSizes(500, 2000, 1000),
    version="1",
    takes_arg=True,
)
def build(params: Mapping[str, str]) -> Built:
    return Built(read_jsonl(Path(params["arg"]).expanduser()))
