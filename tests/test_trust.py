"""The instrument itself: cross-validated baselines, the weak teacher's inversion attack,
intervals over seeds and test examples, and the fit -> predictor contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import lsq_linear
from scipy.special import expit, logit

from aar.data.prepare import prepare
from aar.errors import AarError
from aar.experiments.runner import RunConfig, run
from aar.methods import METHODS, method
from aar.settings import get_settings
from aar.w2s import baselines
from aar.w2s.context import Examples, MethodContext, build_context, examples_of, fit_predict
from aar.w2s.features import labeled_features, split_features
from aar.w2s.heads import L2_GRID, Standardizer, fit_logistic_cv
from aar.w2s.metrics import MIN_GAP, paired_bootstrap
from aar.w2s.scoring import Scorer

SYN = "synthetic:n=2000,seed=1"
PAIR = ("syn_weak", "syn_strong")


# -- baselines ----------------------------------------------------------------------------


def _sklearn_fit(x: np.ndarray, y: np.ndarray):  # type: ignore[no-untyped-def]
    """The independent yardstick: scikit-learn's own cross-validated logistic regression on
    the same representation (L2-normalised, standardised), penalty chosen by held-out
    log-loss over a fine grid."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler

    return make_pipeline(Normalizer(), StandardScaler(), LogisticRegressionCV(
        Cs=np.logspace(-5, 2, 29), cv=5, max_iter=5000, scoring="neg_log_loss")).fit(x, y)


def check_baselines_against_sklearn(ref: str, weak: str, strong: str, tol: float) -> None:
    pytest.importorskip("sklearn")
    prep = prepare(ref)
    scorer = Scorer.of(prep, weak, strong)
    ws = prep.workspace
    fw, fs = split_features(ws, weak), split_features(ws, strong)
    sk_weak = _sklearn_fit(labeled_features(prep.vault, weak), prep.vault.split_labels("labeled"))
    sk_ceil = _sklearn_fit(fs["unlabeled"], prep.vault.split_labels("unlabeled"))
    for split in scorer.index:
        idx, y = scorer.index[split], scorer.labels[split]
        ours_weak, ours_ceil = scorer.fixed[split]
        assert abs(ours_weak - np.mean(sk_weak.predict(fw["test"])[idx] == y)) <= tol, split
        # the ceiling is the best of several trainers: at least the logistic yardstick
        assert ours_ceil >= np.mean(sk_ceil.predict(fs["test"])[idx] == y) - tol, split


def test_baselines_agree_with_an_independent_sklearn_fit() -> None:
    check_baselines_against_sklearn(SYN, *PAIR, tol=0.015)


@pytest.mark.slow
@pytest.mark.timeout(3000)  # a cold cache downloads mpnet and encodes 11k texts
def test_sentiment_baselines_agree_with_sklearn_within_a_point() -> None:
    """The headline check on real data (l3 -> mpnet; encodes sentiment once: 6 minutes on
    two idle cores)."""
    check_baselines_against_sklearn("sentiment", "l3", "mpnet", tol=0.01)


def test_cv_prefers_a_larger_penalty_for_noisier_labels() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 40))
    y = (x[:, 0] + 0.3 * rng.standard_normal(600) > 0).astype(float)
    noisy = np.where(rng.random(600) < 0.35, 1 - y, y)
    _, clean_cv = fit_logistic_cv(x, y, rng=np.random.default_rng(1))
    _, noisy_cv = fit_logistic_cv(x, noisy, rng=np.random.default_rng(1))
    assert noisy_cv.l2 > clean_cv.l2
    assert set(clean_cv.log_loss) == set(L2_GRID)


def test_one_teacher_tuned_on_the_whole_split_and_cached() -> None:
    prep = prepare(SYN)
    a = baselines.weak_teacher(prep, "syn_weak")
    b = baselines.weak_teacher(prep, "syn_weak")
    assert np.array_equal(a.test_probs, b.test_probs) and a.choice["l2"] in L2_GRID
    with np.load(prep.workspace.weak_path("syn_weak")) as z:
        assert z["unlabeled"].ndim == 1 and z["test"].ndim == 1  # one teacher, no bag
    c = baselines.ceiling(prep, "syn_strong")
    assert set(c.choice["cv_accuracy"]) >= {"logistic", "gd0", "gd1"}


# -- the labeled split and the teacher ----------------------------------------------------


