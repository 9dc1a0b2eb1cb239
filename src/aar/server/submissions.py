"""One evaluation, end to end: validate, score against the vault, check the budgets, run
the Ladder, look for probing, and write the submission, its flags and its audit entries
in one transaction (nothing is written when any step refuses).

Two budgets apply. The agent's own (per sliding hour and in total) paces it. The
*account* budget rations the labels: every evaluation is charged to the account of
(the agent's run, or the agent alone when it has none) x (the dataset's universe of
underlying examples: the dataset itself, its canary and its re-drawn splits). The
account's researchers share one Ladder and ``run_budget`` evaluations; what the Ladder
releases is all any of them is told about those labels (``aar.server.ladder``)."""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, cast

import numpy as np
from sqlalchemy import BindParameter, Table, bindparam, case, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aar.contracts.flags import FlagKind
from aar.data.splits import PRIVATE, PUBLIC
from aar.server import idempotency, ladder, probing
from aar.server.auth import Principal
from aar.server.config import ServerConfig
from aar.server.db import (
    AccountRow,
    Agent,
    AuditEntry,
    Database,
    DatasetRow,
    Flag,
    Submission,
    audit,
    audit_row,
    utcnow,
)
from aar.server.errors import ApiError, bad_request, not_found
from aar.server.evaluation import Catalog, LoadedDataset, score_dict
from aar.server.forum import iso
from aar.server.schemas import EvaluationIn

NOTE = ("public scores are rationed by a Ladder shared by your run: you see the best public "
        "score among your run's submissions on these examples (this dataset, its canary "
        "and its re-drawn splits), released (noisy, rounded to eta) only when a submission "
        "beats it by at least eta; PGR uses the published rounded baselines; private "
        "scores are never shown")


SUB = cast(Table, Submission.__table__)
ACCOUNT = cast(Table, AccountRow.__table__)
AGENT = cast(Table, Agent.__table__)
AUDIT = cast(Table, AuditEntry.__table__)
FLAG = cast(Table, Flag.__table__)
DATASET = cast(Table, DatasetRow.__table__)

# Statements of the hot path, built once (SQLAlchemy then reuses their compiled form).
_agent: BindParameter[Any] = bindparam("agent")
_since: BindParameter[Any] = bindparam("since")
USAGE = select(func.count(), func.coalesce(func.sum(case((SUB.c.created > _since, 1),
                                                         else_=0)), 0)).where(
    SUB.c.agent_id == _agent)
NTH_IN_HOUR = (select(SUB.c.created).where(SUB.c.agent_id == _agent, SUB.c.created > _since)
               .order_by(SUB.c.created).limit(1).offset(bindparam("nth")))
PREVIOUS = (select(SUB.c.id, SUB.c.predictions)
            .where(SUB.c.agent_id == _agent, SUB.c.dataset_key == bindparam("dataset"))
            .order_by(SUB.c.id.desc()).limit(bindparam("window")))
# A run's researchers share an account: probing split across their tokens is still probing.
PREVIOUS_RUN = (select(SUB.c.id, SUB.c.predictions)
                .where(SUB.c.agent_id.in_(select(AGENT.c.id).where(
                    AGENT.c.run == bindparam("run"))),
                       SUB.c.dataset_key == bindparam("dataset"))
                .order_by(SUB.c.id.desc()).limit(bindparam("window")))
ACCOUNT_ROW = (select(ACCOUNT.c.level, ACCOUNT.c.auroc, ACCOUNT.c.submission_id,
                      ACCOUNT.c.releases, ACCOUNT.c.queries, ACCOUNT.c.dataset_key)
               .where(ACCOUNT.c.account == bindparam("account"),
                      ACCOUNT.c.universe == bindparam("universe"))
               .with_for_update())
ACCOUNT_UPDATE = update(ACCOUNT).where(ACCOUNT.c.account == bindparam("account_"),
                                       ACCOUNT.c.universe == bindparam("universe_"))
REPORTED_UPDATE = update(SUB).where(SUB.c.id == bindparam("sid")).values(
    reported=bindparam("rep"))
SUB_COLUMNS = ("agent_id", "dataset_key", "seed", "method", "created", "predictions",
               "sha256", "public_accuracy", "public_auroc", "public_pgr", "private_accuracy",
               "private_auroc", "private_pgr", "reported", "transductive")
ACCOUNT_COLUMNS = ("level", "auroc", "submission_id", "releases", "queries", "dataset_key")


def _insert(table: Any, columns: tuple[str, ...]) -> Any:
    return insert(table).values({c: bindparam(c) for c in columns})


