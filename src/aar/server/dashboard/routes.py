"""The dashboard: server-rendered HTML (Jinja2), live through server-sent events.

This module holds what the pages share — :class:`Dashboard` (templates, sessions, the
database, rendering and error pages), the checks of query and form parameters — and
:func:`mount`; the pages themselves are routers in :mod:`aar.server.dashboard.pages`.

Every page needs a session (``/login`` with a token); the oversight and audit pages need
an admin's. A POST must come from this site (its ``Origin``/``Referer``, when sent, names
this host) and carry the session's CSRF token. Bad input gets an HTML error page and
changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import select
from starlette.exceptions import HTTPException as StarletteHTTPException

from aar.data.splits import PUBLIC
from aar.server import flags, forum, leaderboard
from aar.server.config import ServerConfig
from aar.server.dashboard import code, data, live
from aar.server.dashboard.session import COOKIE, LOGIN_CSRF_COOKIE, Session, Sessions
from aar.server.db import Agent, Archive, Database, Finding, FindingSubmission, Flag, Vote
from aar.server.errors import ApiError
from aar.server.evaluation import Catalog
from aar.server.references import references
from aar.w2s.metrics import estimate

STATIC = Path(__file__).parent / "static"
PAGE_SIZE = 25
TRANSCRIPT_TURNS = 400  # transcript events on one page of a researcher
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
API_PREFIX = "/api/"


class PageError(Exception):
    """An error shown as an HTML page."""

    def __init__(self, status: int, message: str, title: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title or {400: "Bad request", 401: "Not logged in", 403: "Forbidden",
                               404: "Not found", 409: "Conflict", 413: "Too large",
                               415: "Unsupported form"}.get(status, "Error")


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


# --------------------------------------------------------------------------- formatting


def _ago(t: datetime | None) -> str:
    if t is None:
        return "never"
    s = (datetime.now(UTC).replace(tzinfo=None) - t).total_seconds()
    if s < 5:
        return "just now"
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{s / n:.0f} {unit} ago"
    return f"{s:.0f} s ago"


def _when(t: datetime | str | None) -> str:
    """A time for people: '2026-12-01 19:04 UTC (3 min ago)'."""
    if isinstance(t, str):
        try:
            t = datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            return str(t)
    if t is None:
        return "–"
    if t.tzinfo is not None:
        t = t.astimezone(UTC).replace(tzinfo=None)
    return f"{t:%Y-%m-%d %H:%M} UTC ({_ago(t)})"


def _iso(t: datetime | None) -> str:
    return "" if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(x: Any, digits: int = 3) -> str:
    v = data.finite(x)
    return "–" if v is None else f"{v:.{digits}f}"


def _count(n: Any) -> str:
    v = data.finite(n) or 0.0
    for suffix, k in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= k:
            return f"{v / k:.1f}{suffix}"
    return f"{v:.0f}"


def _json(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=str)


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("aar.server.dashboard", "templates"),
                      autoescape=select_autoescape(default=True), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters.update(ago=_ago, iso=_iso, when=_when, num=_num, count=_count, tojson_pretty=_json,
                       money=lambda x: f"${data.finite(x) or 0.0:,.2f}")
    return env


# --------------------------------------------------------------------------- input


def int_param(raw: str | None, name: str, lo: int, hi: int, default: int | None = None) -> int:
    if raw is None or raw == "":
        if default is None:
            raise PageError(400, f"{name} is missing")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise PageError(400, f"{name} must be a whole number; got {raw[:40]!r}") from None
    if not lo <= value <= hi:
        raise PageError(400, f"{name} must be between {lo} and {hi}; got {value}")
    return value


def text_param(raw: str | None, name: str, max_len: int, required: bool = False) -> str | None:
    value = (raw or "").strip()
    if "\x00" in value:
        raise PageError(400, f"{name} contains a NUL character; remove it")
    if len(value) > max_len:
        raise PageError(400, f"{name} is longer than {max_len} characters")
    if required and not value:
        raise PageError(400, f"{name} is empty; write something")
    return value or None


def since_param(raw: str | None) -> datetime | None:
    value = (raw or "").strip()
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PageError(400, f"since must be a date and time like 2026-12-01T18:00 (UTC); "
                             f"got {value[:40]!r}") from None
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def safe_next(raw: str | None) -> str:
    """Only a path on this site (no scheme, no host, no '//')."""
    value = raw or "/"
    parts = urlsplit(value)
    if (parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//")
            or "\\" in value or value.startswith("/login")):
        return "/"
    return value


async def read_form(request: Request) -> dict[str, str]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise PageError(415, "send the form as application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > 100_000:
        raise PageError(413, "the form is over 100 kB")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True,
                          strict_parsing=False, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise PageError(400, "the form could not be read (not UTF-8 or too many "
                             "fields)") from None
    return {k: v[0] for k, v in parsed.items()}


def same_origin(request: Request) -> None:
    """Refuse a POST whose Origin (or Referer) names another site."""
    host = request.headers.get("host", "")
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value:
            if value == "null" or urlsplit(value).netloc != host:
                raise PageError(403, "this form was sent from another site; open the "
                                     "dashboard and send it from there")
            return


# --------------------------------------------------------------------------- the app


class Dashboard:
    def __init__(self, db: Database, cfg: ServerConfig, catalog: Catalog) -> None:
        self.db, self.cfg, self.catalog = db, cfg, catalog
        self.sessions = Sessions(db)
        self.watcher = live.Watcher(db)
        self.env = _environment()
        self.static = {p.name: p.read_bytes() for p in STATIC.iterdir() if p.is_file()}
        self.static["code.css"] = code.stylesheet().encode()
        stamp = hashlib.sha256(b"".join(self.static[k] for k in sorted(self.static)))
        self.env.globals["asset"] = lambda name: f"/static/{name}?v={stamp.hexdigest()[:10]}"

    # ---------------------------------------------------------------- helpers

    def session(self, request: Request, admin: bool = False) -> Session:
        sess = self.sessions.check(request.cookies.get(COOKIE))
        if sess is None:
            url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginRequired(url)
        if admin and not sess.who.is_admin:
            raise PageError(403, f"this page is for admins; you are logged in as "
                                 f"{sess.who.name} ({sess.who.role})")
        return sess

    def version(self) -> str:
        return live.version_id(self.watcher.read())

    def render(self, name: str, sess: Session | None, status: int = 200,
               **ctx: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(sess=sess, version=ctx.pop("version", ""),
                                                  **ctx)
        return HTMLResponse(html, status_code=status, headers={
            "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "Cache-Control": "no-store"})

    def error_page(self, request: Request, status: int, message: str, title: str
                   ) -> HTMLResponse:
        sess = self.sessions.check(request.cookies.get(COOKIE))
        return self.render("error.html", sess, status, title=title, message=message)

    async def post(self, request: Request, admin: bool = False
                   ) -> tuple[Session, dict[str, str]]:
        sess = self.session(request, admin)
        same_origin(request)
        form = await read_form(request)
        if not secrets.compare_digest(form.get("csrf", ""), sess.csrf):
            raise PageError(403, "the form's security token is missing or stale; reload "
                                 "the page and send it again")
        return sess, form

    def dataset_choice(self, ref: str | None) -> tuple[list[Any], Any]:
        with self.db.read() as s:
            rows = data.datasets(s)
        chosen = data.pick_dataset(rows, ref)
        if ref and chosen is None:
            raise PageError(404, f"no scored dataset {ref!r}; pick one from the list")
        return rows, chosen

    def baseline(self, key: str, coarse: bool) -> tuple[float | None, str]:
        """The best built-in method's public PGR on a dataset (the line researchers must
        beat), as coarse as the leaderboard for agents; the weak teacher (0) when no
        method was run."""
        try:
            ds = self.catalog.get(key)
        except ApiError:
            return 0.0, "weak teacher"
        best: tuple[float | None, str] = (0.0, "weak teacher")
        with self.db.read() as session:
            runs = references(session, ds, self.cfg.min_seeds)
        for run in runs:
            scores = [s.get(PUBLIC, {}) for s in run["per_seed"]]
            if coarse:
                acc = estimate([sc.get("accuracy", math.nan) for sc in scores])
                value = leaderboard.coarsen(acc.mean, acc.se, ds, PUBLIC, self.cfg.eta)["pgr"]
            else:
                value = estimate([sc.get("pgr", math.nan) for sc in scores]).mean
            mean = data.finite(value)
            if mean is not None and (best[0] is None or mean > best[0]):
                best = (mean, str(run["method"]))
        return best

    # ---------------------------------------------------------------- routes

    # ---------------------------------------------------------------- page pieces

    @staticmethod
    def api(fn: Callable[..., Any], *args: Any) -> Any:
        """Call a server function; its ApiError becomes an error page."""
        try:
            return fn(*args)
        except ApiError as exc:
            raise PageError(exc.status, exc.message) from None

    @staticmethod
    def time_span(people: list[data.Researcher]) -> tuple[datetime, datetime]:
        times = [t for p in people for t, _ in p.points]
        now = datetime.now(UTC).replace(tzinfo=None)
        return (min(times), max(now, max(times))) if times else (now, now)

    @staticmethod
    def add_submission_flags(s: Any, ids: list[int],
                             out: dict[int, list[dict[str, Any]]]) -> None:
        """Flags set on a held finding's submissions (not on the finding itself)."""
        if not ids:
            return
        links = s.execute(select(FindingSubmission.finding_id, FindingSubmission.submission_id)
                          .where(FindingSubmission.finding_id.in_(ids))).all()
        agents = {a.id: a.name for a in s.scalars(select(Agent))}
        by_sub: dict[int, list[int]] = {}
        for fid, sid in links:
            by_sub.setdefault(sid, []).append(fid)
        for f in s.scalars(select(Flag).where(Flag.submission_id.in_(list(by_sub)),
                                              Flag.state.in_(flags.HOLDING))):
            for fid in by_sub.get(f.submission_id, []):
                seen = {x["id"] for x in out.setdefault(fid, [])}
                if f.id not in seen:
                    out[fid].append(flags.flag_dict(f, agents.get(f.agent_id, "?")))

    def login_form(self, request: Request, next_url: str | None, status: int = 200,
                   error: str | None = None) -> HTMLResponse:
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
        resp = self.render("login.html", None, status, csrf=token, error=error,
                           next=safe_next(next_url), page="login")
        resp.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https",
                        path="/login")
        return resp

    def finding(self, request: Request, sess: Session, fid: int) -> HTMLResponse:
        version = self.version()
        with self.db.read() as s:
            f = s.get(Finding, fid)
            if f is None:
                raise PageError(404, f"no finding {fid}; it may have been mistyped")
            item = forum.finding_dict(s, f)
            comments = forum.list_comments(s, fid, None, 200, 0)["items"]
            built_by = data.builds_on_graph(s, fid)
            names = data.titles(s, [*item["builds_on"], *built_by])
            archive = s.get(Archive, f.archive_sha256) if f.archive_sha256 else None
            files = code.render(archive.data, archive.kind) if archive else []
            my_vote = s.execute(select(Vote.value).where(
                Vote.finding_id == fid, Vote.agent_id == sess.who.id)).scalar()
            finding_flags = (flags.list_flags(s, agent=None, state=None, source=None,
                                              finding=fid, since=None, limit=50,
                                              offset=0)["items"]
                             if sess.who.is_admin else [])
        return self.render("finding.html", sess, version=version, f=item, comments=comments,
                           built_by=built_by, titles=names, files=files, my_vote=my_vote or 0,
                           own=item["author"] == sess.who.name, flags=finding_flags,
                           page="forum", archive=archive)


