"""Scoring submissions against the vault, fast: each dataset's scorer (test ids, vault
labels, the fixed baselines' test predictions: ``aar.w2s.scoring.Scorer``, the one scorer
of the code base) is loaded once per process and kept in memory.

The server accepts every dataset prepared in its ``$AAR_HOME`` (by key, or by name when
the name is unambiguous) plus the references it was configured with (prepared at first
use). Only the merged ``test`` split is scored; which of its ids are public and which
private is never revealed.

What agents are told about the baselines is the *published* pair: weak and ceiling
accuracy on the public half rounded to the Ladder's step ``eta``; every PGR an agent sees
is computed from it. Admins see the exact ones.

Every dataset belongs to a *universe*: the set of its underlying examples (a hash of the
ids of every example the dataset was built from, whatever its split sizes and seed). A
canary of X (labels permuted among X's examples) and every re-drawn split of X share X's
universe, so the evaluation budget of their labels is one account
(``aar.server.submissions``).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aar.data.prepare import Prepared, default_key, prepare
from aar.data.splits import PRIVATE, PUBLIC
from aar.data.store import Workspace
from aar.errors import AarError
from aar.server.errors import ApiError, bad_request
from aar.settings import get_settings
from aar.w2s.metrics import Interval, gap_ok, pgr
from aar.w2s.scoring import Scorer, SplitScore

SPLITS = (PUBLIC, PRIVATE)


def encoders_for(name: str, workspace: Workspace | None = None) -> tuple[str, str]:
    """(weak, strong) encoders of a dataset's fixed baselines: the dataset's own, and the
    synthetic testbed's for datasets that carry its shipped features (``canary:synthetic``)."""
    from aar.data.registry import default_encoders
    from aar.models.cache import has_features

    shipped = (name == "canary" and workspace is not None
               and has_features("syn_weak", workspace.all_texts()))
    return ("syn_weak", "syn_strong") if shipped else default_encoders(name)


def score_dict(s: SplitScore) -> dict[str, float | None]:
    return {k: _finite(getattr(s, k)) for k in ("accuracy", "auroc", "pgr")}


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def on_grid(x: float, eta: float) -> float:
    """``x`` rounded to the nearest multiple of ``eta`` (what is published)."""
    return round(round(x / eta) * eta, 10)


def universe_of(example_ids: list[str]) -> str:
    """The budget account's key for a set of underlying examples."""
    h = hashlib.sha256("\n".join(sorted(example_ids)).encode()).hexdigest()
    return f"ex-{h[:16]}"


