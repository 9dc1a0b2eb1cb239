"""Label-free building blocks that the built-in W2S methods compose (registers no method).

Each block is a plain function of arrays (and a seeded generator where it draws), so a
method, a researcher's idea or a search over compositions can reuse it:

- class prior and prior-matched hardening (``estimate_prior``, ``prior_hard``,
  ``balanced_argmax``): thresholds that respect the class balance, so filtering or
  smoothing never collapses the labels onto one class (DESIGN.md §4);
- weak-teacher confidence and reliability (``confidence``, ``confident_mask``,
  ``seed_agreement``, ``combine_seeds``);
- geometry of the strong space (``unit_features``, ``knn_graph``, ``propagate``);
- the strong model's own view (``cross_fit``: out-of-fold predictions, so an example's
  prior does not come from a head that saw its own weak label); a PCA fitted on some rows
  and applied to any (``fit_pca`` -> ``Projection``; ``principal_components``);
- combining a prior with weak evidence (``logit``, ``product_of_experts``,
  ``noisy_channel_em``);
- loops (``self_train``).

Binary labels are P(y=1) vectors; where a block is multiclass-safe it also takes an
(n, K) probability matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from aar.w2s.heads import LogisticHead, Standardizer, fit_logistic, normalize

EPS = 1e-6

# -- class prior and hardening -------------------------------------------------------------


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) with p clipped away from 0 and 1."""
    q = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(q) - np.log1p(-q)


def estimate_prior(soft: np.ndarray, lo: float = 0.02, hi: float = 0.98) -> float:
    """P(y=1) estimated as the mean of calibrated soft labels, kept inside [lo, hi].

    A logistic teacher's mean prediction matches its training split's positive rate, so
    this reads the class balance without a label (the weak teacher saw the labels).
    """
    return float(np.clip(np.mean(soft), lo, hi))


def prior_hard(scores: np.ndarray, prior: float) -> np.ndarray:
    """Hard labels: 1 for the ``round(prior * n)`` highest scores, else 0.

    The threshold sits at the ``1 - prior`` quantile of the scores, so the hard labels keep
    the class balance however the scores were shrunk or shifted (by smoothing, mixing or
    a miscalibrated head). Ties are broken by position: deterministic.
    """
    s = np.asarray(scores, dtype=np.float64)
    n_pos = round(float(np.clip(prior, 0.0, 1.0)) * len(s))
    out = np.zeros(len(s), dtype=np.int64)
    if n_pos > 0:
        out[np.argsort(-s, kind="stable")[:n_pos]] = 1
    return out


def as_matrix(p: np.ndarray) -> np.ndarray:
    """(n,) P(y=1) -> (n, 2) class probabilities; (n, K) passes through."""
    p = np.asarray(p, dtype=np.float64)
    return np.stack([1 - p, p], axis=1) if p.ndim == 1 else p


def balanced_argmax(probs: np.ndarray, prior: np.ndarray, iters: int = 100) -> np.ndarray:
    """Multiclass hardening whose class frequencies follow ``prior``.

    Adds a per-class bias to the log-probabilities and adjusts it until the argmax's class
    frequencies match ``prior`` (for two classes this is the prior quantile threshold of
    ``prior_hard``). Returns labels in 0..K-1.
    """
    p = as_matrix(probs)
    n, k = p.shape
    target = np.asarray(prior, dtype=np.float64)
    if k == 2:
        return prior_hard(p[:, 1] - p[:, 0], float(target[1] / target.sum()))
    lp = np.log(np.clip(p, EPS, 1.0))
    bias = np.zeros(k)
    tgt = np.clip(target / target.sum(), EPS, 1.0)
    for _ in range(iters):
        freq = np.bincount(np.argmax(lp + bias, axis=1), minlength=k) / n
        bias += 0.5 * (np.log(tgt) - np.log(np.clip(freq, 1.0 / n, 1.0)))
    return np.argmax(lp + bias, axis=1)


# -- weak-teacher confidence and reliability -----------------------------------------------