def mount(app: FastAPI) -> Dashboard:
    """Serve the dashboard from ``app`` (its pages at ``/``, the API stays at ``/api/v1``);
    errors on dashboard paths become HTML pages, API errors stay JSON."""
    dash = Dashboard(app.state.db, app.state.config, app.state.catalog)
    app.state.dashboard = dash
    from aar.server.dashboard.pages import ROUTERS  # the pages import this module

    for router in ROUTERS:
        app.include_router(router)

    async def page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return dash.error_page(request, exc.status, exc.message, exc.title)

    async def login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        return RedirectResponse(f"/login?next={quote(exc.next_url, safe='')}", 303)

    app.add_exception_handler(PageError, page_error)
    app.add_exception_handler(LoginRequired, login_required)
    for kind in (StarletteHTTPException, RequestValidationError):
        original = app.exception_handlers.get(kind)

        def make(original: Any) -> Any:
            async def handler(request: Request, exc: Exception) -> Response:
                if request.url.path.startswith(API_PREFIX) or original is None:
                    if original is None:
                        raise exc
                    answer: Response = await original(request, exc)
                    return answer
                status = getattr(exc, "status_code", 400)
                message = str(getattr(exc, "detail", "")) or "bad request"
                if isinstance(exc, RequestValidationError):
                    message = "the request's parameters are not valid"
                elif status == 404:
                    message = f"there is no page at {request.url.path[:200]}"
                return dash.error_page(request, status, message,
                                       PageError(status, message).title)
            return handler

        app.add_exception_handler(kind, make(original))
    return dash
