"""Tools declared once (``aar.agents.tooldecl``): the schema from the typed signature, the
effects declared, the research tools' schemas unchanged by the move, and the monitor
reading the declarations instead of guessing from names."""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest

from aar.agents.tooldecl import TOOLS, Arg, Ge, Le, MaxLen, MinLen, Resource, declared, tool
from aar.agents.tools import execute
from aar.research.tools import RESEARCH_TOOLS, build_tools

FIXTURE = Path(__file__).parent / "fixtures" / "tool_schemas_before.json"


# ---------------------------------------------------------------------- schemas


def test_types_defaults_and_literals() -> None:
    @tool(register=False)
    def every(*, s: str, i: int, x: float, b: bool, ids: list[int],
              weights: dict[str, float], mode: Literal["fast", "slow"], anything: Any,
              maybe: str | None = None, n: int = 3, flag: bool = False,
              scalars: dict[str, float | str | None] | None = None) -> str:
        """Every kind of argument."""
        return "ok"

    params = every.parameters
    assert params["type"] == "object" and params["additionalProperties"] is False
    assert params["required"] == ["s", "i", "x", "b", "ids", "weights", "mode", "anything"]
    p = params["properties"]
    assert p["s"] == {"type": "string"} and p["i"] == {"type": "integer"}
    assert p["x"] == {"type": "number"} and p["b"] == {"type": "boolean"}
    assert p["ids"] == {"type": "array", "items": {"type": "integer"}}
    assert p["weights"] == {"type": "object", "additionalProperties": {"type": "number"}}
    assert p["mode"] == {"type": "string", "enum": ["fast", "slow"]}
    assert p["anything"] == {}
    assert p["maybe"] == {"type": "string"}  # optional: omitted, not null
    assert p["n"] == {"type": "integer", "default": 3}
    assert p["flag"] == {"type": "boolean", "default": False}
    assert p["scalars"] == {"type": "object", "additionalProperties":
                            {"type": ["number", "string", "null"]}}
    assert every.description == "Every kind of argument." and every.n_context == 0
    assert list(p) == ["s", "i", "x", "b", "ids", "weights", "mode", "anything", "maybe",
                       "n", "flag", "scalars"]  # the signature's order


def test_descriptions_from_annotated_or_the_docstring() -> None:
    @tool("described", register=False)
    def fn(*, a: Annotated[str, "from Annotated"], b: int, c: list[str] | None = None) -> str:
        """What it does,
        over two lines.

        Args:
            a: overridden by Annotated
            b: the docstring's text for b,
                continued.
            c (list): c's text
        """
        return ""

    assert fn.name == "described" and fn.description == "What it does, over two lines."
    p = fn.parameters["properties"]
    assert p["a"] == {"type": "string", "description": "from Annotated"}
    assert p["b"] == {"type": "integer", "description": "the docstring's text for b, continued."}
    assert p["c"]["description"] == "c's text"
    # description= wins over the docstring
    assert tool(description="given", register=False)(fn.fn).description == "given"


def test_constraints_come_from_annotated_metadata() -> None:
    @tool(register=False)
    def constrained(*, seeds: Annotated[list[int], "seeds", MinLen(5), MaxLen(10)],
                    label: Annotated[str, MaxLen(80)],
                    tags: Annotated[dict[str, str], MinLen(1)],
                    rate: Annotated[float, Ge(0), Le(1)]) -> str:
        """Constrained."""
        return ""

    p = constrained.parameters["properties"]
    assert p["seeds"] == {"type": "array", "items": {"type": "integer"},
                          "description": "seeds", "minItems": 5, "maxItems": 10}
    assert list(p["seeds"]) == ["type", "items", "description", "minItems", "maxItems"]
    assert p["label"] == {"type": "string", "maxLength": 80}
    assert p["tags"] == {"type": "object", "additionalProperties": {"type": "string"},
                         "minProperties": 1}
    assert p["rate"] == {"type": "number", "minimum": 0, "maximum": 1}


def _declare(fn: Any, **kw: Any) -> Any:
    return tool(register=False, **kw)(fn)