def confidence(soft: np.ndarray) -> np.ndarray:
    """Margin of the most likely class over the runner-up: |2p - 1| for binary labels."""
    p = as_matrix(soft)
    top2 = np.sort(p, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def confident_mask(soft: np.ndarray, keep: float) -> np.ndarray:
    """Keep the most confident fraction ``keep`` of the examples *within each weak class*.

    Per-class quantiles keep the weak labels' class balance; one global threshold would
    drop the class the teacher is less sure of (and can empty it).
    """
    p = as_matrix(soft)
    hard = np.argmax(p, axis=1)
    conf = confidence(p)
    mask = np.zeros(len(hard), dtype=bool)
    for c in np.unique(hard):
        idx = np.flatnonzero(hard == c)
        n_keep = max(1, round(keep * len(idx)))
        mask[idx[np.argsort(-conf[idx], kind="stable")[:n_keep]]] = True
    return mask


def seed_agreement(seeds: np.ndarray) -> np.ndarray:
    """Fraction of weak-teacher seeds that vote with the seeds' majority (0.5..1)."""
    votes = (np.asarray(seeds) >= 0.5).mean(axis=0)
    return np.maximum(votes, 1 - votes)


def combine_seeds(seeds: np.ndarray, how: str = "mean") -> np.ndarray:
    """One soft label per example from several weak teachers, shape (n_teachers, n).

    ``mean``: average probability (bagging); ``logit``: average log-odds (a product of
    experts, sharper where teachers agree); ``vote``: fraction of teachers voting 1.
    """
    s = np.asarray(seeds, dtype=np.float64)
    if how == "mean":
        return s.mean(axis=0)
    if how == "logit":
        return expit(logit(s).mean(axis=0))
    if how == "vote":
        return (s >= 0.5).mean(axis=0)
    raise ValueError(f"unknown seed combination {how!r}: use mean, logit or vote")


# -- geometry of the strong space ----------------------------------------------------------


def unit_features(x: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    """Features as the heads see them (L2-normalised, standardised on ``ref``), then
    L2-normalised again so that a dot product is a cosine similarity."""
    std = Standardizer.fit(x if ref is None else ref)
    return normalize(std(x)).astype(np.float32)


def knn_graph(x: np.ndarray, k: int, *, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of every row of ``x`` by cosine similarity in the
    standardised feature space, the row itself excluded: (indices, similarities), (n, k)."""
    u = unit_features(x)
    n = len(u)
    k = int(min(max(k, 1), n - 1))
    idx = np.empty((n, k), dtype=np.int64)
    sim = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, chunk):
        block = u[start:start + chunk] @ u.T
        rows = np.arange(len(block))
        block[rows, start + rows] = -np.inf
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(block, part, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        idx[start:start + chunk] = np.take_along_axis(part, order, axis=1)
        sim[start:start + chunk] = np.take_along_axis(vals, order, axis=1)
    return idx, sim


def propagate(
    values: np.ndarray, neighbours: np.ndarray, *, rounds: int = 3, alpha: float = 0.0,
    self_weight: float = 0.0,
) -> np.ndarray:
    """Label propagation on a kNN graph: ``rounds`` times replace every value by
    ``alpha * original + (1 - alpha) * (neighbours' mean, the example itself weighted
    self_weight)``. ``alpha`` > 0 anchors to the original labels (propagation with restart)."""
    v0 = np.asarray(values, dtype=np.float64)
    v = v0.copy()
    k = neighbours.shape[1]
    for _ in range(rounds):
        mean = (v[neighbours].sum(axis=1) + self_weight * v) / (k + self_weight)
        v = alpha * v0 + (1 - alpha) * mean
    return v


# -- the strong model's own view -----------------------------------------------------------


def fold_ids(n: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """A random fold number in 0..folds-1 for each of ``n`` examples, sizes balanced."""
    return rng.permutation(np.arange(n) % folds)


def cross_fit(
    x: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None, *,
    rng: np.random.Generator, folds: int = 4, l2: float = 1.0, max_iter: int = 100,
) -> np.ndarray:
    """Out-of-fold P(y=1) on ``x``: each fold predicted by a head fitted on the others.

    This is the strong model's prior on an example that did not see that example's own
    weak label: it cannot simply memorise the label, so disagreements are informative.
    """
    t = np.asarray(target, dtype=np.float64)
    w = np.ones(len(t)) if weights is None else np.asarray(weights, dtype=np.float64)
    fid = fold_ids(len(t), folds, rng)
    out = np.empty(len(t))
    for f in range(folds):
        train, held = fid != f, fid == f
        head = fit_logistic(x[train], t[train], w[train], l2=l2, max_iter=max_iter)
        out[held] = head.predict_proba(x[held])
    return out


@dataclass(frozen=True)
class Projection:
    """A fitted PCA projection of strong features: call it on any rows (the examples it
    was fitted on or unseen ones) to get their scores on the fitted components.

    Rows are mapped as the heads see them (L2-normalised, standardised with the fit
    data's statistics, L2-normalised again), centred on the fit data's mean, projected
    on the top components, oriented and (when whitened) scaled by the fit data's spread.
    """

    std: Standardizer
    mean: np.ndarray  # (d,) mean of the fit data's unit features
    components: np.ndarray  # (d, dims)
    sign: np.ndarray  # (dims,) +1/-1: each component toward the fit data's heavier tail
    scale: np.ndarray  # (dims,) the fit data's score spread (ones when not whitened)

    @property
    def dims(self) -> int:
        return int(self.components.shape[1])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.components.shape[0]:
            raise ValueError(f"projection fitted on {self.components.shape[0]}-dimensional "
                             f"features, got an array of shape {x.shape}")
        u = normalize(self.std(x)).astype(np.float32).astype(np.float64)
        z = (u - self.mean) @ self.components
        return z * self.sign / self.scale


def fit_pca(x: np.ndarray, dims: int, whiten: bool = True) -> Projection:
    """Fit the top ``dims`` principal components of the rows of ``x`` (standardised,
    unit-norm), each oriented toward its heavier tail (a label-free convention: the result
    does not depend on the eigen-solver's sign choice) and, when ``whiten``, scaled to
    unit variance on ``x``. Apply the returned :class:`Projection` to any rows."""
    if dims < 1:
        raise ValueError(f"PCA needs at least one dimension, got dims={dims}")
    std = Standardizer.fit(x)
    u = normalize(std(x)).astype(np.float32).astype(np.float64)
    mean = u.mean(axis=0)
    u -= mean
    vals, vecs = np.linalg.eigh(u.T @ u)
    top = vecs[:, np.argsort(-vals, kind="stable")[:dims]]
    z = u @ top
    flip = np.sign(np.sum(z**3, axis=0))
    sign = np.where(flip == 0, 1.0, flip)
    scale = (z * sign).std(axis=0) + 1e-12 if whiten else np.ones(top.shape[1])
    return Projection(std, mean, top, sign, scale)


def principal_components(x: np.ndarray, dims: int, whiten: bool = True) -> np.ndarray:
    """Scores of the rows of ``x`` on its own top ``dims`` principal components
    (:func:`fit_pca` fitted on ``x`` and applied to it)."""
    return fit_pca(x, dims, whiten)(x)


def loo_ridge(z: np.ndarray, target: np.ndarray, l2: float = 1.0) -> np.ndarray:
    """Exact leave-one-out predictions of ridge regression (with intercept) of ``target``
    on ``z``: each example's score from a fit on all the others, in closed form through
    the hat matrix. O(n d^2): cheap in a low-dimensional (PCA) space."""
    z1 = np.hstack([np.asarray(z, dtype=np.float64), np.ones((len(z), 1))])
    reg = np.full(z1.shape[1], float(l2))
    reg[-1] = 0.0
    a_inv = np.linalg.inv(z1.T @ z1 + np.diag(reg))
    t = np.asarray(target, dtype=np.float64)
    fit = z1 @ (a_inv @ (z1.T @ t))
    h = np.einsum("ij,jk,ik->i", z1, a_inv, z1)
    return (fit - h * t) / np.maximum(1.0 - h, 1e-9)


def platt(scores: np.ndarray, labels: np.ndarray, iters: int = 25) -> np.ndarray:
    """P(y=1 | score) under a 1-d logistic fit of ``labels`` on ``scores`` (Platt 1999),
    by Newton's method with a tiny ridge."""
    s = np.asarray(scores, dtype=np.float64)
    s = (s - s.mean()) / (s.std() + 1e-12)
    y = np.asarray(labels, dtype=np.float64)
    x = np.stack([s, np.ones_like(s)], axis=1)
    theta = np.zeros(2)
    for _ in range(iters):
        p = expit(x @ theta)
        grad = x.T @ (p - y) + 1e-3 * theta
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-3 * np.eye(2)
        theta -= np.linalg.solve(hess, grad)
    return expit(x @ theta)


def coherence_search(
    z: np.ndarray, init: np.ndarray, *, prior: float, iters: int = 10, l2: float = 1.0,
    weak_bins: np.ndarray | None = None, n_bins: int = 10, channel_weight: float = 1.0,
) -> tuple[np.ndarray, float, np.ndarray]:
    """Label search for internal coherence (after ICM, Wen et al. 2025), by coordinate ascent.

    Score of a labelling y: its mutual predictability, the mean log-probability of each
    y_i predicted from all the *other* examples (exact leave-one-out ridge on ``z``,
    calibrated by Platt scaling), plus (when ``weak_bins`` is given) ``channel_weight``
    times the mean log-likelihood of the weak teacher's confidence bins under a channel
    P(bin | y) fitted to y. Each step refits both to y and relabels by their combined
    posterior, hardened at ``prior`` (a balance constraint: without it the one-class
    labelling is perfectly predictable). Deterministic; stops at a fixed point.
    Returns (labels, score of those labels, posterior P(y=1) they came with).
    """
    y = np.asarray(init, dtype=np.int64)
    score, post = -np.inf, y.astype(np.float64)
    for _ in range(iters):
        loo = np.clip(platt(loo_ridge(z, y, l2), y), EPS, 1 - EPS)
        score = float(np.mean(np.log(np.where(y == 1, loo, 1 - loo))))
        z_post = logit(loo)
        if weak_bins is not None:
            log_l = np.log(channel_counts(y, weak_bins, n_bins))
            score += channel_weight * float(np.mean(log_l[y, weak_bins]))
            z_post = z_post + channel_weight * (log_l[1, weak_bins] - log_l[0, weak_bins])
        post = expit(z_post)
        new = prior_hard(post, prior)
        if np.array_equal(new, y):
            break
        y = new
    return y, score, post


# -- combining a prior with weak evidence --------------------------------------------------


def product_of_experts(
    experts: list[np.ndarray], powers: list[float], prior: float | None = None,
) -> np.ndarray:
    """P(y=1) ∝ Π_j p_j^a_j: the sum of the experts' log-odds, each scaled by its power.

    When every expert already contains the class prior, the prior is counted sum(a) times;
    give ``prior`` to divide the surplus ``sum(a) - 1`` copies back out.
    """
    z = sum(a * logit(p) for p, a in zip(experts, powers, strict=True))
    if prior is not None:
        z = z - (sum(powers) - 1.0) * logit(np.asarray(prior))
    return expit(np.asarray(z, dtype=np.float64))


def confidence_bins(soft: np.ndarray, bins: int) -> np.ndarray:
    """Bin index 0..bins-1 of each weak soft label by its quantile (equal-count bins)."""
    s = np.asarray(soft, dtype=np.float64)
    ranks = np.argsort(np.argsort(s, kind="stable"), kind="stable")
    return np.minimum(ranks * bins // len(s), bins - 1)


def noisy_channel_posterior(
    prior: np.ndarray, weak_soft: np.ndarray, *, bins: int = 10, iters: int = 20,
    smoothing: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """EM for weak labels as noisy observations of a latent label.

    Model: y_i ~ Bernoulli(prior_i) (the strong model's view), and the weak teacher's soft
    label lands in confidence bin b_i with probability L[y_i, b_i] (a class-conditional
    channel that can learn "low-confidence weak labels are often wrong"). EM fits L; the
    returned posterior is P(y_i = 1 | x_i, weak label_i). Returns (posterior, L).
    The channel starts from "the weak label is right": L[y, b] ∝ P(weak says y | bin b).
    """
    pri = np.clip(np.asarray(prior, dtype=np.float64), EPS, 1 - EPS)
    b = confidence_bins(weak_soft, bins)
    q = np.clip(np.asarray(weak_soft, dtype=np.float64), EPS, 1 - EPS)
    like = np.ones((2, bins))
    for _ in range(iters):
        like = channel_counts(q, b, bins, smoothing)
        odds = pri / (1 - pri) * like[1, b] / like[0, b]
        q = odds / (1 + odds)
    return q, like


def channel_counts(labels: np.ndarray, bins_idx: np.ndarray, n_bins: int,
                   smoothing: float = 1.0) -> np.ndarray:
    """P(weak confidence bin | y) from (soft or hard) labels: an array L of shape (2, bins)."""
    q = np.asarray(labels, dtype=np.float64)
    onehot = np.zeros((len(q), n_bins))
    onehot[np.arange(len(q)), bins_idx] = 1.0
    n1 = q @ onehot + smoothing
    n0 = (1 - q) @ onehot + smoothing
    return np.stack([n0 / n0.sum(), n1 / n1.sum()])


# -- loops ---------------------------------------------------------------------------------


def self_train(
    fit: Callable[[np.ndarray, LogisticHead | None], LogisticHead],
    predict: Callable[[LogisticHead], np.ndarray],
    start: np.ndarray, *, rounds: int, prior: float, anchor: float = 0.0,
    hard: bool = True,
) -> tuple[LogisticHead, np.ndarray]:
    """Bootstrapping: fit on ``start``; then ``rounds`` times relabel with the student's
    own predictions (prior-matched hard labels, or soft) mixed with the starting labels
    with weight ``anchor``, and refit (warm-started). Returns (last head, last target)."""
    base = np.asarray(start, dtype=np.float64)
    head = fit(base, None)
    target = base
    for _ in range(rounds):
        p = predict(head)
        own = prior_hard(p, prior).astype(np.float64) if hard else p
        target = anchor * base + (1 - anchor) * own
        head = fit(target, head)
    return head, target
