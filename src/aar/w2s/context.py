"""The method contract: what a method receives, and the predictor it returns.

A method *fits* on the ``unlabeled`` split — texts, ids, weak and strong features and the
weak teacher's soft labels, all in a :class:`MethodContext` built from the workspace
export alone — and returns a *predictor*. The harness, not the method, applies the
predictor to the test split (and verification applies it to examples it never saw), so a
method cannot train on test inputs by accident. A method registered with
``@method(name, transductive=True)`` also gets the test inputs (``ctx.test``); the
leaderboard marks such results and ranks them apart.

A predictor is any of:

- a head with ``predict_proba(strong_features)`` (what ``ctx.train_strong`` returns);
- an object with ``predict(examples: Examples) -> P(y=1)``;
- a function ``examples -> P(y=1)``.

No ground-truth label of any split, no labeled-split example and nothing about which test
ids are public is reachable from here.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from aar.data.store import Workspace
from aar.errors import AarError
from aar.util import read_json
from aar.w2s.features import split_features
from aar.w2s.heads import LogisticHead, fit_logistic

FALLBACK_L2 = 1.0  # only when no cross-validated default is stored (old workspaces)


@dataclass(frozen=True)
class Examples:
    """Inputs of some examples, never their labels: what a method fits on (``unlabeled``)
    and what a predictor is applied to (``test``, or unseen examples in verification)."""

    ids: list[str]
    texts: list[str]
    weak_features: np.ndarray
    strong_features: np.ndarray
    weak_soft: np.ndarray  # the weak teacher's P(y=1)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def weak_hard(self) -> np.ndarray:
        return (self.weak_soft >= 0.5).astype(np.int64)


@runtime_checkable
class Predictor(Protocol):
    def predict(self, examples: Examples) -> np.ndarray: ...


@dataclass(frozen=True)
class HeadPredictor:
    """A head on strong features, as a predictor."""

    head: Any  # LogisticHead, GDHead, or anything with predict_proba(features)

    def predict(self, examples: Examples) -> np.ndarray:
        return np.asarray(self.head.predict_proba(examples.strong_features))


@dataclass(frozen=True)
class FunctionPredictor:
    fn: Callable[[Examples], Any]

    def predict(self, examples: Examples) -> np.ndarray:
        return np.asarray(self.fn(examples))


def as_predictor(out: object, method: str = "method") -> Predictor:
    """What a method returned, as a predictor; a clear error for anything else (such as
    test probabilities, the old contract)."""
    if hasattr(out, "predict_proba"):  # before ``predict``: a scikit-learn model's
        return HeadPredictor(out)       # ``predict`` gives classes, not probabilities
    if isinstance(out, Predictor):
        return out
    if callable(out):
        return FunctionPredictor(out)
    raise AarError(
        f"{method} returned {type(out).__name__}, not a predictor: return the head from "
        "ctx.train_strong(...), an object with predict(examples), or a function of "
        "examples (the harness applies it to the test split)"
    )


class _Splits(Mapping[str, Any]):
    """``ctx.weak_soft["unlabeled"]``-style views; asking for ``test`` in a method that
    is not transductive is a clear error rather than a KeyError."""

    def __init__(self, values: dict[str, Any], method_hint: str) -> None:
        self._values = values
        self._hint = method_hint

    def __getitem__(self, split: str) -> Any:
        if split in self._values:
            return self._values[split]
        if split == "test":
            raise AarError("test inputs are not given to this method: return a predictor and "
                           "the harness applies it to the test split, or register the method "
                           f"with @method({self._hint!r}, transductive=True)")
        raise AarError(f"no split {split!r} here: a method fits on 'unlabeled'"
                       " (the labeled split stays with the weak teacher)")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


@dataclass
class MethodContext:
    dataset: str
    seed: int
    unlabeled: Examples
    test: Examples | None  # only for transductive methods
    rng: np.random.Generator
    default_l2: float = FALLBACK_L2  # chosen by cross-validation on weak labels only
    params: dict[str, Any] = field(default_factory=dict)
    method_name: str = "name"
    # ``--student lora``: ``train_strong`` fine-tunes the strong LM on ``unlabeled.texts``
    # (an object with ``fit(texts, target, weights, seed) -> predictor``); None: the head
    student: Any = None

    def _view(self, attr: str) -> _Splits:
        splits = {"unlabeled": self.unlabeled, **({"test": self.test} if self.test else {})}
        return _Splits({s: getattr(e, attr) for s, e in splits.items()}, self.method_name)

    @property
    def ids(self) -> _Splits:
        return self._view("ids")

    @property
    def texts(self) -> _Splits:
        return self._view("texts")

    @property
    def weak_soft(self) -> _Splits:
        return self._view("weak_soft")

    @property
    def weak_hard(self) -> _Splits:
        return self._view("weak_hard")

    @property
    def weak_features(self) -> _Splits:
        return self._view("weak_features")

    @property
    def strong_features(self) -> _Splits:
        if self.student is not None:
            raise AarError(f"method {self.method_name!r} reads strong features, which the LoRA "
                           "student does not have (it fine-tunes the language model itself): "
                           "run it with the head student, or use a method that only sets "
                           "targets and weights (vanilla, vanilla_soft, confident)")
        return self._view("strong_features")

    def train_strong(
        self,
        target: np.ndarray,
        weights: np.ndarray | None = None,
        *,
        x: np.ndarray | None = None,
        l2: float | None = None,
        max_iter: int = 200,
        init: LogisticHead | None = None,
    ) -> LogisticHead:  # with the LoRA student: its predictor (Any, typed as the head)
        """Fit a logistic head on strong features (``unlabeled`` unless ``x`` is given) to
        soft or hard ``target`` with optional per-example ``weights``. ``l2`` defaults to
        ``ctx.default_l2``, the penalty 5-fold cross-validation chose on the weak labels.

        With the LoRA student (``--student lora``) this fine-tunes the strong language
        model on ``unlabeled.texts`` instead and returns its predictor; ``x``, ``l2``,
        ``max_iter`` and ``init`` belong to the head and are refused (``l2`` ignored)."""
        if self.student is not None:
            if x is not None or init is not None:
                raise AarError("x= and init= need the logistic head student; the LoRA student "
                               "trains on ctx.unlabeled's texts (drop them, or run without "
                               "--student lora)")
            return self.student.fit(self.unlabeled.texts, target, weights,
                                    self.seed)
        feats = self.unlabeled.strong_features if x is None else x
        return fit_logistic(feats, target, weights, l2=self.default_l2 if l2 is None else l2,
                            max_iter=max_iter, init=init)


def load_weak_soft(ws: Workspace, weak: str) -> dict[str, np.ndarray]:
    path = ws.weak_path(weak)
    if not path.exists():
        raise AarError(
            f"no weak labels from {weak!r} for {ws.manifest['dataset']}; "
            f"run `aar setup --dataset {ws.manifest['dataset']} --weak {weak}` first"
        )
    with np.load(path) as z:
        return {k: np.asarray(z[k], dtype=np.float64) for k in z.files}


def examples_of(ws: Workspace, weak: str, strong: str) -> dict[str, Examples]:
    """The workspace's ``unlabeled`` and ``test`` splits as :class:`Examples`."""
    soft = load_weak_soft(ws, weak)
    wf, sf = split_features(ws, weak), split_features(ws, strong)
    return {s: Examples(ws.ids(s), ws.texts(s), wf[s], sf[s], soft[s])
            for s in ("unlabeled", "test")}


