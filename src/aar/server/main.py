"""Start the server and manage tokens from the command line (``aar serve``, ``aar token``).

These are plain functions the CLI wires up; ``python -m aar.server.main`` also runs the
server (``--help``).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any

from sqlalchemy import select

from aar.errors import AarError
from aar.server import auth
from aar.server.config import ServerConfig
from aar.server.db import Agent, Database, Token, hide_password
from aar.server.errors import ApiError
from aar.server.forum import iso


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(host: str = "127.0.0.1", port: int = 8000, db_url: str | None = None,
          datasets: tuple[str, ...] = (), log_level: str = "warning",
          workers: int = 1) -> None:
    """Run the server with uvicorn until interrupted. At first start the admin token is
    printed once (it is stored only as a hash). ``workers`` > 1 runs that many processes
    on the same database (each keeps its own in-memory dataset cache)."""
    import uvicorn

    from aar.server.app import create_app

    if not _is_loopback(host):
        print(f"warning: binding to {host}: the server is reachable from other machines",
              file=sys.stderr)
    if workers < 1:
        raise AarError(f"--workers must be at least 1, got {workers}")
    cfg = (ServerConfig(datasets=tuple(datasets), db_url=db_url) if db_url
           else ServerConfig(datasets=tuple(datasets)))
    app = create_app(cfg)  # migrates the database and creates the admin at first start
    token = app.state.initial_admin_token
    if token:
        print(f"admin token (shown once, keep it safe): {token}", flush=True)
    print(f"aar evaluation server on http://{host}:{port}  (database {hide_password(cfg.db_url)}"
          f", {workers} worker{'s' if workers > 1 else ''}); dashboard at http://{host}:{port}/",
          flush=True)
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                    timeout_graceful_shutdown=2)
        return
    app.state.db.dispose()
    os.environ["AAR_DB_URL"] = cfg.db_url
    os.environ["AAR_SERVER_DATASETS"] = ",".join(cfg.datasets)
    uvicorn.run("aar.server.main:app_from_env", factory=True, host=host, port=port,
                workers=workers, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=2)


def app_from_env() -> Any:
    """App factory for ``uvicorn aar.server.main:app_from_env --factory`` (settings from
    the environment: AAR_HOME, AAR_DB_URL, AAR_ADMIN_TOKEN, AAR_BUDGET_*,
    AAR_SERVER_DATASETS: comma-separated dataset references)."""
    from aar.server.app import create_app

    refs = tuple(r for r in os.environ.get("AAR_SERVER_DATASETS", "").split(",") if r)
    return create_app(ServerConfig(datasets=refs))


def _db(db_url: str | None) -> Database:
    return Database(db_url or ServerConfig().db_url)


def create_token(name: str, role: str = "agent", *, budget_per_hour: int | None = None,
                 budget_total: int | None = None, db_url: str | None = None,
                 run: str | None = None) -> str:
    """Create agent ``name`` (or update its budgets) and return a new token for it;
    ``run`` puts it in a research run (one rationing account with the run's others)."""
    db = _db(db_url)
    try:
        with db.write() as s:
            _, _, token = auth.issue_token(s, name, role, budget_per_hour=budget_per_hour,
                                           budget_total=budget_total, run=run)
        return token
    except ApiError as exc:
        raise AarError(exc.message) from None
    finally:
        db.dispose()


def revoke_tokens(name: str | None = None, token_id: int | None = None,
                  db_url: str | None = None) -> int:
    """Revoke every token of agent ``name``, or the one token ``token_id``."""
    db = _db(db_url)
    try:
        with db.write() as s:
            return auth.revoke(s, None, token_id=token_id, name=name)
    except ApiError as exc:
        raise AarError(exc.message) from None
    finally:
        db.dispose()


def list_tokens(db_url: str | None = None) -> list[dict[str, Any]]:
    """Every token: id, prefix, agent name, role, created, revoked (never the secret)."""
    db = _db(db_url)
    try:
        with db.read() as s:
            rows = s.execute(select(Token, Agent.name, Agent.role, Agent.budget_per_hour,
                                    Agent.budget_total)
                             .join(Agent, Agent.id == Token.agent_id).order_by(Token.id))
            return [{"id": t.id, "prefix": t.prefix, "name": name, "role": role,
                     "budget_per_hour": bph, "budget_total": bt,
                     "created": iso(t.created), "revoked": iso(t.revoked)}
                    for t, name, role, bph, bt in rows]
    finally:
        db.dispose()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m aar.server.main",
                                description="run the aar evaluation server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--db", default=None, help="database URL (default: SQLite in AAR_HOME)")
    p.add_argument("--dataset", action="append", default=[],
                   help="also accept this dataset reference (repeatable)")
    p.add_argument("--log-level", default="warning")
    p.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    args = p.parse_args(argv)
    try:
        serve(args.host, args.port, args.db, tuple(args.dataset), args.log_level,
              args.workers)
    except AarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
