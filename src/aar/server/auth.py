"""Bearer tokens: random, shown once, stored as SHA-256 hashes; roles ``agent`` and
``admin``. A missing, unknown or revoked token is a 401; the wrong role a 403."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from aar.server.db import Agent, Database, Token, account_of, audit, utcnow
from aar.server.errors import ApiError

ROLES = ("agent", "admin")
TOKEN_PREFIX = "aar_"


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    id: int
    name: str
    role: str
    budget_per_hour: int | None
    budget_total: int | None
    run: str | None = None  # the research run whose researchers share one account

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def account(self) -> str:
        """The rationing account this caller's evaluations are charged to."""
        return account_of(self.name, self.run)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def issue_token(
    session: Session, name: str, role: str = "agent", *, budget_per_hour: int | None = None,
    budget_total: int | None = None, actor: Agent | None = None, token: str | None = None,
    run: str | None = None,
) -> tuple[Agent, Token, str]:
    """Create ``name`` if new (else update its budgets) and give it a fresh token.
    ``run`` puts the agent in a research run: the run's researchers share one rationing
    account per dataset; an agent's run is set once and never changes."""
    if role not in ROLES:
        raise ApiError(400, f"unknown role {role!r}; use one of: {', '.join(ROLES)}")
    agent = session.scalars(select(Agent).where(Agent.name == name)).first()
    if agent is None:
        agent = Agent(name=name, role=role, budget_per_hour=budget_per_hour,
                      budget_total=budget_total, run=run)
        session.add(agent)
        session.flush()
        audit(session, actor, "agent.create", name, role=role,
              budget_per_hour=budget_per_hour, budget_total=budget_total, run=run)
    else:
        if agent.role != role:
            raise ApiError(409, f"{name!r} already exists with role {agent.role!r}; "
                                "pick another name")
        if run is not None and agent.run != run:
            # Moving an agent to another run would give it a fresh account on labels it
            # has already been told about.
            raise ApiError(409, f"{name!r} already exists in run {agent.run!r}; an agent's "
                                "run cannot change: pick another name")
        if budget_per_hour is not None or budget_total is not None:
            if budget_per_hour is not None:
                agent.budget_per_hour = budget_per_hour
            if budget_total is not None:
                agent.budget_total = budget_total
            audit(session, actor, "agent.budget", name, budget_per_hour=agent.budget_per_hour,
                  budget_total=agent.budget_total)
    plain = token or new_token()
    row = Token(agent_id=agent.id, token_hash=hash_token(plain), prefix=plain[:10])
    session.add(row)
    session.flush()
    audit(session, actor, "token.create", name, token_id=row.id, prefix=row.prefix)
    return agent, row, plain


def revoke(session: Session, actor: Agent | None, *, token_id: int | None = None,
           name: str | None = None) -> int:
    """Revoke one token (by id) or every token of an agent (by name); returns how many."""
    query = select(Token).where(Token.revoked.is_(None))
    if token_id is not None:
        query = query.where(Token.id == token_id)
    elif name is not None:
        query = query.join(Agent, Agent.id == Token.agent_id).where(Agent.name == name)
    else:
        raise ApiError(400, "say which token to revoke: a token id or an agent name")
    rows = list(session.scalars(query))
    for row in rows:
        row.revoked = utcnow()
        audit(session, actor, "token.revoke", str(row.id), prefix=row.prefix)
    return len(rows)


def ensure_admin(db: Database, token: str | None = None) -> str | None:
    """Create the admin account at first start; returns its token then (None afterwards).

    ``token`` fixes the admin token (``AAR_ADMIN_TOKEN``) instead of drawing one.
    """
    with db.write() as session:
        exists = session.scalars(select(Agent.id).where(Agent.role == "admin")).first()
        if exists is not None:
            if token is not None and session.scalars(
                    select(Token.id).where(Token.token_hash == hash_token(token))).first() is None:
                admin = session.get(Agent, exists)
                issue_token(session, admin.name if admin else "admin", "admin", token=token)
            return None
        _, _, plain = issue_token(session, "admin", "admin", token=token)
        return plain


CACHE_SECONDS = 5.0  # a token revoked by another process stops working within this


def authenticate(db: Database, authorization: str | None) -> Principal:
    if not authorization:
        raise ApiError(401, "missing token: send 'Authorization: Bearer <token>'",
                       headers={"WWW-Authenticate": "Bearer"})
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise ApiError(401, "malformed Authorization header: use 'Bearer <token>'",
                       headers={"WWW-Authenticate": "Bearer"})
    digest = hash_token(value)
    hit = db.token_cache.get(digest)
    now = time.monotonic()
    if hit is not None and hit[0] > now:
        return hit[1]
    with db.read_conn() as conn:
        row = conn.execute(
            select(Agent.id, Agent.name, Agent.role, Agent.budget_per_hour, Agent.budget_total,
                   Agent.run)
            .join(Token, Token.agent_id == Agent.id)
            .where(Token.token_hash == digest, Token.revoked.is_(None))
        ).first()
    if row is None:
        raise ApiError(401, "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
    who = Principal(*row)
    db.token_cache[digest] = (now + CACHE_SECONDS, who)
    return who
