"""What higher layers tell the server through its admin API, instead of files it would
read: runs of library methods (the leaderboard's reference rows; posted by the research
orchestrator from ``$AAR_HOME/results``) and ``aar verify`` tables (the dashboard's
verification table; posted by ``aar verify``). Each is stored in its own table; a run
posted again replaces its earlier post. Posting is audited."""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from aar.contracts.api import ReferenceIn, VerificationIn
from aar.server.auth import Principal
from aar.server.db import Agent, ReferenceRun, VerificationRow, audit, utcnow
from aar.server.evaluation import LoadedDataset
from aar.server.forum import iso


def _finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None (stored JSON is standard JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def reference_dict(r: ReferenceRun, replaced: bool) -> dict[str, Any]:
    return {"id": r.id, "run_id": r.run_id, "dataset_key": r.dataset_key, "method": r.method,
            "weak": r.weak, "strong": r.strong, "n_seeds": len(r.seeds or []),
            "created": r.created, "posted": iso(r.posted), "replaced": replaced}


R = TypeVar("R", ReferenceRun, VerificationRow)


def _row(session: Session, model: type[R], **key: str) -> tuple[R, bool]:
    """The row of ``model`` with ``key`` (a new one, added, when there is none); whether
    it is new. A post replaces the earlier one of the same key."""
    row = session.scalars(select(model).filter_by(**key)).first()
    if row is not None:
        return row, False
    row = model(**key)
    session.add(row)
    return row, True


def store_reference(session: Session, who: Principal, body: ReferenceIn,
                    dataset_key: str) -> tuple[dict[str, Any], bool]:
    """Store a reference run (replacing an earlier post of the same ``run_id``); returns
    (its summary, whether it is new)."""
    row, created = _row(session, ReferenceRun, run_id=body.run_id)
    row.dataset_key, row.method, row.params = dataset_key, body.method, dict(body.params)
    row.weak, row.strong, row.created = body.weak, body.strong, body.created
    row.seeds, row.posted = _finite([dict(s) for s in body.seeds]), utcnow()
    session.flush()
    audit(session, session.get(Agent, who.id), "reference.post", body.run_id,
          dataset=dataset_key, method=body.method, seeds=len(body.seeds), replaced=not created)
    return reference_dict(row, not created), created


def references(session: Session, ds: LoadedDataset, min_seeds: int) -> list[dict[str, Any]]:
    """The reference runs of ``ds`` on its own weak/strong pair with at least
    ``min_seeds`` seeds; of several runs of a method with the same params, the newest."""
    rows = session.scalars(select(ReferenceRun).where(
        ReferenceRun.dataset_key == ds.key, ReferenceRun.weak == ds.weak,
        ReferenceRun.strong == ds.strong).order_by(ReferenceRun.id))
    out = [{"method": r.method, "params": r.params, "weak": r.weak, "strong": r.strong,
            "dataset_key": r.dataset_key, "run_id": r.run_id, "created": r.created,
            "per_seed": list(r.seeds or [])}
           for r in rows if len(r.seeds or []) >= min_seeds]
    newest: dict[str, dict[str, Any]] = {}  # a method re-run replaces its older record
    for s in sorted(out, key=lambda s: str(s.get("created") or "")):
        newest[json.dumps([s["method"], s["params"]], sort_keys=True, default=str)] = s
    return list(newest.values())


def verification_dict(v: VerificationRow, replaced: bool) -> dict[str, Any]:
    return {"id": v.id, "run": v.run, "dataset": v.dataset, "t": v.t,
            "rows": len((v.body or {}).get("rows") or []), "posted": iso(v.posted),
            "replaced": replaced}


def store_verification(session: Session, who: Principal, body: VerificationIn
                       ) -> tuple[dict[str, Any], bool]:
    """Store a run's verification table (replacing the run's earlier one); returns (its
    summary, whether it is new)."""
    row, created = _row(session, VerificationRow, run=body.run)
    row.dataset, row.t = body.dataset, body.t
    row.body, row.posted = _finite(body.model_dump(mode="json", exclude_unset=True)), utcnow()
    session.flush()
    audit(session, session.get(Agent, who.id), "verification.post", body.run,
          dataset=body.dataset, rows=len(body.rows), replaced=not created)
    return verification_dict(row, not created), created


def verification_tables(session: Session, names: tuple[str, ...], limit: int
                        ) -> list[dict[str, Any]]:
    """The newest posted verification tables of a dataset (by any of its ``names``: its
    name or key), newest first, as posted."""
    rows = session.scalars(select(VerificationRow).where(VerificationRow.dataset.in_(names))
                           .order_by(VerificationRow.posted.desc(), VerificationRow.id.desc())
                           .limit(limit))
    return [dict(r.body or {}) for r in rows]
