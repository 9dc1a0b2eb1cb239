"""The researcher tools over MCP (official ``mcp`` SDK), so an external agent can do research.

``build_mcp_server(tools)`` makes a low-level :class:`mcp.server.lowlevel.Server` that lists
each :class:`~aar.agents.tools.Tool` with its own JSON schema and runs calls through the
same validation and error handling as the researcher loop: bad arguments, a
:class:`~aar.agents.tools.ToolError` or a crash come back as an ``is_error`` result, an
unknown tool as an MCP error. With a ``budget`` the server enforces it outside the agent's
reach: once a limit is reached every call is refused, and ``counts_as_eval`` tools charge
their evaluations (one per seed). A declared tool (:mod:`aar.agents.tooldecl`) is listed
with MCP's hints from its declaration (read-only; may replace workspace files).
``serve_stdio(tools)`` serves it on stdin/stdout (``aar mcp``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import anyio.to_thread
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from .budget import Budget
from .tooldecl import Arg, Resource
from .tools import Tool, execute, tool_index

INVALID_PARAMS = -32602


def build_mcp_server(
    tools: Sequence[Tool],
    name: str = "aar",
    *,
    budget: Budget | None = None,
    instructions: str | None = None,
    version: str = "",
    max_output_chars: int | None = 50_000,
) -> Server[Any]:
    """An MCP server exposing ``tools`` (each with its JSON schema as ``inputSchema``)."""
    index = tool_index(tools)
    if budget is not None:
        budget.start()
    listed = [
        types.Tool(name=t.name, description=t.description, input_schema=t.input_schema,
                   annotations=_annotations(t))
        for t in tools
    ]

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=listed)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = index.get(params.name)
        if tool is None:
            raise MCPError(INVALID_PARAMS, f"unknown tool {params.name!r}; "
                           f"available: {', '.join(index)}")
        if budget is not None:
            which = budget.exhausted()
            if which is not None:
                return _result(f"refused: the {which} budget of this researcher is exhausted "
                               f"({budget.describe()})", True)
        args = params.arguments or {}
        outcome = await anyio.to_thread.run_sync(
            lambda: execute(tool, params.name, args, max_chars=max_output_chars))
        if budget is not None:
            budget.charge_tool_call()
            if outcome.evals:
                budget.charge_eval(outcome.evals)
        return _result(outcome.content, outcome.is_error)

    return Server(name, version=version, instructions=instructions,
                  on_list_tools=list_tools, on_call_tool=call_tool)


def _annotations(tool: Tool) -> types.ToolAnnotations | None:
    """MCP's hints from the tool's declaration (none for a tool made by hand): read-only,
    or whether it may replace files (a path it writes, or code it runs in the workspace)."""
    d = tool.decl
    if d is None:
        return None
    if d.read_only:
        return types.ToolAnnotations(read_only_hint=True)
    replaces = Arg.WRITTEN_PATH in d.args.values() or (
        d.runs is not None and Resource.WORKSPACE in d.writes)
    return types.ToolAnnotations(read_only_hint=False, destructive_hint=replaces)


def _result(text: str, is_error: bool) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                is_error=is_error)


async def serve_stdio_async(server: Server[Any]) -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def serve_stdio(
    tools: Sequence[Tool],
    name: str = "aar",
    *,
    budget: Budget | None = None,
    instructions: str | None = None,
) -> None:
    """Serve ``tools`` over MCP on stdin/stdout until the client closes (``aar mcp``)."""
    server = build_mcp_server(tools, name, budget=budget, instructions=instructions)
    anyio.run(serve_stdio_async, server)
