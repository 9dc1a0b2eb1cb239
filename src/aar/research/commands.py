"""``aar research`` (a research run) and ``aar mcp`` (one researcher's tools over MCP)."""

from __future__ import annotations

from typing import Annotated

import typer

from aar.execution import ExecutorConfig
from aar.util import make_console

console = make_console()


def executor_config(executor: str | None, address: str | None) -> ExecutorConfig | None:
    """``--executor``/``--address`` as a config (None: neither given)."""
    if executor is None and address is None:
        return None
    return ExecutorConfig(kind=executor or "ray", address=address)  # type: ignore[arg-type]


def register(app: typer.Typer) -> None:
    @app.command()
    def research(
        dataset: Annotated[str, typer.Option("--dataset", "-d", help="dataset reference")]
        = "sentiment",
        agents: Annotated[int, typer.Option(help="researchers in parallel")] = 3,
        backend: Annotated[str, typer.Option(
            help="builtin | anthropic | openai | local (a packaged model on llama.cpp; "
                 "needs the [local] extra)")] = "builtin",
        minutes: Annotated[float, typer.Option(help="wall time (on --resume: more minutes)")]
        = 10.0,
        model: Annotated[str | None, typer.Option(
            help="LLM model name (local: qwen0.5b | qwen1.5b)")] = None,
        base_url: Annotated[str | None, typer.Option(help="LLM endpoint (openai-compatible)")]
        = None,
        budget_usd: Annotated[float | None, typer.Option(help="dollars per researcher")]
        = None,
        max_tokens: Annotated[int | None, typer.Option(help="tokens per researcher")] = None,
        context: Annotated[int | None, typer.Option(
            help="local: the model's context window in tokens (default 8192)")] = None,
        max_evals: Annotated[int, typer.Option(
            help="server evaluations per researcher (5 per submitted method)")] = 150,
        directions: Annotated[str | None, typer.Option(
            help="a directions .md file or folder (default: the nine shipped ones)")] = None,
        resume: Annotated[str | None, typer.Option(help="continue run RUN")] = None,
        server: Annotated[str | None, typer.Option(
            help="use this evaluation server (admin token in AAR_ADMIN_TOKEN)")] = None,
        canary: Annotated[bool, typer.Option(help="labels shuffled: any gain is cheating")]
        = False,
        seed: Annotated[int, typer.Option(help="seed of the researchers' choices")] = 0,
        unsafe_sandbox: Annotated[bool, typer.Option(
            "--unsafe-sandbox", help="run researcher code WITHOUT isolation when neither "
            "bubblewrap nor Landlock works here (see aar doctor)")] = False,
        executor: Annotated[str | None, typer.Option(
            help="where sandboxed experiments run: local (default) | ray")] = None,
        address: Annotated[str | None, typer.Option(
            help="the Ray cluster (HOST:PORT of its head; default: the one `ray start` "
                 "made on this machine)")] = None,
    ) -> None:
        """Run N researchers in parallel against the evaluation server, with budgets."""
        from aar.doctor import verdict
        from aar.sandbox import require_isolation

        require_isolation(unsafe_sandbox)
        console.print(verdict(), markup=False, highlight=False)
        from aar.research.orchestrator import ResearchConfig, best_lines
        from aar.research.orchestrator import research as run_research

        cfg = ResearchConfig(dataset=dataset, agents=agents, backend=backend,
                             minutes=minutes, model=model, base_url=base_url,
                             budget_usd=budget_usd, max_tokens=max_tokens,
                             max_evals=max_evals, directions=directions, server=server,
                             canary=canary, seed=seed, context=context,
                             executor=executor_config(executor, address))
        from aar.oversight.monitor import LiveObserver

        info = run_research(cfg, resume=resume, observers=[LiveObserver()])
        s = info.get("summary") or {}
        console.print(f"run {info['run_id']}: {s.get('results')} ranked results, "
                      f"{s.get('evaluations')} evaluations, {s.get('minutes')} minutes")
        for line in best_lines(s):
            console.print(line, markup=False)
        from aar.research.layout import RunPaths

        console.print(f"final note: {RunPaths.of(info['run_id']).root / 'final_note.md'}")

    @app.command()
    def mcp(
        run: Annotated[str, typer.Option("--run", help="research run id")],
        agent: Annotated[str, typer.Option("--agent", help="researcher name in that run")],
    ) -> None:
        """Serve one researcher's tools over MCP on stdin/stdout (for an external agent)."""
        from aar.agents.mcp_server import serve_stdio
        from aar.research.mcp import researcher_tools

        tools, instructions = researcher_tools(run, agent)
        serve_stdio(tools, f"aar-{agent}", instructions=instructions)