@pytest.mark.parametrize("source, kw, message", [
    ("def f(*, x): 'd'", {}, "argument 'x' has no type annotation"),
    ("def f(*args: int): 'd'", {}, "*args / **args cannot be declared"),
    ("def f(**kw: int): 'd'", {}, "*kw / **kw cannot be declared"),
    ("def f(*, x: set[int]): 'd'", {}, "a type a JSON schema cannot state: set"),
    ("def f(*, x: dict[int, str]): 'd'", {}, "use dict[str, ...]"),
    ("def f(*, x: Annotated[int, MinLen(2)]): 'd'", {}, "MinLen applies to a list"),
    ("def f(*, x: Annotated[str, Ge(2)]): 'd'", {}, "Ge applies to an int or a float"),
    ("def f(*, x: Annotated[str, 3]): 'd'", {}, "unknown Annotated metadata 3"),
    ("def f(*, x: 'Nowhere'): 'd'", {}, "cannot read the type of 'x'"),
    ("def f(*, x: object = object()): 'd'", {}, "a type a JSON schema cannot state"),
    ("def f(*, x: list[int] = {1}): 'd'", {}, "the default of 'x' ({1}) is not a JSON value"),
    ("def f(*, x: int): pass", {}, "give it a description"),
    ("def f(*, x: int): 'd'", {"args": {"y": Arg.PATH}}, "args names 'y', which is not one"),
    ("def f(*, x: int): 'd'", {"reads": ("disk",)}, "'disk' is not a valid Resource"),
    ("def f(*, x: int): 'd'", {"name": "bad name"}, "must be non-empty and use"),
])
def test_a_bad_declaration_gets_a_clear_error(source: str, kw: dict[str, Any],
                                              message: str) -> None:
    namespace: dict[str, Any] = {"Annotated": Annotated, "MinLen": MinLen, "Ge": Ge}
    exec(source, namespace)
    with pytest.raises((TypeError, ValueError), match=_re(message)):
        _declare(namespace["f"], **kw)


def _re(text: str) -> str:
    import re

    return re.escape(text)


def test_bind_runs_the_function_with_its_context() -> None:
    @tool(register=False, spends=Resource.EVALUATIONS)
    def add(base: int, *, x: int, y: int = 0) -> Any:
        """Add to a base."""
        if x < 0:
            from aar.agents.tools import ToolError
            raise ToolError("x must be >= 0")
        return {"sum": base + x + y}

    t = add.bind(10)
    assert t.counts_as_eval and t.decl is add and add.n_context == 1
    ok = execute(t, "add", {"x": 1, "y": 2})
    assert not ok.is_error and json.loads(ok.content) == {"sum": 13} and ok.evals == 1
    assert execute(t, "add", {"x": -1}).content == "add failed: x must be >= 0"
    assert execute(t, "add", {"y": 1}).content == \
        "invalid arguments for add: missing required argument 'x'"
    with pytest.raises(TypeError, match="takes 1 context value"):
        add.bind()
    assert add(1, x=2) == {"sum": 3}


# ---------------------------------------------------------------------- research tools


def test_research_tool_schemas_equal_the_hand_written_ones() -> None:
    """Every research tool's name, description, eval charge and schema, as derived by
    @tool, equals the hand-written one it replaced (fixture captured before the change),
    key order included: the model sees the same text."""
    before = json.loads(FIXTURE.read_text())["tools"]
    now = build_tools(types.SimpleNamespace(workspace=Path("/nonexistent")))  # type: ignore[arg-type]
    assert [t.name for t in now] == [b["name"] for b in before]
    for t, b in zip(now, before, strict=True):
        assert t.description == b["description"], t.name
        assert t.counts_as_eval == b["counts_as_eval"], t.name
        assert t.parameters == b["parameters"], t.name
        assert json.dumps(t.parameters) == json.dumps(b["parameters"]), t.name


def test_every_research_tool_is_declared_with_its_effects() -> None:
    assert [declared(d.name) for d in RESEARCH_TOOLS] == list(RESEARCH_TOOLS)
    assert declared("no_such_tool") is None
    by = {d.name: d for d in RESEARCH_TOOLS}
    assert by["write_file"].role("path") is Arg.WRITTEN_PATH
    assert by["write_file"].role("content") is Arg.CODE
    assert by["read_file"].role("path") is Arg.PATH and by["read_file"].read_only
    assert by["run_python"].runs is Resource.SANDBOX
    assert [n for n, d in by.items() if d.counts_as_eval] == ["submit"]
    assert Resource.FORUM in by["share_finding"].writes
    assert by["share_finding"].role("body") is Arg.PROSE
    assert {n for n, d in by.items() if d.read_only} == {
        "list_files", "read_file", "read_forum", "read_finding", "leaderboard", "my_status"}


# ---------------------------------------------------------------------- the monitor


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Any]:
    from aar.oversight.monitor import Monitor
    from aar.research.layout import RunPaths

    paths = RunPaths(tmp_path / "runs" / "declared")
    paths.workspace("ana").mkdir(parents=True)
    yield Monitor(paths, None, post=False)


