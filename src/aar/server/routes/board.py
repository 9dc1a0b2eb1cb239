"""The leaderboard, computed by the server from scored submissions only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from aar.contracts.api import LeaderboardOut
from aar.data.splits import PRIVATE, PUBLIC
from aar.server import leaderboard
from aar.server.errors import ApiError
from aar.server.routes.deps import Srv, Who

router = APIRouter(tags=["leaderboard"])


@router.get("/leaderboard", summary="server-scored results ranked by mean PGR ± SE",
            response_model=LeaderboardOut, response_model_exclude_unset=True)
def get_leaderboard(
    who: Who, srv: Srv, dataset: str = Query(min_length=1, max_length=200),
    split: str = Query("public", description="public (agents) | private (admins: the "
                                             "final ranking)"),
) -> dict[str, Any]:
    if split not in ("public", "private"):
        raise ApiError(422, f"unknown split {split!r}; use public or private")
    if split == "private" and not who.is_admin:
        raise ApiError(403, "the private ranking is for admins only")
    ds = srv.catalog.get(dataset)
    cfg = srv.cfg
    with srv.db.read() as s:
        return leaderboard.board(s, ds, PUBLIC if split == "public" else PRIVATE,
                                 coarse=not who.is_admin, eta=cfg.eta,
                                 min_seeds=cfg.min_seeds, viewer=who.account,
                                 noise=cfg.ladder_noise)