@dataclass
class LoadedDataset:
    key: str
    name: str
    weak: str
    strong: str
    scorer: Scorer = field(repr=False)
    eta: float  # the grid the published baselines are rounded to
    universe: str  # the underlying examples: the budget account (see the module doc)
    gap: dict[str, Interval] = field(repr=False)  # split -> ceiling - weak (bootstrap)
    index: dict[str, int] = field(repr=False)  # test id -> position
    unlabeled: frozenset[str] = field(repr=False)  # ids of the workspace's other split

    @property
    def ids(self) -> list[str]:
        return self.scorer.ids

    @property
    def n(self) -> int:
        return self.scorer.n

    @property
    def ids_sha256(self) -> str:
        return hashlib.sha256("\n".join(self.ids).encode()).hexdigest()

    @property
    def baselines(self) -> dict[str, dict[str, float]]:
        """split -> exact {"weak", "ceiling"} accuracies (admins and the audit log)."""
        return {s: {"weak": w, "ceiling": c} for s, (w, c) in self.scorer.fixed.items()}

    @property
    def published(self) -> dict[str, float]:
        """The public half's baselines rounded to ``eta``: all agents are told."""
        w, c = self.scorer.fixed[PUBLIC]
        return {"weak": on_grid(w, self.eta), "ceiling": on_grid(c, self.eta)}

    def gap_ok(self, split: str) -> bool:
        """Whether PGR means anything on ``split``: the gap and its interval's lower end are
        at least ``MIN_GAP`` (else every PGR is "gap too small", never ranked)."""
        return gap_ok(self.gap[split])

    def size(self, split: str) -> int:
        return len(self.scorer.index[split])

    def positives(self, split: str) -> int:
        return int(self.scorer.labels[split].sum())

    def public_info(self) -> dict[str, object]:
        return {"name": self.name, "key": self.key, "n_test": self.n,
                "ids_sha256": self.ids_sha256, "weak": self.weak, "strong": self.strong}

    def align(self, ids: list[str], probs: list[float]) -> np.ndarray:
        """Predictions in workspace test order; a 400 naming the first problem otherwise."""
        if len(ids) != len(probs):
            raise bad_request(f"'ids' has {len(ids)} entries but 'probs' has {len(probs)}; "
                              "give one probability per id")
        arr = np.asarray(probs, dtype=np.float64)
        finite = np.isfinite(arr)
        if not finite.all():
            i = int(np.argmin(finite))
            raise bad_request(f"probs[{i}] (id {ids[i]!r}) is {arr[i]}; every probability "
                              "must be a finite number")
        outside = (arr < 0) | (arr > 1)
        if outside.any():
            i = int(np.argmax(outside))
            raise bad_request(f"probs[{i}] (id {ids[i]!r}) is {arr[i]}, outside [0, 1]")
        if ids == self.ids:
            return arr
        pos = np.empty(len(ids), dtype=np.int64)
        for k, sid in enumerate(ids):
            p = self.index.get(sid)
            if p is None:
                if sid in self.unlabeled:
                    raise bad_request(f"id {sid!r} is in the unlabeled split: only test ids "
                                      "are scored")
                raise bad_request(f"unknown id {sid!r}: not a test id of dataset {self.name}")
            pos[k] = p
        counts = np.bincount(pos, minlength=self.n)
        if (counts > 1).any():
            raise bad_request(f"duplicate id {self.ids[int(np.argmax(counts > 1))]!r}: "
                              "give each test id once")
        if len(ids) < self.n:
            missing = self.ids[int(np.argmin(counts))]
            raise bad_request(f"missing predictions for {self.n - len(ids)} of {self.n} test "
                              f"ids (e.g. {missing!r}); predict every test id")
        out = np.empty(self.n, dtype=np.float64)
        out[pos] = arr
        return out

    def score(self, probs: np.ndarray) -> dict[str, SplitScore]:
        """Exact scores on both halves (``Scorer.score``, exact baselines): stored, and
        shown to admins only."""
        return self.scorer.score(probs)

    def public_interval(self, accuracy: float, noise: float) -> dict[str, float] | None:
        """A 95% interval for the PGR of a public accuracy an agent was told, computed from
        public numbers only (that accuracy, the published baselines, the public half's size,
        ``eta`` and the Ladder's noise), so it tells nothing more than they do: normal
        approximation with the binomial sampling of the test examples for the method and
        both baselines taken as independent (wider than the paired bootstrap admins see),
        plus the rounding to ``eta`` and the Ladder's Laplace noise. None when the gap is
        too small."""
        if not self.gap_ok(PUBLIC):
            return None
        b = self.published
        w, c, a, n = b["weak"], b["ceiling"], accuracy, max(self.size(PUBLIC), 1)
        g = c - w
        if not g > 0:
            return None
        rounding = self.eta ** 2 / 12

        def var(x: float) -> float:
            return min(max(x * (1 - x), 0.0), 0.25) / n + rounding

        v = (var(a) + 2 * noise ** 2) / g ** 2 + var(w) * ((a - c) / g ** 2) ** 2 \
            + var(c) * ((a - w) / g ** 2) ** 2
        mean, half = (a - w) / g, 1.96 * math.sqrt(v)
        return {"mean": round(mean, 4), "low": round(mean - half, 4),
                "high": round(mean + half, 4), "ci95": round(half, 4)}

    def pgr_of(self, accuracy: float) -> float:
        """PGR of a public accuracy from the *published* baselines: what agents see."""
        b = self.published
        return pgr(accuracy, b["weak"], b["ceiling"])


def _read_manifest(path: Path) -> dict[str, str] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and isinstance(data.get("key"), str):
        return {"key": data["key"], "name": str(data.get("dataset", ""))}
    return None


