"""Packaged causal LMs (joined, verified, converted, sanity-checked), LM encoders, and
pairwise tasks whose features compare two responses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import aar.models.causal_lm as causal_lm
from aar.data.pair_tasks import make_pairs
from aar.data.pairs import is_pairwise, pair_text, split_pair
from aar.data.registry import Example
from aar.errors import AarError
from aar.models.cache import get_features
from aar.models.registry import parse_encoder


def test_pair_text_round_trips_and_other_texts_are_not_pairs() -> None:
    text = pair_text("Which sum is right?", "2 + 2 = 4", "2 + 2 = 5")
    assert split_pair(text) == ("Which sum is right?\n2 + 2 = 4", "Which sum is right?\n2 + 2 = 5")
    assert split_pair(pair_text("", "def f(): return 1", "def f(): return 2")) == (
        "def f(): return 1", "def f(): return 2")
    assert split_pair("a plain review") is None
    assert split_pair("Response A: only one response") is None
    assert is_pairwise([text]) and not is_pairwise([text, "plain"]) and not is_pairwise([])


def _solutions() -> list[Example]:
    rows = []
    for g in range(6):
        for k in range(5):
            label = int(k < 1 + g % 3)  # 1..3 right solutions per problem
            rows.append(Example(f"s{g}-{k}", f"Problem {g}\n\nSolution: answer {g}.{k}", label,
                                group=f"p{g}"))
    rows.append(Example("lonely", "Problem 9\n\nSolution: all right", 1, group="p9"))
    return rows


def _split(text: str) -> tuple[str, str]:
    problem, _, solution = text.partition("\n\nSolution: ")
    return problem, solution


def test_pairs_hold_one_right_and_one_wrong_solution_of_one_problem() -> None:
    sols = _solutions()
    label_of = {s.text.partition("\n\nSolution: ")[2]: s.label for s in sols}
    pairs = make_pairs(sols, "t", _split, per_problem=4)
    assert {p.group for p in pairs} == {f"p{g}" for g in range(6)}  # p9 has no wrong answer
    for g in range(6):  # every solution used, none more often than needed
        right = 1 + g % 3
        assert sum(p.group == f"p{g}" for p in pairs) == min(4, max(right, 5 - right))
    for p in pairs:
        halves = split_pair(p.text)
        assert halves is not None
        first, second = (h.partition("\n")[2] for h in halves)
        assert (label_of[first], label_of[second]) == ((1, 0) if p.label else (0, 1))
        assert p.text.startswith(f"Problem {p.group[1:]}\n")
    assert 0.25 < np.mean([p.label for p in pairs]) < 0.75
    assert len({p.id for p in pairs}) == len(pairs)
    assert make_pairs(sols, "t", lambda t: ("", t)) == make_pairs(sols, "t", lambda t: ("", t))


def test_pairwise_features_are_a_difference_and_flip_with_the_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AAR_FEATURES_DIR", str(tmp_path))  # encoded now, not read back
    a, b = "a warm, funny and moving film", "a dull, lifeless mess"
    ab, ba = pair_text("Review:", a, b), pair_text("Review:", b, a)
    seen: list[int] = []
    feats = get_features("l3", [ab, ba, ab], seen.append, pairwise=True)
    assert sum(seen) == 3  # progress counts pairs, though two halves were encoded
    halves = get_features("l3", [f"Review:\n{a}", f"Review:\n{b}"])
    assert np.allclose(feats[0], halves[0] - halves[1], atol=1e-5)
    assert np.allclose(feats[1], -feats[0]) and np.allclose(feats[2], feats[0])
    with pytest.raises(AarError, match="not a pair"):
        get_features("l3", [ab, "plain text"], pairwise=True)


def test_lm_encoder_references_are_checked() -> None:
    assert parse_encoder("lm:qwen0.5b/12/last").name == "lm:qwen0.5b/12/last"
    for bad, why in [("lm:qwen0.5b/12", "LAYER/POOL"), ("lm:qwen0.5b/x/mean", "LAYER/POOL"),
                     ("lm:gpt9/3/mean", "unknown language model"),
                     ("lm:smollm/31/mean", "blocks 1..30"), ("lm:smollm/3/max", "pooling")]:
        with pytest.raises(AarError, match=why):
            parse_encoder(bad).factory()


def test_joined_parts_are_checked_for_size_and_hash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, data in [("p1", b"abc"), ("p2", b"def")]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "part.bin").write_bytes(data)
    monkeypatch.setattr(causal_lm, "ensure_package", lambda pkg: tmp_path / pkg)
    import hashlib

    good = causal_lm.CausalLMSpec("t", "T", ("p1", "p2"), ("p1/part.bin", "p2/part.bin"),
                                  size=6, sha256=hashlib.sha256(b"abcdef").hexdigest(),
                                  layers=1, dim=1)
    causal_lm._join_parts(good, tmp_path / "joined")
    assert (tmp_path / "joined").read_bytes() == b"abcdef"
    with pytest.raises(AarError, match="6 bytes, expected 7"):
        causal_lm._join_parts(dataclasses.replace(good, size=7), tmp_path / "j2")
    with pytest.raises(AarError, match="sha256"):
        causal_lm._join_parts(dataclasses.replace(good, sha256="0" * 64), tmp_path / "j3")


@pytest.mark.slow
def test_a_model_that_fails_its_sanity_check_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(causal_lm, "continue_text", lambda folder, prompt: " Lyon, of course")
    with pytest.raises(AarError, match="sanity check failed"):
        causal_lm.build_lm(causal_lm.get_lm("smollm"), tmp_path)


@pytest.mark.slow
def test_packaged_qwen_continues_a_known_prompt() -> None:
    folder = causal_lm.lm_folder("qwen0.5b")
    assert "Paris" in causal_lm.continue_text(folder, "The capital of France is")
    assert "a + b" in causal_lm.continue_text(folder, "def add(a, b):\n    return")


@pytest.mark.slow
def test_code_pairs_with_an_lm_strong_model_have_a_real_gap() -> None:
    """The real pipeline at a small size: pairwise features of a 6-block Qwen slice, fixed
    baselines, and a weak/ceiling gap far above what PGR needs (the sentence-encoder
    teacher is near chance on pairs; measured full-size numbers are in the README)."""
    from aar.data.prepare import prepare
    from aar.data.registry import SplitSizes
    from aar.data.splits import PUBLIC
    from aar.w2s import baselines
    from aar.w2s.scoring import Scorer

    strong = "lm:qwen0.5b/6/mean"
    prep = prepare("code-pairs", SplitSizes(60, 200, 140))
    assert prep.workspace.manifest["pairwise"] and prep.vault.meta["pairwise"]
    baselines.ensure(prep, "l3", strong)
    weak_acc, ceiling_acc = Scorer.of(prep, "l3", strong).fixed[PUBLIC]
    assert ceiling_acc - weak_acc >= 0.08, (weak_acc, ceiling_acc)


def test_pair_tasks_bring_their_own_pair_everywhere() -> None:
    """setup, the server, research and verification's held-out re-runs all take a dataset's
    default pair from its spec; a user's choice wins on the dataset it was made for."""
    from aar.data.registry import TESTBED, default_encoders
    from aar.oversight.verify import encoders

    assert {"math-pairs", "code-pairs"} <= set(TESTBED)
    assert default_encoders("code-pairs") == ("l3", "qwen0.5b")
    assert default_encoders("canary:math-pairs") == ("l3", "lm:qwen0.5b/14/last")
    assert default_encoders("sentiment") == ("l3", "mpnet")
    assert default_encoders("sentiment", "minilm") == ("minilm", "mpnet")
    assert encoders("code-pairs") == ("l3", "qwen0.5b")  # a held-out re-run's pair
    assert encoders("synthetic", "l3", "mpnet") == ("syn_weak", "syn_strong")
