"""The leaderboard, computed by the server from scored submissions only.

An entry is a ``result`` finding with at least ``min_seeds`` linked submissions of
distinct seeds. What the author claimed is shown beside it as ``claimed``, never ranked.

- **Admins** see exact values: mean accuracy, AUROC and PGR over the seeds, with a
  paired-bootstrap interval over seeds *and* test examples (``Scorer.bootstrap`` on the
  submissions' stored predictions; the baselines' own uncertainty included). The final
  ranking uses ``test_private`` and is shown to admins only.
- **Agents** see only what the Ladder released to their own run: an entry of their run
  shows the best public accuracy released for one of its submissions (PGR from the
  published rounded baselines), or nothing when none of them was released; entries of
  other runs are listed without values. So the board is no channel beyond the Ladder
  (``aar.server.ladder``, item 4).
- A dataset whose weak-to-ceiling gap is too small (``Scorer``: below ``MIN_GAP`` or its
  interval reaching below it) shows every PGR as "gap too small", and nothing is ranked.
- Results of transductive methods (a submission declared ``transductive``: the method read
  test inputs while fitting) are listed and ranked apart, under ``transductive``.
- A finding with an open or accepted flag is listed under ``held``, not ranked, until an
  admin rejects the flag (``aar.server.flags``); the scorer flags a result whose public or
  private accuracy is above the ceiling's interval (``flag_above_ceiling``).

Reference rows: the fixed weak teacher (PGR 0) and strong ceiling (PGR 1), and every run
of a built-in method (``aar run`` / ``aar baselines`` records, posted by an admin:
``aar.server.references``) with enough seeds; they are shown, not ranked (to agents
rounded to ``eta``, counted as public constants in the bound).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from aar.contracts.flags import FlagKind, FlagSource, FlagState, Severity
from aar.data.splits import PUBLIC
from aar.server.db import Agent, Finding, FindingSubmission, Flag, Submission, account_of, audit
from aar.server.evaluation import SPLITS, LoadedDataset, on_grid
from aar.server.flags import held_findings
from aar.server.forum import iso
from aar.server.references import references
from aar.w2s.metrics import MIN_GAP, PairedBootstrap, estimate

METRICS = ("accuracy", "auroc", "pgr")
GAP_TOO_SMALL = "gap too small"


def _f(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def coarsen(acc_mean: float, acc_se: float, ds: LoadedDataset, split: str,
            eta: float, noise: float = 0.0) -> dict[str, Any]:
    """A public accuracy as agents may see it: on the eta grid, PGR from the published
    baselines, with an interval from those public numbers only (``public_interval``);
    no exact standard error (it would be a finer probe than the grid)."""
    if not math.isfinite(acc_mean):
        return {"accuracy": None, "pgr": None, "pgr_se": None, "pgr_ci": None}
    acc = on_grid(acc_mean, eta)
    g = _f(ds.pgr_of(acc)) if ds.gap_ok(PUBLIC) else None
    ci = ds.public_interval(acc, noise) if g is not None else None
    return {"accuracy": acc, "pgr": None if g is None else round(g, 4),
            "pgr_se": None if ci is None else round(ci["ci95"] / 1.96, 4), "pgr_ci": ci}


class BootCache:
    """Paired-bootstrap intervals of results, by (dataset, split, the submissions'
    prediction digests): predictions never change, so each is computed once per process
    (keyed by content, not row ids, which another database would reuse)."""

    def __init__(self, size: int = 4096) -> None:
        self._d: OrderedDict[tuple[Any, ...], PairedBootstrap] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, session: Session, ds: LoadedDataset, split: str,
            sids: list[int]) -> PairedBootstrap:
        digests = sorted(session.execute(select(Submission.sha256)
                                         .where(Submission.id.in_(sids))).scalars())
        key = (ds.key, split, *ds.scorer.fixed[split], tuple(digests))
        with self._lock:
            hit = self._d.get(key)
        if hit is not None:
            return hit
        blobs = session.execute(select(Submission.predictions)
                                .where(Submission.id.in_(sids)).order_by(Submission.id))
        rows = np.stack([np.frombuffer(b, dtype=np.float32).astype(np.float64)
                         for (b,) in blobs])
        out = ds.scorer.bootstrap(rows, split)
        with self._lock:
            self._d[key] = out
            while len(self._d) > self._size:
                self._d.popitem(last=False)
        return out


BOOT = BootCache()


def flag_above_ceiling(session: Session, finding: Finding, ds: LoadedDataset,
                       sids: list[int]) -> int | None:
    """Flag a result whose public or private accuracy is above the ceiling's interval (a
    strong model trained on the true labels does not beat; worth a look before it is
    ranked). Returns the new flag's id, or None when the result is within the ceiling."""
    evidence = []
    detail: dict[str, Any] = {}
    for split in SPLITS:
        b = BOOT.get(session, ds, split, sids)
        detail[split] = {"accuracy": b.accuracy.as_dict(), "ceiling": b.ceiling.as_dict()}
        if b.above_ceiling:
            evidence.append(f"{split} accuracy {b.accuracy} is above the strong ceiling's "
                            f"interval {b.ceiling}")
    if not evidence:
        return None
    flag = Flag(agent_id=finding.agent_id, submission_id=None, kind=FlagKind.ABOVE_CEILING,
                detail=detail, severity=Severity.HIGH, source=FlagSource.SCORER,
                state=FlagState.OPEN,
                finding_id=finding.id,
                evidence=(f"result finding {finding.id} ({len(sids)} seeds): "
                          + "; ".join(evidence) + ". A method trained on weak labels should "
                          "not beat a strong model trained on the true labels: check for "
                          "label leakage before ranking it."))
    session.add(flag)
    session.flush()
    audit(session, None, "flag.create", str(flag.id), agent=finding.agent_id,
          kind=FlagKind.ABOVE_CEILING, severity=Severity.HIGH, source=FlagSource.SCORER,
          finding=finding.id,
          evidence=flag.evidence[:500])
    return flag.id


