"""The built-in researcher's search space: a genome of building-block choices and
hyperparameters, its mutation and crossover, and its rendering as a real method module.

A genome is a plain dict ``gene -> value``; each gene takes values from a short ordered
list (:data:`GENES`) and belongs to a family of building blocks (:data:`FAMILY_OF`), which
is how a research direction biases the search. :func:`render` writes a method module that
runs only the stages the genome switches on, with the genes as keyword-only
hyperparameters (so ``aar run ideas/x.py`` re-runs it and ``--param`` can vary it).
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

Genome = dict[str, Any]

GENES: dict[str, list[Any]] = {
    "dims": [0, 32, 64, 128, 256],  # 0: full strong features; else top principal components
    "transductive": [False, True],  # also the (label-free) test inputs in graph and training
    "k": [0, 10, 20, 50, 100, 200],  # kNN smoothing in the strong space (0: off)
    "rounds": [1, 2, 3, 5],
    "alpha": [0.0, 0.1, 0.3, 0.5],
    "denoise": ["none", "product", "channel", "ue"],
    "beta": [0.25, 0.5, 1.0, 2.0],
    "bins": [5, 10, 20],
    "ue_dims": [16, 32, 64, 128],
    "keep": [1.0, 0.9, 0.75, 0.5],  # confident fraction kept per class
    "delta": [0.0, 0.5, 1.0, 2.0],  # weight by the strong model's out-of-fold assent
    "st_rounds": [0, 1, 2, 3],  # born-again / self-training rounds
    "anchor": [0.0, 0.3, 0.5, 0.7],
    "hard": [True, False],
    # every ridge penalty as a multiple of its default: the student's and the cross-fits'
    # of ctx.default_l2 (cross-validated on the weak labels), the coherence search's of 1.0
    "l2_scale": [0.1, 0.3, 1.0, 3.0, 10.0],
}

FAMILY_OF: dict[str, str] = {
    "dims": "pca", "transductive": "knn", "k": "knn", "rounds": "knn",
    "alpha": "knn", "denoise": "denoise", "beta": "product", "bins": "channel",
    "ue_dims": "ue", "keep": "confident", "delta": "reweight", "st_rounds": "selftrain",
    "anchor": "selftrain", "hard": "selftrain", "l2_scale": "l2",
}

FAMILIES = ("pca", "knn", "product", "channel", "ue", "confident", "reweight",
            "selftrain", "l2")

# The plain W2S student: the weak teacher's hard labels, the cross-validated penalty.
BASE: Genome = {"dims": 0, "transductive": False, "k": 0, "rounds": 3, "alpha": 0.0,
                "denoise": "none", "beta": 1.0, "bins": 10, "ue_dims": 32, "keep": 1.0,
                "delta": 0.0, "st_rounds": 0, "anchor": 0.5, "hard": True, "l2_scale": 1.0}

# Where a direction's candidates start: the plain student plus what switching each of its
# families on means.
START: Genome = dict(BASE)
FAMILY_START: dict[str, Genome] = {
    "pca": {"dims": 64},
    "knn": {"k": 50, "rounds": 3},
    "product": {"denoise": "product", "beta": 1.0},
    "channel": {"denoise": "channel", "bins": 10},
    "ue": {"denoise": "ue", "ue_dims": 32},
    "confident": {"keep": 0.75},
    "reweight": {"delta": 1.0},
    "selftrain": {"st_rounds": 2, "anchor": 0.5},
    "l2": {"l2_scale": 3.0},
}


def normalize(g: Genome) -> Genome:
    """A complete genome with every value on its grid (unknown genes dropped); genes that
    the switched-off stages do not read are reset, so equal behaviour has equal keys."""
    out = dict(BASE)
    for k, v in g.items():
        if k in GENES and v in GENES[k]:
            out[k] = GENES[k][GENES[k].index(v)]  # the grid's own value (1 -> 1.0)
    if out["k"] == 0:
        out.update(rounds=BASE["rounds"], alpha=BASE["alpha"])
    if out["denoise"] != "product":
        out["beta"] = BASE["beta"]
    if out["denoise"] != "channel":
        out["bins"] = BASE["bins"]
    if out["denoise"] != "ue":
        out["ue_dims"] = BASE["ue_dims"]
    if out["st_rounds"] == 0:
        out["anchor"] = BASE["anchor"]
    return out


def key(g: Genome) -> str:
    return hashlib.sha256(json.dumps(normalize(g), sort_keys=True).encode()).hexdigest()[:12]


def start_genomes(families: tuple[str, ...]) -> list[Genome]:
    """A direction's first candidates: each of its families alone, then all together."""
    fams = [f for f in families if f in FAMILY_START]
    out = [normalize({**START, **FAMILY_START[f]}) for f in fams]
    if len(fams) > 1:
        combo: Genome = dict(START)
        for f in fams:
            combo.update(FAMILY_START[f])
        out.append(normalize(combo))
    if not out:
        out.append(normalize({**START, **FAMILY_START["knn"]}))
    seen, uniq = set(), []
    for g in out:
        if key(g) not in seen:
            seen.add(key(g))
            uniq.append(g)
    return uniq