def default_l2(ws: Workspace, weak: str, strong: str) -> float:
    path = ws.student_path(weak, strong)
    return float(read_json(path)["l2"]) if path.exists() else FALLBACK_L2


def build_context(
    ws: Workspace, weak: str, strong: str, seed: int, params: dict[str, Any] | None = None,
    *, transductive: bool = False, method_name: str = "name",
    examples: dict[str, Examples] | None = None, student: Any = None,
) -> MethodContext:
    """Assemble the context for one seed from the workspace alone."""
    ex = examples or examples_of(ws, weak, strong)
    return MethodContext(
        dataset=ws.manifest["dataset"],
        seed=seed,
        unlabeled=ex["unlabeled"],
        test=ex["test"] if transductive else None,
        rng=np.random.default_rng(seed),
        default_l2=default_l2(ws, weak, strong),
        params=dict(params or {}),
        method_name=method_name,
        student=student,
    )


def fit_predict(spec: Any, ws: Workspace, weak: str, strong: str, seed: int,
                params: dict[str, Any], examples: dict[str, Examples] | None = None,
                targets: Examples | None = None, student: Any = None) -> np.ndarray:
    """One seed of a method: fit on the workspace, apply the predictor to ``targets``
    (default: the test split). ``spec`` is a ``MethodSpec``; ``student``: see
    :attr:`MethodContext.student`."""
    from aar.w2s.scoring import check_predictions

    ex = examples or examples_of(ws, weak, strong)
    ctx = build_context(ws, weak, strong, seed, params, transductive=spec.transductive,
                        method_name=spec.name, examples=ex, student=student)
    target = targets or ex["test"]
    try:
        predictor = as_predictor(spec.fn(ctx, **params), f"method {spec.name!r}")
        out = predictor.predict(target)
    except AarError:
        raise
    except Exception as exc:  # the method's own bug: one line that says where
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise AarError(f"method {spec.name!r} failed: {type(exc).__name__}: {exc} "
                       f"({where.filename}:{where.lineno})") from exc
    return check_predictions(out, len(target))
