"""``hf:owner/name[@config][#split]``: a binary classification set from the Hugging Face hub.

For users who are online and have the ``datasets`` library (``pip install datasets``);
the testbed itself never needs it. ``owner/name`` may also be a local folder of data files
(``hf:/data/my-set``), which ``datasets.load_dataset`` reads offline. Without ``#split``
the ``train`` split is used, or the only split there is.

Columns: records in one of the ``jsonl`` reference formats (``question``/``choice``/``label``
or ``prompt``/``first``/``second``/``label``) are converted the same way as there; their
rows without a label (missing or ``-1``) are dropped. For HelpSteer2/3, RewardBench 2 and
RM-Bench use the dedicated datasets (``aar.data.preference_hub``).
Otherwise the text column is the first of ``text, sentence, content, review, document,
question, input, prompt`` that holds strings (else the string column with the longest
texts), and the label column is the first of ``label, labels, target, y, class, answer``
(else any other column) that takes exactly two values. Labels 0/1 and booleans are kept;
two other values are ordered with the positive-sounding one (``positive``, ``pos``,
``true``, ``yes``, ``correct``, ``entailment``) as 1, else by sort order. Rows whose label
is negative (``-1``: unlabelled test rows) or missing are dropped. Ids come from an
``id``/``idx`` column when it is unique, else from the row number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from aar.data.jsonl import (
    dedupe,
    detect_format,
    is_unlabelled,
    record_group,
    record_text_label,
)
from aar.data.registry import Built, Example, SplitSizes, dataset, opaque_id
from aar.errors import AarError

NAME = "hf"
TEXT_COLUMNS = ("text", "sentence", "content", "review", "document", "question", "input",
                "prompt")
LABEL_COLUMNS = ("label", "labels", "target", "y", "class", "answer")
ID_COLUMNS = ("id", "idx", "uid", "guid")
POSITIVE = {"positive", "pos", "true", "yes", "correct", "entailment", "good", "1"}
_REF = re.compile(r"^(?P<path>[^@#]+)(?:@(?P<config>[^#]+))?(?:#(?P<split>.+))?$")


def parse_ref(arg: str) -> tuple[str, str | None, str | None]:
    """``owner/name@config#split`` -> (path, config, split)."""
    m = _REF.match(arg.strip())
    if not m:
        raise AarError(f"bad hf dataset {arg!r}: use hf:owner/name[@config][#split]")
    return m["path"].strip(), m["config"], m["split"]


def _load(path: str, config: str | None, split: str | None) -> tuple[Any, str]:
    try:
        import datasets
    except ImportError:
        raise AarError(
            "hf datasets need the `datasets` library: pip install datasets (or aar[hf])"
        ) from None
    try:
        loaded = datasets.load_dataset(path, config, split=split)
    except Exception as e:  # the library raises many kinds; the user needs one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise AarError(
            f"could not load hf dataset {path!r}"
            f"{f' (config {config!r})' if config else ''}"
            f"{f' (split {split!r})' if split else ''}: {first}"
        ) from None
    if split is not None:
        return loaded, split
    names = list(loaded)
    if "train" in names:
        return loaded["train"], "train"
    if len(names) == 1:
        return loaded[names[0]], names[0]
    raise AarError(
        f"hf dataset {path!r} has splits {', '.join(names)}; pick one: hf:{path}#SPLIT"
    )


def _is_text(values: Sequence[Any]) -> bool:
    return bool(values) and all(isinstance(v, str) for v in values if v is not None)


def pick_text_column(columns: Mapping[str, Sequence[Any]], exclude: str | None) -> str | None:
    for name in TEXT_COLUMNS:
        if name in columns and name != exclude and _is_text(columns[name]):
            return name
    texts = [c for c, v in columns.items() if c != exclude and _is_text(v)]
    if not texts:
        return None
    return max(texts, key=lambda c: sum(len(v or "") for v in columns[c]))


def _label_values(values: Sequence[Any]) -> set[Any]:
    out = set()
    for v in values:
        if v is None or (isinstance(v, int | float) and not isinstance(v, bool) and v < 0):
            continue  # unlabelled rows
        if not isinstance(v, str | int | bool | float):
            return set()  # lists, dicts: not a label
        out.add(v)
    return out


def pick_label_column(columns: Mapping[str, Sequence[Any]], text: str | None) -> str | None:
    """The first two-valued column, named ones (``label``…) first; never ``text``."""
    order = [c for c in LABEL_COLUMNS if c in columns]
    order += [c for c in columns if c not in order and c not in ID_COLUMNS]
    for name in order:
        if name != text and len(_label_values(columns[name])) == 2:
            return name
    return None


def label_mapping(values: set[Any]) -> dict[Any, int]:
    """Two label values -> {value: 0 or 1} (see the module docstring)."""
    if all(isinstance(v, bool) for v in values) or values == {0, 1}:
        return {v: int(v) for v in values}
    positive = [v for v in values if str(v).strip().lower() in POSITIVE]
    if len(positive) == 1:
        return {v: int(v == positive[0]) for v in values}
    low, high = sorted(values, key=lambda v: (str(type(v)), v))
    return {low: 0, high: 1}


def examples_from_columns(columns: Mapping[str, Sequence[Any]], source: str) -> list[Example]:
    """Binary examples from column-wise data (``{column: values}``) of one split."""
    n = len(next(iter(columns.values()), []))
    ids: Sequence[Any] = range(n)
    for c in ID_COLUMNS:
        if c in columns and len({str(v) for v in columns[c]}) == n:
            ids = columns[c]
            break
    first = {c: v[0] for c, v in columns.items()} if n else {}
    fmt = detect_format(first) if n else None
    examples: list[Example] = []
    if fmt is not None:
        for i in range(n):
            record = {c: v[i] for c, v in columns.items()}
            if is_unlabelled(record):
                continue
            try:
                text, label = record_text_label(record, fmt)
                group = record_group(record)
            except ValueError as e:
                raise AarError(f"{source}, row {i}: {e}") from None
            examples.append(Example(opaque_id(NAME, f"{source}/{ids[i]}"), text, label, group))
        return dedupe(examples)
    # A conventionally named label column wins; then the text column; then any label.
    named = next((c for c in LABEL_COLUMNS
                  if c in columns and len(_label_values(columns[c])) == 2), None)
    text_col = pick_text_column(columns, named)
    label_col = named or pick_label_column(columns, text_col)
    if text_col is None or label_col is None:
        raise AarError(
            f"{source}: found no text column and binary label column among "
            f"{', '.join(columns) or 'no columns'}; rename them to 'text' and 'label' or use "
            "--dataset jsonl:FILE"
        )
    mapping = label_mapping(_label_values(columns[label_col]))
    for i, (text, value) in enumerate(zip(columns[text_col], columns[label_col], strict=True)):
        if value not in mapping or not isinstance(text, str) or not text.strip():
            continue
        examples.append(
            Example(opaque_id(NAME, f"{source}/{ids[i]}"), text.strip(), mapping[value])
        )
    return dedupe(examples)


@dataset(
    NAME,
    description="a binary set from the Hugging Face hub: hf:owner/name[@config][#split] "
    "(needs `pip install datasets` and network)",
    sizes=SplitSizes(1000, 6000, 4000),
    version="1",
    takes_arg=True,
)
def build(params: Mapping[str, str]) -> Built:
    path, config, split = parse_ref(params["arg"])
    data, split_name = _load(path, config, split)
    source = f"{path}@{config or ''}#{split_name}"
    examples = examples_from_columns(data.to_dict(), source)
    if not examples:
        raise AarError(f"hf dataset {source}: no labelled rows")
    return Built(examples)
