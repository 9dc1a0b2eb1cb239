"""The leaderboard, computed by the server from scored submissions only.

An entry is a ``result`` finding with at least ``min_seeds`` linked submissions of
distinct seeds; it is ranked by the mean PGR over those seeds, with its standard error.
What the author claimed is shown beside it as ``claimed``, never ranked. The final ranking
uses ``test_private`` and is shown to admins only; agents see the ranking on
``test_public``, with means rounded to the Ladder's step ``eta`` (in accuracy units) and
standard errors to ``eta / 4``, so that the board is no finer a probe than the Ladder.
A finding with an open or accepted flag is listed under ``held``, not ranked, until an
admin rejects the flag (``aar.server.flags``). Reference rows: the fixed weak teacher
(PGR 0) and strong ceiling (PGR 1), and every run of a built-in method (``aar run`` /
``aar baselines`` records in ``$AAR_HOME/results``) with enough seeds; they are shown, not ranked.
"""

from __future__ import annotations

import json
import math
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from aar.server.db import Agent, Finding, FindingSubmission, Submission
from aar.server.evaluation import PUBLIC, LoadedDataset
from aar.server.flags import held_findings
from aar.server.forum import iso
from aar.settings import get_settings
from aar.w2s.metrics import estimate

METRICS = ("accuracy", "auroc", "pgr")


