"""The MCP adapter, tested with the official ``mcp`` SDK's own client.

In process (the SDK's in-memory transport) and over stdio to a subprocess that serves a
couple of dummy tools with ``serve_stdio`` — what ``aar mcp`` does.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, ClientSession, StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from aar.agents.budget import Budget
from aar.agents.mcp_server import build_mcp_server
from aar.agents.tools import Tool, ToolError

ADD_SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
              "required": ["a", "b"]}


def dummy_tools(calls: list[dict[str, Any]]) -> list[Tool]:
    def add(args: dict[str, Any]) -> str:
        calls.append(args)
        return str(args["a"] + args["b"])

    def read_note(args: dict[str, Any]) -> str:
        raise ToolError(f"no note named {args['name']!r}")

    return [
        Tool("add", "Add two integers.", ADD_SCHEMA, add),
        Tool("read_note", "Read a note.", {"type": "object", "properties": {
            "name": {"type": "string"}}, "required": ["name"]}, read_note),
        Tool("submit", "Submit predictions.", {"type": "object", "properties": {}},
             lambda a: "PGR 0.3", counts_as_eval=True),
    ]


def text_of(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


def test_in_memory_list_and_call() -> None:
    calls: list[dict[str, Any]] = []
    server = build_mcp_server(dummy_tools(calls), instructions="W2S research tools")

    async def main() -> None:
        async with Client(server) as client:
            listed = await client.list_tools()
            by_name = {t.name: t for t in listed.tools}
            assert set(by_name) == {"add", "read_note", "submit"}
            assert by_name["add"].input_schema == ADD_SCHEMA
            assert by_name["add"].description == "Add two integers."

            ok = await client.call_tool("add", {"a": 2, "b": 40})
            assert not ok.is_error and text_of(ok) == "42"

            bad = await client.call_tool("add", {"a": 2})
            assert bad.is_error and "missing required argument 'b'" in text_of(bad)

            err = await client.call_tool("read_note", {"name": "plan"})
            assert err.is_error and "no note named 'plan'" in text_of(err)

            with pytest.raises(MCPError, match="unknown tool 'nope'"):
                await client.call_tool("nope", {})

    anyio.run(main)
    assert calls == [{"a": 2, "b": 40}]


def test_budget_enforced_by_server() -> None:
    budget = Budget(max_evals=1)
    server = build_mcp_server(dummy_tools([]), budget=budget)

    async def main() -> None:
        async with Client(server) as client:
            first = await client.call_tool("submit", {})
            assert text_of(first) == "PGR 0.3"
            second = await client.call_tool("submit", {})
            assert second.is_error and "evals budget" in text_of(second)
            third = await client.call_tool("add", {"a": 1, "b": 1})
            assert third.is_error  # every call is refused once a limit is reached

    anyio.run(main)
    assert budget.usage().evals == 1


SERVER_SCRIPT = textwrap.dedent('''
    from aar.agents.mcp_server import serve_stdio
    from aar.agents.tools import Tool, ToolError

    def fail(args):
        raise ToolError("the sandbox is not running")

    serve_stdio([
        Tool("echo", "Echo text.", {"type": "object", "properties": {"text": {"type": "string"}},
             "required": ["text"]}, lambda a: a["text"].upper()),
        Tool("fail", "Always fails.", {"type": "object", "properties": {}}, fail),
    ], name="aar-test")
''')


def test_stdio_subprocess(tmp_path: Path) -> None:
    script = tmp_path / "serve.py"
    script.write_text(SERVER_SCRIPT)
    params = StdioServerParameters(command=sys.executable, args=[str(script)])

    async def main() -> None:
        with anyio.fail_after(60):
            async with stdio_client(params) as (read, write), \
                    ClientSession(read, write) as session:
                init = await session.initialize()
                assert init.server_info.name == "aar-test"
                listed = await session.list_tools()
                assert [t.name for t in listed.tools] == ["echo", "fail"]
                assert listed.tools[0].input_schema["required"] == ["text"]
                ok = await session.call_tool("echo", {"text": "weak to strong"})
                assert not ok.is_error and text_of(ok) == "WEAK TO STRONG"
                err = await session.call_tool("fail", {})
                assert err.is_error and "sandbox is not running" in text_of(err)
                bad = await session.call_tool("echo", {"text": 3})
                assert bad.is_error and "'text' must be string" in text_of(bad)

    anyio.run(main)