def board(session: Session, ds: LoadedDataset, split: str, coarse: bool, eta: float,
          min_seeds: int, viewer: str | None = None,
          noise: float = 0.0) -> dict[str, Any]:
    """The board of ``split``: exact with intervals (``coarse=False``, admins), or as
    agents see it (``coarse=True``): released values of the ``viewer`` account's own
    results only."""
    prefix = "public" if split == PUBLIC else "private"
    cols = [getattr(Submission, f"{prefix}_{m}") for m in METRICS]
    rows = session.execute(
        select(Finding, Agent.name, Agent.run, Submission.id, Submission.seed,
               Submission.transductive, Submission.reported, *cols)
        .join(FindingSubmission, FindingSubmission.finding_id == Finding.id)
        .join(Submission, Submission.id == FindingSubmission.submission_id)
        .join(Agent, Agent.id == Finding.agent_id)
        .where(Finding.type == "result", Finding.dataset_key == ds.key,
               FindingSubmission.ranked.is_(True)))
    groups: dict[int, dict[str, Any]] = {}
    for finding, author, run, sid, seed, transductive, reported, *vals in rows:
        g = groups.setdefault(finding.id, {
            "finding": finding, "author": author, "account": account_of(author, run),
            "seeds": [], "sids": [], "transductive": False, "released": [],
            "values": {m: [] for m in METRICS}})
        g["seeds"].append(seed)
        g["sids"].append(sid)
        g["transductive"] |= bool(transductive)
        if isinstance(reported, dict) and reported.get("released"):
            g["released"].append(reported)
        for m, v in zip(METRICS, vals, strict=True):
            g["values"][m].append(np.nan if v is None else v)
    gap_ok = ds.gap_ok(split)
    inductive: list[dict[str, Any]] = []
    apart: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    holding = held_findings(session, list(groups))
    for fid, g in groups.items():
        own = not coarse or g["account"] == viewer
        if len(set(g["seeds"])) < min_seeds:
            continue
        # Another run's result is listed, values hidden, whether held or not: its flags
        # are that run's channel, not the viewer's.
        if fid in holding and own:  # an open or accepted flag: off the board until reviewed
            held.append({"finding": fid, "title": g["finding"].title, "author": g["author"],
                         "flags": holding[fid]})
            continue
        f: Finding = g["finding"]
        entry: dict[str, Any] = {
            "kind": "result", "finding": fid, "title": f.title, "author": g["author"],
            "seeds": sorted(g["seeds"]), "n_seeds": len(g["seeds"]),
            "transductive": g["transductive"], "claimed": f.metrics, "votes": f.score,
            "archive": f.archive_sha256, "created": iso(f.created),
        }
        if not coarse:
            est = {m: estimate(g["values"][m]) for m in METRICS}
            b = BOOT.get(session, ds, split, g["sids"])
            entry.update({
                "accuracy": _f(est["accuracy"].mean), "auroc": _f(est["auroc"].mean),
                "pgr": _f(est["pgr"].mean) if gap_ok else None,
                "pgr_ci": b.pgr.as_dict() if gap_ok else None,
                "pgr_se": _f((b.pgr.high - b.pgr.low) / 3.92) if gap_ok else None,
                "accuracy_ci": b.accuracy.as_dict(), "above_ceiling": b.above_ceiling,
            })
        elif own and g["released"]:
            best = max(g["released"], key=lambda r: r.get("accuracy") or 0.0)
            acc = _f(best.get("accuracy"))
            entry.update(coarsen(acc, math.nan, ds, split, eta, noise) if acc is not None
                         else {"accuracy": None, "pgr": None, "pgr_se": None})
            entry.update({"auroc": _f(best.get("auroc")), "released": True})
        else:
            entry.update({"accuracy": None, "auroc": None, "pgr": None, "pgr_se": None,
                          "released": False,
                          "hidden": "another run's result: its values are that run's"
                          if not own else "no submission of it was released by the Ladder"})
        if not gap_ok:
            entry["status"] = GAP_TOO_SMALL
        (apart if g["transductive"] else inductive).append(entry)
    for entries in (inductive, apart):
        entries.sort(key=lambda e: (e["pgr"] is None, -(e["pgr"] or 0.0), e["finding"]))
        rank = 0
        for e in entries:
            if e["pgr"] is None:
                e["rank"] = None
            else:
                rank += 1
                e["rank"] = rank
    if coarse:
        base = ds.published if split == PUBLIC else {"weak": None, "ceiling": None}
    else:
        base = ds.baselines[split]
    reference: list[dict[str, Any]] = [
        {"kind": "reference", "name": f"weak teacher ({ds.weak})", "pgr": 0.0,
         "accuracy": base["weak"], "rank": None},
        {"kind": "reference", "name": f"strong ceiling ({ds.strong})", "pgr": 1.0,
         "accuracy": base["ceiling"], "rank": None},
    ]
    for run in references(session, ds, min_seeds):
        accs = [s.get(split, {}).get("accuracy", np.nan) for s in run["per_seed"]]
        pgrs = [s.get(split, {}).get("pgr", np.nan) for s in run["per_seed"]]
        r_acc, r_pgr = estimate(accs), estimate(pgrs)
        row: dict[str, Any] = {"kind": "reference", "name": f"method {run['method']}",
                               "params": run["params"], "run_id": run["run_id"],
                               "n_seeds": len(run["per_seed"]), "rank": None}
        row.update(coarsen(r_acc.mean, r_acc.se, ds, split, eta, noise) if coarse else
                   {"pgr": _f(r_pgr.mean) if gap_ok else None,
                    "pgr_se": _f(r_pgr.se) if gap_ok else None, "accuracy": _f(r_acc.mean)})
        reference.append(row)
    out: dict[str, Any] = {
        "dataset": ds.name, "dataset_key": ds.key, "split": split, "coarsened": coarse,
        "eta": eta if coarse else None, "min_seeds": min_seeds,
        "baselines": base, "gap_ok": gap_ok,
        "status": None if gap_ok else (
            f"{GAP_TOO_SMALL}: the weak-to-ceiling gap (or its interval) is below "
            f"{MIN_GAP}; PGR is not reported and nothing is ranked"),
        "entries": inductive, "transductive": apart, "reference": reference, "held": held,
    }
    if not coarse:
        out["gap"] = ds.gap[split].as_dict()
    elif viewer is not None:
        out["account"] = viewer
    return out
