"""The built-in W2S method library: every method runs, is label-free and deterministic, and
shows its mechanism on a synthetic testbed in the setting it targets.

Each mechanism test is a paired comparison over 5 seeds (same weak labels, same splits) of
mean public PGR, method vs ``vanilla``, with a margin the mechanism has to clear.

Two testbeds. ``synthetic`` (the built-in one) has an isotropic latent space: whatever a
student learns from weak labels is a linear function of it, so only label-noise and
variance mechanisms (reweighting, ensembling, not memorising) can show there.
``w2s_clusters`` (registered below) adds the one thing real encoders have and ``synthetic``
lacks: the label is a *cluster* in the strong space (the latent coordinate along the label
direction is bimodal, ``margin`` apart). Mechanisms that use the strong space's geometry
(neighbour smoothing, coherence search, self-training toward low-density boundaries) need it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aar.data.registry import Built, Example, SplitSizes, dataset, opaque_id
from aar.experiments.runner import RunConfig, run
from aar.methods import METHODS
from aar.methods import blocks as B
from aar.util import stable_hash
from aar.w2s.context import MethodContext
from aar.w2s.heads import fit_logistic

SEEDS = (0, 1, 2, 3, 4)


@pytest.fixture(scope="module")
def methods_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("methods-home")


@pytest.fixture(autouse=True)
def one_home(aar_home: Path, methods_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One AAR_HOME for every test here: each dataset is prepared once, with one vault
    secret, so the memoised runs two tests compare share their weak labels (the weak
    teacher's folds come from the secret; a run memoised in another test's home was
    paired with a different teacher)."""
    monkeypatch.setenv("AAR_HOME", str(methods_home))
CLUSTER_DEFAULTS: dict[str, float] = {
    "n": 3000, "dim": 16, "margin": 1.0, "systematic": 0.3, "noise": 1.0,
    "label_noise": 0.05, "weak_dim": 32, "strong_dim": 64, "seed": 0,
}