def test_the_labeled_split_is_nowhere_method_code_can_read() -> None:
    prep = prepare(SYN)
    baselines.student_l2(prep, *PAIR)
    labeled = prep.vault.splits["labeled"]
    texts = prep.vault.labeled_texts()
    settings = get_settings()
    secret = set(labeled) | set(texts)
    for root in (prep.workspace.root, settings.features_dir):
        for path in Path(root).rglob("*"):
            if path.is_file() and path.suffix == ".jsonl":
                for line in path.read_text().splitlines():
                    assert not set(json.loads(line).values()) & secret, path
            elif path.is_file() and path.suffix == ".json":
                assert not any(f'"{v}"' in path.read_text() for v in secret), path
    # the labeled texts' features live in the vault, not the shared cache
    x_lab = labeled_features(prep.vault, "syn_weak")
    for npy in Path(settings.features_dir).rglob("*.npy"):
        rows = np.load(npy)
        if rows.shape[1] == x_lab.shape[1]:
            assert not (rows[:, None, :5] == x_lab[None, :20, :5]).all(axis=2).any(), npy


def invert_teacher(soft_u: np.ndarray, x_u: np.ndarray, x_lab: np.ndarray) -> np.ndarray:
    """The inversion attack: recover the teacher's weights from its soft labels (logits are
    linear in the standardised features), then solve its optimality condition
    ``Z^T y = Z^T sigmoid(Z w + b) + l2 w`` for 0/1 labels, for every penalty of the public
    grid, and keep the labels whose re-trained teacher reproduces the soft labels best.
    Returns the guessed labels of ``x_lab``."""
    from aar.w2s.heads import fit_logistic

    std, z_lab = Standardizer.fit_transform(x_lab)
    a = np.hstack([std(x_u), np.ones((len(x_u), 1))])
    theta, *_ = np.linalg.lstsq(a, logit(np.clip(soft_u, 1e-7, 1 - 1e-7)), rcond=None)
    w, b = theta[:-1], theta[-1]
    sig = expit(z_lab @ w + b)
    z1 = np.hstack([z_lab, np.ones((len(z_lab), 1))]).T
    best: tuple[float, np.ndarray] | None = None
    for l2 in L2_GRID:
        sol = lsq_linear(z1, z1 @ sig + np.concatenate([l2 * w, [0.0]]), bounds=(0, 1)).x
        guess = (sol >= 0.5).astype(np.int64)
        if guess.min() == guess.max():
            continue
        again = fit_logistic(x_lab, guess, l2=l2).predict_proba(x_u)
        err = float(np.abs(again - soft_u).max())
        if best is None or err < best[0]:
            best = (err, guess)
    assert best is not None
    return best[1]


def test_teacher_inversion_recovers_no_more_than_the_teachers_own_predictions() -> None:
    # weak features nearly as many as labeled examples: enough equations for the attack
    prep = prepare("synthetic:n=2000,seed=1,weak_dim=160")
    baselines.weak_teacher(prep, "syn_weak")
    ws = prep.workspace
    soft_u = np.load(ws.weak_path("syn_weak"))["unlabeled"].astype(np.float64)
    x_u = split_features(ws, "syn_weak")["unlabeled"]
    y_lab = prep.vault.split_labels("labeled")
    x_lab_true = labeled_features(prep.vault, "syn_weak")
    # What the teacher itself says about its training examples: no attack needed for that.
    from aar.w2s.heads import fit_logistic

    l2 = baselines.weak_teacher(prep, "syn_weak").choice["l2"]
    teacher = fit_logistic(x_lab_true, y_lab, l2=float(l2))  # type: ignore[arg-type]
    own = float(np.mean((teacher.predict_proba(x_lab_true) >= 0.5) == y_lab))
    # Positive control: with the labeled split's features (which the vault keeps) the
    # attack solves for the labels, so this test can fail.
    control = float(np.mean(invert_teacher(soft_u, x_u, x_lab_true) == y_lab))
    assert control >= 0.99 and control > own + 0.05
    # The attacker's best reach: every feature row in the shared cache that is not an
    # unlabeled or test row. There is none, so it cannot even name a labeled example.
    known = {r.tobytes() for s in ("unlabeled", "test")
             for r in split_features(ws, "syn_weak")[s]}
    candidates = [r for npy in Path(get_settings().features_dir).rglob("*.npy")
                  for r in np.load(npy) if r.shape == x_lab_true.shape[1:]
                  and r.tobytes() not in known]
    assert candidates == []


# -- intervals ----------------------------------------------------------------------------


