"""The built-in researcher's genome on the fit/predict contract: rendered modules return a
predictor that the harness applies to the test split (and that applies to examples it
never saw), declare ``transductive`` exactly when they read test inputs, and run in the
sandbox. Also the fitted PCA block and the researcher's seed, diagnostics and
transductive-declaration helpers."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aar.data.store import Workspace
from aar.errors import AarError
from aar.methods import MethodSpec, load_method_file, resolve_method
from aar.methods.blocks import estimate_prior, fit_pca, principal_components, prior_hard
from aar.research import genome as G
from aar.research.context import check_seeds, declared_transductive, diagnostics
from aar.research.directions import load_directions
from aar.research.orchestrator import prepare_dataset
from aar.w2s.context import Examples, as_predictor, build_context, examples_of, fit_predict
from aar.w2s.heads import fit_logistic

DATASET, WEAK, STRONG = "synthetic", "syn_weak", "syn_strong"


@pytest.fixture
def ws() -> Workspace:
    return Workspace(prepare_dataset(DATASET, WEAK, STRONG))


def _spec(tmp_path: Path, name: str, g: G.Genome) -> MethodSpec:
    path = tmp_path / f"{name}.py"
    path.write_text(G.render(name, g, dataset=DATASET))
    return resolve_method(f"{path}:{name}")


def _subset(ex: Examples, idx: np.ndarray) -> Examples:
    return Examples([ex.ids[i] for i in idx], [ex.texts[i] for i in idx],
                    ex.weak_features[idx], ex.strong_features[idx], ex.weak_soft[idx])


# -- the fitted projection -----------------------------------------------------------------


def test_fit_pca_applies_to_unseen_rows_and_matches_principal_components() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 24)) + rng.normal(size=(1, 24))
    proj = fit_pca(x[:300], 6)
    assert proj.dims == 6
    # principal_components is the projection fitted on x, applied to x
    assert np.array_equal(principal_components(x, 6), fit_pca(x, 6)(x))
    z_fit = proj(x[:300])
    assert np.allclose(z_fit.std(axis=0), 1.0) and np.allclose(z_fit.mean(axis=0), 0, atol=1e-9)
    # row-wise: unseen rows get the scores they have inside a larger batch, in any order
    order = rng.permutation(100)
    assert np.allclose(proj(x[300:][order]), proj(x)[300:][order])
    assert not np.allclose(proj(x[300:]), fit_pca(x[300:], 6)(x[300:]))  # not refitted
    with pytest.raises(ValueError, match="24-dimensional"):
        proj(x[:, :10])
    with pytest.raises(ValueError, match="at least one"):
        fit_pca(x, 0)


# -- genes, directions ---------------------------------------------------------------------


def test_genome_has_no_teacher_bag_and_every_direction_has_a_start() -> None:
    assert "teacher" not in G.GENES and "seeds" not in G.FAMILIES
    assert set(G.FAMILY_START) == set(G.FAMILIES) and set(G.FAMILY_OF) == set(G.GENES)
    # an old genome (teacher bag, absolute l2) normalises onto the new genes
    old = G.normalize({"teacher": "mean", "l2": 3.0, "k": 50, "l2_scale": 1})
    assert set(old) == set(G.GENES) and old["k"] == 50
    assert old["l2_scale"] == 1.0 and isinstance(old["l2_scale"], float)
    for d in load_directions():
        assert d.families and set(d.families) <= set(G.FAMILIES), d.slug
        starts = G.start_genomes(d.families)
        assert starts and all(G.key(s) != G.key(G.BASE) for s in starts), d.slug
        text = d.text.lower()  # no bag of teachers to offer any more
        assert not any(w in text for w in ("teachers'", "teacher seeds", "seed-averaged",
                                           "ensembles of the weak")), d.slug


def test_l2_scale_is_relative_to_the_cross_validated_default(tmp_path: Path) -> None:
    src = G.render("scaled", {**G.BASE, "l2_scale": 3.0})
    assert "l2 = l2_scale * ctx.default_l2" in src and "l2_scale: float = 3.0" in src
    assert "cross-validated l2" in G.describe(G.BASE)
    assert "3x cross-validated" in G.describe({**G.BASE, "l2_scale": 3.0})


# -- rendered modules on the contract -------------------------------------------------------


def _expected(ctx_x_u: np.ndarray, weak_u: np.ndarray, x_t: np.ndarray, weak_t: np.ndarray,
              *, transductive: bool, dims: int, l2: float) -> np.ndarray:
    """The PCA genome's fit written out by hand: project (fitted on what the method may
    read), prior-matched hard weak labels, a head at the default penalty, applied to the
    test split's projection."""
    fit_on = np.concatenate([ctx_x_u, x_t]) if transductive else ctx_x_u
    proj = fit_pca(fit_on, dims)
    x = np.concatenate([proj(ctx_x_u), proj(x_t)]) if transductive else proj(ctx_x_u)
    weak = np.concatenate([weak_u, weak_t]) if transductive else weak_u
    labels = prior_hard(weak, estimate_prior(weak_u)).astype(np.float64)
    head = fit_logistic(x, labels, np.ones(len(labels)), l2=l2, max_iter=200)
    return head.predict_proba(proj(x_t))


