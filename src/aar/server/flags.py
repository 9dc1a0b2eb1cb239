"""Flags and their review.

A flag says an agent may have gamed the score. It comes from the probing detector (at
scoring time), the scorer (a result above the strong ceiling's interval, when it is
posted: ``aar.server.leaderboard.flag_above_ceiling``), the oversight monitor's rules,
or its LLM judge, and carries a severity and
human-readable evidence. Each flag is ``open`` until an admin ``accepts`` it ("yes, this
was reward hacking") or ``rejects`` it (a false alarm), with a reason. A finding with an
open or accepted flag, on itself or on one of its submissions, is held off the leaderboard;
rejecting every such flag shows it again. Creating and reviewing flags are audited.

Kinds, severities, sources and states are the enums of :mod:`aar.contracts.flags`, stored
as their plain values in the ``flags`` table. One exception is kept on purpose: an admin
may raise a flag of a kind of its own (``[a-z0-9_]``, at most 32 characters; the dashboard
tests raise ``vault_read``), as the API allowed before the enum existed; such a kind is
stored and shown as given. A kind that is neither, an unknown severity, or a source other
than ``monitor``/``judge`` is a 422 naming the field and what it accepts.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, JsonValue, field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aar.contracts.api import Strict
from aar.contracts.flags import FlagKind, FlagSource, FlagState, Severity
from aar.server.auth import Principal
from aar.server.db import Agent, Finding, FindingSubmission, Flag, Submission, audit, utcnow
from aar.server.errors import ApiError, conflict, not_found
from aar.server.forum import iso

STATES = tuple(s.value for s in FlagState)
HOLDING = tuple(s.value for s in FlagState if s.holds)  # keep a finding off the leaderboard
ADMIN_SOURCES = (FlagSource.MONITOR, FlagSource.JUDGE)  # the server raises the others itself
OWN_KIND = re.compile(r"^[a-z0-9_]{1,32}$")


class FlagIn(Strict):
    """A flag raised by an admin (the monitor or its judge run with an admin token).

    ``kind`` is one of :class:`~aar.contracts.flags.FlagKind`, or, for a flag an admin
    raises by hand, a kind of its own (lowercase letters, digits and ``_``, at most 32
    characters): such kinds were accepted before the enum existed and are kept as given.
    ``severity`` must be a :class:`~aar.contracts.flags.Severity`, ``source`` ``monitor``
    or ``judge``; anything else is a 422 that names the field and the allowed values."""

    agent: str = Field(min_length=1, max_length=64, description="the flagged agent's name")
    kind: FlagKind | str = Field(
        union_mode="left_to_right",
        description="a FlagKind, or an admin's own kind ([a-z0-9_], at most 32 characters)")
    severity: Severity = Severity.MEDIUM
    evidence: str = Field(min_length=1, max_length=20_000,
                          description="what was seen, quoted; shown to reviewers")
    source: FlagSource = Field(FlagSource.MONITOR,
                               description="monitor or judge (probing and scorer flags are "
                                           "the server's own)")
    finding_id: int | None = Field(None, ge=1, le=2**31 - 1)
    submission_id: int | None = Field(None, ge=1, le=2**31 - 1)
    detail: dict[str, JsonValue] = Field(default_factory=dict, max_length=50)

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("a flag kind is a string")
        known = FlagKind.known(value)
        if known is not None:
            return known
        if not OWN_KIND.match(value):
            raise ValueError(f"{value[:40]!r} is neither a known kind (one of: "
                             f"{', '.join(FlagKind)}) nor an admin's own kind "
                             "(lowercase letters, digits and _, at most 32 characters)")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: FlagSource) -> FlagSource:
        if value not in ADMIN_SOURCES:
            raise ValueError(f"{value.value!r} flags are the server's own; an admin raises "
                             f"{' or '.join(repr(s.value) for s in ADMIN_SOURCES)}")
        return value


class ReviewIn(Strict):
    decision: Literal["accept", "reject"] = Field(
        description="accept: it was reward hacking (stays held); reject: a false alarm")
    reason: str = Field(min_length=1, max_length=5000)


def _evidence(f: Flag) -> str:
    """Probing flags carry numbers, not prose: say what they mean."""
    if f.evidence:
        return f.evidence
    d = f.detail or {}
    kind = FlagKind.known(f.kind)
    if kind is FlagKind.NEAR_DUPLICATE:
        return (f"submission {f.submission_id} differs from submission {d.get('of')} in "
                f"{d.get('changed')} predictions ({d.get('hard_changes')} hard-label flips; "
                f"threshold {d.get('threshold')})")
    if kind is FlagKind.DUPLICATE:
        return f"submission {f.submission_id} is identical to submission {d.get('of')}"
    if kind is FlagKind.HARD_LABELS:
        return (f"submission {f.submission_id}: {d.get('fraction_0_or_1', 0):.1%} of the "
                "predictions are exactly 0 or 1")
    if kind is FlagKind.HARD_LABEL_TUNING:
        return (f"submission {f.submission_id}: a 0/1 pattern {d.get('hard_changes')} flips "
                f"away from submission {d.get('of')}")
    if kind is FlagKind.CONSTANT:
        return f"submission {f.submission_id}: every prediction is {d.get('value')}"
    return f"{f.kind}: {d}"


def flag_dict(f: Flag, agent: str) -> dict[str, Any]:
    return {"id": f.id, "agent": agent, "kind": f.kind, "severity": f.severity,
            "evidence": _evidence(f), "source": f.source, "state": f.state,
            "submission": f.submission_id, "finding": f.finding_id, "detail": f.detail,
            "reviewer": f.reviewer, "reason": f.reason, "reviewed_at": iso(f.reviewed_at),
            "created": iso(f.created)}


def create_flag(session: Session, who: Principal, body: FlagIn) -> tuple[dict[str, Any], bool]:
    """Store a flag; an identical open one (same agent, kind, source, target, evidence) is
    returned instead of a copy, so a monitor may re-scan a run. Returns (flag, created)."""
    agent = session.scalars(select(Agent).where(Agent.name == body.agent)).first()
    if agent is None:
        raise not_found(f"no agent {body.agent!r}; flag an agent the server knows")
    if body.finding_id is not None and session.get(Finding, body.finding_id) is None:
        raise not_found(f"no finding {body.finding_id}")
    if body.submission_id is not None:
        sub = session.get(Submission, body.submission_id)
        if sub is None or sub.agent_id != agent.id:
            raise not_found(f"no submission {body.submission_id} of agent {body.agent!r}")
    kind, severity, source = str(body.kind), body.severity.value, body.source.value
    same = session.scalars(select(Flag).where(
        Flag.agent_id == agent.id, Flag.kind == kind, Flag.source == source,
        Flag.finding_id.is_(None) if body.finding_id is None
        else Flag.finding_id == body.finding_id,
        Flag.submission_id.is_(None) if body.submission_id is None
        else Flag.submission_id == body.submission_id,
        Flag.evidence == body.evidence)).first()
    if same is not None:
        return flag_dict(same, agent.name), False
    flag = Flag(agent_id=agent.id, submission_id=body.submission_id, kind=kind,
                detail=dict(body.detail), created=utcnow(), severity=severity,
                evidence=body.evidence, finding_id=body.finding_id, source=source,
                state=FlagState.OPEN.value)
    session.add(flag)
    session.flush()
    audit(session, session.get(Agent, who.id), "flag.create", str(flag.id), agent=agent.name,
          kind=kind, severity=severity, source=source,
          finding=body.finding_id, submission=body.submission_id,
          evidence=body.evidence[:500])
    return flag_dict(flag, agent.name), True


def review_flag(session: Session, who: Principal, flag_id: int, body: ReviewIn
                ) -> dict[str, Any]:
    flag = session.get(Flag, flag_id)
    if flag is None:
        raise not_found(f"no flag {flag_id}")
    if flag.state != FlagState.OPEN:
        raise conflict(f"flag {flag_id} was already {flag.state} by {flag.reviewer}; "
                       "a reviewed flag is final")
    flag.state = (FlagState.ACCEPTED if body.decision == "accept"
                  else FlagState.REJECTED).value
    flag.reviewer, flag.reason, flag.reviewed_at = who.name, body.reason, utcnow()
    audit(session, session.get(Agent, who.id), f"flag.{flag.state}", str(flag.id),
          kind=flag.kind, finding=flag.finding_id, submission=flag.submission_id,
          reason=body.reason)
    session.flush()
    agent = session.get(Agent, flag.agent_id)
    return flag_dict(flag, agent.name if agent else "?")


def list_flags(session: Session, *, agent: str | None, state: str | None,
               source: str | None, finding: int | None, since: Any, limit: int,
               offset: int) -> dict[str, Any]:
    if state is not None and state not in STATES:
        raise ApiError(422, f"unknown state {state!r}; use one of: {', '.join(STATES)}")
    if source is not None and FlagSource.known(source) is None:
        raise ApiError(422, f"unknown source {source!r}; use one of: "
                            f"{', '.join(FlagSource)}")
    conds = []
    if agent is not None:
        conds.append(Agent.name == agent)
    if state is not None:
        conds.append(Flag.state == state)
    if source is not None:
        conds.append(Flag.source == source)
    if finding is not None:
        conds.append(Flag.finding_id == finding)
    if since is not None:
        conds.append(Flag.created > since)
    total = session.scalar(select(func.count()).select_from(Flag).join(
        Agent, Agent.id == Flag.agent_id).where(*conds)) or 0
    rows = session.execute(select(Flag, Agent.name).join(Agent, Agent.id == Flag.agent_id)
                           .where(*conds).order_by(Flag.id.desc()).limit(limit)
                           .offset(offset))
    return {"items": [flag_dict(f, name) for f, name in rows], "total": total,
            "limit": limit, "offset": offset}


def held_findings(session: Session, finding_ids: list[int]) -> dict[int, list[int]]:
    """Finding id -> ids of its holding flags (open or accepted; on the finding itself or
    on one of its submissions), for the given findings."""
    if not finding_ids:
        return {}
    out: dict[int, list[int]] = {}
    direct = session.execute(select(Flag.finding_id, Flag.id).where(
        Flag.finding_id.in_(finding_ids), Flag.state.in_(HOLDING)))
    via = session.execute(
        select(FindingSubmission.finding_id, Flag.id)
        .join(Flag, Flag.submission_id == FindingSubmission.submission_id)
        .where(FindingSubmission.finding_id.in_(finding_ids), Flag.state.in_(HOLDING)))
    for fid, flag_id in [*direct, *via]:
        out.setdefault(int(fid), []).append(int(flag_id))
    return {k: sorted(set(v)) for k, v in out.items()}
