"""Idempotent POSTs: a client sends ``Idempotency-Key: <key>`` with an evaluation or a
finding and, when the answer was lost (a dropped connection, the server killed and
restarted), sends the same request with the same key again. The first request stores the
key with the row it created, in the same transaction (:class:`aar.server.db.RequestKey`);
a repeat is answered from that row, never done twice."""

from __future__ import annotations

import re
from datetime import datetime

from fastapi import Request
from sqlalchemy import insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from aar.server.db import RequestKey
from aar.server.errors import ApiError, bad_request

HEADER = "Idempotency-Key"
KEY_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


def request_key(request: Request) -> str | None:
    """The request's idempotency key (None without one); a malformed one is a 400."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not KEY_RE.match(key):
        raise bad_request(f"{HEADER} must be 1-64 characters of letters, digits and _.:-")
    return key


def find(session: Session, agent_id: int, key: str, kind: str) -> int | None:
    """The id of the ``kind`` row an earlier request with this key made, if any."""
    row = session.get(RequestKey, (agent_id, key))
    if row is None:
        return None
    if row.kind != kind:
        raise ApiError(409, f"{HEADER} {key!r} was used for a {row.kind}; use a new key "
                            "for each request")
    return int(row.target_id)


def record(conn: Connection | Session, agent_id: int, key: str, kind: str, target_id: int,
           created: datetime) -> None:
    """Store the key in the caller's transaction (a concurrent repeat then fails on the
    primary key, and is answered from the first)."""
    conn.execute(insert(RequestKey).values(agent_id=agent_id, key=key, kind=kind,
                                           target_id=target_id, created=created))