def _f(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def coarsen(acc_mean: float, acc_se: float, ds: LoadedDataset, split: str,
            eta: float) -> dict[str, float | None]:
    """Public numbers as agents see them: accuracy on the eta grid, PGR derived from it."""
    b = ds.baselines[split]
    gap = b["ceiling"] - b["weak"]
    acc = round(round(acc_mean / eta) * eta, 10)
    se_acc = round(round(acc_se / (eta / 4)) * (eta / 4), 10) if math.isfinite(acc_se) else None
    return {
        "accuracy": acc,
        "pgr": None if (g := _f(ds.pgr_of(acc, split))) is None else round(g, 4),
        "pgr_se": None if se_acc is None or not gap > 0 else round(se_acc / gap, 6),
    }


class ReferenceRuns:
    """Summaries of built-in method runs in the results folder, cached by mtime."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[int, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()

    def _summary(self, path: Path) -> dict[str, Any] | None:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(rec, dict) or rec.get("kind") != "aar.run":
            return None
        cfg = rec.get("config") or {}
        ref = str(cfg.get("method_ref", ""))
        if ref.endswith(".py") or ".py:" in ref:
            return None  # a file, not a library method
        per_seed = [s.get("scores", {}) for s in rec.get("seeds", [])]
        return {"method": cfg.get("method"), "params": cfg.get("params"),
                "weak": cfg.get("weak"), "strong": cfg.get("strong"),
                "dataset_key": rec.get("dataset_key"), "run_id": rec.get("run_id"),
                "created": rec.get("created"), "per_seed": per_seed}

    def for_dataset(self, ds: LoadedDataset, min_seeds: int) -> list[dict[str, Any]]:
        from aar.methods import METHODS

        root = get_settings().results_dir
        library = set(METHODS.names())
        out = []
        with self._lock:
            for path in sorted(root.glob("*.json")) if root.is_dir() else []:
                mtime = path.stat().st_mtime_ns
                hit = self._cache.get(path)
                if hit is None or hit[0] != mtime:
                    hit = (mtime, self._summary(path))
                    self._cache[path] = hit
                s = hit[1]
                if (s and s["dataset_key"] == ds.key and s["method"] in library
                        and s["weak"] == ds.weak and s["strong"] == ds.strong
                        and len(s["per_seed"]) >= min_seeds):
                    out.append(s)
        newest: dict[str, dict[str, Any]] = {}  # a method re-run replaces its older record
        for s in sorted(out, key=lambda s: str(s.get("created") or "")):
            newest[json.dumps([s["method"], s["params"]], sort_keys=True, default=str)] = s
        return list(newest.values())


def board(session: Session, ds: LoadedDataset, split: str, coarse: bool, eta: float,
          min_seeds: int, refs: ReferenceRuns) -> dict[str, Any]:
    prefix = "public" if split == PUBLIC else "private"
    cols = [getattr(Submission, f"{prefix}_{m}") for m in METRICS]
    rows = session.execute(
        select(Finding, Agent.name, Submission.seed, *cols)
        .join(FindingSubmission, FindingSubmission.finding_id == Finding.id)
        .join(Submission, Submission.id == FindingSubmission.submission_id)
        .join(Agent, Agent.id == Finding.agent_id)
        .where(Finding.type == "result", Finding.dataset_key == ds.key,
               FindingSubmission.ranked.is_(True)))
    groups: dict[int, dict[str, Any]] = {}
    values: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for finding, author, seed, *vals in rows:
        groups.setdefault(finding.id, {"finding": finding, "author": author, "seeds": []})
        groups[finding.id]["seeds"].append(seed)
        for m, v in zip(METRICS, vals, strict=True):
            values[finding.id][m].append(np.nan if v is None else v)
    entries = []
    held: list[dict[str, Any]] = []
    holding = held_findings(session, list(groups))
    for fid, g in groups.items():
        if len(set(g["seeds"])) < min_seeds:
            continue
        if fid in holding:  # an open or accepted flag: off the board until reviewed
            held.append({"finding": fid, "title": g["finding"].title, "author": g["author"],
                         "flags": holding[fid]})
            continue
        f: Finding = g["finding"]
        est = {m: estimate(values[fid][m]) for m in METRICS}
        entry: dict[str, Any] = {
            "kind": "result", "finding": fid, "title": f.title, "author": g["author"],
            "seeds": sorted(g["seeds"]), "n_seeds": len(g["seeds"]),
            "claimed": f.metrics, "votes": f.score, "archive": f.archive_sha256,
            "created": iso(f.created),
        }
        if coarse:
            entry.update(coarsen(est["accuracy"].mean, est["accuracy"].se, ds, split, eta))
            auc = est["auroc"].mean
            entry["auroc"] = round(round(auc / eta) * eta, 10) if math.isfinite(auc) else None
        else:
            entry.update({"pgr": _f(est["pgr"].mean), "pgr_se": _f(est["pgr"].se),
                          "accuracy": _f(est["accuracy"].mean), "auroc": _f(est["auroc"].mean)})
        entries.append(entry)
    entries.sort(key=lambda e: (e["pgr"] is None, -(e["pgr"] or 0.0), e["finding"]))
    for rank, e in enumerate(entries, 1):
        e["rank"] = rank
    b = ds.baselines[split]
    reference: list[dict[str, Any]] = [
        {"kind": "reference", "name": f"weak teacher ({ds.weak})", "pgr": 0.0,
         "accuracy": _round(b["weak"], eta, coarse), "rank": None},
        {"kind": "reference", "name": f"strong ceiling ({ds.strong})", "pgr": 1.0,
         "accuracy": _round(b["ceiling"], eta, coarse), "rank": None},
    ]
    for run in refs.for_dataset(ds, min_seeds):
        accs = [s.get(split, {}).get("accuracy", np.nan) for s in run["per_seed"]]
        pgrs = [s.get(split, {}).get("pgr", np.nan) for s in run["per_seed"]]
        acc, pg = estimate(accs), estimate(pgrs)
        row: dict[str, Any] = {"kind": "reference", "name": f"method {run['method']}",
                               "params": run["params"], "run_id": run["run_id"],
                               "n_seeds": len(run["per_seed"]), "rank": None}
        row.update(coarsen(acc.mean, acc.se, ds, split, eta) if coarse else
                   {"pgr": _f(pg.mean), "pgr_se": _f(pg.se), "accuracy": _f(acc.mean)})
        reference.append(row)
    return {
        "dataset": ds.name, "dataset_key": ds.key, "split": split, "coarsened": coarse,
        "eta": eta if coarse else None, "min_seeds": min_seeds,
        "baselines": {"weak": _round(b["weak"], eta, coarse),
                      "ceiling": _round(b["ceiling"], eta, coarse)},
        "entries": entries, "reference": reference, "held": held,
    }


def _round(x: float, eta: float, coarse: bool) -> float:
    return round(round(x / eta) * eta, 10) if coarse else float(x)
