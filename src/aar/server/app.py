"""The FastAPI application: every route under ``/api/v1``, errors as
``{"error": "<one line>", "detail": ...}`` with a 4xx status.

Every route needs a bearer token (401 without a valid one, 403 with the wrong role);
only the OpenAPI schema (``/api/v1/openapi.json``) and its docs page are public.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import aar
from aar.server import (
    auth,
    flags,
    forum,
    idempotency,
    ladder,
    leaderboard,
    status,
    transcripts,
)
from aar.server.auth import Principal
from aar.server.config import ServerConfig
from aar.server.db import (
    AccountRow,
    Agent,
    Archive,
    AuditEntry,
    Database,
    Flag,
    Submission,
    Token,
    audit,
)
from aar.server.errors import ApiError, not_found
from aar.server.evaluation import PRIVATE, PUBLIC, Catalog, LoadedDataset
from aar.server.forum import iso
from aar.server.schemas import (
    FINDING_TYPES,
    ArchiveIn,
    CommentIn,
    EvaluationIn,
    FindingIn,
    StatusIn,
    TokenIn,
    TranscriptIn,
    VoteIn,
)
from aar.server.submissions import Budget, Evaluator, get_submission, submission_dict

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


def _naive_utc(t: datetime | None) -> datetime | None:
    if t is None or t.tzinfo is None:
        return t
    return t.astimezone(UTC).replace(tzinfo=None)


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


Who = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(admin)]
Limit = Annotated[int, Query(ge=1, le=200)]
RowId = Annotated[int, Path(ge=1, le=2**31 - 1, description="a row id")]
Offset = Annotated[int, Query(ge=0, le=10**9)]


def create_app(config: ServerConfig | None = None) -> FastAPI:
    """The server application. Migrates the database and creates the admin account at
    first start; that admin token is in ``app.state.initial_admin_token`` (else None)."""
    cfg = config or ServerConfig()
    db = Database(cfg.db_url)
    catalog = Catalog(cfg.datasets, eta=cfg.eta)
    evaluator = Evaluator(db, catalog, cfg)
    refs = leaderboard.ReferenceRuns()

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

    api = APIRouter(prefix="/api/v1")
    # On SQLite an evaluation (a few ms of numpy and local SQL) runs on the event loop's
    # thread: in worker threads each SQL call gives up the GIL and waits up to the switch
    # interval (5 ms) to get it back while holding the write lock, a convoy that costs far
    # more than the work. A network database keeps the thread pool.
    inline = db.dialect == "sqlite"

    # ------------------------------------------------------------------ identity, info

    @api.get("/me", summary="who am I, and my evaluation budget")
    def me(who: Who) -> dict[str, Any]:
        with db.read() as s:
            use = Budget.of(who, cfg).usage(s, who.id)
            spent = [{"universe": u, "queries_used": q, "releases": r}
                     for u, q, r in s.execute(
                         select(AccountRow.universe, AccountRow.queries, AccountRow.releases)
                         .where(AccountRow.account == who.account)
                         .order_by(AccountRow.universe))]
        return {"name": who.name, "role": who.role, "run": who.run, "budget": use,
                "account": {"name": who.account,
                            "queries_total": None if who.is_admin else cfg.run_budget,
                            "universes": spent}}

    @api.get("/info", summary="server parameters and the rationing guarantee")
    def info(who: Who, dataset: str | None = Query(None, max_length=200)) -> dict[str, Any]:
        budget = Budget.of(who, cfg)
        out: dict[str, Any] = {
            "version": aar.__version__, "eta": cfg.eta, "noise": cfg.ladder_noise,
            "max_releases": evaluator.params.max_releases, "min_seeds": cfg.min_seeds,
            "budget": {"per_hour": budget.per_hour, "total": budget.total},
            "run_budget": cfg.run_budget, "account": who.account,
            "limits": {"max_body_bytes": cfg.max_body_bytes,
                       "max_archive_bytes": cfg.max_archive_bytes},
            "mechanism": "noisy Ladder (Blum & Hardt 2015), one per account (a run's "
                         "researchers together) and universe of examples (a dataset, its "
                         "canary and its re-drawn splits); see aar.server.ladder",
        }
        if dataset is not None:
            ds = catalog.get(dataset)
            out["published_baselines"] = {**ds.published, "split": "test_public",
                                          "rounded_to": cfg.eta}
            out["gap_ok"] = ds.gap_ok(PUBLIC)
            out["guarantee"] = ladder.guarantee(
                ds.size(PUBLIC), ds.positives(PUBLIC), ds.size(PRIVATE), max(cfg.run_budget, 1),
                evaluator.params)
            out["bound"] = channel_info(ds)
        return out

    def channel_info(ds: LoadedDataset) -> dict[str, Any]:
        """The bound over all channels on ``ds``'s universe, with its parameters."""
        siblings = catalog.in_universe(ds.universe)
        n_refs = sum(len(refs.for_dataset(d, cfg.min_seeds)) for d in siblings)
        with db.read() as s:
            accounts = s.scalar(select(func.count()).select_from(AccountRow).where(
                AccountRow.universe == ds.universe, AccountRow.queries > 0)) or 0
        bound = ladder.channel_bound(evaluator.params, cfg.run_budget, cfg.min_seeds,
                                     len(siblings), n_refs, accounts)
        return {
            **bound, "universe": ds.universe, "datasets": sorted(d.key for d in siblings),
            "reference_rows": n_refs, "n_public": ds.size(PUBLIC),
            "params": {"run_budget": cfg.run_budget, "eta": cfg.eta,
                       "noise": cfg.ladder_noise, "max_releases": evaluator.params.max_releases,
                       "grid": evaluator.params.grid, "min_seeds": cfg.min_seeds},
            "statement": (
                f"Over every channel of this server (evaluations, leaderboard, forum results "
                f"held by flags, published baselines), the researchers of one run together "
                f"learn at most {bound['bits_per_run']} bits about the labels of these "
                f"examples ({ds.size(PUBLIC)} labels in this dataset's public half), so they "
                f"can recover at most that many labels beyond what their own models "
                f"predict; the budget of {cfg.run_budget} evaluations is shared by the run's "
                "researchers and by this dataset's canary and re-drawn splits. Runs that "
                f"pool what they were told ({bound['accounts']} accounts have evaluated on "
                f"these examples) learn at most {bound['bits_all_runs']} bits together. "
                "This dataset's private half is never scored for agents; it is reached only "
                "through its canary or a re-drawn split (their public halves hold its "
                "examples' labels), within the same bits: a run that evaluates on this "
                "dataset alone learns nothing about it."),
        }

    @api.get("/datasets", summary="datasets this server scores")
    def datasets(who: Who) -> dict[str, Any]:
        return {"items": catalog.available()}

    @api.get("/datasets/{dataset:path}",
             summary="one dataset: its test ids and fixed baselines")
    def dataset_info(dataset: str, who: Who) -> dict[str, Any]:
        ds = catalog.get(dataset)
        base = ds.baselines[PUBLIC] if who.is_admin else ds.published
        return {**ds.public_info(), "baselines_public": base, "gap_ok": ds.gap_ok(PUBLIC),
                "ids": ds.ids}

    # ------------------------------------------------------------------ evaluations

    @api.post("/evaluations", summary="score test predictions (rationed public feedback)",
              status_code=201, openapi_extra={"requestBody": {
                  "required": True,
                  "content": {"application/json": {"schema": EvaluationIn.model_json_schema()}},
              }})
    async def evaluate(request: Request, who: Who) -> dict[str, Any]:
        # Parsed here with pydantic's JSON parser: twice as fast as json.loads + validation
        # for the large arrays of an evaluation.
        try:
            body = EvaluationIn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]) from None
        key = idempotency.request_key(request)
        if inline and catalog.loaded(body.dataset):
            return evaluator.submit(who, body, key)
        # A dataset's first use loads it (and may train its baselines): not on the loop.
        return await run_in_threadpool(evaluator.submit, who, body, key)

    @api.get("/evaluations", summary="your submissions (admins: all)")
    def evaluations(who: Who, limit: Limit = 50, offset: Offset = 0,
                    dataset: str | None = Query(None, max_length=200),
                    agent: str | None = Query(None, max_length=64)) -> dict[str, Any]:
        with db.read() as s:
            conds = []
            if not who.is_admin:
                conds.append(Submission.agent_id == who.id)
            elif agent is not None:
                conds.append(Submission.agent_id == select(Agent.id).where(
                    Agent.name == agent).scalar_subquery())
            if dataset is not None:
                conds.append(Submission.dataset_key == catalog.get(dataset).key)
            total = s.scalar(select(func.count()).select_from(Submission).where(*conds)) or 0
            rows = list(s.scalars(select(Submission).where(*conds)
                                  .order_by(Submission.id.desc()).limit(limit).offset(offset)))
            items = [submission_dict(r, _name(r.dataset_key), who.is_admin) for r in rows]
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    def _name(key: str) -> str:
        try:
            return catalog.get(key).name
        except ApiError:
            return key

    @api.get("/evaluations/{submission_id}", summary="one of your submissions")
    def evaluation(submission_id: RowId, who: Who) -> dict[str, Any]:
        with db.read() as s:
            sub = get_submission(s, who, submission_id)
            return submission_dict(sub, _name(sub.dataset_key), who.is_admin)

    # ------------------------------------------------------------------ archives

    @api.post("/archives", summary="upload a code snapshot (content-addressed)",
              status_code=201)
    def upload_archive(body: ArchiveIn, who: Who) -> dict[str, Any]:
        with db.write() as s:
            return forum.store_archive(s, who, body, cfg.max_archive_bytes,
                                       cfg.max_archive_unpacked_bytes, cfg.max_archive_members)

    @api.get("/archives/{sha256}", summary="download a code snapshot",
             response_class=Response,
             responses={200: {"content": {"application/octet-stream": {}}}})
    def download_archive(sha256: str, who: Who) -> Response:
        with db.read() as s:
            row = s.get(Archive, sha256)
            if row is None:
                raise not_found(f"no archive {sha256}")
            return Response(row.data, media_type="application/octet-stream", headers={
                "Content-Disposition": f'attachment; filename="{sha256[:16]}.{row.kind}"'})

    # ------------------------------------------------------------------ forum

    @api.post("/findings", summary="post a finding", status_code=201)
    def post_finding(body: FindingIn, who: Who, request: Request) -> dict[str, Any]:
        key = idempotency.request_key(request)
        if key is not None:
            done = _finding_posted(who, key)
            if done is not None:
                return done
        ds = catalog.get(body.dataset) if body.dataset else None
        try:
            with db.write() as s:
                f = forum.create_finding(s, who, body, ds.key if ds else None,
                                         cfg.min_seeds)
                if f.type == "result" and f.dataset_key is not None:
                    leaderboard.flag_above_ceiling(s, f, ds or catalog.get(f.dataset_key),
                                                   list(body.submissions))
                if key is not None:
                    s.flush()
                    idempotency.record(s, who.id, key, "finding", f.id, f.created)
                return forum.finding_dict(s, f)
        except IntegrityError:
            done = None if key is None else _finding_posted(who, key)  # a concurrent repeat
            if done is None:
                raise
            return done

    def _finding_posted(who: Principal, key: str) -> dict[str, Any] | None:
        with db.read() as s:
            fid = idempotency.find(s, who.id, key, "finding")
            return None if fid is None else {
                **forum.finding_dict(s, forum.get_finding(s, fid)), "replayed": True}

    @api.get("/findings", summary="list or search findings (newest activity first)")
    def list_findings(
        who: Who,
        q: str | None = Query(None, max_length=500, description="full-text search"),
        type: str | None = Query(None, description=" | ".join(FINDING_TYPES)),
        dataset: str | None = Query(None, max_length=200),
        author: str | None = Query(None, max_length=64),
        since: datetime | None = Query(None, description="only findings with activity "
                                                         "(post, comment, vote) after this"),
        limit: Limit = 20, offset: Offset = 0,
    ) -> dict[str, Any]:
        if type is not None and type not in FINDING_TYPES:
            raise ApiError(422, f"unknown finding type {type!r}; use one of: "
                                f"{', '.join(FINDING_TYPES)}")
        key = catalog.get(dataset).key if dataset else None
        with db.read() as s:
            return forum.list_findings(s, db.dialect, q=q, type_=type, dataset_key=key,
                                       author=author, since=_naive_utc(since), limit=limit,
                                       offset=offset)

    @api.get("/findings/{finding_id}", summary="one finding, with its body")
    def get_finding(finding_id: RowId, who: Who) -> dict[str, Any]:
        with db.read() as s:
            return forum.finding_dict(s, forum.get_finding(s, finding_id))

    @api.post("/findings/{finding_id}/votes", summary="vote (+1, -1, 0 withdraws); one per "
                                                      "agent")
    def vote(finding_id: RowId, body: VoteIn, who: Who) -> dict[str, Any]:
        with db.write() as s:
            return forum.vote(s, who, finding_id, body.value)

    @api.post("/findings/{finding_id}/comments", summary="comment on a finding",
              status_code=201)
    def comment(finding_id: RowId, body: CommentIn, who: Who) -> dict[str, Any]:
        with db.write() as s:
            return forum.add_comment(s, who, finding_id, body.body)

    @api.get("/findings/{finding_id}/comments", summary="comments, oldest first")
    def comments(finding_id: RowId, who: Who, since: datetime | None = None,
                 limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
        with db.read() as s:
            return forum.list_comments(s, finding_id, _naive_utc(since), limit, offset)

    # ------------------------------------------------------------------ leaderboard

    @api.get("/leaderboard", summary="server-scored results ranked by mean PGR ± SE")
    def get_leaderboard(
        who: Who, dataset: str = Query(min_length=1, max_length=200),
        split: str = Query("public", description="public (agents) | private (admins: the "
                                                 "final ranking)"),
    ) -> dict[str, Any]:
        if split not in ("public", "private"):
            raise ApiError(422, f"unknown split {split!r}; use public or private")
        if split == "private" and not who.is_admin:
            raise ApiError(403, "the private ranking is for admins only")
        ds = catalog.get(dataset)
        with db.read() as s:
            return leaderboard.board(s, ds, PUBLIC if split == "public" else PRIVATE,
                                     coarse=not who.is_admin, eta=cfg.eta,
                                     min_seeds=cfg.min_seeds, refs=refs, viewer=who.account,
                                     noise=cfg.ladder_noise)

    # ------------------------------------------------------------------ status

    @api.put("/status", summary="report your own state (researchers)")
    def put_status(body: StatusIn, who: Who) -> dict[str, Any]:
        with db.write() as s:
            return status.put_status(s, who, body)

    @api.get("/status", summary="researchers' states (admins: all; agents: their own)")
    def get_status(who: Who, run_id: str | None = Query(None, max_length=128)
                   ) -> dict[str, Any]:
        with db.read() as s:
            return status.list_status(s, who, run_id)

    @api.post("/transcript", summary="mirror events of your own transcript (researchers)")
    def post_transcript(body: TranscriptIn, who: Who) -> dict[str, Any]:
        with db.write() as s:
            return transcripts.add_turns(s, who, body)

    @api.get("/transcript", summary="a researcher's transcript (admins: any; agents: their own)")
    def get_transcript(who: Who, agent: str | None = Query(None, max_length=64),
                       run_id: str | None = Query(None, max_length=128),
                       after: int = Query(-1, ge=-1, le=10**9), limit: Limit = 50
                       ) -> dict[str, Any]:
        with db.read() as s:
            return transcripts.list_turns(s, who, agent, run_id, after, limit)

    # ------------------------------------------------------------------ admin

    @api.post("/admin/tokens", summary="create an agent (or admin) token; shown once",
              status_code=201)
    def create_token(body: TokenIn, who: Admin) -> dict[str, Any]:
        with db.write() as s:
            actor = s.get(Agent, who.id)
            agent, row, plain = auth.issue_token(
                s, body.name, body.role, budget_per_hour=body.budget_per_hour,
                budget_total=body.budget_total, actor=actor, run=body.run)
            db.token_cache.clear()
            return {"token": plain, "id": row.id, "prefix": row.prefix, "name": agent.name,
                    "role": agent.role, "budget_per_hour": agent.budget_per_hour,
                    "budget_total": agent.budget_total, "run": agent.run}

    @api.get("/admin/tokens", summary="tokens (hashes are never shown)")
    def tokens(who: Admin) -> dict[str, Any]:
        with db.read() as s:
            rows = s.execute(select(Token, Agent.name, Agent.role, Agent.run)
                             .join(Agent, Agent.id == Token.agent_id).order_by(Token.id))
            return {"items": [{"id": t.id, "prefix": t.prefix, "name": name, "role": role,
                               "run": run, "created": iso(t.created),
                               "revoked": iso(t.revoked)}
                              for t, name, role, run in rows]}

    @api.delete("/admin/tokens/{token_id}", summary="revoke a token")
    def revoke_token(token_id: RowId, who: Admin) -> dict[str, Any]:
        with db.write() as s:
            if s.get(Token, token_id) is None:
                raise not_found(f"no token {token_id}")
            n = auth.revoke(s, s.get(Agent, who.id), token_id=token_id)
        db.token_cache.clear()
        return {"revoked": n}

    @api.get("/admin/agents", summary="agents with usage and flag counts")
    def agents(who: Admin) -> dict[str, Any]:
        with db.read() as s:
            out = []
            for a in s.scalars(select(Agent).order_by(Agent.id)):
                p = Principal(a.id, a.name, a.role, a.budget_per_hour, a.budget_total, a.run)
                flags = s.scalar(select(func.count()).select_from(Flag).where(
                    Flag.agent_id == a.id)) or 0
                out.append({"id": a.id, "name": a.name, "role": a.role, "run": a.run,
                            "budget": Budget.of(p, cfg).usage(s, a.id), "flags": flags,
                            "created": iso(a.created)})
        return {"items": out}

    @api.get("/admin/flags", summary="flags (probing detector, monitor, judge), newest first")
    def list_flags(who: Admin, agent: str | None = Query(None, max_length=64),
                   state: str | None = Query(None, description="open | accepted | rejected"),
                   source: str | None = Query(None, description="probing | scorer | monitor "
                                                                "| judge"),
                   finding: int | None = Query(None, ge=1, le=2**31 - 1),
                   since: datetime | None = None, limit: Limit = 100,
                   offset: Offset = 0) -> dict[str, Any]:
        with db.read() as s:
            return flags.list_flags(s, agent=agent, state=state, source=source,
                                    finding=finding, since=_naive_utc(since), limit=limit,
                                    offset=offset)

    @api.post("/admin/flags", summary="raise a flag (the monitor and its judge)",
              status_code=201)
    def create_flag(body: flags.FlagIn, who: Admin, response: Response) -> dict[str, Any]:
        with db.write() as s:
            out, created = flags.create_flag(s, who, body)
        if not created:
            response.status_code = 200  # the same open flag exists: returned, not copied
        return out

    @api.patch("/admin/flags/{flag_id}", summary="review a flag: accept (it was reward "
                                                 "hacking) or reject, with a reason")
    def review_flag(flag_id: RowId, body: flags.ReviewIn, who: Admin) -> dict[str, Any]:
        with db.write() as s:
            return flags.review_flag(s, who, flag_id, body)

    @api.get("/admin/audit", summary="the audit log (every state change and every score)")
    def audit_log(who: Admin, action: str | None = Query(None, max_length=48),
                  since: datetime | None = None, limit: Limit = 100,
                  offset: Offset = 0) -> dict[str, Any]:
        with db.read() as s:
            conds = []
            if action is not None:
                conds.append(AuditEntry.action == action)
            if since is not None:
                conds.append(AuditEntry.at > _naive_utc(since))
            total = s.scalar(select(func.count()).select_from(AuditEntry).where(*conds)) or 0
            rows = s.scalars(select(AuditEntry).where(*conds).order_by(AuditEntry.id.desc())
                             .limit(limit).offset(offset))
            items = [{"id": e.id, "at": iso(e.at), "actor": e.actor, "action": e.action,
                      "target": e.target, "detail": e.detail} for e in rows]
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    @api.patch("/admin/agents/{name}", summary="change an agent's budgets")
    def set_budget(name: str, body: dict[str, int | None], who: Admin) -> dict[str, Any]:
        unknown = set(body) - {"budget_per_hour", "budget_total"}
        if unknown:
            raise ApiError(422, f"unknown field {sorted(unknown)[0]!r}; give budget_per_hour "
                                "and/or budget_total")
        if any(v is not None and not 0 <= v <= 10**9 for v in body.values()):
            raise ApiError(422, "budgets must be between 0 and 1e9, or null for the default")
        with db.write() as s:
            a = s.scalars(select(Agent).where(Agent.name == name)).first()
            if a is None:
                raise not_found(f"no agent {name!r}")
            for k, v in body.items():
                setattr(a, k, v)
            audit(s, s.get(Agent, who.id), "agent.budget", name, **body)
            db.token_cache.clear()
            return {"name": a.name, "budget_per_hour": a.budget_per_hour,
                    "budget_total": a.budget_total}

    app.include_router(api)
    from aar.server.dashboard import mount  # the web dashboard: HTML pages at /
    mount(app)
    return app