def _active(g: Genome) -> list[str]:
    """Genes that matter for this genome (others are ignored by its stages)."""
    n = normalize(g)
    genes = ["dims", "transductive", "k", "denoise", "keep", "delta", "st_rounds", "hard",
             "l2_scale"]
    if n["k"]:
        genes += ["rounds", "alpha"]
    genes += {"product": ["beta"], "channel": ["bins"], "ue": ["ue_dims"]}.get(n["denoise"], [])
    if n["st_rounds"]:
        genes.append("anchor")
    return genes


def mutate(g: Genome, rng: random.Random, families: tuple[str, ...], n_changes: int = 0
           ) -> Genome:
    """Change 1-3 active genes: genes of the direction's families three times as likely;
    ordered values mostly move to a neighbour on their grid."""
    out = normalize(g)
    n = n_changes or rng.choice([1, 1, 2, 2, 3])
    for _ in range(n):
        genes = _active(out)
        weights = [3.0 if FAMILY_OF[x] in families or (x == "denoise" and set(families) & {
            "product", "channel", "ue"}) else 1.0 for x in genes]
        gene = rng.choices(genes, weights=weights)[0]
        values = GENES[gene]
        i = values.index(out[gene])
        if gene in ("denoise", "hard", "transductive") or rng.random() < 0.25:
            j = rng.choice([v for v in range(len(values)) if v != i])
        else:
            j = min(max(i + rng.choice([-1, 1]), 0), len(values) - 1)
            if j == i:
                j = i - 1 if i > 0 else i + 1
        out[gene] = values[j]
    return normalize(out)


def crossover(a: Genome, b: Genome, rng: random.Random) -> Genome:
    """Each stage's genes taken together from one parent or the other."""
    groups = [["dims"], ["transductive", "k", "rounds", "alpha"],
              ["denoise", "beta", "bins", "ue_dims"], ["keep"], ["delta"],
              ["st_rounds", "anchor", "hard"], ["l2_scale"]]
    out: Genome = {}
    na, nb = normalize(a), normalize(b)
    for grp in groups:
        src = na if rng.random() < 0.5 else nb
        out.update({x: src[x] for x in grp})
    return normalize(out)


