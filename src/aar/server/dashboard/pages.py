"""The dashboard's pages, one router per resource: the session (static files, login,
logout), the run (overview, live events, a researcher's page), the boards (leaderboard,
PGR over time), the forum (findings, votes, comments) and the admin pages (oversight
flags and their review, the audit trail). Each handler gets the :class:`Dashboard`
(templates, sessions, the database) as a dependency; :func:`aar.server.dashboard.mount`
includes the routers.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from markupsafe import Markup

from aar.contracts.events import ResearcherState
from aar.contracts.flags import FlagState
from aar.data.splits import PRIVATE, PUBLIC
from aar.server import flags, forum, leaderboard, transcripts
from aar.server.dashboard import charts, data, live
from aar.server.dashboard.routes import (
    PAGE_SIZE,
    TRANSCRIPT_TURNS,
    Dashboard,
    PageError,
    int_param,
    read_form,
    safe_next,
    same_origin,
    since_param,
    text_param,
)
from aar.server.dashboard.session import COOKIE, LIFETIME_S, LOGIN_CSRF_COOKIE
from aar.server.db import Agent, audit
from aar.server.errors import ApiError
from aar.server.schemas import FINDING_TYPES


def _dashboard(request: Request) -> Dashboard:
    dash: Dashboard = request.app.state.dashboard
    return dash


Dash = Annotated[Dashboard, Depends(_dashboard)]

session_pages = APIRouter(include_in_schema=False)
run_pages = APIRouter(include_in_schema=False)
board_pages = APIRouter(include_in_schema=False)
forum_pages = APIRouter(include_in_schema=False)
admin_pages = APIRouter(include_in_schema=False)
ROUTERS = (session_pages, run_pages, board_pages, forum_pages, admin_pages)


@session_pages.get("/static/{name}")
def static(d: Dash, name: str) -> Response:
    body = d.static.get(name)
    if body is None:
        raise PageError(404, f"no static file {name!r}")
    kind = {"css": "text/css", "js": "text/javascript"}.get(name.rsplit(".", 1)[-1],
                                                             "text/plain")
    return Response(body, media_type=f"{kind}; charset=utf-8",
                    headers={"Cache-Control": "public, max-age=3600",
                             "X-Content-Type-Options": "nosniff"})


@session_pages.get("/login")
def login_page(request: Request, d: Dash, next: str | None = None) -> HTMLResponse:
    if d.sessions.check(request.cookies.get(COOKIE)) is not None:
        return RedirectResponse(safe_next(next), 303)  # type: ignore[return-value]
    return d.login_form(request, next)


@session_pages.post("/login")
async def login(request: Request, d: Dash) -> Response:
    same_origin(request)
    form = await read_form(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(form.get("csrf", ""), expected):
        raise PageError(403, "the login form's security token is missing or stale "
                             "(are cookies on?); reload the login page")
    token = (form.get("token") or "").strip()
    issued = d.sessions.issue(token) if token and len(token) < 300 else None
    if issued is None:
        return d.login_form(request, form.get("next"), 401,
                               "that token is not valid (unknown or revoked)")
    value, sess = issued
    with d.db.write() as s:
        audit(s, s.get(Agent, sess.who.id), "dashboard.login", sess.who.name,
              token_id=sess.token_id)
    resp = RedirectResponse(safe_next(form.get("next")), 303)
    resp.set_cookie(COOKIE, value, max_age=LIFETIME_S, httponly=True,
                    samesite="strict", secure=request.url.scheme == "https", path="/")
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return resp


@session_pages.post("/logout")
async def logout(request: Request, d: Dash) -> Response:
    sess, _ = await d.post(request)
    d.sessions.end(sess)
    resp = RedirectResponse("/login", 303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


@run_pages.get("/")
def overview(request: Request, d: Dash, dataset: str | None = None,
             run: str | None = None) -> HTMLResponse:
    sess = d.session(request)
    version = d.version()
    rows, chosen = d.dataset_choice(dataset)
    run_id = text_param(run, "run", 128)
    with d.db.read() as s:
        all_runs = data.runs(s)
        if run is None and len(all_runs) > 1:
            run_id = all_runs[0]  # several runs: the latest unless asked
        elif run_id is not None and run_id not in all_runs:
            raise PageError(404, f"no research run {run_id!r} has reported")
        people = data.researchers(s, d.cfg, sess.who,
                                  chosen.key if chosen else None, run_id)
        counts = data.flag_counts(s) if sess.who.is_admin else {}
        recent = data.recent_findings(s, 6)
    base, base_label = (d.baseline(chosen.key, not sess.who.is_admin)
                        if chosen else (None, ""))
    t0, t1 = d.time_span(people)
    sparks = {p.id: charts.sparkline(p.points, t0, t1, base) for p in people}
    best = max((p.best_pgr for p in people if p.best_pgr is not None), default=None)
    totals = {"running": sum(p.state == ResearcherState.RUNNING for p in people),
              "evals": sum(p.evals for p in people),
              "usd": sum(p.usd for p in people),
              "tokens": sum(p.tokens for p in people), "best": best}
    return d.render("overview.html", sess, version=version, people=people,
                       sparks=sparks, totals=totals, flag_counts=counts,
                       recent=recent, datasets=rows, dataset=chosen, baseline=base,
                       baseline_label=base_label, page="overview", run=run_id,
                       runs=all_runs,
                       now=datetime.now(UTC).replace(tzinfo=None))


@run_pages.get("/events")
def events(request: Request, d: Dash, v: str | None = None, timeout: str | None = None
           ) -> Response:
    if d.sessions.check(request.cookies.get(COOKIE)) is None:
        return Response("not logged in\n", status_code=401, media_type="text/plain")
    lifetime = int_param(timeout, "timeout", 1, 60, 10)
    since = request.headers.get("last-event-id") or v
    return StreamingResponse(
        live.stream(request, d.watcher, since and since[:32], lifetime),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@board_pages.get("/leaderboard")
def board_page(request: Request, d: Dash, dataset: str | None = None) -> HTMLResponse:
    sess = d.session(request)
    version = d.version()
    rows, chosen = d.dataset_choice(dataset)
    admin = sess.who.is_admin
    public = private = None
    held_flags: dict[int, list[dict[str, Any]]] = {}
    if chosen is not None:
        try:
            ds = d.catalog.get(chosen.key)
        except ApiError as exc:
            raise PageError(exc.status, exc.message) from None
        with d.db.read() as s:
            public = leaderboard.board(s, ds, PUBLIC, coarse=not admin,
                                       eta=d.cfg.eta, min_seeds=d.cfg.min_seeds,
                                       viewer=sess.who.account,
                                       noise=d.cfg.ladder_noise)
            if admin:
                private = leaderboard.board(
                    s, ds, PRIVATE, coarse=False, eta=d.cfg.eta,
                    min_seeds=d.cfg.min_seeds)
                ids = [h["finding"] for h in public["held"]]
                for fid in ids:
                    held_flags[fid] = flags.list_flags(
                        s, agent=None, state=None, source=None, finding=fid,
                        since=None, limit=20, offset=0)["items"]
                d.add_submission_flags(s, ids, held_flags)
    priv = {e["finding"]: e for e in [*(private or {}).get("entries", []),
                                      *(private or {}).get("transductive", [])]}
    checks = []
    if admin and chosen is not None:
        with d.db.read() as s:
            checks = data.verifications(s, chosen)
    return d.render("leaderboard.html", sess, version=version, datasets=rows,
                       dataset=chosen, board=public, private=priv,
                       held_flags=held_flags, verifications=checks,
                       page="leaderboard")


@board_pages.get("/pgr")
def pgr_page(request: Request, d: Dash, dataset: str | None = None) -> HTMLResponse:
    sess = d.session(request)
    version = d.version()
    rows, chosen = d.dataset_choice(dataset)
    people: list[data.Researcher] = []
    svgs: dict[int, Markup] = {}
    base, base_label = None, ""
    if chosen is not None:
        with d.db.read() as s:
            people = data.researchers(s, d.cfg, sess.who, chosen.key)
        base, base_label = d.baseline(chosen.key, not sess.who.is_admin)
        t0, t1 = d.time_span(people)
        lo, hi = charts.y_range([v for p in people for _, v in p.points]
                                + ([base] if base is not None else []))
        svgs = {p.id: charts.pgr_chart(p.name, p.points, t0, t1, base, base_label,
                                       lo, hi) for p in people}
    return d.render("pgr.html", sess, version=version, datasets=rows,
                       dataset=chosen, people=people, svgs=svgs, baseline=base,
                       baseline_label=base_label, page="pgr")


@forum_pages.get("/forum")
def forum_page(request: Request, d: Dash, type: str | None = None, q: str | None = None,
               author: str | None = None, page: str | None = None) -> HTMLResponse:
    sess = d.session(request)
    version = d.version()
    kind = text_param(type, "type", 16)
    if kind is not None and kind not in FINDING_TYPES:
        raise PageError(400, f"unknown finding type {kind!r}; use one of: "
                             f"{', '.join(FINDING_TYPES)}")
    query = text_param(q, "search", 500)
    who = text_param(author, "author", 64)
    number = int_param(page, "page", 1, 100_000, 1)
    with d.db.read() as s:
        try:
            found = forum.list_findings(s, d.db.dialect, q=query, type_=kind,
                                        author=who, limit=PAGE_SIZE,
                                        offset=(number - 1) * PAGE_SIZE)
        except ApiError as exc:
            raise PageError(exc.status, exc.message) from None
    pages = max(1, -(-found["total"] // PAGE_SIZE))
    return d.render("forum.html", sess, version=version, found=found, kind=kind,
                       q=query or "", author=who or "", number=number, pages=pages,
                       types=FINDING_TYPES, page="forum")


@run_pages.get("/researchers/{name}")
def researcher_page(request: Request, d: Dash, name: str, run: str | None = None,
                    after: str | None = None) -> HTMLResponse:
    sess = d.session(request)
    version = d.version()
    who = text_param(name, "researcher", 64, required=True) or ""
    if who != sess.who.name and not sess.who.is_admin:
        raise PageError(403, "a researcher's page is for admins and for that "
                             "researcher")
    run_id = text_param(run, "run", 128)
    start = int_param(after, "after", -1, 10**9, -1)
    with d.db.read() as s:
        person = next((p for p in data.researchers(s, d.cfg, sess.who, None)
                       if p.name == who), None)
        if person is None:
            raise PageError(404, f"no researcher {who!r}")
        turns = d.api(transcripts.list_turns, s, sess.who, who,
                         run_id or person.run_id or None, start, TRANSCRIPT_TURNS)
        found = forum.list_findings(s, d.db.dialect, q=None, type_=None,
                                    author=who, limit=PAGE_SIZE, offset=0)
    said = [t for t in turns["items"] if t["kind"] == "assistant"]
    seconds = sum(t.get("seconds") or 0.0 for t in said)
    speed = {"calls": len(said),
             "tokens_in": sum(t.get("input_tokens") or 0 for t in said),
             "tokens_out": sum(t.get("output_tokens") or 0 for t in said),
             "per_s": (sum(t.get("output_tokens") or 0 for t in said) / seconds)
             if seconds > 0 else None}
    return d.render("researcher.html", sess, version=version, p=person,
                       turns=turns, found=found, speed=speed, page="overview",
                       more=len(turns["items"]) >= TRANSCRIPT_TURNS)


@forum_pages.get("/forum/{finding_id}")
def finding_page(request: Request, d: Dash, finding_id: str) -> HTMLResponse:
    sess = d.session(request)
    return d.finding(request, sess, int_param(finding_id, "finding id", 1, 2**31 - 1))


@forum_pages.post("/forum/{finding_id}/vote")
async def vote(request: Request, d: Dash, finding_id: str) -> Response:
    sess, form = await d.post(request)
    fid = int_param(finding_id, "finding id", 1, 2**31 - 1)
    value = int_param(form.get("value"), "vote", -1, 1)
    with d.db.write() as s:
        d.api(forum.vote, s, sess.who, fid, value)
    return RedirectResponse(f"/forum/{fid}#votes", 303)


@forum_pages.post("/forum/{finding_id}/comment")
async def comment(request: Request, d: Dash, finding_id: str) -> Response:
    sess, form = await d.post(request)
    fid = int_param(finding_id, "finding id", 1, 2**31 - 1)
    body = text_param(form.get("body"), "comment", 20_000, required=True)
    with d.db.write() as s:
        c = d.api(forum.add_comment, s, sess.who, fid, body)
    return RedirectResponse(f"/forum/{fid}#comment-{c['id']}", 303)


@admin_pages.get("/oversight")
def oversight(request: Request, d: Dash, state: str | None = None,
              page: str | None = None) -> HTMLResponse:
    sess = d.session(request, admin=True)
    version = d.version()
    chosen = text_param(state, "state", 16) or FlagState.OPEN
    if chosen not in (*flags.STATES, "all"):
        raise PageError(400, f"unknown flag state {chosen!r}; use open, accepted, "
                             "rejected or all")
    number = int_param(page, "page", 1, 100_000, 1)
    with d.db.read() as s:
        found = flags.list_flags(s, agent=None, state=None if chosen == "all"
                                 else chosen, source=None, finding=None, since=None,
                                 limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE)
        counts = data.flag_counts(s)
        names = data.titles(s, [f["finding"] for f in found["items"] if f["finding"]])
    pages = max(1, -(-found["total"] // PAGE_SIZE))
    return d.render("oversight.html", sess, version=version, found=found,
                       state=chosen, counts=counts, titles=names, number=number,
                       pages=pages, states=flags.STATES, page="oversight")


@admin_pages.post("/oversight/flags/{flag_id}")
async def review(request: Request, d: Dash, flag_id: str) -> Response:
    sess, form = await d.post(request, admin=True)
    fid = int_param(flag_id, "flag id", 1, 2**31 - 1)
    decision = form.get("decision", "")
    if decision not in ("accept", "reject"):
        raise PageError(400, "choose accept (it was reward hacking) or reject (a "
                             "false alarm)")
    reason = text_param(form.get("reason"), "reason", 5000, required=True)
    with d.db.write() as s:
        d.api(flags.review_flag, s, sess.who, fid,
                 flags.ReviewIn(decision=decision, reason=reason or ""))  # type: ignore[arg-type]
    return RedirectResponse(f"/oversight?state=open#flag-{fid}", 303)


@admin_pages.get("/audit")
def audit_page(request: Request, d: Dash, action: str | None = None, actor: str | None = None,
               since: str | None = None, page: str | None = None) -> HTMLResponse:
    sess = d.session(request, admin=True)
    version = d.version()
    act = text_param(action, "action", 48)
    who = text_param(actor, "actor", 64)
    after = since_param(since)
    number = int_param(page, "page", 1, 100_000, 1)
    with d.db.read() as s:
        rows, total = data.audit(s, act, who, after, PAGE_SIZE * 2,
                                 (number - 1) * PAGE_SIZE * 2)
        actions = data.audit_actions(s)
    pages = max(1, -(-total // (PAGE_SIZE * 2)))
    return d.render("audit.html", sess, version=version, rows=rows, total=total,
                       actions=actions, action=act or "", actor=who or "",
                       since=since or "", number=number, pages=pages, page="audit")
