"""The FastAPI application: every route under ``/api/v1`` (one router per resource in
``aar.server.routes``, response bodies declared in ``aar.contracts.api``), errors as
``{"error": "<one line>", "detail": ...}`` with a 4xx status.

Every route needs a bearer token (401 without a valid one, 403 with the wrong role);
only the OpenAPI schema (``/api/v1/openapi.json``) and its docs page are public.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

import aar
from aar.server import auth
from aar.server.config import ServerConfig
from aar.server.db import Database
from aar.server.errors import ApiError
from aar.server.evaluation import Catalog
from aar.server.routes import api_router
from aar.server.routes.deps import Server
from aar.server.submissions import Evaluator

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


class SafeJSONResponse(JSONResponse):
    """JSON without NaN or infinity (they become null)."""

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode()
        except ValueError:
            return json.dumps(_clean(content), ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode()


def error_response(status: int, message: str, detail: Any = None,
                   headers: dict[str, str] | None = None) -> SafeJSONResponse:
    body: dict[str, Any] = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return SafeJSONResponse(body, status_code=status, headers=headers)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with a 413 before the app reads them,
    and URLs with NUL characters with a 400."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query:
            await error_response(400, "NUL characters (%00) are not allowed in the URL")(
                scope, receive, send)
            return
        msg = f"request body is over the {self.limit}-byte limit"
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = False
                if too_big:
                    await error_response(413, msg)(scope, receive, send)
                    return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except _TooLarge:
            if not started:
                await error_response(413, msg)(scope, receive, send)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    if not errors:
        return 422, "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        return 400, f"malformed JSON: {ctx.get('error', first.get('msg', 'cannot parse'))}"
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
    msg = str(first.get("msg", "bad value")).removeprefix("Value error, ")
    return 422, f"invalid {loc}: {msg}"


def create_app(config: ServerConfig | None = None) -> FastAPI:
    """The server application. Migrates the database and creates the admin account at
    first start; that admin token is in ``app.state.initial_admin_token`` (else None)."""
    cfg = config or ServerConfig()
    db = Database(cfg.db_url)
    catalog = Catalog(cfg.datasets, eta=cfg.eta)
    evaluator = Evaluator(db, catalog, cfg)

    app = FastAPI(
        title="aar evaluation server", version=aar.__version__,
        description="Rationed scoring of weak-to-strong test predictions, findings forum, "
                    "server-computed leaderboard, audit log.",
        openapi_url="/api/v1/openapi.json", docs_url="/api/v1/docs", redoc_url=None,
        default_response_class=SafeJSONResponse,
    )
    app.state.config = cfg
    app.state.db = db
    app.state.catalog = catalog
    app.state.server = Server(cfg, db, catalog, evaluator)
    app.state.initial_admin_token = auth.ensure_admin(db, cfg.admin_token)
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        status, message = _validation_message(exc)
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
                  for e in exc.errors()[:10]]
        return error_response(status, message, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, str(exc.detail), None,
                              dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> Response:
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")

    app.include_router(api_router())
    from aar.server.dashboard import mount  # the web dashboard: HTML pages at /
    mount(app)
    return app
