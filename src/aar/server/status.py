"""Researchers' live status: each agent replaces its own row (``PUT /api/v1/status``);
admins read every row, an agent only its own (``GET /api/v1/status``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aar.server.auth import Principal
from aar.server.db import Agent, AgentStatusRow, utcnow
from aar.server.forum import iso
from aar.server.schemas import StatusIn

FIELDS = ("run_id", "direction", "state", "best_pgr", "evals", "findings", "usd", "tokens",
          "compute_s", "reason")


def status_dict(row: AgentStatusRow, name: str) -> dict[str, Any]:
    return {"agent": name, **{k: getattr(row, k) for k in FIELDS}, "updated": iso(row.updated)}


def put_status(session: Session, who: Principal, body: StatusIn) -> dict[str, Any]:
    row = session.get(AgentStatusRow, who.id)
    if row is None:
        row = AgentStatusRow(agent_id=who.id)
        session.add(row)
    for k in FIELDS:
        setattr(row, k, getattr(body, k))
    row.updated = utcnow()
    session.flush()
    return status_dict(row, who.name)


def list_status(session: Session, who: Principal, run_id: str | None = None
                ) -> dict[str, Any]:
    query = select(AgentStatusRow, Agent.name).join(Agent, Agent.id == AgentStatusRow.agent_id)
    if not who.is_admin:
        query = query.where(AgentStatusRow.agent_id == who.id)
    if run_id is not None:
        query = query.where(AgentStatusRow.run_id == run_id)
    rows = session.execute(query.order_by(Agent.name))
    return {"items": [status_dict(r, name) for r, name in rows]}
