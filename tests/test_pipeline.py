"""End to end on the synthetic testbed: prepare, baselines, run, re-run, the boundary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aar.data.prepare import prepare
from aar.data.store import Vault
from aar.errors import AarError
from aar.experiments.runner import RunConfig, rerun, run
from aar.settings import get_settings
from aar.w2s import baselines
from aar.w2s.context import build_context
from aar.w2s.scoring import Scorer

SYN = "synthetic:n=2000,seed=1"


def _cfg(method: str = "vanilla", **kw: object) -> RunConfig:
    return RunConfig(method, SYN, "syn_weak", "syn_strong", (0, 1, 2), **kw)  # type: ignore[arg-type]


def test_prepare_is_idempotent_and_content_addressed() -> None:
    a = prepare(SYN)
    b = prepare(SYN)
    assert a.key == b.key and a.key.startswith("synthetic-")
    assert prepare("synthetic:n=2000,seed=2").key != a.key
    splits = a.vault.splits
    assert set(splits) == {"labeled", "unlabeled", "test_public", "test_private"}
    assert sorted(a.workspace.ids("test")) == a.workspace.ids("test")
    assert set(a.workspace.ids("test")) == set(splits["test_public"]) | set(
        splits["test_private"])


def test_baselines_have_a_gap_and_are_cached() -> None:
    prep = prepare(SYN)
    scorer = Scorer.of(prep, "syn_weak", "syn_strong")
    weak, ceil = scorer.fixed["test_public"]
    assert ceil - weak > 0.08
    again = baselines.weak_teacher(prep, "syn_weak")
    assert np.array_equal(again.test_probs, scorer.weak_probs)


def test_run_records_and_reruns_bit_identically() -> None:
    rec = run(_cfg())
    s = rec["summary"]["test_public"]
    assert s["weak"] < s["ceiling"]
    assert np.isfinite(s["pgr"]["mean"]) and s["pgr"]["n"] == 3
    assert len(rec["seeds"]) == 3 and len(rec["seeds"][0]["predictions"]) == len(rec["test_ids"])
    assert rec["config"]["library"] is True  # the server's reference rows go by this
    new, same = rerun(Path(rec["path"]))
    assert same
    assert new["summary"]["test_public"]["pgr"] == s["pgr"]


def test_bad_inputs_get_clear_errors() -> None:
    with pytest.raises(AarError, match="unknown method"):
        run(_cfg("no_such_method"))
    with pytest.raises(AarError, match="has no parameter"):
        run(_cfg(params={"nope": 1}))
    with pytest.raises(AarError, match="unknown encoder"):
        run(RunConfig("vanilla", SYN, "no_such_encoder", "syn_strong", (0,)))


def _leaks(blob: str) -> list[str]:
    """Names that would mean a serialized object carries labels or the partition."""
    return [n for n in ('"label"', "test_public", "test_private", "public", "private")
            if n in blob]


def test_workspace_and_context_hold_no_labels_or_partition() -> None:
    prep = prepare(SYN)
    baselines.student_l2(prep, "syn_weak", "syn_strong")
    vault = Vault(prep.key)
    labels = vault.labels
    public = vault.splits["test_public"]
    # 1. Workspace files: records are exactly {id, text}; other JSON names no label/partition.
    ws_root = prep.workspace.root
    for path in ws_root.rglob("*"):
        if path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                assert set(json.loads(line)) == {"id", "text"}, path
        elif path.suffix == ".json":
            assert not _leaks(path.read_text()), path
        elif path.suffix == ".npz":
            with np.load(path) as z:
                assert set(z.files) == {"unlabeled", "test"}
                assert all(z[k].dtype.kind == "f" for k in z.files)
    assert not (ws_root / "labeled.jsonl").exists()
    # 2. The workspace and the vault are separate trees; the features cache too.
    settings = get_settings()
    assert not str(ws_root).startswith(str(settings.vault_dir))
    assert not str(settings.features_dir).startswith(str(settings.vault_dir))
    # 3. Test ids are in sorted order: their order carries no partition information.
    assert prep.workspace.ids("test") == sorted(public + vault.splits["test_private"])
    # 4. The context handed to methods holds no array equal to (or predicting) the labels.
    ctx = build_context(prep.workspace, "syn_weak", "syn_strong", 0)
    fields = {**vars(ctx), **{f"unlabeled.{k}": v for k, v in vars(ctx.unlabeled).items()}}
    for name, value in fields.items():
        arrays = value.values() if isinstance(value, dict) else [value]
        for arr in arrays:
            if isinstance(arr, np.ndarray) and arr.ndim >= 1 and arr.dtype.kind in "iub":
                for ids in ctx.ids.values():
                    if len(arr) == len(ids):
                        truth = np.array([labels[i] for i in ids])
                        assert not np.array_equal(arr, truth), name
    blob = json.dumps({"ids": dict(ctx.ids), "texts": dict(ctx.texts), "params": ctx.params})
    assert not _leaks(blob)
    # 5. Weak soft labels are imperfect (they are a model's output, not the truth).
    truth_u = np.array([labels[i] for i in ctx.ids["unlabeled"]])
    agree = np.mean((ctx.weak_soft["unlabeled"] >= 0.5) == truth_u)
    assert 0.55 < agree < 0.99
