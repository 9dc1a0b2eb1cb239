"""The dashboard's pages: server-rendered HTML (Jinja2), live through server-sent events.

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

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import select
from starlette.exceptions import HTTPException as StarletteHTTPException

from aar.server import flags, forum, leaderboard, transcripts
from aar.server.config import ServerConfig
from aar.server.dashboard import charts, code, data, live
from aar.server.dashboard.session import COOKIE, LIFETIME_S, LOGIN_CSRF_COOKIE, Session, Sessions
from aar.server.db import Agent, Archive, Database, Finding, FindingSubmission, Flag, Vote, audit
from aar.server.errors import ApiError
from aar.server.evaluation import PRIVATE, PUBLIC, Catalog
from aar.server.schemas import FINDING_TYPES
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


def _int(raw: str | None, name: str, lo: int, hi: int, default: int | None = None) -> int:
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


def _text(raw: str | None, name: str, max_len: int, required: bool = False) -> str | None:
    value = (raw or "").strip()
    if "\x00" in value:
        raise PageError(400, f"{name} contains a NUL character; remove it")
    if len(value) > max_len:
        raise PageError(400, f"{name} is longer than {max_len} characters")
    if required and not value:
        raise PageError(400, f"{name} is empty; write something")
    return value or None


def _since(raw: str | None) -> datetime | None:
    value = (raw or "").strip()
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PageError(400, f"since must be a date and time like 2026-12-01T18:00 (UTC); "
                             f"got {value[:40]!r}") from None
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def _safe_next(raw: str | None) -> str:
    """Only a path on this site (no scheme, no host, no '//')."""
    value = raw or "/"
    parts = urlsplit(value)
    if (parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//")
            or "\\" in value or value.startswith("/login")):
        return "/"
    return value


async def _form(request: Request) -> dict[str, str]:
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


def _same_origin(request: Request) -> None:
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
        self.refs = leaderboard.ReferenceRuns()
        self.env = _environment()
        self.static = {p.name: p.read_bytes() for p in STATIC.iterdir() if p.is_file()}
        self.static["code.css"] = code.stylesheet().encode()
        stamp = hashlib.sha256(b"".join(self.static[k] for k in sorted(self.static)))
        self.env.globals["asset"] = lambda name: f"/static/{name}?v={stamp.hexdigest()[:10]}"
        self.router = APIRouter(include_in_schema=False)
        self._routes()

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
        _same_origin(request)
        form = await _form(request)
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
        for run in self.refs.for_dataset(ds, self.cfg.min_seeds):
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

    def _routes(self) -> None:
        r = self.router

        @r.get("/static/{name}")
        def static(name: str) -> Response:
            body = self.static.get(name)
            if body is None:
                raise PageError(404, f"no static file {name!r}")
            kind = {"css": "text/css", "js": "text/javascript"}.get(name.rsplit(".", 1)[-1],
                                                                     "text/plain")
            return Response(body, media_type=f"{kind}; charset=utf-8",
                            headers={"Cache-Control": "public, max-age=3600",
                                     "X-Content-Type-Options": "nosniff"})

        @r.get("/login")
        def login_page(request: Request, next: str | None = None) -> HTMLResponse:
            if self.sessions.check(request.cookies.get(COOKIE)) is not None:
                return RedirectResponse(_safe_next(next), 303)  # type: ignore[return-value]
            return self.login_form(request, next)

        @r.post("/login")
        async def login(request: Request) -> Response:
            _same_origin(request)
            form = await _form(request)
            expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
            if not expected or not secrets.compare_digest(form.get("csrf", ""), expected):
                raise PageError(403, "the login form's security token is missing or stale "
                                     "(are cookies on?); reload the login page")
            token = (form.get("token") or "").strip()
            issued = self.sessions.issue(token) if token and len(token) < 300 else None
            if issued is None:
                return self.login_form(request, form.get("next"), 401,
                                       "that token is not valid (unknown or revoked)")
            value, sess = issued
            with self.db.write() as s:
                audit(s, s.get(Agent, sess.who.id), "dashboard.login", sess.who.name,
                      token_id=sess.token_id)
            resp = RedirectResponse(_safe_next(form.get("next")), 303)
            resp.set_cookie(COOKIE, value, max_age=LIFETIME_S, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https", path="/")
            resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
            return resp

        @r.post("/logout")
        async def logout(request: Request) -> Response:
            sess, _ = await self.post(request)
            self.sessions.end(sess)
            resp = RedirectResponse("/login", 303)
            resp.delete_cookie(COOKIE, path="/")
            return resp

        @r.get("/")
        def overview(request: Request, dataset: str | None = None,
                     run: str | None = None) -> HTMLResponse:
            sess = self.session(request)
            version = self.version()
            rows, chosen = self.dataset_choice(dataset)
            run_id = _text(run, "run", 128)
            with self.db.read() as s:
                all_runs = data.runs(s)
                if run is None and len(all_runs) > 1:
                    run_id = all_runs[0]  # several runs: the latest unless asked
                elif run_id is not None and run_id not in all_runs:
                    raise PageError(404, f"no research run {run_id!r} has reported")
                people = data.researchers(s, self.cfg, sess.who,
                                          chosen.key if chosen else None, run_id)
                counts = data.flag_counts(s) if sess.who.is_admin else {}
                recent = data.recent_findings(s, 6)
            base, base_label = (self.baseline(chosen.key, not sess.who.is_admin)
                                if chosen else (None, ""))
            t0, t1 = self.time_span(people)
            sparks = {p.id: charts.sparkline(p.points, t0, t1, base) for p in people}
            best = max((p.best_pgr for p in people if p.best_pgr is not None), default=None)
            totals = {"running": sum(p.state == "running" for p in people),
                      "evals": sum(p.evals for p in people),
                      "usd": sum(p.usd for p in people),
                      "tokens": sum(p.tokens for p in people), "best": best}
            return self.render("overview.html", sess, version=version, people=people,
                               sparks=sparks, totals=totals, flag_counts=counts,
                               recent=recent, datasets=rows, dataset=chosen, baseline=base,
                               baseline_label=base_label, page="overview", run=run_id,
                               runs=all_runs,
                               now=datetime.now(UTC).replace(tzinfo=None))

        @r.get("/events")
        def events(request: Request, v: str | None = None, timeout: str | None = None
                   ) -> Response:
            if self.sessions.check(request.cookies.get(COOKIE)) is None:
                return Response("not logged in\n", status_code=401, media_type="text/plain")
            lifetime = _int(timeout, "timeout", 1, 60, 10)
            since = request.headers.get("last-event-id") or v
            return StreamingResponse(
                live.stream(request, self.watcher, since and since[:32], lifetime),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

        @r.get("/leaderboard")
        def board_page(request: Request, dataset: str | None = None) -> HTMLResponse:
            sess = self.session(request)
            version = self.version()
            rows, chosen = self.dataset_choice(dataset)
            admin = sess.who.is_admin
            public = private = None
            held_flags: dict[int, list[dict[str, Any]]] = {}
            if chosen is not None:
                try:
                    ds = self.catalog.get(chosen.key)
                except ApiError as exc:
                    raise PageError(exc.status, exc.message) from None
                with self.db.read() as s:
                    public = leaderboard.board(s, ds, PUBLIC, coarse=not admin,
                                               eta=self.cfg.eta, min_seeds=self.cfg.min_seeds,
                                               refs=self.refs, viewer=sess.who.account,
                                               noise=self.cfg.ladder_noise)
                    if admin:
                        private = leaderboard.board(
                            s, ds, PRIVATE, coarse=False, eta=self.cfg.eta,
                            min_seeds=self.cfg.min_seeds, refs=self.refs)
                        ids = [h["finding"] for h in public["held"]]
                        for fid in ids:
                            held_flags[fid] = flags.list_flags(
                                s, agent=None, state=None, source=None, finding=fid,
                                since=None, limit=20, offset=0)["items"]
                        self.add_submission_flags(s, ids, held_flags)
            priv = {e["finding"]: e for e in [*(private or {}).get("entries", []),
                                              *(private or {}).get("transductive", [])]}
            checks = data.verifications(chosen) if admin and chosen is not None else []
            return self.render("leaderboard.html", sess, version=version, datasets=rows,
                               dataset=chosen, board=public, private=priv,
                               held_flags=held_flags, verifications=checks,
                               page="leaderboard")

        @r.get("/pgr")
        def pgr_page(request: Request, dataset: str | None = None) -> HTMLResponse:
            sess = self.session(request)
            version = self.version()
            rows, chosen = self.dataset_choice(dataset)
            people: list[data.Researcher] = []
            svgs: dict[int, Markup] = {}
            base, base_label = None, ""
            if chosen is not None:
                with self.db.read() as s:
                    people = data.researchers(s, self.cfg, sess.who, chosen.key)
                base, base_label = self.baseline(chosen.key, not sess.who.is_admin)
                t0, t1 = self.time_span(people)
                lo, hi = charts.y_range([v for p in people for _, v in p.points]
                                        + ([base] if base is not None else []))
                svgs = {p.id: charts.pgr_chart(p.name, p.points, t0, t1, base, base_label,
                                               lo, hi) for p in people}
            return self.render("pgr.html", sess, version=version, datasets=rows,
                               dataset=chosen, people=people, svgs=svgs, baseline=base,
                               baseline_label=base_label, page="pgr")

        @r.get("/forum")
        def forum_page(request: Request, type: str | None = None, q: str | None = None,
                       author: str | None = None, page: str | None = None) -> HTMLResponse:
            sess = self.session(request)
            version = self.version()
            kind = _text(type, "type", 16)
            if kind is not None and kind not in FINDING_TYPES:
                raise PageError(400, f"unknown finding type {kind!r}; use one of: "
                                     f"{', '.join(FINDING_TYPES)}")
            query = _text(q, "search", 500)
            who = _text(author, "author", 64)
            number = _int(page, "page", 1, 100_000, 1)
            with self.db.read() as s:
                try:
                    found = forum.list_findings(s, self.db.dialect, q=query, type_=kind,
                                                author=who, limit=PAGE_SIZE,
                                                offset=(number - 1) * PAGE_SIZE)
                except ApiError as exc:
                    raise PageError(exc.status, exc.message) from None
            pages = max(1, -(-found["total"] // PAGE_SIZE))
            return self.render("forum.html", sess, version=version, found=found, kind=kind,
                               q=query or "", author=who or "", number=number, pages=pages,
                               types=FINDING_TYPES, page="forum")

        @r.get("/researchers/{name}")
        def researcher_page(request: Request, name: str, run: str | None = None,
                            after: str | None = None) -> HTMLResponse:
            sess = self.session(request)
            version = self.version()
            who = _text(name, "researcher", 64, required=True) or ""
            if who != sess.who.name and not sess.who.is_admin:
                raise PageError(403, "a researcher's page is for admins and for that "
                                     "researcher")
            run_id = _text(run, "run", 128)
            start = _int(after, "after", -1, 10**9, -1)
            with self.db.read() as s:
                person = next((p for p in data.researchers(s, self.cfg, sess.who, None)
                               if p.name == who), None)
                if person is None:
                    raise PageError(404, f"no researcher {who!r}")
                turns = self.api(transcripts.list_turns, s, sess.who, who,
                                 run_id or person.run_id or None, start, TRANSCRIPT_TURNS)
                found = forum.list_findings(s, self.db.dialect, q=None, type_=None,
                                            author=who, limit=PAGE_SIZE, offset=0)
            said = [t for t in turns["items"] if t["kind"] == "assistant"]
            seconds = sum(t.get("seconds") or 0.0 for t in said)
            speed = {"calls": len(said),
                     "tokens_in": sum(t.get("input_tokens") or 0 for t in said),
                     "tokens_out": sum(t.get("output_tokens") or 0 for t in said),
                     "per_s": (sum(t.get("output_tokens") or 0 for t in said) / seconds)
                     if seconds > 0 else None}
            return self.render("researcher.html", sess, version=version, p=person,
                               turns=turns, found=found, speed=speed, page="overview",
                               more=len(turns["items"]) >= TRANSCRIPT_TURNS)

        @r.get("/forum/{finding_id}")
        def finding_page(request: Request, finding_id: str) -> HTMLResponse:
            sess = self.session(request)
            return self.finding(request, sess, _int(finding_id, "finding id", 1, 2**31 - 1))

        @r.post("/forum/{finding_id}/vote")
        async def vote(request: Request, finding_id: str) -> Response:
            sess, form = await self.post(request)
            fid = _int(finding_id, "finding id", 1, 2**31 - 1)
            value = _int(form.get("value"), "vote", -1, 1)
            with self.db.write() as s:
                self.api(forum.vote, s, sess.who, fid, value)
            return RedirectResponse(f"/forum/{fid}#votes", 303)

        @r.post("/forum/{finding_id}/comment")
        async def comment(request: Request, finding_id: str) -> Response:
            sess, form = await self.post(request)
            fid = _int(finding_id, "finding id", 1, 2**31 - 1)
            body = _text(form.get("body"), "comment", 20_000, required=True)
            with self.db.write() as s:
                c = self.api(forum.add_comment, s, sess.who, fid, body)
            return RedirectResponse(f"/forum/{fid}#comment-{c['id']}", 303)

        @r.get("/oversight")
        def oversight(request: Request, state: str | None = None,
                      page: str | None = None) -> HTMLResponse:
            sess = self.session(request, admin=True)
            version = self.version()
            chosen = _text(state, "state", 16) or "open"
            if chosen not in (*flags.STATES, "all"):
                raise PageError(400, f"unknown flag state {chosen!r}; use open, accepted, "
                                     "rejected or all")
            number = _int(page, "page", 1, 100_000, 1)
            with self.db.read() as s:
                found = flags.list_flags(s, agent=None, state=None if chosen == "all"
                                         else chosen, source=None, finding=None, since=None,
                                         limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE)
                counts = data.flag_counts(s)
                names = data.titles(s, [f["finding"] for f in found["items"] if f["finding"]])
            pages = max(1, -(-found["total"] // PAGE_SIZE))
            return self.render("oversight.html", sess, version=version, found=found,
                               state=chosen, counts=counts, titles=names, number=number,
                               pages=pages, states=flags.STATES, page="oversight")

        @r.post("/oversight/flags/{flag_id}")
        async def review(request: Request, flag_id: str) -> Response:
            sess, form = await self.post(request, admin=True)
            fid = _int(flag_id, "flag id", 1, 2**31 - 1)
            decision = form.get("decision", "")
            if decision not in ("accept", "reject"):
                raise PageError(400, "choose accept (it was reward hacking) or reject (a "
                                     "false alarm)")
            reason = _text(form.get("reason"), "reason", 5000, required=True)
            with self.db.write() as s:
                self.api(flags.review_flag, s, sess.who, fid,
                         flags.ReviewIn(decision=decision, reason=reason or ""))  # type: ignore[arg-type]
            return RedirectResponse(f"/oversight?state=open#flag-{fid}", 303)

        @r.get("/audit")
        def audit_page(request: Request, action: str | None = None, actor: str | None = None,
                       since: str | None = None, page: str | None = None) -> HTMLResponse:
            sess = self.session(request, admin=True)
            version = self.version()
            act = _text(action, "action", 48)
            who = _text(actor, "actor", 64)
            after = _since(since)
            number = _int(page, "page", 1, 100_000, 1)
            with self.db.read() as s:
                rows, total = data.audit(s, act, who, after, PAGE_SIZE * 2,
                                         (number - 1) * PAGE_SIZE * 2)
                actions = data.audit_actions(s)
            pages = max(1, -(-total // (PAGE_SIZE * 2)))
            return self.render("audit.html", sess, version=version, rows=rows, total=total,
                               actions=actions, action=act or "", actor=who or "",
                               since=since or "", number=number, pages=pages, page="audit")

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
                           next=_safe_next(next_url), page="login")
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
    app.include_router(dash.router)

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
                    return await original(request, exc)
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