def describe(g: Genome) -> str:
    """A short human description of the stages a genome runs."""
    n = normalize(g)
    parts = []
    if n["dims"]:
        parts.append(f"top-{n['dims']} PCA of strong features")
    if n["k"]:
        parts.append(f"kNN smoothing k={n['k']} x{n['rounds']} alpha={n['alpha']}"
                     + (" (transductive)" if n["transductive"] else ""))
    elif n["transductive"]:
        parts.append("transductive training")
    if n["denoise"] == "product":
        parts.append(f"product of experts beta={n['beta']}")
    elif n["denoise"] == "channel":
        parts.append(f"noisy-channel EM bins={n['bins']}")
    elif n["denoise"] == "ue":
        parts.append(f"coherence search dims={n['ue_dims']}")
    if n["keep"] < 1:
        parts.append(f"keep {n['keep']:.0%} most confident per class")
    if n["delta"]:
        parts.append(f"assent weights delta={n['delta']}")
    if n["st_rounds"]:
        parts.append(f"{n['st_rounds']} self-training rounds anchor={n['anchor']}")
    penalty = "cross-validated l2" if n["l2_scale"] == 1.0 else \
        f"l2 {n['l2_scale']:g}x cross-validated"
    parts.append(("hard" if n["hard"] else "soft") + f" targets, {penalty}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- rendering

_HEADER = '''"""{name}: {summary}

Generated by the built-in researcher {agent} (direction: {direction}), {origin}.
Every stage is a building block of aar.methods.blocks; the genes are the keyword-only
hyperparameters below (change one with --param).
{fits_on}
Run it with:  aar run ideas/{name}.py --dataset {dataset} --seeds 5
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from aar.methods import method
from aar.methods.blocks import (
    Projection,
    coherence_search,
    confidence_bins,
    cross_fit,
    estimate_prior,
    fit_pca,
    knn_graph,
    noisy_channel_posterior,
    principal_components,
    prior_hard,
    product_of_experts,
    propagate,
)
from aar.w2s.context import Examples, FunctionPredictor, MethodContext, Predictor
from aar.w2s.heads import LogisticHead

_CACHE: dict[tuple[str, int], Any] = {{}}  # seed-independent work, shared by seeds


def _cached(kind: str, x: np.ndarray, size: int, fn: Callable[[np.ndarray, int], Any]) -> Any:
    digest = hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]
    k = (f"{{kind}}:{{digest}}", size)
    if k not in _CACHE:
        _CACHE[k] = fn(x, size)
    return _CACHE[k]


def _keep_confident(target: np.ndarray, labels: np.ndarray, prior: float,
                    keep: float) -> np.ndarray:
    """1 for the most confident fraction ``keep`` of each class (distance of the score from
    the prior's threshold), else 0."""
    margin = np.abs(target - np.quantile(target, 1 - prior))
    mask = np.zeros(len(target))
    for c in (0, 1):
        idx = np.flatnonzero(labels == c)
        n = max(1, round(keep * len(idx)))
        mask[idx[np.argsort(-margin[idx], kind="stable")[:n]]] = 1.0
    return mask


def _on_projection(head: LogisticHead, proj: Projection) -> Predictor:
    """The head applied to the fitted PCA projection of any examples' strong features."""

    def predict(examples: Examples) -> np.ndarray:
        return head.predict_proba(proj(examples.strong_features))

    return FunctionPredictor(predict)

'''


def render(name: str, g: Genome, *, agent: str = "", direction: str = "",
           origin: str = "", dataset: str = "sentiment") -> str:
    """A method module running genome ``g``: a real file ``aar run`` (and the sandbox)
    can execute. It fits on ``unlabeled`` (and, when the genome is transductive, on the
    test inputs too, declared with ``@method(name, transductive=True)``) and returns a
    predictor: the head itself, or the head behind the fitted PCA projection when the
    genome projects, so it applies to examples it never saw. A non-transductive module
    never reads the test split."""
    n = normalize(g)
    active = _active(n)
    # ``transductive`` is how the method is registered, not a parameter
    sig = ", ".join(f"{x}: {type(n[x]).__name__} = {n[x]!r}" for x in active
                    if x != "transductive")
    summary = describe(n)
    trans = bool(n["transductive"])
    b: list[str] = [
        f'@method("{name}", transductive=True)' if trans else f'@method("{name}")',
        f"def {name}(ctx: MethodContext, *, {sig}) -> Predictor:",
        f'    """{summary[:1].upper() + summary[1:]}."""',
        "    l2 = l2_scale * ctx.default_l2  # the student's penalty, scaled",
        '    x_u, weak_u = ctx.strong_features["unlabeled"], ctx.weak_soft["unlabeled"]',
    ]
    if trans:
        b += ['    x_t, weak_t = ctx.strong_features["test"], ctx.weak_soft["test"]']
    if n["dims"]:
        fit_on = "np.concatenate([x_u, x_t])" if trans else "x_u"
        b += [f"    proj = _cached('pca-fit', {fit_on}, dims, fit_pca)  # fitted once, applied"
              " to any examples",
              "    x_u = proj(x_u)"]
        if trans:
            b += ["    x_t = proj(x_t)"]
    b += ["    prior = estimate_prior(weak_u)"]
    if trans:
        b += ["    x = np.concatenate([x_u, x_t])", "    weak = np.concatenate([weak_u, weak_t])"]
    else:
        b += ["    x, weak = x_u, weak_u"]
    b += ["    target = weak"]
    if n["k"]:
        b += ["    neighbours = _cached('knn', x, k, lambda a, kk: knn_graph(a, kk)[0])",
              "    target = propagate(target, neighbours, rounds=rounds, alpha=alpha)"]
    if n["denoise"] in ("product", "channel"):
        b += ["    strong = cross_fit(x, prior_hard(target, prior).astype(np.float64), "
              "rng=ctx.rng, l2=l2)"]
        if n["denoise"] == "product":
            b += ["    target = product_of_experts([strong, target], [beta, 1.0], prior=prior)"]
        else:
            b += ["    target, _ = noisy_channel_posterior(strong, target, bins=bins)"]
    elif n["denoise"] == "ue":
        b += ["    z_ue = _cached('pca', x, ue_dims, principal_components)",
              "    _, _, target = coherence_search(",
              "        z_ue, prior_hard(target, prior), prior=prior, iters=8, l2=l2_scale,",
              "        weak_bins=confidence_bins(weak, 10), n_bins=10)"]
    b += ["    labels = prior_hard(target, prior)", "    weights = np.ones(len(target))"]
    if n["keep"] < 1:
        b += ["    weights *= _keep_confident(target, labels, prior, keep)"]
    if n["delta"]:
        b += ["    assent = cross_fit(x, labels.astype(np.float64), rng=ctx.rng, l2=l2)",
              "    weights *= np.maximum(np.where(labels == 1, assent, 1 - assent), 0.01) "
              "** delta"]
    b += ["    y = labels.astype(np.float64) if hard else target",
          "    weights = weights / weights.mean()",
          "    head = ctx.train_strong(y, weights, x=x, l2=l2)"]
    if n["st_rounds"]:
        b += ["    for _ in range(st_rounds):",
              "        own = prior_hard(head.predict_proba(x), prior).astype(np.float64)",
              "        y = anchor * y + (1 - anchor) * own",
              "        head = ctx.train_strong(y, weights, x=x, l2=l2, init=head)"]
    if n["dims"]:
        b += ["    return _on_projection(head, proj)", ""]
    else:
        b += ["    return head  # the harness applies it to the test split's strong features",
              ""]
    fits_on = ("It fits on the unlabeled split and the test split's inputs (declared\n"
               "transductive; no label is read) and returns a predictor, which the harness\n"
               "applies to the test split." if trans else
               "It fits on the unlabeled split only and returns a predictor, which the\n"
               "harness applies to the test split (and verification to unseen examples).")
    header = _HEADER.format(name=name, summary=summary, agent=agent or "?",
                            direction=direction or "?", origin=origin or "a new candidate",
                            dataset=dataset, fits_on=fits_on)
    return header + "\n" + "\n".join(b)
