"""The API's routes, one router per resource, all under ``/api/v1``. Shared dependencies
(the caller, the server's parts, common parameters) are in ``deps``; the bodies they
answer with are declared in ``aar.contracts.api``."""

from __future__ import annotations

from fastapi import APIRouter

from aar.server.routes import (
    admin,
    archives,
    board,
    evaluations,
    findings,
    identity,
    researchers,
)

ROUTERS = (identity.router, evaluations.router, archives.router, findings.router,
           board.router, researchers.router, admin.router)


def api_router() -> APIRouter:
    """Every route of the API, under ``/api/v1``."""
    api = APIRouter(prefix="/api/v1")
    for r in ROUTERS:
        api.include_router(r)
    return api
