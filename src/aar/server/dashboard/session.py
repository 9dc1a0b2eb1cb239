"""Dashboard sessions: an HttpOnly, SameSite=Strict cookie that names a token by id and is
signed with that token's stored hash, so the raw token never reaches the browser again.

A cookie is ``<token id>.<expiry>.<nonce>.<mac>`` with
``mac = HMAC-SHA256(key=token hash, "<token id>.<expiry>.<nonce>")``. It is stateless, so
any worker process can check it; it dies when the token is revoked, when it expires, or
(in the process that served the logout) at logout. The CSRF token of a session is another
MAC of its nonce: the forms carry it and every POST must send it back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select

from aar.server.auth import Principal, hash_token
from aar.server.db import Agent, Database, Token

COOKIE = "aar_session"
LOGIN_CSRF_COOKIE = "aar_login_csrf"
LIFETIME_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    """A logged-in dashboard viewer."""

    who: Principal
    token_id: int
    nonce: str
    csrf: str


def _mac(key: str, message: str) -> str:
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


class Sessions:
    """Issues and checks session cookies against the token table."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.logged_out: set[str] = set()  # nonces of sessions ended in this process

    def _token(self, token_id: int) -> tuple[Principal, str] | None:
        with self.db.read_conn() as conn:
            row = conn.execute(
                select(Agent.id, Agent.name, Agent.role, Agent.budget_per_hour,
                       Agent.budget_total, Agent.run, Token.token_hash)
                .join(Token, Token.agent_id == Agent.id)
                .where(Token.id == token_id, Token.revoked.is_(None))).first()
        if row is None:
            return None
        return Principal(*row[:6]), row[6]

    def issue(self, token: str) -> tuple[str, Session] | None:
        """A cookie value for a valid, unrevoked token (None otherwise)."""
        digest = hash_token(token)
        with self.db.read_conn() as conn:
            token_id = conn.execute(select(Token.id).where(
                Token.token_hash == digest, Token.revoked.is_(None))).scalar()
        if token_id is None:
            return None
        found = self._token(int(token_id))
        if found is None:
            return None
        who, key = found
        nonce = secrets.token_urlsafe(16)
        payload = f"{token_id}.{int(time.time()) + LIFETIME_S}.{nonce}"
        value = f"{payload}.{_mac(key, payload)}"
        return value, Session(who, int(token_id), nonce, _mac(key, "csrf." + nonce))

    def check(self, cookie: str | None) -> Session | None:
        """The session a cookie stands for, or None (missing, forged, expired, revoked)."""
        if not cookie or len(cookie) > 300:
            return None
        parts = cookie.split(".")
        if len(parts) != 4 or not parts[0].isdigit() or not parts[1].isdigit():
            return None
        token_id, expiry, nonce, mac = int(parts[0]), int(parts[1]), parts[2], parts[3]
        if expiry < time.time() or nonce in self.logged_out or token_id > 2**31:
            return None
        found = self._token(token_id)
        if found is None:
            return None
        who, key = found
        if not hmac.compare_digest(mac, _mac(key, ".".join(parts[:3]))):
            return None
        return Session(who, token_id, nonce, _mac(key, "csrf." + nonce))

    def end(self, session: Session) -> None:
        self.logged_out.add(session.nonce)
