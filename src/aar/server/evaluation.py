"""Scoring submissions against the vault, fast: each dataset's test ids, vault labels and
fixed baselines are loaded once per process and kept in memory.

The server accepts every dataset prepared in its ``$AAR_HOME`` (by key, or by name when
the name is unambiguous) plus the references it was configured with (prepared at first
use). Only the merged ``test`` split is scored; which of its ids are public and which
private is never revealed.
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
from aar.w2s import baselines
from aar.w2s.metrics import pgr

SPLITS = (PUBLIC, PRIVATE)


def encoders_for(name: str, workspace: Workspace | None = None) -> tuple[str, str]:
    """(weak, strong) encoders of a dataset's fixed baselines: the synthetic testbed's own
    for ``synthetic`` and for datasets that carry its shipped features (``canary:synthetic``),
    else l3 -> mpnet."""
    from aar.models.cache import has_features

    shipped = (name == "canary" and workspace is not None
               and has_features("syn_weak", workspace.all_texts()))
    return ("syn_weak", "syn_strong") if name == "synthetic" or shipped else ("l3", "mpnet")


@dataclass(frozen=True)
class Score:
    accuracy: float
    auroc: float
    pgr: float

    def as_dict(self) -> dict[str, float | None]:
        return {k: _finite(getattr(self, k)) for k in ("accuracy", "auroc", "pgr")}


def fast_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC as P(score_pos > score_neg) + P(tie) / 2: equal to ``aar.w2s.metrics.auroc``
    (the rank-sum form) with one sort of the negatives instead of ranking everything."""
    y = labels.astype(bool)
    pos, neg = np.sort(scores[y]), np.sort(scores[~y])  # sorted keys search faster
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    below = np.searchsorted(neg, pos, side="left")
    upto = np.searchsorted(neg, pos, side="right")
    return float((below.sum() + 0.5 * (upto - below).sum()) / (len(pos) * len(neg)))


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class LoadedDataset:
    key: str
    name: str
    ids: list[str]
    weak: str
    strong: str
    baselines: dict[str, dict[str, float]]  # split -> {"weak": acc, "ceiling": acc}
    index: dict[str, int] = field(repr=False)
    split_of_other: dict[str, str] = field(repr=False)  # labeled/unlabeled id -> split
    idx: dict[str, np.ndarray] = field(repr=False)
    labels: dict[str, np.ndarray] = field(repr=False)

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def ids_sha256(self) -> str:
        return hashlib.sha256("\n".join(self.ids).encode()).hexdigest()

    def size(self, split: str) -> int:
        return len(self.idx[split])

    def positives(self, split: str) -> int:
        return int(self.labels[split].sum())

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
                split = self.split_of_other.get(sid)
                if split is not None:
                    raise bad_request(f"id {sid!r} is in the {split} split: only test ids are "
                                      "scored")
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

    def score(self, probs: np.ndarray) -> dict[str, Score]:
        out = {}
        for split in SPLITS:
            p = probs[self.idx[split]]
            y = self.labels[split]
            acc = float(np.mean((p >= 0.5) == y))
            b = self.baselines[split]
            out[split] = Score(acc, fast_auroc(p, y), pgr(acc, b["weak"], b["ceiling"]))
        return out

    def pgr_of(self, accuracy: float, split: str = PUBLIC) -> float:
        b = self.baselines[split]
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

    def __init__(self, refs: tuple[str, ...] = ()) -> None:
        self.refs = refs
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
            weak = baselines.weak_teacher(prep, weak_enc)
            ceil = baselines.ceiling(prep, strong_enc)
            ws = prep.workspace
            ids = ws.ids("test")
            other = {i: s for s in ("labeled", "unlabeled") for i in ws.ids(s)}
            vault = prep.vault
            index = {i: k for k, i in enumerate(ids)}
            idx = {s: np.array([index[i] for i in vault.splits[s]], dtype=np.int64)
                   for s in SPLITS}
            labels = {s: vault.split_labels(s) for s in SPLITS}
        except AarError as exc:
            raise ApiError(409, f"dataset {prep.key} has no baselines on this server: {exc}") \
                from None
        fixed = {s: {"weak": weak.fixed(s), "ceiling": ceil.fixed(s)} for s in SPLITS}
        return LoadedDataset(prep.key, name, ids, weak_enc, strong_enc, fixed, index, other,
                             idx, labels)
