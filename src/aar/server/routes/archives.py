"""Code snapshots: uploaded once (content-addressed), downloaded by their sha256."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from aar.contracts.api import ArchiveOut
from aar.server import forum
from aar.server.db import Archive
from aar.server.errors import not_found
from aar.server.routes.deps import Srv, Who
from aar.server.schemas import ArchiveIn

router = APIRouter(tags=["archives"])


@router.post("/archives", summary="upload a code snapshot (content-addressed)",
             status_code=201, response_model=ArchiveOut, response_model_exclude_unset=True)
def upload_archive(body: ArchiveIn, who: Who, srv: Srv) -> dict[str, Any]:
    cfg = srv.cfg
    with srv.db.write() as s:
        return forum.store_archive(s, who, body, cfg.max_archive_bytes,
                                   cfg.max_archive_unpacked_bytes, cfg.max_archive_members)


@router.get("/archives/{sha256}", summary="download a code snapshot",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}})
def download_archive(sha256: str, who: Who, srv: Srv) -> Response:
    with srv.db.read() as s:
        row = s.get(Archive, sha256)
        if row is None:
            raise not_found(f"no archive {sha256}")
        return Response(row.data, media_type="application/octet-stream", headers={
            "Content-Disposition": f'attachment; filename="{sha256[:16]}.{row.kind}"'})
