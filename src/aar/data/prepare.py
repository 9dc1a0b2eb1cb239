"""Build a dataset once, split it, and write the vault and the label-free workspace.

The dataset key is content-addressed: a hash of the ids, texts and labels of the built
examples plus the split settings. An index maps a request (dataset reference, builder
version, sizes, seed, and the input file's size and mtime for file datasets) to its key, so
preparing an already prepared dataset costs a file read.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from aar.data.features import SHIPPED_VERSION, features_file, save_features
from aar.data.packages import ensure_package
from aar.data.pairs import is_pairwise
from aar.data.registry import Built, SplitSizes, parse_dataset
from aar.data.splits import make_splits
from aar.data.store import Vault, Workspace
from aar.errors import AarError
from aar.settings import get_settings
from aar.util import atomic_write_json, read_json, stable_hash


@dataclass(frozen=True)
class Prepared:
    ref: str  # what the user asked for, e.g. "sentiment" or "jsonl:/data/x.jsonl"
    name: str
    key: str

    @cached_property  # one object per Prepared, so its loaded records are kept
    def vault(self) -> Vault:
        return Vault(self.key)

    @cached_property
    def workspace(self) -> Workspace:
        return Workspace(self.key)


# Bump when what the vault or the workspace holds changes: datasets are prepared anew.
LAYOUT = "3"  # 2: the labeled split only in the vault, which holds a secret; 3: pairwise


def _request_key(ref: str, version: str, sizes: SplitSizes, seed: int) -> str:
    _, _, arg = ref.partition(":")
    stat = None
    if arg and os.path.exists(arg):
        st = os.stat(arg)
        stat = [os.path.abspath(arg), st.st_size, st.st_mtime_ns]
    return stable_hash([ref, version, LAYOUT, sizes.__dict__, seed, stat])


def _index_path() -> Path:
    return get_settings().workspace_dir / "index.json"


def _content_key(name: str, built: Built, sizes: SplitSizes, seed: int) -> str:
    h = hashlib.sha256()
    for ex in built.examples:
        h.update(f"{ex.id}\x00{ex.text}\x00{ex.label}\x00{ex.group}\x01".encode())
    return f"{name}-{stable_hash([h.hexdigest(), LAYOUT, sizes.__dict__, seed], 10)}"


def default_key(ref: str) -> str | None:
    """The key ``prepare(ref)`` (default sizes, seed 0) made here, if it made one: the
    canonical meaning of a bare dataset name when re-drawn splits of it exist too."""
    spec, params = parse_dataset(ref)
    req = _request_key(ref, spec.version, spec.default_sizes(params), 0)
    index = read_json(_index_path()) if _index_path().exists() else {}
    key = index.get(req)
    return key if isinstance(key, str) else None


def prepare(ref: str, sizes: SplitSizes | None = None, seed: int = 0) -> Prepared:
    """Prepare ``ref`` (idempotent) and return its handle."""
    spec, params = parse_dataset(ref)
    sizes = sizes or spec.default_sizes(params)
    req = _request_key(ref, spec.version, sizes, seed)
    index = read_json(_index_path()) if _index_path().exists() else {}
    key = index.get(req)
    if key and Vault(key).exists() and Workspace(key).exists():
        return Prepared(ref, spec.name, key)
    for package in spec.packages:
        ensure_package(package)
    built = spec.build(params)
    key = _content_key(spec.name, built, sizes, seed)
    if not (Vault(key).exists() and Workspace(key).exists()):
        _write(spec.name, key, built, sizes, seed)
    index = read_json(_index_path()) if _index_path().exists() else {}
    index[req] = key
    atomic_write_json(_index_path(), index)
    return Prepared(ref, spec.name, key)


def _write(name: str, key: str, built: Built, sizes: SplitSizes, seed: int) -> None:
    examples = built.examples
    ids = [ex.id for ex in examples]
    if len(set(ids)) != len(ids):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise AarError(f"dataset {name} has a duplicate id {dup!r}; ids must be unique")
    bad = [ex.id for ex in examples if ex.label not in (0, 1)]
    if bad:
        raise AarError(f"dataset {name}: label of {bad[0]!r} is not 0 or 1")
    splits = make_splits(examples, sizes, seed)
    by_id = {ex.id: ex for ex in examples}
    labels = {ex.id: int(ex.label) for ex in examples}
    balance = {
        s: {"n": len(v), "positive": sum(labels[i] for i in v)} for s, v in splits.ids.items()
    }
    pairwise = is_pairwise([ex.text for ex in examples])
    vault = Vault(key)
    vault.write(labels, splits.ids,
                {"dataset": name, "balance": balance, "seed": seed, "pairwise": pairwise},
                {i: by_id[i].text for i in splits.ids["labeled"]})
    test = sorted(splits.ids["test_public"] + splits.ids["test_private"])
    order = {"unlabeled": splits.ids["unlabeled"], "test": test}
    records = {s: [(i, by_id[i].text) for i in v] for s, v in order.items()}
    ws = Workspace(key)
    if built.features:  # shipped features: the labeled split's go to the vault's own cache
        pos = {ex.id: k for k, ex in enumerate(examples)}
        rows = [pos[i] for s in ("unlabeled", "test") for i in order[s]]
        texts = [by_id[i].text for s in ("unlabeled", "test") for i in order[s]]
        lab = [pos[i] for i in splits.ids["labeled"]]
        lab_texts = [by_id[i].text for i in splits.ids["labeled"]]
        shared = get_settings().features_dir
        for enc, arr in built.features.items():
            for root, these, part in ((shared, texts, arr[rows]),
                                      (vault.features_dir, lab_texts, arr[lab])):
                save_features(features_file(root, enc, SHIPPED_VERSION, these), enc, these,
                              part)
    ws.write(records, {"dataset": name, "key": key, "pairwise": pairwise,
                       "sizes": {"labeled": len(splits.ids["labeled"]),
                                 **{s: len(v) for s, v in order.items()}}})
