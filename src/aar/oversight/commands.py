"""``aar review``, ``aar monitor``, ``aar verify`` and ``aar report``: oversight from the
command line. Each talks to the evaluation server with an admin token (``--token``, else
``AAR_ADMIN_TOKEN``, else the run's own) at ``--server`` (else the run's server, started
here on the run's database when it is gone; ``AAR_SERVER_URL``; or the default)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from aar.errors import AarError
from aar.util import make_console

if TYPE_CHECKING:
    from aar.client import Client

console = make_console()
err = make_console(stderr=True)

Server = Annotated[str | None, typer.Option("--server", help="evaluation server URL")]
Token = Annotated[str | None, typer.Option(
    "--token", help="admin token (default: AAR_ADMIN_TOKEN, else the run's)",
    show_default=False)]


def resolve_run(run: str | None) -> Any:
    """A run by id (under $AAR_HOME/runs), by folder, or the newest run."""
    from aar.research.layout import RunPaths, runs_dir

    if run is None:
        root = runs_dir()
        runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime
                      ) if root.is_dir() else []
        if not runs:
            raise AarError(f"no research runs in {root}; start one with `aar research` or "
                           "give --run")
        return RunPaths(runs[-1])
    path = Path(run)
    paths = RunPaths(path) if path.is_dir() else RunPaths.of(run)
    if not paths.root.is_dir():
        raise AarError(f"no research run {run!r} (looked in {paths.root})")
    return paths


@contextmanager
def admin_client(server: str | None, token: str | None, paths: Any = None
                 ) -> Iterator[Client]:
    """An admin client. Without ``--server`` and ``--token``: the run's server and admin
    token (``run.json``, ``secrets.json``); when the run's own server is gone (a finished
    run), one is started here on the same database for as long as the command runs."""
    import httpx

    from aar.client import Client
    from aar.research.layout import RunInfo, server_of

    info: RunInfo = paths.read_info() if paths else {}
    token = (token or os.environ.get("AAR_ADMIN_TOKEN")
             or (paths.read_secrets()["admin_token"]
                 if paths is not None and paths.secrets.exists() else None))
    if not token:
        raise AarError("no admin token: pass --token or set AAR_ADMIN_TOKEN")
    url = server or server_of(info)
    up = url is not None
    if url is not None and server is None:
        try:
            httpx.get(url.rstrip("/") + "/api/v1/openapi.json", timeout=3)
        except httpx.HTTPError:
            up = False
    if up or not info.get("dataset"):
        with Client(url, token) as c:
            yield c
        return
    from aar.research.live import LiveServer

    err.print(f"[dim]the run's server ({url}) is gone: serving its database here[/]")
    srv = LiveServer(admin_token=token, datasets=(str(info["dataset"]),)).start()
    try:
        with Client(srv.url, token) as c:
            yield c
    finally:
        srv.stop()


def register(app: typer.Typer) -> None:
    review_app = typer.Typer(no_args_is_help=True,
                             help="Review flags: list them, accept (it was reward hacking) "
                                  "or reject (a false alarm).")
    app.add_typer(review_app, name="review")

    @review_app.command("list")
    def review_list(
        state: Annotated[str | None, typer.Option(help="open | accepted | rejected")]
        = "open",
        agent: Annotated[str | None, typer.Option(help="only this agent's flags")] = None,
        limit: Annotated[int, typer.Option(help="at most this many")] = 100,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        server: Server = None, token: Token = None,
    ) -> None:
        """Flags with their evidence, newest first (default: the open ones)."""
        with admin_client(server, token) as c:
            items = c.flags(agent=agent, state=state, limit=limit).items
        if as_json:
            print(json.dumps([f.as_dict() for f in items], indent=1))
            return
        t = Table("id", "agent", "kind", "severity", "source", "state", "finding",
                  "submission", "evidence", show_lines=True)
        for f in items:
            t.add_row(str(f.id), f.agent, f.kind, f.severity, f.source, f.state,
                      str(f.finding or ""), str(f.submission or ""), f.evidence)
        console.print(t if items else f"no {state or ''} flags".replace("  ", " "))

    def _review(flag_id: int, decision: str, reason: str, server: str | None,
                token: str | None) -> None:
        with admin_client(server, token) as c:
            f = c.review_flag(flag_id, decision, reason)
        console.print(f"flag {f.id} ({f.kind} of {f.agent}) {f.state}: {f.reason}")

    @review_app.command("accept")
    def review_accept(
        flag_id: Annotated[int, typer.Argument(help="the flag's id (aar review list)")],
        reason: Annotated[str, typer.Option(help="why: shown in the audit log")],
        server: Server = None, token: Token = None,
    ) -> None:
        """It was reward hacking: the finding stays off the leaderboard."""
        _review(flag_id, "accept", reason, server, token)

    @review_app.command("reject")
    def review_reject(
        flag_id: Annotated[int, typer.Argument(help="the flag's id (aar review list)")],
        reason: Annotated[str, typer.Option(help="why: shown in the audit log")],
        server: Server = None, token: Token = None,
    ) -> None:
        """A false alarm: the finding returns to the leaderboard (if no other flag holds
        it)."""
        _review(flag_id, "reject", reason, server, token)

    @app.command()
    def monitor(
        run: Annotated[str | None, typer.Argument(help="run id or folder (default: newest)")]
        = None,
        judge: Annotated[str | None, typer.Option(
            help="also ask an LLM judge: anthropic or openai")] = None,
        judge_model: Annotated[str | None, typer.Option(help="the judge's model")] = None,
        judge_url: Annotated[str | None, typer.Option(help="the judge API's base URL")]
        = None,
        server: Server = None, token: Token = None,
    ) -> None:
        """Scan a run for reward hacking after the fact; flags go to the server."""
        from aar.oversight.monitor import Monitor

        paths = resolve_run(run)
        the_judge = None
        if judge is not None:
            from aar.agents.backends import make_backend
            from aar.oversight.judge import Judge

            the_judge = Judge(make_backend(judge, judge_model, base_url=judge_url))
        with admin_client(server, token, paths) as c:
            m = Monitor(paths, c)
            flags = m.scan_run(judge=the_judge)
        t = Table("agent", "kind", "severity", "source", "finding", "submission", "evidence",
                  show_lines=True)
        for f in flags:
            t.add_row(f.agent, f.kind, f.severity, f.source, str(f.finding_id or ""),
                      str(f.submission_id or ""), f.evidence)
        console.print(t if flags else "no flags")
        for e in m.errors:
            err.print(f"[yellow]warning:[/] {e}")

    @app.command()
    def verify(
        top: Annotated[int, typer.Option(
            help="how many findings, best public-half score first")] = 3,
        run: Annotated[str | None, typer.Option(help="run id or folder (default: newest)")]
        = None,
        seeds: Annotated[int, typer.Option(help="fresh seeds per re-run")] = 5,
        heldout: Annotated[list[str] | None, typer.Option(
            help="held-out datasets (repeatable; default: the testbed's others prepared "
                 "here; 'none': skip)")] = None,
        pair: Annotated[list[str] | None, typer.Option(
            help="other weak/strong pair as WEAK:STRONG or DATASET@WEAK:STRONG "
                 "(repeatable)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        server: Server = None, token: Token = None,
        unsafe_sandbox: Annotated[bool, typer.Option(
            "--unsafe-sandbox", help="re-run findings' code WITHOUT isolation when neither "
            "bubblewrap nor Landlock works here (see aar doctor)")] = False,
        executor: Annotated[str, typer.Option(
            help="where the re-runs go: local (default) | ray")] = "local",
        address: Annotated[str | None, typer.Option(
            help="the Ray cluster (HOST:PORT of its head; default: the one `ray start` "
                 "made on this machine, else a private one)")] = None,
    ) -> None:
        """Choose the top findings by their public-half score, report their private half
        (the unbiased estimate), and re-run their code, untouched, on fresh seeds, a
        re-drawn split, held-out datasets and another model pair."""
        from aar.execution import ExecutorConfig, make_executor
        from aar.oversight.verify import (
            Verifier,
            VerifyConfig,
            columns,
            fmt_cell,
            fmt_transductive,
            table_json,
        )
        from aar.sandbox import require_isolation

        require_isolation(unsafe_sandbox)
        paths = resolve_run(run)
        ex_cfg = ExecutorConfig(kind=executor, address=address)  # type: ignore[arg-type]
        with admin_client(server, token, paths) as c, make_executor(ex_cfg) as ex:
            v = Verifier(paths, c, progress=lambda m: err.print(f"[dim]{m}[/]"),
                         executor=ex)
            pairs = None
            if pair:
                pairs = tuple(_pair(p, v.dataset()) for p in pair)
            held = None if not heldout else tuple(h for h in heldout if h != "none")
            v.cfg = VerifyConfig(top=top, seeds=seeds, heldout=held, pairs=pairs)
            table = v.run()
        if as_json:
            print(json.dumps(table_json(table), indent=1))
            return
        cols = columns(table)
        t = Table("finding", "author", "transductive", *cols, "what held", "seen - held",
                  "reproduces",
                  title=f"Verification of run {table.run} ({table.dataset}): PGR "
                        "mean [95% interval over seeds and test examples]",
                  caption=f"Chosen: {table.selection}. 'gap too small': no PGR (ceiling "
                          f"- weak below {table.min_gap} with 95% confidence), never "
                          "averaged into 'what held'.")
        for r in table.rows:
            if not r.cells:
                t.add_row(str(r.finding), str(r.author), "", *[""] * len(cols),
                          "", f"error: {r.error}", "")
                continue
            gap = "" if r.gap is None else f"{r.gap:+.2f}"
            held_mean = "n/a" if r.held_mean is None else f"{r.held_mean:.2f}"
            same = {None: "", True: "yes", False: "[red]no[/]"}[r.reproduces]
            t.add_row(str(r.finding), str(r.author), fmt_transductive(r.transductive),
                      *(fmt_cell(r.cells.get(col)) for col in cols), held_mean, gap,
                      same)
        console.print(t)
        for note in table.notes:
            err.print(f"[yellow]note:[/] {note}")
        console.print(f"stored in {paths.root / 'verify.json'}")

    @app.command()
    def report(
        run: Annotated[str | None, typer.Argument(help="run id or folder (default: newest)")]
        = None,
        offline: Annotated[bool, typer.Option(
            help="use only the run folder (no leaderboard, local flags)")] = False,
        server: Server = None, token: Token = None,
    ) -> None:
        """Write the run's report (Markdown and HTML with plots) into RUN/report/."""
        from aar.oversight.report import Report

        paths = resolve_run(run)
        if offline:
            written = Report(paths).write()
        else:
            with admin_client(server, token, paths) as c:
                written = Report(paths, c).write()
        for kind, path in written.items():
            console.print(f"{kind}: {path}")


def _pair(text: str, dataset: str) -> tuple[str, str, str]:
    ref, at, encoders = text.rpartition("@")
    weak, colon, strong = encoders.partition(":")
    if not colon or not weak or not strong:
        raise AarError(f"bad --pair {text!r}: use WEAK:STRONG or DATASET@WEAK:STRONG")
    return (ref if at else dataset, weak, strong)
