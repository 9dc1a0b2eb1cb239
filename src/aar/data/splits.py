"""Deterministic, group-aware splits: labeled | unlabeled | test_public | test_private."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aar.data.registry import Example, SplitSizes
from aar.errors import AarError

PUBLIC = "test_public"  # feedback during research
PRIVATE = "test_private"  # final ranking and verification; which ids are here is secret
SPLITS = ("labeled", "unlabeled", PUBLIC, PRIVATE)
MIN_PER_SPLIT = 10


@dataclass(frozen=True)
class Splits:
    ids: dict[str, list[str]]  # split name -> ids, in a stable order


def fit_sizes(sizes: SplitSizes, n: int) -> SplitSizes:
    """Scale requested sizes down proportionally when the dataset is smaller."""
    if n >= sizes.total:
        return sizes
    f = n / sizes.total
    labeled, unlabeled = int(sizes.labeled * f), int(sizes.unlabeled * f)
    return SplitSizes(labeled, unlabeled, n - labeled - unlabeled)


def make_splits(examples: list[Example], sizes: SplitSizes, seed: int) -> Splits:
    """Shuffle groups (or single examples) with ``seed`` and fill the splits in order.

    Examples that share a ``group`` always land in the same split. The test part is then
    halved, again by group, into a public half (feedback) and a private half (final ranking).
    """
    sizes = fit_sizes(sizes, len(examples))
    if min(sizes.labeled, sizes.unlabeled, sizes.test // 2) < MIN_PER_SPLIT:
        raise AarError(
            f"{len(examples)} examples are too few to split into labeled/unlabeled/test "
            f"(need at least {MIN_PER_SPLIT} in each); add data or lower the split sizes"
        )
    groups: dict[str, list[str]] = {}
    for ex in examples:
        groups.setdefault(ex.group if ex.group is not None else ex.id, []).append(ex.id)
    rng = np.random.default_rng(seed)
    order = [list(groups)[i] for i in rng.permutation(len(groups))]
    targets = [("labeled", sizes.labeled), ("unlabeled", sizes.unlabeled),
               ("test", sizes.test)]
    out: dict[str, list[str]] = {"labeled": [], "unlabeled": [], "test": []}
    slot = 0
    test_groups: list[str] = []
    for g in order:
        while slot < 2 and len(out[targets[slot][0]]) >= targets[slot][1]:
            slot += 1
        name = targets[slot][0]
        if name == "test" and len(out["test"]) >= sizes.test:
            break
        out[name].extend(groups[g])
        if name == "test":
            test_groups.append(g)
    public: list[str] = []
    private: list[str] = []
    half = len(out["test"]) / 2
    for g in test_groups:
        (public if len(public) < half else private).extend(groups[g])
    result = {"labeled": out["labeled"], "unlabeled": out["unlabeled"],
              "test_public": public, "test_private": private}
    if min(len(v) for v in result.values()) == 0:
        raise AarError("a split came out empty: the dataset has too few groups; add data")
    return Splits(result)
