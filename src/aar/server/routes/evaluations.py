"""Scoring test predictions (``POST /evaluations``: rationed public feedback through the
Ladder) and the caller's submissions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from aar.contracts.api import EvaluationListOut, EvaluationOut
from aar.server import idempotency
from aar.server.db import Agent, Submission
from aar.server.routes.deps import Limit, Offset, RowId, Srv, Who
from aar.server.schemas import EvaluationIn
from aar.server.submissions import get_submission, submission_dict

router = APIRouter(tags=["evaluations"])


@router.post("/evaluations", summary="score test predictions (rationed public feedback)",
             status_code=201, response_model=EvaluationOut,
             response_model_exclude_unset=True, openapi_extra={"requestBody": {
                 "required": True,
                 "content": {"application/json": {"schema": EvaluationIn.model_json_schema()}},
             }})
async def evaluate(request: Request, who: Who, srv: Srv) -> dict[str, Any]:
    # Parsed here with pydantic's JSON parser: twice as fast as json.loads + validation
    # for the large arrays of an evaluation.
    try:
        body = EvaluationIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]) from None
    key = idempotency.request_key(request)
    # On SQLite an evaluation (a few ms of numpy and local SQL) runs on the event loop's
    # thread: in worker threads each SQL call gives up the GIL and waits up to the switch
    # interval (5 ms) to get it back while holding the write lock, a convoy that costs far
    # more than the work. A network database keeps the thread pool.
    if srv.inline and srv.catalog.loaded(body.dataset):
        return srv.evaluator.submit(who, body, key)
    # A dataset's first use loads it (and may train its baselines): not on the loop.
    return await run_in_threadpool(srv.evaluator.submit, who, body, key)


@router.get("/evaluations", summary="your submissions (admins: all)",
            response_model=EvaluationListOut, response_model_exclude_unset=True)
def evaluations(who: Who, srv: Srv, limit: Limit = 50, offset: Offset = 0,
                dataset: str | None = Query(None, max_length=200),
                agent: str | None = Query(None, max_length=64)) -> dict[str, Any]:
    with srv.db.read() as s:
        conds = []
        if not who.is_admin:
            conds.append(Submission.agent_id == who.id)
        elif agent is not None:
            conds.append(Submission.agent_id == select(Agent.id).where(
                Agent.name == agent).scalar_subquery())
        if dataset is not None:
            conds.append(Submission.dataset_key == srv.catalog.get(dataset).key)
        total = s.scalar(select(func.count()).select_from(Submission).where(*conds)) or 0
        rows = list(s.scalars(select(Submission).where(*conds)
                              .order_by(Submission.id.desc()).limit(limit).offset(offset)))
        items = [submission_dict(r, srv.dataset_name(r.dataset_key), who.is_admin)
                 for r in rows]
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/evaluations/{submission_id}", summary="one of your submissions",
            response_model=EvaluationOut, response_model_exclude_unset=True)
def evaluation(submission_id: RowId, who: Who, srv: Srv) -> dict[str, Any]:
    with srv.db.read() as s:
        sub = get_submission(s, who, submission_id)
        return submission_dict(sub, srv.dataset_name(sub.dataset_key), who.is_admin)
