"""The findings forum: findings (results, hypotheses, insights, ...), votes, comments."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from sqlalchemy.exc import IntegrityError

from aar.contracts.api import CommentListOut, CommentOut, FindingListOut, FindingOut, VoteOut
from aar.server import forum, idempotency, leaderboard
from aar.server.auth import Principal
from aar.server.errors import ApiError
from aar.server.routes.deps import Limit, Offset, RowId, Server, Srv, Who, naive_utc
from aar.server.schemas import FINDING_TYPES, CommentIn, FindingIn, VoteIn

router = APIRouter(tags=["findings"])


@router.post("/findings", summary="post a finding", status_code=201,
             response_model=FindingOut, response_model_exclude_unset=True)
def post_finding(body: FindingIn, who: Who, request: Request, srv: Srv) -> dict[str, Any]:
    key = idempotency.request_key(request)
    if key is not None:
        done = _finding_posted(srv, who, key)
        if done is not None:
            return done
    catalog = srv.catalog
    ds = catalog.get(body.dataset) if body.dataset else None
    try:
        with srv.db.write() as s:
            f = forum.create_finding(s, who, body, ds.key if ds else None, srv.cfg.min_seeds)
            if f.type == "result" and f.dataset_key is not None:
                leaderboard.flag_above_ceiling(s, f, ds or catalog.get(f.dataset_key),
                                               list(body.submissions))
            if key is not None:
                s.flush()
                idempotency.record(s, who.id, key, "finding", f.id, f.created)
            return forum.finding_dict(s, f)
    except IntegrityError:
        done = None if key is None else _finding_posted(srv, who, key)  # a concurrent repeat
        if done is None:
            raise
        return done


def _finding_posted(srv: Server, who: Principal, key: str) -> dict[str, Any] | None:
    with srv.db.read() as s:
        fid = idempotency.find(s, who.id, key, "finding")
        return None if fid is None else {
            **forum.finding_dict(s, forum.get_finding(s, fid)), "replayed": True}


@router.get("/findings", summary="list or search findings (newest activity first)",
            response_model=FindingListOut, response_model_exclude_unset=True)
def list_findings(
    who: Who, srv: Srv,
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
    key = srv.catalog.get(dataset).key if dataset else None
    with srv.db.read() as s:
        return forum.list_findings(s, srv.db.dialect, q=q, type_=type, dataset_key=key,
                                   author=author, since=naive_utc(since), limit=limit,
                                   offset=offset)


@router.get("/findings/{finding_id}", summary="one finding, with its body",
            response_model=FindingOut, response_model_exclude_unset=True)
def get_finding(finding_id: RowId, who: Who, srv: Srv) -> dict[str, Any]:
    with srv.db.read() as s:
        return forum.finding_dict(s, forum.get_finding(s, finding_id))


@router.post("/findings/{finding_id}/votes",
             summary="vote (+1, -1, 0 withdraws); one per agent",
             response_model=VoteOut, response_model_exclude_unset=True)
def vote(finding_id: RowId, body: VoteIn, who: Who, srv: Srv) -> dict[str, Any]:
    with srv.db.write() as s:
        return forum.vote(s, who, finding_id, body.value)


@router.post("/findings/{finding_id}/comments", summary="comment on a finding",
             status_code=201, response_model=CommentOut, response_model_exclude_unset=True)
def comment(finding_id: RowId, body: CommentIn, who: Who, srv: Srv) -> dict[str, Any]:
    with srv.db.write() as s:
        return forum.add_comment(s, who, finding_id, body.body)


@router.get("/findings/{finding_id}/comments", summary="comments, oldest first",
            response_model=CommentListOut, response_model_exclude_unset=True)
def comments(finding_id: RowId, who: Who, srv: Srv, since: datetime | None = None,
             limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
    with srv.db.read() as s:
        return forum.list_comments(s, finding_id, naive_utc(since), limit, offset)
