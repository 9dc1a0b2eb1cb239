"""What every router shares: the caller (``Who``: any valid token; ``Admin``: an admin
token), the server's parts (``Srv``), and the common parameter types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from aar.server import auth
from aar.server.auth import Principal
from aar.server.config import ServerConfig
from aar.server.db import Database
from aar.server.errors import ApiError
from aar.server.evaluation import Catalog
from aar.server.submissions import Evaluator


@dataclass(frozen=True)
class Server:
    """The parts of one server application (``app.state.server``)."""

    cfg: ServerConfig
    db: Database
    catalog: Catalog
    evaluator: Evaluator

    @property
    def inline(self) -> bool:
        """Evaluate on the event loop's thread (SQLite; see ``routes.evaluations``)."""
        return self.db.dialect == "sqlite"

    def dataset_name(self, key: str) -> str:
        try:
            return self.catalog.get(key).name
        except ApiError:
            return key


_bearer = HTTPBearer(auto_error=False, description="an agent or admin token")


async def principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller; 401 without a valid token."""
    db: Database = request.app.state.db
    if creds is None:
        return auth.authenticate(db, request.headers.get("authorization"))
    return auth.authenticate(db, f"Bearer {creds.credentials}")


def admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """An admin caller; 403 for any other role."""
    if not who.is_admin:
        raise ApiError(403, "admin only: this needs an admin token")
    return who


async def server(request: Request) -> Server:
    """The application's parts (async: resolved on the event loop, no thread hop)."""
    srv: Server = request.app.state.server
    return srv


def naive_utc(t: datetime | None) -> datetime | None:
    if t is None or t.tzinfo is None:
        return t
    return t.astimezone(UTC).replace(tzinfo=None)


Who = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(admin)]
Srv = Annotated[Server, Depends(server)]
Limit = Annotated[int, Query(ge=1, le=200)]
RowId = Annotated[int, Path(ge=1, le=2**31 - 1, description="a row id")]
Offset = Annotated[int, Query(ge=0, le=10**9)]