def test_bootstrap_interval_matches_the_binomial_error_of_the_test_split() -> None:
    rng = np.random.default_rng(0)
    n = 2500
    correct = (rng.random((5, n)) < 0.8).astype(np.int8)
    weak = (rng.random(n) < 0.7).astype(np.int8)
    ceil = (rng.random(n) < 0.9).astype(np.int8)
    b = paired_bootstrap(correct, weak, ceil)
    half = (b.accuracy.high - b.accuracy.low) / 2
    # five seeds' mean over the same test set: about one seed's binomial error
    assert 0.6 * 1.96 * np.sqrt(0.16 / n) < half < 1.4 * 1.96 * np.sqrt(0.16 / n)
    assert b.pgr.low < b.pgr.mean < b.pgr.high and b.gap_ok
    assert b.pgr.high - b.pgr.low > 0.1  # test sampling alone is ~±0.1 PGR here


def test_gap_too_small_gives_no_pgr() -> None:
    rng = np.random.default_rng(1)
    n = 1000
    weak = (rng.random(n) < 0.70).astype(np.int8)
    ceil = (rng.random(n) < 0.70 + MIN_GAP + 0.01).astype(np.int8)  # gap CI reaches below
    b = paired_bootstrap(weak[None, :], weak, ceil)
    assert not b.gap_ok and np.isnan(b.pgr.mean)


def test_run_summary_has_intervals_and_flags_results_above_the_ceiling() -> None:
    rec = run(RunConfig("vanilla", SYN, *PAIR, (0, 1)))
    s = rec["summary"]["test_public"]
    assert s["gap_ok"] and s["pgr"]["low"] < s["pgr"]["mean"] < s["pgr"]["high"]
    assert s["weak_ci"]["low"] < s["weak"] < s["weak_ci"]["high"]
    assert not s["above_ceiling"]
    prep = prepare(SYN)
    scorer = Scorer.of(prep, *PAIR)
    truth = np.zeros(scorer.n)
    for split, idx in scorer.index.items():
        truth[idx] = scorer.labels[split]
    assert scorer.summary(truth[None, :])["test_public"]["above_ceiling"]


# -- the method contract ------------------------------------------------------------------


@pytest.fixture
def ctx_ex() -> tuple[MethodContext, dict[str, Examples]]:
    prep = prepare(SYN)
    baselines.student_l2(prep, *PAIR)
    ex = examples_of(prep.workspace, *PAIR)
    return build_context(prep.workspace, *PAIR, 0, examples=ex), ex


def test_a_method_cannot_read_test_inputs_unless_it_declares_it(
        ctx_ex: tuple[MethodContext, dict[str, Examples]]) -> None:
    ctx, _ = ctx_ex
    assert ctx.test is None
    with pytest.raises(AarError, match="transductive=True"):
        _ = ctx.strong_features["test"]
    with pytest.raises(AarError, match="labeled split stays"):
        _ = ctx.texts["labeled"]
    assert ctx.default_l2 in L2_GRID


def test_the_harness_applies_the_predictor_and_declared_methods_see_test() -> None:
    prep = prepare(SYN)
    baselines.student_l2(prep, *PAIR)
    seen: dict[str, int] = {}

    @method("t_peek", transductive=True)
    def t_peek(ctx: MethodContext) -> object:
        assert ctx.test is not None
        seen["test"] = len(ctx.test)
        return ctx.train_strong(ctx.weak_hard["unlabeled"].astype(float))

    @method("t_array")
    def t_array(ctx: MethodContext) -> object:
        return np.full(len(ctx.unlabeled), 0.5)  # the old contract: test probabilities

    try:
        out = fit_predict(METHODS.get("t_peek"), prep.workspace, *PAIR, 0, {})
        assert seen["test"] == len(out) == len(prep.workspace.ids("test"))
        with pytest.raises(AarError, match="not a predictor"):
            fit_predict(METHODS.get("t_array"), prep.workspace, *PAIR, 0, {})
        # the same predictor applies to examples it never saw
        ex = examples_of(prep.workspace, *PAIR)
        part = Examples(ex["test"].ids[:7], ex["test"].texts[:7],
                        ex["test"].weak_features[:7], ex["test"].strong_features[:7],
                        ex["test"].weak_soft[:7])
        few = fit_predict(METHODS.get("vanilla"), prep.workspace, *PAIR, 0, {}, ex, part)
        full = fit_predict(METHODS.get("vanilla"), prep.workspace, *PAIR, 0, {}, ex)
        assert np.allclose(few, full[:7])
        assert run(RunConfig("t_peek", SYN, *PAIR, (0,)))["transductive"] is True
    finally:
        METHODS.forget("t_peek")
        METHODS.forget("t_array")
