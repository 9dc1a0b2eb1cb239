"""Admin routes: tokens, agents and their budgets, flags and their review, the audit log,
and what higher layers post instead of leaving files for the server to read (reference
runs of library methods, ``aar verify`` tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import func, select

from aar.contracts.api import (
    AgentBudgetOut,
    AgentListOut,
    AuditListOut,
    FlagListOut,
    FlagOut,
    ReferenceIn,
    ReferenceOut,
    RevokedOut,
    TokenCreatedOut,
    TokenListOut,
    VerificationIn,
    VerificationOut,
)
from aar.server import auth, flags, references
from aar.server.auth import Principal
from aar.server.db import Agent, AuditEntry, Flag, Token, audit
from aar.server.errors import ApiError, not_found
from aar.server.forum import iso
from aar.server.routes.deps import Admin, Limit, Offset, RowId, Srv, naive_utc
from aar.server.schemas import TokenIn
from aar.server.submissions import Budget

router = APIRouter(prefix="/admin", tags=["admin"])


# --------------------------------------------------------------------------- tokens, agents


@router.post("/tokens", summary="create an agent (or admin) token; shown once",
             status_code=201, response_model=TokenCreatedOut,
             response_model_exclude_unset=True)
def create_token(body: TokenIn, who: Admin, srv: Srv) -> dict[str, Any]:
    db = srv.db
    with db.write() as s:
        actor = s.get(Agent, who.id)
        agent, row, plain = auth.issue_token(
            s, body.name, body.role, budget_per_hour=body.budget_per_hour,
            budget_total=body.budget_total, actor=actor, run=body.run)
        db.token_cache.clear()
        return {"token": plain, "id": row.id, "prefix": row.prefix, "name": agent.name,
                "role": agent.role, "budget_per_hour": agent.budget_per_hour,
                "budget_total": agent.budget_total, "run": agent.run}


@router.get("/tokens", summary="tokens (hashes are never shown)",
            response_model=TokenListOut, response_model_exclude_unset=True)
def tokens(who: Admin, srv: Srv) -> dict[str, Any]:
    with srv.db.read() as s:
        rows = s.execute(select(Token, Agent.name, Agent.role, Agent.run)
                         .join(Agent, Agent.id == Token.agent_id).order_by(Token.id))
        return {"items": [{"id": t.id, "prefix": t.prefix, "name": name, "role": role,
                           "run": run, "created": iso(t.created),
                           "revoked": iso(t.revoked)}
                          for t, name, role, run in rows]}


@router.delete("/tokens/{token_id}", summary="revoke a token", response_model=RevokedOut,
               response_model_exclude_unset=True)
def revoke_token(token_id: RowId, who: Admin, srv: Srv) -> dict[str, Any]:
    db = srv.db
    with db.write() as s:
        if s.get(Token, token_id) is None:
            raise not_found(f"no token {token_id}")
        n = auth.revoke(s, s.get(Agent, who.id), token_id=token_id)
    db.token_cache.clear()
    return {"revoked": n}


@router.get("/agents", summary="agents with usage and flag counts",
            response_model=AgentListOut, response_model_exclude_unset=True)
def agents(who: Admin, srv: Srv) -> dict[str, Any]:
    with srv.db.read() as s:
        out = []
        for a in s.scalars(select(Agent).order_by(Agent.id)):
            p = Principal(a.id, a.name, a.role, a.budget_per_hour, a.budget_total, a.run)
            n_flags = s.scalar(select(func.count()).select_from(Flag).where(
                Flag.agent_id == a.id)) or 0
            out.append({"id": a.id, "name": a.name, "role": a.role, "run": a.run,
                        "budget": Budget.of(p, srv.cfg).usage(s, a.id), "flags": n_flags,
                        "created": iso(a.created)})
    return {"items": out}


@router.patch("/agents/{name}", summary="change an agent's budgets",
              response_model=AgentBudgetOut, response_model_exclude_unset=True)
def set_budget(name: str, body: dict[str, int | None], who: Admin, srv: Srv
               ) -> dict[str, Any]:
    unknown = set(body) - {"budget_per_hour", "budget_total"}
    if unknown:
        raise ApiError(422, f"unknown field {sorted(unknown)[0]!r}; give budget_per_hour "
                            "and/or budget_total")
    if any(v is not None and not 0 <= v <= 10**9 for v in body.values()):
        raise ApiError(422, "budgets must be between 0 and 1e9, or null for the default")
    db = srv.db
    with db.write() as s:
        a = s.scalars(select(Agent).where(Agent.name == name)).first()
        if a is None:
            raise not_found(f"no agent {name!r}")
        for k, v in body.items():
            setattr(a, k, v)
        audit(s, s.get(Agent, who.id), "agent.budget", name, **body)
        db.token_cache.clear()
        return {"name": a.name, "budget_per_hour": a.budget_per_hour,
                "budget_total": a.budget_total}


# --------------------------------------------------------------------------- flags, audit


@router.get("/flags", summary="flags (probing detector, monitor, judge), newest first",
            response_model=FlagListOut, response_model_exclude_unset=True)
def list_flags(who: Admin, srv: Srv, agent: str | None = Query(None, max_length=64),
               state: str | None = Query(None, description="open | accepted | rejected"),
               source: str | None = Query(None, description="probing | scorer | monitor "
                                                            "| judge"),
               finding: int | None = Query(None, ge=1, le=2**31 - 1),
               since: datetime | None = None, limit: Limit = 100,
               offset: Offset = 0) -> dict[str, Any]:
    with srv.db.read() as s:
        return flags.list_flags(s, agent=agent, state=state, source=source,
                                finding=finding, since=naive_utc(since), limit=limit,
                                offset=offset)


@router.post("/flags", summary="raise a flag (the monitor and its judge)", status_code=201,
             response_model=FlagOut, response_model_exclude_unset=True)
def create_flag(body: flags.FlagIn, who: Admin, response: Response, srv: Srv
                ) -> dict[str, Any]:
    with srv.db.write() as s:
        out, created = flags.create_flag(s, who, body)
    if not created:
        response.status_code = 200  # the same open flag exists: returned, not copied
    return out


@router.patch("/flags/{flag_id}", summary="review a flag: accept (it was reward hacking) "
                                          "or reject, with a reason",
              response_model=FlagOut, response_model_exclude_unset=True)
def review_flag(flag_id: RowId, body: flags.ReviewIn, who: Admin, srv: Srv
                ) -> dict[str, Any]:
    with srv.db.write() as s:
        return flags.review_flag(s, who, flag_id, body)


@router.get("/audit", summary="the audit log (every state change and every score)",
            response_model=AuditListOut, response_model_exclude_unset=True)
def audit_log(who: Admin, srv: Srv, action: str | None = Query(None, max_length=48),
              since: datetime | None = None, limit: Limit = 100,
              offset: Offset = 0) -> dict[str, Any]:
    with srv.db.read() as s:
        conds = []
        if action is not None:
            conds.append(AuditEntry.action == action)
        if since is not None:
            conds.append(AuditEntry.at > naive_utc(since))
        total = s.scalar(select(func.count()).select_from(AuditEntry).where(*conds)) or 0
        rows = s.scalars(select(AuditEntry).where(*conds).order_by(AuditEntry.id.desc())
                         .limit(limit).offset(offset))
        items = [{"id": e.id, "at": iso(e.at), "actor": e.actor, "action": e.action,
                  "target": e.target, "detail": e.detail} for e in rows]
    return {"items": items, "total": total, "limit": limit, "offset": offset}


# --------------------------------------------------------------------------- posted by runs


@router.post("/references", summary="post a run of a library method: a reference row of "
                                    "its dataset's leaderboard (a re-post replaces it)",
             status_code=201, response_model=ReferenceOut, response_model_exclude_unset=True)
def post_reference(body: ReferenceIn, who: Admin, response: Response, srv: Srv
                   ) -> dict[str, Any]:
    key = srv.catalog.get(body.dataset).key
    with srv.db.write() as s:
        out, created = references.store_reference(s, who, body, key)
    if not created:
        response.status_code = 200  # the same run posted again: replaced
    return out


@router.post("/verifications", summary="post an `aar verify` table of a run (shown on the "
                                       "dashboard; a re-post replaces the run's table)",
             status_code=201, response_model=VerificationOut,
             response_model_exclude_unset=True)
def post_verification(body: VerificationIn, who: Admin, response: Response, srv: Srv
                      ) -> dict[str, Any]:
    with srv.db.write() as s:
        out, created = references.store_verification(s, who, body)
    if not created:
        response.status_code = 200  # the run's table again: replaced
    return out