def _ensure_account(dialect: str) -> Any:
    """INSERT of an empty account row that does nothing when the row exists."""
    from sqlalchemy.dialects import postgresql, sqlite

    values = {"account": bindparam("account"), "universe": bindparam("universe"),
              "releases": 0, "queries": 0}
    if dialect == "postgresql":
        return postgresql.insert(ACCOUNT).values(values).on_conflict_do_nothing()
    return sqlite.insert(ACCOUNT).values(values).on_conflict_do_nothing()


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class Budget:
    """An agent's evaluation budget: per sliding hour and in total (None: unlimited)."""

    def __init__(self, per_hour: int | None, total: int | None) -> None:
        self.per_hour = per_hour
        self.total = total

    @staticmethod
    def of(who: Principal, cfg: ServerConfig) -> Budget:
        if who.is_admin:
            return Budget(None, None)
        return Budget(cfg.budget_per_hour if who.budget_per_hour is None else who.budget_per_hour,
                      cfg.budget_total if who.budget_total is None else who.budget_total)

    def usage(self, conn: Session | Connection, agent_id: int) -> dict[str, Any]:
        total, hour = conn.execute(USAGE, {"agent": agent_id,
                                           "since": utcnow() - timedelta(hours=1)}).one()
        return {"per_hour": self.per_hour, "total": self.total,
                "used_last_hour": int(hour), "used_total": int(total)}

    def check(self, conn: Session | Connection, agent_id: int,
              use: dict[str, Any] | None = None) -> dict[str, Any]:
        """Raise a 429 when the agent has no evaluation left; returns its usage."""
        use = use if use is not None else self.usage(conn, agent_id)
        if self.total is not None and use["used_total"] >= self.total:
            raise ApiError(429, f"evaluation budget exhausted: {self.total} in total; ask an "
                                "admin for more", detail=use)
        if self.per_hour is not None and use["used_last_hour"] >= self.per_hour:
            oldest = conn.execute(NTH_IN_HOUR, {
                "agent": agent_id, "since": utcnow() - timedelta(hours=1),
                "nth": max(use["used_last_hour"] - self.per_hour, 0)}).scalar()
            wait = 60 if oldest is None else max(
                1, math.ceil((oldest + timedelta(hours=1) - utcnow()).total_seconds()))
            raise ApiError(429, f"evaluation budget exhausted: {self.per_hour} per hour; "
                                f"retry in {wait} s", detail=use,
                           headers={"Retry-After": str(wait)})
        return use


