"""Pure pieces: metrics, splits, heads, registries."""

from __future__ import annotations

import numpy as np
import pytest

from aar.data.registry import Example, SplitSizes, opaque_id, parse_dataset
from aar.data.splits import make_splits
from aar.errors import AarError
from aar.w2s.heads import fit_logistic
from aar.w2s.metrics import accuracy, auroc, estimate, gap_warning, pgr


def test_pgr_definition_and_guard() -> None:
    assert pgr(0.8, 0.7, 0.9) == pytest.approx(0.5)
    assert pgr(0.7, 0.7, 0.9) == 0.0
    assert pgr(0.9, 0.7, 0.9) == pytest.approx(1.0)
    assert np.isnan(pgr(0.8, 0.8, 0.8))
    assert np.isnan(pgr(0.8, 0.85, 0.8))
    assert "does not beat" in (gap_warning(0.85, 0.8) or "")
    assert "gap too small" in (gap_warning(0.80, 0.84) or "")
    assert gap_warning(0.7, 0.85) is None


def test_auroc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    s, y = rng.random(200), rng.integers(0, 2, 200)
    s[:20] = 0.5  # ties
    pos, neg = s[y == 1], s[y == 0]
    pairwise = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert auroc(s, y) == pytest.approx(pairwise)
    assert auroc(y.astype(float), y) == 1.0
    assert accuracy(np.array([0.2, 0.6, 0.5]), np.array([0, 1, 0])) == pytest.approx(2 / 3)


def test_estimate_ci_covers_mean() -> None:
    e = estimate([0.5, 0.6, 0.7])
    assert e.mean == pytest.approx(0.6)
    assert e.ci == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-5)
    assert np.isnan(estimate([0.4]).ci)
    assert estimate([np.nan, 1.0, 2.0]).n == 2


def _examples(n: int, groups: int | None = None) -> list[Example]:
    return [Example(opaque_id("t", str(i)), f"text {i}", i % 2,
                    None if groups is None else f"g{i % groups}") for i in range(n)]


def test_splits_deterministic_disjoint_and_grouped() -> None:
    ex = _examples(1000, groups=100)
    a = make_splits(ex, SplitSizes(100, 500, 400), seed=3).ids
    b = make_splits(ex, SplitSizes(100, 500, 400), seed=3).ids
    c = make_splits(ex, SplitSizes(100, 500, 400), seed=4).ids
    assert a == b and a != c
    all_ids = [i for v in a.values() for i in v]
    assert len(all_ids) == len(set(all_ids)) == 1000
    group_of = {e.id: e.group for e in ex}
    seen: dict[str, str] = {}
    for split, ids in a.items():
        for i in ids:
            assert seen.setdefault(group_of[i], split) == split


def test_splits_scale_down_and_refuse_tiny() -> None:
    ids = make_splits(_examples(300), SplitSizes(1000, 6000, 5000), seed=0).ids
    assert sum(len(v) for v in ids.values()) == 300
    assert all(len(v) >= 10 for v in ids.values())
    with pytest.raises(AarError, match="too few"):
        make_splits(_examples(30), SplitSizes(1000, 6000, 5000), seed=0)


def test_logistic_head_fits_soft_targets_and_weights() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 5))
    y = (x[:, 0] > 0).astype(float)
    head = fit_logistic(x, y, l2=0.1)
    assert accuracy(head.predict_proba(x), y) > 0.95
    # zero weight on half the data = training on the other half only
    w = (np.arange(400) < 200).astype(float)
    h1 = fit_logistic(x, y, w, l2=0.1)
    h2 = fit_logistic(x[:200], y[:200], l2=0.1, init=None)
    assert accuracy(h1.predict_proba(x[:200]), y[:200]) == accuracy(
        h2.predict_proba(x[:200]), y[:200])
    # soft targets of 0.5 everywhere pull predictions to 0.5
    flat = fit_logistic(x, np.full(400, 0.5), l2=0.1)
    assert np.allclose(flat.predict_proba(x), 0.5, atol=1e-3)
    with pytest.raises(ValueError):
        fit_logistic(x, y, np.zeros(400))


def test_dataset_refs() -> None:
    spec, params = parse_dataset("synthetic:n=500")
    assert spec.name == "synthetic" and params == {"arg": "n=500"}
    with pytest.raises(AarError, match="unknown dataset"):
        parse_dataset("sentimnt")
    with pytest.raises(AarError, match="needs an argument"):
        parse_dataset("jsonl")
    assert opaque_id("code", "HumanEval/0#mut3") == opaque_id("code", "HumanEval/0#mut3")
    assert "mut" not in opaque_id("code", "HumanEval/0#mut3")