class Catalog:
    """The datasets this server scores, loaded on first use and kept in memory."""

    def __init__(self, refs: tuple[str, ...] = (), eta: float = 0.01) -> None:
        self.refs = refs
        self.eta = eta
        self._loaded: dict[str, LoadedDataset] = {}  # key or alias -> dataset
        self._lock = threading.Lock()

    def prepared(self) -> list[dict[str, str]]:
        """Datasets prepared in ``$AAR_HOME`` (workspace and vault both present)."""
        root = get_settings().workspace_dir
        out = []
        if root.is_dir():
            for manifest in sorted(root.glob("*/manifest.json")):
                info = _read_manifest(manifest)
                if info and Prepared(info["key"], info["name"], info["key"]).vault.exists():
                    out.append(info)
        return out

    def available(self) -> list[dict[str, object]]:
        known = {d["key"]: d for d in self.prepared()}
        return [{"name": d["name"], "key": k, "refs": [r for r, v in self._loaded.items()
                                                      if v.key == k and r != k]}
                for k, d in known.items()]

    def in_universe(self, universe: str) -> list[LoadedDataset]:
        """Loaded datasets over the same underlying examples (each once)."""
        seen = {d.key: d for d in list(self._loaded.values()) if d.universe == universe}
        return list(seen.values())

    def loaded(self, ref: str) -> bool:
        return ref in self._loaded

    def get(self, ref: str) -> LoadedDataset:
        hit = self._loaded.get(ref)
        if hit is not None:
            return hit
        with self._lock:
            hit = self._loaded.get(ref)
            if hit is None:
                hit = self._load(self._resolve(ref))
                self._loaded[ref] = hit
                self._loaded[hit.key] = hit
            return hit

    def _resolve(self, ref: str) -> Prepared:
        if ref in self.refs:
            try:
                return prepare(ref)
            except AarError as exc:
                raise ApiError(409, f"dataset {ref!r} could not be prepared: {exc}") from None
        known = self.prepared()
        for d in known:
            if d["key"] == ref:
                return Prepared(ref, d["name"], d["key"])
        by_name = [d for d in known if d["name"] == ref]
        if len(by_name) == 1:
            return Prepared(ref, ref, by_name[0]["key"])
        if len(by_name) > 1:
            canonical = default_key(ref)
            if canonical in {d["key"] for d in by_name}:
                return Prepared(ref, ref, canonical)
            keys = ", ".join(d["key"] for d in by_name)
            raise bad_request(f"dataset name {ref!r} is ambiguous here: use one of the keys "
                              f"{keys}")
        names = sorted({d["name"] for d in known} | set(self.refs))
        raise ApiError(404, f"unknown dataset {ref!r}; this server scores: "
                            f"{', '.join(names) or 'none (run `aar setup` on the server)'}")

    def _load(self, prep: Prepared) -> LoadedDataset:
        name = prep.vault.meta.get("dataset", prep.name) if prep.vault.exists() else prep.name
        weak_enc, strong_enc = encoders_for(name, prep.workspace)
        try:
            scorer = Scorer.of(prep, weak_enc, strong_enc)
            unlabeled = frozenset(prep.workspace.ids("unlabeled"))
            universe = universe_of(list(prep.vault.labels))
        except AarError as exc:
            raise ApiError(409, f"dataset {prep.key} has no baselines on this server: {exc}") \
                from None
        except (OSError, KeyError, ValueError) as exc:  # a vault of an older layout
            raise ApiError(409, f"dataset {prep.key} cannot be scored here "
                                f"({type(exc).__name__}: {exc}); prepare it again with "
                                "`aar setup`") from None
        # The gap's interval does not depend on a method: bootstrap the weak teacher itself.
        gap = {s: scorer.bootstrap(scorer.weak_probs, s).gap for s in SPLITS}
        index = {i: k for k, i in enumerate(scorer.ids)}
        return LoadedDataset(prep.key, name, weak_enc, strong_enc, scorer, self.eta, universe,
                             gap, index, unlabeled)