def cluster_data(p: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``synthetic``'s generator with a bimodal label coordinate (clusters ``margin`` apart)."""
    rng = np.random.default_rng(int(p["seed"]))
    n, d = int(p["n"]), int(p["dim"])
    z = rng.standard_normal((n, d))
    u, v = np.linalg.qr(rng.standard_normal((d, 2)))[0].T
    z += np.outer(p["margin"] * np.where(rng.random(n) < 0.5, 1.0, -1.0), u)
    labels = (z @ u + p["label_noise"] * rng.standard_normal(n) > 0).astype(int)
    s = p["systematic"]
    zu = z @ u
    z_weak = z + np.outer((1 - s) * zu + s * (1 + p["margin"]) * (z @ v) - zu, u)
    weak = z_weak @ rng.standard_normal((d, int(p["weak_dim"])))
    weak += p["noise"] * np.sqrt(d) * rng.standard_normal(weak.shape)
    strong = z @ rng.standard_normal((d, int(p["strong_dim"])))
    strong += 0.1 * np.sqrt(d) * rng.standard_normal(strong.shape)
    return labels, weak.astype(np.float32), strong.astype(np.float32)


@dataset("w2s_clusters", description="test testbed: synthetic with label clusters",
         sizes=SplitSizes(300, 1500, 1200), optional_arg=True)
def _clusters(params: Mapping[str, str]) -> Built:
    p = dict(CLUSTER_DEFAULTS)
    for part in filter(None, params.get("arg", "").split(",")):
        key, _, value = part.partition("=")
        p[key] = float(value)
    labels, weak, strong = cluster_data(p)
    tag = stable_hash(p, 8)
    return Built([Example(opaque_id("w2s_clusters", f"{tag}/{i}"), f"clusters {tag} {i}", int(y))
                  for i, y in enumerate(labels)], {"syn_weak": weak, "syn_strong": strong})


# Settings, each the one a group of mechanisms targets.
NOISE = "w2s_clusters:systematic=0,noise=1.5"  # random weak errors, at low confidence
MIXED = "w2s_clusters:systematic=0.3,noise=1"  # confident structured errors + noise
ISOTROPIC = "synthetic:systematic=0,noise=1"  # no geometry to exploit
FLEXIBLE = "synthetic:n=1600,systematic=0,noise=1,strong_dim=1024"  # student can memorise

_memo: dict[tuple[str, str, str], dict[str, Any]] = {}


def summary(method: str, data: str, **params: Any) -> dict[str, Any]:
    """Public-split summary of a 5-seed run (memoised across tests: runs are deterministic)."""
    key = (method, data, repr(sorted(params.items())))
    if key not in _memo:
        rec = run(RunConfig(method, data, "syn_weak", "syn_strong", SEEDS, params))
        _memo[key] = {"pgr": rec["summary"]["test_public"]["pgr"]["mean"],
                      "acc": rec["summary"]["test_public"]["accuracy"]["mean"],
                      "per_seed": [s["scores"]["test_public"]["pgr"] for s in rec["seeds"]],
                      "accs": [s["scores"]["test_public"]["accuracy"] for s in rec["seeds"]],
                      "predictions": [s["predictions"] for s in rec["seeds"]]}
    return _memo[key]


# A student that fits its weak labels closely: the ridge penalty the first baselines used,
# far below what cross-validation picks. Label-noise mechanisms (soft targets, filtering,
# reweighting, products of experts, early stopping) are shown against it; against the
# tuned ``vanilla`` most of their synthetic-testbed gain vanishes (measured: -0.014 to
# +0.021 PGR on NOISE), because a well-regularised head already ignores random weak errors.
MEMORISING = {"l2": 1.0}


def gain(method: str, data: str, base: str = "vanilla", base_params: dict[str, Any] | None = None,
         **params: Any) -> float:
    """Mean paired PGR gain of ``method`` over ``base`` on ``data``."""
    a = summary(method, data, **params)["per_seed"]
    b = summary(base, data, **(base_params or {}))["per_seed"]
    return float(np.mean(np.subtract(a, b)))


# -- the library as a whole ----------------------------------------------------------------

REQUIRED = {"vanilla", "vanilla_soft", "confident", "logconf", "early_stop", "self_train",
            "knn_relabel", "reweight", "ue", "ue_w2s", "product"}


def test_every_required_method_is_registered_and_documented() -> None:
    names = set(METHODS.names())
    assert names >= REQUIRED
    for name in REQUIRED:
        spec = METHODS.get(name)
        assert spec.description, name
        doc = spec.fn.__doc__ or ""
        for hyper in spec.defaults:  # every hyperparameter is explained in the docstring
            assert f"{hyper}" in doc, (name, hyper)
        assert all(isinstance(v, bool | int | float | str | None)
                   for v in spec.defaults.values())


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_method_runs_and_is_deterministic(name: str) -> None:
    data = "synthetic:n=1200"
    a = run(RunConfig(name, data, "syn_weak", "syn_strong", (1,)))
    b = run(RunConfig(name, data, "syn_weak", "syn_strong", (1,)))
    assert [s["predictions"] for s in a["seeds"]] == [s["predictions"] for s in b["seeds"]]
    p = np.asarray(a["seeds"][0]["predictions"])
    assert 0.05 < np.mean(p >= 0.5) < 0.95  # no collapse onto one class


# -- mechanisms ----------------------------------------------------------------------------


def test_vanilla_soft_keeps_the_teachers_uncertainty() -> None:
    # Soft targets: where the teacher is unsure the student is pulled little, so random,
    # low-confidence errors cost less than with hard labels.
    assert gain("vanilla_soft", NOISE, base_params=MEMORISING) > 0.02


def test_confident_filtering_beats_vanilla_on_random_low_confidence_errors() -> None:
    assert gain("confident", NOISE, base_params=MEMORISING) > 0.025


def test_reweight_beats_vanilla_on_random_low_confidence_errors() -> None:
    assert gain("reweight", NOISE, base_params=MEMORISING) > 0.027
    # each factor alone helps; together at least as much as the better one, nearly
    assert gain("reweight", NOISE, base_params=MEMORISING, delta=0.0) > 0.025


def test_knn_relabel_uses_strong_space_geometry() -> None:
    assert gain("knn_relabel", MIXED) > 0.15
    # the mechanism needs geometry: where the strong space has none it cannot help much
    assert gain("knn_relabel", ISOTROPIC) < 0.05


def test_self_train_moves_toward_the_students_own_view() -> None:
    assert gain("self_train", NOISE) > 0.02


def test_product_of_experts_beats_vanilla_on_random_errors() -> None:
    # measured: +0.064 on the development machine (the same for l2 from 3 to 316), +0.028 on
    # one CI machine; the margin is the mechanism's, not one machine's rounding
    assert gain("product", NOISE, base_params=MEMORISING) > 0.02


def test_logconf_and_early_stop_beat_vanilla_when_the_student_can_memorise() -> None:
    # 800 unlabeled examples, 1024-d strong features: a lightly penalised head memorises
    # the weak errors; a gradient-descent student that stops early, or trusts its own confident
    # view, does not.
    assert gain("logconf", FLEXIBLE, base_params=MEMORISING) > 0.04
    assert gain("early_stop", FLEXIBLE, base_params=MEMORISING) > 0.07


def test_logconf_confidence_loss_beats_the_same_student_without_it() -> None:
    mlp = {"hidden": 64, "epochs": 30}
    assert gain("logconf", FLEXIBLE, "logconf", {**mlp, "alpha": 0.0}, **mlp) > 0.03


def test_early_stop_beats_the_same_student_trained_to_the_end() -> None:
    mlp = {"hidden": 64, "epochs": 40}
    assert gain("early_stop", FLEXIBLE, "early_stop", {**mlp, "val_frac": 0.0}, **mlp) > 0.03


def test_ue_beats_chance_with_no_weak_labels() -> None:
    # sign="none": nothing from the weak teacher; the labelling is right up to its sign
    s = summary("ue", MIXED, sign="none")
    accs = [np.mean(np.asarray(p) >= 0.5) for p in s["predictions"]]
    assert all(0.3 < a < 0.7 for a in accs)  # balanced, not one class
    assert min(abs(a - 0.5) for a in s["accs"]) > 0.3  # far from chance, whatever the sign
    # with one bit from the weak labels (the sign) it beats vanilla outright
    assert gain("ue", MIXED) > 0.15


def test_ue_search_ignores_the_weak_labels() -> None:
    from aar.methods.ue import ue

    ctx = _context(MIXED)
    base = ue(ctx, sign="none").predict_proba(ctx.unlabeled.strong_features)
    scrambled = _context(MIXED)
    scrambled.unlabeled = replace(scrambled.unlabeled,
                                  weak_soft=np.full(len(scrambled.unlabeled), 0.5))
    again = ue(scrambled, sign="none").predict_proba(ctx.unlabeled.strong_features)
    assert np.array_equal(again, base)


def test_ue_w2s_combines_coherence_with_the_weak_channel() -> None:
    assert gain("ue_w2s", NOISE, base_params=MEMORISING) > 0.04
    # Where the strong space holds no label structure it falls back to the weak labels, on
    # average: on one draw of ISOTROPIC its search picks among near-equal labellings, so one
    # draw is no test (measured on draws 0-8: -0.053 to +0.023 each, mean -0.007). Both
    # methods ignore the seed here (the synthetic weak teacher is fixed), so one seed each.
    def pgr(method: str, data: str) -> float:
        rec = run(RunConfig(method, data, "syn_weak", "syn_strong", (0,)))
        return rec["seeds"][0]["scores"]["test_public"]["pgr"]

    draws = [f"{ISOTROPIC},seed={k}" for k in range(5)]
    gains = [pgr("ue_w2s", d) - pgr("vanilla", d) for d in draws]
    assert np.mean(gains) > -0.02, gains


# -- building blocks -----------------------------------------------------------------------


def test_prior_hard_keeps_the_class_balance_after_shrinkage() -> None:
    rng = np.random.default_rng(0)
    soft = np.clip(rng.normal(0.3, 0.2, 1000), 0, 1)
    shrunk = 0.2 * soft + 0.8 * soft.mean()  # smoothing pulls every score to the mean
    assert np.mean(shrunk >= 0.5) == 0.0  # a 0.5 threshold collapses onto one class
    hard = B.prior_hard(shrunk, B.estimate_prior(soft))
    assert abs(hard.mean() - soft.mean()) < 0.01


def test_balanced_argmax_matches_a_multiclass_prior() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([5, 1, 1], 3000)  # argmax is almost always class 0
    labels = B.balanced_argmax(probs, np.array([0.5, 0.3, 0.2]))
    freq = np.bincount(labels, minlength=3) / len(labels)
    assert np.allclose(freq, [0.5, 0.3, 0.2], atol=0.03)


def test_confident_mask_keeps_each_class() -> None:
    soft = np.r_[np.linspace(0.5, 1.0, 900), np.linspace(0.3, 0.5, 100, endpoint=False)]
    mask = B.confident_mask(soft, 0.5)
    assert mask[soft < 0.5].sum() == 50 and mask[soft >= 0.5].sum() == 450


def test_knn_graph_finds_true_neighbours() -> None:
    x = np.repeat(np.eye(4), 5, axis=0) + 0.01 * np.random.default_rng(0).normal(size=(20, 4))
    idx, _ = B.knn_graph(x, 4)
    assert np.all(idx // 5 == np.arange(20)[:, None] // 5)


def test_cross_fit_predicts_out_of_fold() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 500))
    y = rng.integers(0, 2, 400).astype(float)  # pure noise: memorisable, not predictable
    in_sample = fit_logistic(x, y).predict_proba(x)
    oof = B.cross_fit(x, y, rng=np.random.default_rng(1))
    assert np.mean((in_sample >= 0.5) == y) > 0.95
    assert abs(np.mean((oof >= 0.5) == y) - 0.5) < 0.1


def test_noisy_channel_learns_that_unsure_weak_labels_are_unreliable() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    conf = rng.uniform(0, 0.5, 4000)
    right = rng.random(4000) < 0.5 + conf  # errors concentrated at low confidence
    weak = np.where(right == (y == 1), 0.5 + conf, 0.5 - conf)
    prior = np.clip(np.where(y == 1, 0.6, 0.4) + rng.normal(0, 0.15, 4000), 0.05, 0.95)
    post, like = B.noisy_channel_posterior(prior, weak)
    ratio = like[1] / like[0]
    assert ratio[-1] > 5 and ratio[0] < 0.2 and 0.5 < ratio[len(ratio) // 2] < 2
    acc = lambda p: np.mean((p >= 0.5) == y)  # noqa: E731
    assert acc(post) > max(acc(weak), acc(prior)) + 0.02


def _context(data: str) -> MethodContext:
    from aar.data.prepare import prepare
    from aar.w2s import baselines
    from aar.w2s.context import build_context

    prep = prepare(data)
    baselines.student_l2(prep, "syn_weak", "syn_strong")
    return build_context(prep.workspace, "syn_weak", "syn_strong", 0)
