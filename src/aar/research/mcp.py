"""``aar mcp --run RUN --agent NAME``: one researcher's tools for an external MCP client."""

from __future__ import annotations

from aar.agents.tools import Tool
from aar.errors import AarError
from aar.research.agent_main import make_researcher, system_prompt
from aar.research.directions import Direction
from aar.research.layout import RunPaths, server_of
from aar.research.orchestrator import read_run
from aar.research.tools import build_tools, init_workspace


def researcher_tools(run_id: str, agent: str) -> tuple[list[Tool], str]:
    """The tools of researcher ``agent`` of run ``run_id`` and its instructions. The run's
    server must be reachable (``server_url`` of run.json, e.g. a run in progress, or the
    ``server`` it was started with)."""
    paths = RunPaths.of(run_id)
    info = read_run(paths)
    secrets = paths.read_secrets()
    if agent not in secrets["agents"]:
        names = ", ".join(sorted(secrets["agents"])) or "none"
        raise AarError(f"no researcher {agent!r} in run {run_id} (researchers: {names})")
    url = server_of(info)
    if not url:
        raise AarError(f"run {run_id} has no server URL yet; start it first")
    r = make_researcher(paths, info, agent, secrets["agents"][agent], url)
    a = next(x for x in info["agents"] if x["name"] == agent)
    init_workspace(r)
    r.event("start", direction=a["title"], backend="mcp")
    d = Direction(a["direction"], a["title"], tuple(a.get("families") or ()), a.get("text", ""))
    return build_tools(r), system_prompt(r, d)
