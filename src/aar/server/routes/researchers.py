"""Researchers' own reports: their live status and the mirrored transcript."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from aar.contracts.api import StatusListOut, StatusOut, TranscriptAddedOut, TranscriptOut
from aar.server import status, transcripts
from aar.server.routes.deps import Limit, Srv, Who
from aar.server.schemas import StatusIn, TranscriptIn

router = APIRouter(tags=["researchers"])


@router.put("/status", summary="report your own state (researchers)",
            response_model=StatusOut, response_model_exclude_unset=True)
def put_status(body: StatusIn, who: Who, srv: Srv) -> dict[str, Any]:
    with srv.db.write() as s:
        return status.put_status(s, who, body)


@router.get("/status", summary="researchers' states (admins: all; agents: their own)",
            response_model=StatusListOut, response_model_exclude_unset=True)
def get_status(who: Who, srv: Srv, run_id: str | None = Query(None, max_length=128)
               ) -> dict[str, Any]:
    with srv.db.read() as s:
        return status.list_status(s, who, run_id)


@router.post("/transcript", summary="mirror events of your own transcript (researchers)",
             response_model=TranscriptAddedOut, response_model_exclude_unset=True)
def post_transcript(body: TranscriptIn, who: Who, srv: Srv) -> dict[str, Any]:
    with srv.db.write() as s:
        return transcripts.add_turns(s, who, body)


@router.get("/transcript",
            summary="a researcher's transcript (admins: any; agents: their own)",
            response_model=TranscriptOut, response_model_exclude_unset=True)
def get_transcript(who: Who, srv: Srv, agent: str | None = Query(None, max_length=64),
                   run_id: str | None = Query(None, max_length=128),
                   after: int = Query(-1, ge=-1, le=10**9), limit: Limit = 50
                   ) -> dict[str, Any]:
    with srv.db.read() as s:
        return transcripts.list_turns(s, who, agent, run_id, after, limit)
