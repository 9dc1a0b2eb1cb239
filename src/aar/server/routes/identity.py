"""Who am I (``/me``), the server's parameters and guarantee (``/info``), and the datasets
it scores (``/datasets``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from sqlalchemy import func, select

import aar
from aar.contracts.api import DatasetListOut, DatasetOut, InfoOut, MeOut
from aar.data.splits import PRIVATE, PUBLIC
from aar.server import ladder
from aar.server.db import AccountRow
from aar.server.evaluation import LoadedDataset
from aar.server.references import references
from aar.server.routes.deps import Server, Srv, Who
from aar.server.submissions import Budget

router = APIRouter(tags=["identity and datasets"])


@router.get("/me", summary="who am I, and my evaluation budget", response_model=MeOut)
def me(who: Who, srv: Srv) -> dict[str, Any]:
    with srv.db.read() as s:
        use = Budget.of(who, srv.cfg).usage(s, who.id)
        spent = [{"universe": u, "queries_used": q, "releases": r}
                 for u, q, r in s.execute(
                     select(AccountRow.universe, AccountRow.queries, AccountRow.releases)
                     .where(AccountRow.account == who.account)
                     .order_by(AccountRow.universe))]
    return {"name": who.name, "role": who.role, "run": who.run, "budget": use,
            "account": {"name": who.account,
                        "queries_total": None if who.is_admin else srv.cfg.run_budget,
                        "universes": spent}}


@router.get("/info", summary="server parameters and the rationing guarantee",
            response_model=InfoOut)
def info(who: Who, srv: Srv, dataset: str | None = Query(None, max_length=200)
         ) -> dict[str, Any]:
    cfg, evaluator = srv.cfg, srv.evaluator
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
        ds = srv.catalog.get(dataset)
        out["published_baselines"] = {**ds.published, "split": "test_public",
                                      "rounded_to": cfg.eta}
        out["gap_ok"] = ds.gap_ok(PUBLIC)
        out["guarantee"] = ladder.guarantee(
            ds.size(PUBLIC), ds.positives(PUBLIC), ds.size(PRIVATE), max(cfg.run_budget, 1),
            evaluator.params)
        out["bound"] = channel_info(srv, ds)
    return out


def channel_info(srv: Server, ds: LoadedDataset) -> dict[str, Any]:
    """The bound over all channels on ``ds``'s universe, with its parameters."""
    cfg, params = srv.cfg, srv.evaluator.params
    siblings = srv.catalog.in_universe(ds.universe)
    with srv.db.read() as s:
        n_refs = sum(len(references(s, d, cfg.min_seeds)) for d in siblings)
        accounts = s.scalar(select(func.count()).select_from(AccountRow).where(
            AccountRow.universe == ds.universe, AccountRow.queries > 0)) or 0
    bound = ladder.channel_bound(params, cfg.run_budget, cfg.min_seeds,
                                 len(siblings), n_refs, accounts)
    return {
        **bound, "universe": ds.universe, "datasets": sorted(d.key for d in siblings),
        "reference_rows": n_refs, "n_public": ds.size(PUBLIC),
        "params": {"run_budget": cfg.run_budget, "eta": cfg.eta,
                   "noise": cfg.ladder_noise, "max_releases": params.max_releases,
                   "grid": params.grid, "min_seeds": cfg.min_seeds},
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


@router.get("/datasets", summary="datasets this server scores",
            response_model=DatasetListOut)
def datasets(who: Who, srv: Srv) -> dict[str, Any]:
    return {"items": srv.catalog.available()}


@router.get("/datasets/{dataset:path}", summary="one dataset: its test ids and fixed baselines",
            response_model=DatasetOut)
def dataset_info(dataset: str, who: Who, srv: Srv) -> dict[str, Any]:
    ds = srv.catalog.get(dataset)
    base = ds.baselines[PUBLIC] if who.is_admin else ds.published
    return {**ds.public_info(), "baselines_public": base, "gap_ok": ds.gap_ok(PUBLIC),
            "ids": ds.ids}