@pytest.mark.parametrize("transductive", [True, False])
def test_rendered_pca_genome_returns_a_predictor_the_harness_applies(
        ws: Workspace, tmp_path: Path, transductive: bool) -> None:
    name = f"pca_{'trans' if transductive else 'ind'}"
    g = {**G.BASE, "dims": 32, "transductive": transductive}
    spec = _spec(tmp_path, name, g)
    src = spec.source_file.read_text()
    assert spec.transductive is transductive
    assert (f'@method("{name}", transductive=True)' in src) is transductive
    assert declared_transductive(spec.source_file) is transductive
    ex = examples_of(ws, WEAK, STRONG)
    harness = fit_predict(spec, ws, WEAK, STRONG, 3, {}, ex)
    ctx = build_context(ws, WEAK, STRONG, 3, transductive=transductive, method_name=name,
                        examples=ex)
    expected = _expected(ex["unlabeled"].strong_features, ex["unlabeled"].weak_soft,
                         ex["test"].strong_features, ex["test"].weak_soft,
                         transductive=transductive, dims=32, l2=ctx.default_l2)
    assert harness.shape == (len(ex["test"]),)
    assert np.allclose(harness, expected, atol=1e-9)
    # the predictor works on examples it never saw: a shuffled half of the test split gets
    # exactly the predictions those rows got in the full split
    predictor = as_predictor(spec.fn(ctx), name)
    idx = np.random.default_rng(0).permutation(len(ex["test"]))[: len(ex["test"]) // 2]
    assert np.allclose(predictor.predict(_subset(ex["test"], idx)), harness[idx], atol=1e-12)
    assert predictor.predict(ex["unlabeled"]).shape == (len(ex["unlabeled"]),)


class _Recorder:
    """A method context that records which of its attributes a method reads."""

    def __init__(self, ctx: Any) -> None:
        self._ctx, self.read = ctx, set()

    def __getattr__(self, name: str) -> Any:
        self.read.add(name)
        return getattr(self._ctx, name)


def test_non_transductive_rendered_modules_never_touch_the_test_split(
        ws: Workspace, tmp_path: Path) -> None:
    rng = random.Random(7)
    genomes = [{**G.normalize({**G.START, **G.FAMILY_START[f]}), "transductive": False}
               for f in G.FAMILIES]
    genomes += [{**G.mutate(G.BASE, rng, G.FAMILIES, n_changes=4), "transductive": False}
                for _ in range(4)]
    genomes.append({**G.BASE, "dims": 32, "k": 10, "denoise": "ue", "keep": 0.75,
                    "delta": 1.0, "st_rounds": 1})
    ex = examples_of(ws, WEAK, STRONG)
    # the test split the method could have read, replaced by nonsense: a method that
    # fits without it predicts the real test split the same either way
    junk = replace(ex["test"], strong_features=np.zeros_like(ex["test"].strong_features),
                   weak_soft=np.full(len(ex["test"]), 0.5))
    for i, g in enumerate(genomes):
        name = f"ind{i}"
        spec = _spec(tmp_path, name, g)
        src = spec.source_file.read_text()
        assert not spec.transductive and "transductive=True" not in src
        assert '"test"' not in src and "ctx.test" not in src, G.describe(g)
        ctx = build_context(ws, WEAK, STRONG, 1, method_name=name, examples=ex)
        rec = _Recorder(ctx)
        predictor = as_predictor(spec.fn(rec), name)  # ctx.*["test"] would raise AarError
        assert "test" not in rec.read, G.describe(g)
        with_junk = {"unlabeled": ex["unlabeled"], "test": junk}
        a = fit_predict(spec, ws, WEAK, STRONG, 1, {}, with_junk, targets=ex["test"])
        assert np.allclose(predictor.predict(ex["test"]), a), G.describe(g)
    with pytest.raises(AarError, match="transductive=True"):
        _ = build_context(ws, WEAK, STRONG, 0, examples=ex).strong_features["test"]


def test_rendered_modules_run_in_the_sandbox_and_with_aar_run(ws: Workspace,
                                                               tmp_path: Path) -> None:
    from aar.sandbox.worker import run_method_sandboxed

    g = {**G.BASE, "dims": 32, "transductive": True, "k": 20, "delta": 1.0}
    path = tmp_path / "work" / "sandboxed.py"
    path.parent.mkdir()
    path.write_text(G.render("sandboxed", g, dataset=DATASET))
    preds = run_method_sandboxed(path, ws, WEAK, STRONG, [0, 9999], {},
                                 workdir=path.parent, timeout_s=300)
    spec = resolve_method(f"{path}:sandboxed")
    ex = examples_of(ws, WEAK, STRONG)
    local = np.stack([fit_predict(spec, ws, WEAK, STRONG, s, {}, ex) for s in (0, 9999)])
    assert preds.shape == (2, len(ex["test"]))
    assert np.allclose(preds, local, atol=1e-6)
    assert not np.allclose(preds[0], preds[1])  # the seed reaches ctx.rng (cross-fits)
    assert load_method_file(path) == ["sandboxed"]


# -- the researcher's helpers ---------------------------------------------------------------


def test_seeds_are_any_small_non_negative_ints() -> None:
    assert check_seeds([0, 17, 9999, "5", 3.0]) == [0, 17, 9999, 5, 3]
    for bad, msg in (([-1], "out of range"), ([10_000], "out of range"),
                     (["x"], "whole number"), ([True], "whole number"), ([1.5], "whole number"),
                     ([1, 1], "distinct"), ([], "at least one")):
        with pytest.raises(AarError, match=msg):
            check_seeds(bad)


def test_diagnostics_use_the_one_weak_teacher() -> None:
    weak = np.array([0.9, 0.2, 0.7, 0.1])
    preds = np.array([[0.8, 0.3, 0.4, 0.2], [0.8, 0.6, 0.9, 0.2]])
    d = diagnostics(preds, weak)
    assert d["agreement_with_weak"] == pytest.approx(0.75)  # 3/4 and 3/4
    assert d["weak_positive_rate"] == 0.5 and d["positive_rate"] == pytest.approx(0.5)
    assert d["agreement_between_seeds"] == 0.5
    with pytest.raises(AarError, match="one teacher"):
        diagnostics(preds, np.stack([weak, weak]))


def test_declared_transductive_reads_the_decorator(tmp_path: Path) -> None:
    def decl(src: str, name: str | None = None) -> bool:
        p = tmp_path / "m.py"
        p.write_text("from aar.methods import method\nimport aar.methods as am\n" + src)
        return declared_transductive(p, name)

    assert not decl('@method("a")\ndef a(ctx): ...\n')
    assert decl('@method("a", transductive=True)\ndef a(ctx): ...\n')
    assert not decl('@method("a", transductive=False)\ndef a(ctx): ...\n')
    assert decl('@am.method("a", transductive=True)\ndef a(ctx): ...\n')
    assert decl('FLAG = True\n@method("a", transductive=FLAG)\ndef a(ctx): ...\n')  # computed
    assert decl('KW = {}\n@method("a", **KW)\ndef a(ctx): ...\n')
    two = ('@method("b", transductive=True)\ndef b(ctx): ...\n'
           '@method("a")\ndef a(ctx): ...\n')
    assert not decl(two) and decl(two, "b")  # the worker runs the first name by default
    assert decl("def broken(:\n")  # cannot be told: counted transductive (it fails anyway)