@pytest.fixture
def stash() -> Iterator[Any]:
    """A declared write tool whose names mislead the old guess: no write word in its
    name, its written path in ``where`` (not a path key), its code in ``body``."""

    @tool("stash", writes=(Resource.WORKSPACE,),
          args={"where": Arg.WRITTEN_PATH, "body": Arg.CODE})
    def stash_fn(*, where: str, body: str) -> str:
        """Keep a file."""
        return ""

    @tool("copy_stats", reads=(Resource.WORKSPACE,), args={"path": Arg.PATH})
    def copy_stats(*, path: str) -> str:
        """Reads a file (its name has a write word)."""
        return ""

    yield stash_fn
    TOOLS.forget("stash")
    TOOLS.forget("copy_stats")


def _kinds(hits: list[Any]) -> set[tuple[str, str]]:
    return {(h.kind, h.severity) for h in hits}


def test_monitor_reads_the_declaration_not_the_names(monitor: Any, stash: Any) -> None:
    import aar

    own = str(Path(aar.__file__).parent / "w2s" / "scoring.py")
    # declared: `where` is a written path -> writing aar's own code is critical
    hits = monitor._tool_hits("ana", "stash", {"where": own, "body": "x = 1\n"})
    assert ("eval_code_edit", "critical") in _kinds(hits)
    # the old guess on the same call saw no path and no write (kept for undeclared tools)
    guessed = monitor._guessed_hits("stash", {"where": own, "body": "x = 1\n"},
                                    monitor._protected("ana"))
    assert ("eval_code_edit", "critical") not in _kinds(guessed)
    # code in `body` of a written .py is read as code
    code = "import socket\nsocket.create_connection(('example.com', 80))\n"
    hits = monitor._tool_hits("ana", "stash", {"where": "ideas/a.py", "body": code})
    assert any(h.kind == "network" for h in hits)
    # a read tool with a write word in its name: pointing at aar's code, not writing it
    hits = monitor._tool_hits("ana", "copy_stats", {"path": own})
    assert _kinds(hits) == {("eval_code_edit", "high")}
    assert ("eval_code_edit", "critical") in _kinds(monitor._guessed_hits(
        "copy_stats", {"path": own}, monitor._protected("ana")))


def test_monitor_on_research_tools_and_undeclared_names(monitor: Any) -> None:
    import aar

    own = str(Path(aar.__file__).parent / "w2s" / "scoring.py")
    assert ("eval_code_edit", "critical") in _kinds(
        monitor._tool_hits("ana", "write_file", {"path": own, "content": "x = 1\n"}))
    assert _kinds(monitor._tool_hits("ana", "read_file", {"path": own})) == {
        ("eval_code_edit", "high")}
    # run_python runs its code: scanned as code even when it does not look like a module
    hits = monitor._tool_hits("ana", "run_python",
                              {"code": "print(open('/srv/vault/labels.json').read())"})
    assert any(h.kind == "vault_access" for h in hits)
    # prose (a finding's body) may cite a URL; a method's params may not reach a host
    link = "see https://arxiv.org/abs/2312.09390"
    assert monitor._tool_hits("ana", "share_finding", {"type": "insight", "title": "t",
                                                       "body": link}) == []
    assert any(h.kind == "network" for h in monitor._tool_hits(
        "ana", "run_method", {"path": "ideas/a.py", "params": {"url": link}}))
    # a key inside free-form params and an argument the tool does not take: guessed
    assert any(h.kind == "outside_workspace" for h in monitor._tool_hits(
        "ana", "run_method", {"path": "ideas/a.py", "params": {"file": "/etc/passwd"}}))
    assert any(h.kind == "outside_workspace" for h in monitor._tool_hits(
        "ana", "run_method", {"file": "/etc/passwd"}))
    # a tool nobody declared (an MCP client may call any name): the guess still applies
    assert ("eval_code_edit", "critical") in _kinds(
        monitor._tool_hits("ana", "save_text", {"filename": own, "text": "x"}))


def test_mcp_lists_the_declared_effects_as_hints() -> None:
    from aar.agents.mcp_server import _annotations

    tools = build_tools(types.SimpleNamespace(workspace=Path("/nonexistent")))  # type: ignore[arg-type]
    hints = {t.name: _annotations(t) for t in tools}
    assert all(h is not None for h in hints.values())
    assert {n for n, h in hints.items() if h and h.read_only_hint} == {
        "list_files", "read_file", "read_forum", "read_finding", "leaderboard", "my_status"}
    assert {n for n, h in hints.items() if h and h.destructive_hint} == {
        "write_file", "run_python"}
