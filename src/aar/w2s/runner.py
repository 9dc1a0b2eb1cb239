"""Run a method over seeds, score it against the vault, and keep a re-runnable record."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import aar
from aar.data.prepare import prepare
from aar.data.splits import PUBLIC
from aar.errors import AarError
from aar.methods import resolve_method
from aar.settings import get_settings
from aar.util import atomic_write_json, read_json, stable_hash
from aar.w2s import baselines
from aar.w2s.context import examples_of, fit_predict
from aar.w2s.metrics import MIN_GAP, gap_warning
from aar.w2s.scoring import Scorer


@dataclass(frozen=True)
class RunConfig:
    method: str
    dataset: str = "sentiment"
    weak: str = "l3"
    strong: str = "mpnet"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    params: dict[str, Any] = field(default_factory=dict)


def run(cfg: RunConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run ``cfg`` and return its record (also written under ``$AAR_HOME/results``)."""
    spec = resolve_method(cfg.method)
    params = spec.resolve_params(cfg.params)
    if not cfg.seeds:
        raise AarError("give at least one seed")
    prep = prepare(cfg.dataset)
    scorer = Scorer.of(prep, cfg.weak, cfg.strong)
    baselines.student_l2(prep, cfg.weak, cfg.strong)
    examples = examples_of(prep.workspace, cfg.weak, cfg.strong)
    per_seed = []
    t_all = time.perf_counter()
    for seed in cfg.seeds:
        if progress:
            progress(f"seed {seed}")
        t0 = time.perf_counter()
        probs = fit_predict(spec, prep.workspace, cfg.weak, cfg.strong, seed, params, examples)
        seconds = time.perf_counter() - t0
        scores = scorer.score(probs)
        per_seed.append({
            "seed": seed, "seconds": seconds,
            "scores": {s: asdict(v) for s, v in scores.items()},
            "predictions": probs.tolist(),
        })
    summary = scorer.summary(np.array([r["predictions"] for r in per_seed]))
    weak_acc, ceil_acc = scorer.fixed[PUBLIC]
    record = {
        "kind": "aar.run",
        "config": {**asdict(cfg), "seeds": list(cfg.seeds), "params": params,
                   "method": spec.name, "method_ref": cfg.method},
        "transductive": spec.transductive,
        "dataset_key": prep.key,
        "code_hash": spec.code_hash(),
        "aar_version": aar.__version__,
        "python": platform.python_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - t_all,
        "test_ids": prep.workspace.ids("test"),
        "summary": summary,
        "warning": gap_warning(weak_acc, ceil_acc) or (
            None if summary[PUBLIC]["gap_ok"] else
            f"gap too small: the interval of ceiling - weak reaches below {MIN_GAP}, so "
            "PGR is not reported"),
        "seeds": per_seed,
    }
    run_id = f"{spec.name}-{prep.name}-{stable_hash(record['config'], 8)}-{int(time.time())}"
    record["run_id"] = run_id
    path = get_settings().results_dir / f"{run_id}.json"
    atomic_write_json(path, record)
    record["path"] = str(path)
    return record


def rerun(path: Path) -> tuple[dict[str, Any], bool]:
    """Re-run a record's config; returns the new record and whether every prediction is
    bit-identical to the stored one."""
    if not path.is_file():
        raise AarError(f"no result record at {path}")
    old = read_json(path)
    if old.get("kind") != "aar.run":
        raise AarError(f"{path} is not an aar run record")
    c = old["config"]
    cfg = RunConfig(c["method_ref"], c["dataset"], c["weak"], c["strong"],
                    tuple(c["seeds"]), c["params"])
    new = run(cfg)
    same = [a["predictions"] for a in old["seeds"]] == [b["predictions"] for b in new["seeds"]]
    if new["code_hash"] != old["code_hash"]:
        same = False
    return new, same