class Evaluator:
    """Scores submissions. The hot path runs precompiled statements on the DB-API cursor:
    one read transaction (earlier submissions) and one write transaction."""

    def __init__(self, db: Database, catalog: Catalog, cfg: ServerConfig) -> None:
        self.db = db
        self.catalog = catalog
        self.cfg = cfg
        self.params = ladder.LadderParams(eta=cfg.eta, noise=cfg.ladder_noise,
                                          max_releases=cfg.max_releases)
        self._rng = np.random.default_rng(cfg.noise_seed)
        self._rng_lock = threading.Lock()
        self._known_datasets: set[str] = set()
        c = db.compile
        self.q_usage = c(USAGE)
        self.q_previous = c(PREVIOUS)
        self.q_previous_run = c(PREVIOUS_RUN)
        self.q_account = c(ACCOUNT_ROW)
        # An account's row is made on its first evaluation, before it is locked and read:
        # two researchers of one run starting at once must not both insert it.
        self.q_account_ensure = c(_ensure_account(db.dialect))
        self.q_account_update = c(ACCOUNT_UPDATE.values(
            {k: bindparam(k) for k in ACCOUNT_COLUMNS}))
        self.q_submission = c(_insert(SUB, SUB_COLUMNS), returning_id=True)
        self.q_reported = c(REPORTED_UPDATE)
        self.q_audit = c(_insert(AUDIT, ("at", "actor_id", "actor", "action", "target",
                                         "detail")))
        self.q_flag = c(_insert(FLAG, ("agent_id", "submission_id", "kind", "detail",
                                       "created")))

    def _audit(self, conn: Connection, who: Principal, action: str, target: str,
               when: datetime, **detail: Any) -> None:
        row = audit_row(who, action, target, when, **detail)  # the hot path's statement
        self.q_audit.run(conn, **{**row, "detail": _json(row["detail"])})

    def _noise(self) -> tuple[float, float]:
        if self.params.noise <= 0:
            return 0.0, 0.0
        with self._rng_lock:
            z = self._rng.laplace(0.0, self.params.noise, 2)
        return float(z[0]), float(z[1])

    def _ensure_dataset(self, conn: Connection, ds: LoadedDataset) -> None:
        if ds.key in self._known_datasets:
            return
        from sqlalchemy.dialects import postgresql, sqlite

        # Two first evaluations of a dataset at once (PostgreSQL runs them side by side):
        # one inserts the row, the other waits for it and inserts nothing.
        dialect = postgresql if self.db.dialect == "postgresql" else sqlite
        added = conn.execute(dialect.insert(DATASET).values(
            key=ds.key, name=ds.name, weak=ds.weak, strong=ds.strong, n_test=ds.n,
            baselines=ds.baselines, created=utcnow()).on_conflict_do_nothing(
                index_elements=["key"]))
        if added.rowcount == 1:
            audit(conn, None, "dataset.register", ds.key, name=ds.name, weak=ds.weak,
                   strong=ds.strong, baselines=ds.baselines)

    def _reported(self, state: ladder.LadderState, released: bool,
                  release_key: str | None) -> dict[str, Any]:
        """What the agent is told: the account's released value, its PGR from the
        published baselines of the dataset it was released on."""
        acc = state.accuracy(self.params.eta)
        value = None
        interval: dict[str, float] | None = None
        if acc is not None and release_key is not None:
            try:
                rel = self.catalog.get(release_key)
            except ApiError:
                rel = None
            if rel is not None and rel.gap_ok(PUBLIC):  # else "gap too small": no PGR
                value = _nan_none(round(rel.pgr_of(acc), 6))
                interval = rel.public_interval(acc, self.params.noise)
        return {"accuracy": acc, "auroc": state.auroc, "pgr": value,
                "pgr_ci": interval if value is not None else None, "released": released,
                "releases": state.releases, "dataset_key": release_key}

    def submit(self, who: Principal, body: EvaluationIn, key: str | None = None
               ) -> dict[str, Any]:
        """Score ``body``; with an idempotency ``key`` already used by this agent, answer
        with the submission that key made instead (``replayed``)."""
        if key is not None:
            done = self.replay(who, key)
            if done is not None:
                return done
        try:
            return self._submit(who, body, key)
        except IntegrityError:
            done = None if key is None else self.replay(who, key)  # a concurrent repeat
            if done is None:
                raise
            return done

    def replay(self, who: Principal, key: str) -> dict[str, Any] | None:
        with self.db.read() as s:
            sid = idempotency.find(s, who.id, key, "evaluation")
            if sid is None:
                return None
            sub = get_submission(s, who, sid)
            name = self.catalog.get(sub.dataset_key).name
            return {**submission_dict(sub, name, who.is_admin), "replayed": True}

    def _submit(self, who: Principal, body: EvaluationIn, key: str | None) -> dict[str, Any]:
        if body.split != "test":
            raise bad_request(f"only the test split is scored; got split {body.split!r}")
        ds = self.catalog.get(body.dataset)
        stored = ds.align(body.ids, body.probs).astype(np.float32)
        budget = Budget.of(who, self.cfg)
        scores = ds.score(stored.astype(np.float64))
        pub, priv = scores[PUBLIC], scores[PRIVATE]
        z_acc, z_auc = self._noise()
        blob = stored.tobytes()
        digest = hashlib.sha256(blob).hexdigest()
        now = utcnow()
        db, t_now = self.db, self.db.time(now)
        with db.read_conn() as conn:  # outside the write lock: the earlier submissions
            earlier = (self.q_previous_run.run(conn, run=who.run, dataset=ds.key,
                                               window=self.cfg.probe_window) if who.run
                       else self.q_previous.run(conn, agent=who.id, dataset=ds.key,
                                                window=self.cfg.probe_window))
            previous = [(sid, np.frombuffer(old, dtype=np.float32)) for sid, old in earlier]
        flags = probing.inspect(stored, previous)
        # An exact repeat of an earlier submission of the account (a deterministic method's
        # seeds) is answered from the account's state: no new noise, no new Ladder query,
        # so it tells nothing new and is no probing signal.
        repeat = any(f.kind == FlagKind.DUPLICATE for f in flags)
        flags = [f for f in flags if f.kind != FlagKind.DUPLICATE]
        with db.write_conn() as conn:
            total, hour = self.q_usage.run(
                conn, agent=who.id, since=db.time(now - timedelta(hours=1))).fetchone()
            use = budget.check(conn, who.id, {  # under the lock: the binding check
                "per_hour": budget.per_hour, "total": budget.total,
                "used_last_hour": int(hour or 0), "used_total": int(total or 0)})
            self._ensure_dataset(conn, ds)
            account = who.account
            self.q_account_ensure.run(conn, account=account, universe=ds.universe)
            row = self.q_account.run(conn, account=account, universe=ds.universe).fetchone()
            before = ladder.LadderState(*row[:5])
            release_key = row[5]
            cap = None if who.is_admin else self.cfg.run_budget
            if cap is not None and before.queries >= cap:
                raise ApiError(429, f"the evaluation budget of {account} on these examples "
                                    f"is spent: {cap} evaluations, shared by the run's "
                                    "researchers and by this dataset's canary and re-drawn "
                                    "splits", detail={"account": account,
                                                      "universe": ds.universe,
                                                      "queries": before.queries})
            state, released = (before, False) if repeat else ladder.step(
                before, pub.accuracy, pub.auroc, -1, self.params, z_acc, z_auc)
            if released:
                release_key = ds.key
            reported = self._reported(state, released, release_key)
            sid = self.q_submission.insert_id(
                conn, agent_id=who.id, dataset_key=ds.key, seed=body.seed, method=body.method,
                created=t_now, predictions=blob, sha256=digest,
                public_accuracy=pub.accuracy, public_auroc=_nan_none(pub.auroc),
                public_pgr=_nan_none(pub.pgr), private_accuracy=priv.accuracy,
                private_auroc=_nan_none(priv.auroc), private_pgr=_nan_none(priv.pgr),
                reported=_json({**reported,
                                "from_submission": sid_placeholder(released, state)}),
                transductive=body.transductive)
            if key is not None:
                idempotency.record(conn, who.id, key, "evaluation", sid, now)
            if released:
                state = replace(state, submission=sid)
                self.q_reported.run(conn, sid=sid,
                                    rep=_json({**reported, "from_submission": sid}))
            reported["from_submission"] = state.submission
            values = {"level": state.level, "auroc": state.auroc,
                      "submission_id": state.submission, "releases": state.releases,
                      "queries": state.queries, "dataset_key": release_key}
            self.q_account_update.run(conn, account_=account, universe_=ds.universe, **values)
            self._audit(conn, who, "evaluation.score", str(sid), t_now, dataset=ds.key,
                        seed=body.seed, method=body.method, sha256=digest,
                        transductive=body.transductive, account=account,
                        universe=ds.universe, test_public=score_dict(pub),
                        test_private=score_dict(priv), reported=reported)
            for f in flags:
                self.q_flag.run(conn, agent_id=who.id, submission_id=sid, kind=f.kind,
                                detail=_json(f.detail), created=t_now)
                self._audit(conn, who, "flag.probing", str(sid), t_now, kind=f.kind,
                            **f.detail)
        # Known only once committed: a concurrent request must not skip the insert and
        # refer to a dataset row another transaction has not committed yet.
        self._known_datasets.add(ds.key)
        use["used_total"] += 1
        use["used_last_hour"] += 1
        out: dict[str, Any] = {
            "id": sid, "dataset": ds.name, "dataset_key": ds.key, "seed": body.seed,
            "method": body.method, "transductive": body.transductive, "created": iso(now),
            "public": reported, "eta": self.params.eta, "budget": use,
            "account": {"name": who.account, "universe": ds.universe,
                        "queries_used": state.queries, "queries_total": cap,
                        "releases": state.releases,
                        "max_releases": self.params.max_releases},
            "note": NOTE,
        }
        if who.is_admin:
            out["scores"] = {PUBLIC: score_dict(pub), PRIVATE: score_dict(priv)}
            out["flags"] = [{"kind": f.kind, **f.detail} for f in flags]
        return out


def sid_placeholder(released: bool, state: ladder.LadderState) -> int | None:
    """The submission a non-releasing answer came from (a release is filled in after the
    insert, when its id is known)."""
    return None if released else state.submission


def _nan_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def submission_dict(s: Submission, dataset_name: str, admin: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": s.id, "dataset": dataset_name, "dataset_key": s.dataset_key, "seed": s.seed,
        "method": s.method, "transductive": bool(s.transductive), "created": iso(s.created),
        "sha256": s.sha256, "public": s.reported,
    }
    if admin:
        out["agent_id"] = s.agent_id
        out["scores"] = {
            PUBLIC: {"accuracy": s.public_accuracy, "auroc": s.public_auroc,
                     "pgr": s.public_pgr},
            PRIVATE: {"accuracy": s.private_accuracy, "auroc": s.private_auroc,
                      "pgr": s.private_pgr},
        }
    return out


def get_submission(session: Session, who: Principal, sid: int) -> Submission:
    s = session.get(Submission, sid)
    if s is None or (s.agent_id != who.id and not who.is_admin):
        raise not_found(f"no submission {sid} of yours")
    return s
