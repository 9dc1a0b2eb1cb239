"""What the dashboard pages show, read from the server database (no labels, no
predictions). Agents see what the server told agents (released Ladder values); admins see
exact public scores and, where asked, private ones."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, case, func, select
from sqlalchemy.orm import Session

from aar.contracts.events import ResearcherState
from aar.contracts.flags import FlagState
from aar.server.auth import Principal
from aar.server.config import ServerConfig
from aar.server.db import (
    Agent,
    AgentStatusRow,
    AuditEntry,
    Comment,
    DatasetRow,
    Finding,
    Flag,
    Submission,
    account_of,
    utcnow,
)
from aar.server.submissions import Budget


def finite(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


@dataclass
class Researcher:
    """One row of the overview."""

    id: int
    name: str
    state: str = "unknown"
    direction: str = ""
    run_id: str = ""
    best_pgr: float | None = None
    evals: int = 0  # scored by the server
    budget_total: int | None = None
    used_last_hour: int = 0
    budget_per_hour: int | None = None
    findings: int = 0
    usd: float = 0.0
    tokens: int = 0
    compute_s: float = 0.0
    reason: str = ""
    last_activity: datetime | None = None
    open_flags: int = 0
    points: list[tuple[datetime, float]] = field(default_factory=list)

    @property
    def budget_fraction(self) -> float | None:
        if not self.budget_total:
            return None
        return min(1.0, self.evals / self.budget_total)


def datasets(s: Session) -> list[DatasetRow]:
    """Datasets that have been scored, most used first."""
    counts = {k: int(n) for k, n in s.execute(
        select(Submission.dataset_key, func.count()).group_by(Submission.dataset_key))}
    rows = list(s.scalars(select(DatasetRow)))
    rows.sort(key=lambda d: (-counts.get(d.key, 0), d.name))
    return rows


def pick_dataset(rows: list[DatasetRow], ref: str | None) -> DatasetRow | None:
    if not ref:
        return rows[0] if rows else None
    for d in rows:
        if ref in (d.key, d.name):
            return d
    return None


def series(s: Session, dataset_key: str, admin: bool, account: str | None = None
           ) -> dict[int, list[tuple[datetime, float]]]:
    """Each agent's public PGR per submission on a dataset, oldest first: exact for
    admins; for agents only the values the Ladder released to their own ``account``
    (another run's releases are that run's channel, not theirs)."""
    column: Any = Submission.public_pgr if admin else Submission.reported
    query = (select(Submission.agent_id, Submission.created, column)
             .where(Submission.dataset_key == dataset_key).order_by(Submission.id))
    if not admin:
        mates = [a.id for a in s.scalars(select(Agent))
                 if account_of(a.name, a.run) == account]
        query = query.where(Submission.agent_id.in_(mates))
    out: dict[int, list[tuple[datetime, float]]] = {}
    for agent_id, created, value in s.execute(query):
        if not admin:
            value = value.get("pgr") if isinstance(value, dict) and value.get("released") \
                else None
        v = finite(value)
        if v is not None:
            out.setdefault(agent_id, []).append((created, v))
    return out


def researchers(s: Session, cfg: ServerConfig, who: Principal, dataset_key: str | None,
                run_id: str | None = None) -> list[Researcher]:
    """The overview: every agent account, with its reported status and server counts."""
    rows: dict[int, Researcher] = {}
    for a in s.scalars(select(Agent).where(Agent.role == "agent").order_by(Agent.name)):
        budget = Budget.of(Principal(a.id, a.name, a.role, a.budget_per_hour,
                                     a.budget_total), cfg)
        rows[a.id] = Researcher(a.id, a.name, budget_total=budget.total,
                                budget_per_hour=budget.per_hour)
    for st in s.scalars(select(AgentStatusRow)):
        r = rows.get(st.agent_id)
        if r is None:
            continue
        r.state, r.direction, r.run_id = st.state, st.direction, st.run_id
        r.best_pgr = finite(st.best_pgr)
        r.usd, r.tokens, r.compute_s = st.usd or 0.0, st.tokens or 0, st.compute_s or 0.0
        r.reason = st.reason or ""
        r.findings = st.findings or 0
        r.last_activity = st.updated
    if run_id:
        rows = {k: r for k, r in rows.items() if r.run_id == run_id}
    hour_ago = utcnow() - timedelta(hours=1)
    for agent_id, n, last, recent in s.execute(
            select(Submission.agent_id, func.count(), func.max(Submission.created),
                   func.sum(case((Submission.created > hour_ago, 1), else_=0)))
            .group_by(Submission.agent_id)):
        r = rows.get(agent_id)
        if r is not None:
            r.evals, r.used_last_hour = int(n), int(recent or 0)
            r.last_activity = max(filter(None, (r.last_activity, last)), default=None)
    for agent_id, n, last in s.execute(
            select(Finding.agent_id, func.count(), func.max(Finding.created))
            .group_by(Finding.agent_id)):
        r = rows.get(agent_id)
        if r is not None:
            r.findings = max(r.findings, int(n))
            r.last_activity = max(filter(None, (r.last_activity, last)), default=None)
    if who.is_admin:
        for agent_id, n in s.execute(select(Flag.agent_id, func.count())
                                     .where(Flag.state == FlagState.OPEN).group_by(Flag.agent_id)):
            if agent_id in rows:
                rows[agent_id].open_flags = int(n)
    if dataset_key is not None:
        for agent_id, pts in series(s, dataset_key, who.is_admin, who.account).items():
            if agent_id in rows:
                rows[agent_id].points = pts
    for r in rows.values():
        if r.best_pgr is None and r.points:
            r.best_pgr = max(v for _, v in r.points)
    order: dict[str, int] = {ResearcherState.RUNNING: 0, ResearcherState.STARTING: 1,
                             ResearcherState.FAILED: 2, ResearcherState.STOPPED: 3}
    return sorted(rows.values(), key=lambda r: (order.get(r.state, 4), r.name))


def runs(s: Session) -> list[str]:
    """Research runs that reported a status, the most recently active first."""
    return [r for r, _ in s.execute(select(AgentStatusRow.run_id,
                                           func.max(AgentStatusRow.updated))
                                    .group_by(AgentStatusRow.run_id)
                                    .order_by(func.max(AgentStatusRow.updated).desc()))]


# --------------------------------------------------------------------------- flags


def flag_counts(s: Session) -> dict[str, int]:
    return {k: int(v) for k, v in s.execute(select(Flag.state, func.count())
                                            .group_by(Flag.state))}


# --------------------------------------------------------------------------- audit


def audit(s: Session, action: str | None, actor: str | None, since: datetime | None,
          limit: int, offset: int) -> tuple[list[AuditEntry], int]:
    conds = []
    if action:
        conds.append(AuditEntry.action == action)
    if actor:
        conds.append(AuditEntry.actor == actor)
    if since is not None:
        conds.append(AuditEntry.at > since)
    total = s.scalar(select(func.count()).select_from(AuditEntry).where(*conds)) or 0
    rows = list(s.scalars(select(AuditEntry).where(*conds).order_by(AuditEntry.id.desc())
                          .limit(limit).offset(offset)))
    return rows, total


def audit_actions(s: Session) -> list[str]:
    return list(s.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)))


# --------------------------------------------------------------------------- forum


def recent_findings(s: Session, n: int) -> list[dict[str, Any]]:
    """The ``n`` findings with the newest activity, in one query."""
    comments = (select(func.count()).select_from(Comment)
                .where(Comment.finding_id == Finding.id).scalar_subquery())
    rows = s.execute(select(Finding.id, Finding.type, Finding.title, Finding.score,
                            Agent.name, comments)
                     .join(Agent, Agent.id == Finding.agent_id)
                     .order_by(Finding.activity.desc(), Finding.id.desc()).limit(n))
    return [{"id": i, "type": t, "title": title, "votes": v, "author": a, "comments": c}
            for i, t, title, v, a, c in rows]


def builds_on_graph(s: Session, finding_id: int) -> list[int]:
    """Findings that build on ``finding_id`` (the reverse of ``builds_on``)."""
    out = []
    for fid, links in s.execute(select(Finding.id, Finding.builds_on)
                                .where(Finding.builds_on.is_not(None))):
        if isinstance(links, list) and finding_id in links:
            out.append(int(fid))
    return sorted(out)


def titles(s: Session, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    return {int(k): t for k, t in s.execute(
        select(Finding.id, Finding.title).where(Finding.id.in_(ids)))}


# --------------------------------------------------------------------------- verification


def _cell(cell: Any) -> str:
    if not isinstance(cell, dict):
        return ""
    if cell.get("error"):
        return "error"
    if cell.get("status") == "gap too small":
        return "gap too small"
    mean, low, high = finite(cell.get("mean")), finite(cell.get("low")), finite(cell.get("high"))
    if mean is None:
        return "n/a"
    if low is not None and high is not None:  # the paired-bootstrap interval
        return f"{mean:.2f} [{low:.2f}, {high:.2f}]"
    ci = finite(cell.get("ci95"))  # files written before intervals
    return f"{mean:.2f}" + ("" if ci is None else f" ± {ci:.2f}")


def verifications(s: Session, dataset: DatasetRow, limit: int = 3) -> list[dict[str, Any]]:
    """The newest ``aar verify`` tables of a dataset (posted by ``aar verify``: ``POST
    /api/v1/admin/verifications``), formatted for a table: columns in order, one row per
    verified finding."""
    from aar.server.references import verification_tables

    out: list[dict[str, Any]] = []
    for result in verification_tables(s, (dataset.name, dataset.key), limit):
        rows, columns = [], []
        for row in result.get("rows") or []:
            if not isinstance(row, dict):
                continue
            raw = row.get("cells")
            cells: dict[str, Any] = raw if isinstance(raw, dict) else {}
            columns += [c for c in cells if c not in columns]
            rows.append({"finding": row.get("finding"), "title": row.get("title"),
                         "author": row.get("author"), "error": row.get("error"),
                         "reproduces": row.get("reproduces"), "gap": finite(row.get("gap")),
                         "cells": {k: _cell(v) for k, v in cells.items()}})
        out.append({"run": result.get("run"), "t": result.get("t"),
                    "columns": columns, "rows": rows})
    return out


# --------------------------------------------------------------------------- live


def _table(name: str) -> Table:
    from aar.server.db import Base

    return Base.metadata.tables[name]


def version(s: Session) -> dict[str, str]:
    """A cheap signature of what the pages show, one part per kind of change."""
    st = _table("agent_status")
    row = s.execute(select(
        select(func.max(st.c.updated)).scalar_subquery(),
        select(func.max(Submission.id)).scalar_subquery(),
        select(func.max(Finding.activity)).scalar_subquery(),
        select(func.max(Flag.id)).scalar_subquery(),
        select(func.max(AuditEntry.id)).scalar_subquery(),
    )).one()
    keys = ("status", "submissions", "findings", "flags", "audit")
    return {k: "" if v is None else str(v) for k, v in zip(keys, row, strict=True)}
