"""``aar serve`` and ``aar token ...``: the evaluation server from the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from aar.util import make_console

console = make_console()


def register(app: typer.Typer) -> None:
    token_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API tokens.")
    app.add_typer(token_app, name="token")

    @app.command()
    def serve(
        host: Annotated[str, typer.Option(help="address to bind (loopback by default)")]
        = "127.0.0.1",
        port: Annotated[int, typer.Option(help="TCP port")] = 8000,
        db: Annotated[str | None, typer.Option(help="database URL (default SQLite in AAR_HOME)")]
        = None,
        dataset: Annotated[list[str] | None, typer.Option(
            "--dataset", "-d", help="extra dataset refs to score (prepared on first use)")]
        = None,
        workers: Annotated[int, typer.Option(help="server processes")] = 1,
        log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
    ) -> None:
        """Run the evaluation server (and its dashboard) until interrupted."""
        from aar.server.main import serve as run_server

        run_server(host, port, db, tuple(dataset or ()), log_level, workers)

    @app.command("references")
    def references(
        dataset: Annotated[str, typer.Option("--dataset", "-d", help="dataset name or key")],
        server: Annotated[str | None, typer.Option(
            help="server URL (default: AAR_SERVER_URL, else http://127.0.0.1:8000)")] = None,
        token: Annotated[str | None, typer.Option(
            help="an admin token (default: AAR_ADMIN_TOKEN)")] = None,
    ) -> None:
        """Post the runs of library methods on DATASET recorded here (`aar run`, `aar
        baselines`) to a server: its leaderboard's reference rows. `aar research` does
        this for its own server; a server started with `aar serve` is told with this."""
        import os

        from aar.client import Client
        from aar.errors import AarError
        from aar.research.orchestrator import post_references

        token = token or os.environ.get("AAR_ADMIN_TOKEN")
        if not token:
            raise AarError("no admin token: pass --token or set AAR_ADMIN_TOKEN")
        with Client(server, token) as admin:
            key = admin.dataset(dataset).key
            n = post_references(key, admin)
        console.print(f"posted {n} reference run(s) of {key} to {admin.url}")

    @token_app.command("create")
    def token_create(
        name: Annotated[str, typer.Argument(help="agent or person the token is for")],
        role: Annotated[str, typer.Option(help="agent or admin")] = "agent",
        budget_per_hour: Annotated[int | None, typer.Option(help="evaluations per hour")] = None,
        budget_total: Annotated[int | None, typer.Option(help="evaluations in total")] = None,
        db: Annotated[str | None, typer.Option(help="database URL")] = None,
    ) -> None:
        """Create a token and print it once (only its hash is stored)."""
        from aar.server.main import create_token

        print(create_token(name, role, budget_per_hour=budget_per_hour,
                           budget_total=budget_total, db_url=db))

    @token_app.command("list")
    def token_list(db: Annotated[str | None, typer.Option(help="database URL")] = None) -> None:
        """Tokens with their agent, role and state (never the secret)."""
        from aar.server.main import list_tokens

        rows = list_tokens(db)
        table = Table("id", "agent", "role", "prefix", "created", "revoked")
        for r in rows:
            table.add_row(*(str(r.get(k) or "") for k in
                            ("id", "name", "role", "prefix", "created", "revoked")))
        console.print(table)

    @token_app.command("revoke")
    def token_revoke(
        name: Annotated[str | None, typer.Option(help="revoke every token of this agent")]
        = None,
        token_id: Annotated[int | None, typer.Option("--id", help="revoke one token")] = None,
        db: Annotated[str | None, typer.Option(help="database URL")] = None,
    ) -> None:
        """Revoke tokens by agent name or id."""
        from aar.server.main import revoke_tokens

        print(f"revoked {revoke_tokens(name, token_id, db)} token(s)")
