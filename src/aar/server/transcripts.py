"""Researchers' transcripts, mirrored to the server for the dashboard: each researcher
appends its own events (``POST /api/v1/transcript``); admins read anyone's, an agent only
its own (``GET /api/v1/transcript``). Re-sent events (the same ``seq``) are ignored, so a
researcher may retry a batch whose answer it lost."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aar.server.auth import Principal
from aar.server.db import Agent, TranscriptTurn, utcnow
from aar.server.errors import ApiError, not_found
from aar.server.forum import iso
from aar.server.schemas import MAX_TURNS, TranscriptIn

DETAIL = ("tool", "calls", "ok", "input_tokens", "output_tokens", "usd", "seconds")


def turn_dict(row: TranscriptTurn) -> dict[str, Any]:
    return {"seq": row.seq, "at": iso(row.at), "kind": row.kind, "text": row.text,
            **row.detail}


def add_turns(session: Session, who: Principal, body: TranscriptIn) -> dict[str, Any]:
    seqs = [t.seq for t in body.turns]
    if len(set(seqs)) != len(seqs):
        raise ApiError(400, "turns: each seq may appear once in a request")
    mine = (TranscriptTurn.agent_id == who.id, TranscriptTurn.run_id == body.run_id)
    have = set(session.scalars(select(TranscriptTurn.seq).where(
        *mine, TranscriptTurn.seq.in_(seqs))))
    new = [t for t in body.turns if t.seq not in have]
    kept = session.scalar(select(func.count()).select_from(TranscriptTurn).where(*mine)) or 0
    if kept + len(new) > MAX_TURNS:
        raise ApiError(413, f"the server keeps at most {MAX_TURNS} transcript events of a "
                            f"run per researcher; this run has {kept}")
    now = utcnow()
    for t in new:
        session.add(TranscriptTurn(agent_id=who.id, run_id=body.run_id, seq=t.seq, at=now,
                                   kind=t.kind, text=t.text,
                                   detail={k: getattr(t, k) for k in DETAIL}))
    session.flush()
    return {"added": len(new), "ignored": len(body.turns) - len(new)}


def list_turns(session: Session, who: Principal, agent: str | None, run_id: str | None,
               after: int, limit: int) -> dict[str, Any]:
    """The transcript of ``agent`` (default: the caller) in ``run_id`` (default: its latest
    run), events after ``after`` in order, at most ``limit``."""
    name = agent or who.name
    if name != who.name and not who.is_admin:
        raise ApiError(403, "an agent may read only its own transcript")
    agent_id = session.scalar(select(Agent.id).where(Agent.name == name))
    if agent_id is None:
        raise not_found(f"no agent {name!r}")
    if run_id is None:
        run_id = session.scalar(select(TranscriptTurn.run_id)
                                .where(TranscriptTurn.agent_id == agent_id)
                                .order_by(TranscriptTurn.id.desc()).limit(1))
    if run_id is None:
        return {"agent": name, "run_id": None, "items": []}
    rows = session.scalars(select(TranscriptTurn).where(
        TranscriptTurn.agent_id == agent_id, TranscriptTurn.run_id == run_id,
        TranscriptTurn.seq > after).order_by(TranscriptTurn.seq).limit(limit))
    return {"agent": name, "run_id": run_id, "items": [turn_dict(r) for r in rows]}
