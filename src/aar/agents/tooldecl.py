"""Tools declared once: ``@tool`` derives a tool's JSON schema from its typed signature and
records what the tool touches, so the loop, the MCP server and the monitor read one
declaration instead of a hand-written schema and a guess from names.

A declared tool is a function whose keyword-only parameters are the tool's arguments;
its positional parameters (if any) are a context bound when the tool is built
(:meth:`ToolDecl.bind`), e.g. the researcher whose workspace it works in::

    @tool(reads=(Resource.WORKSPACE,), args={"path": Arg.PATH})
    def read_file(r: Researcher, *, path: Annotated[str, "path relative to your workspace"]):
        "Read a text file of your workspace."

Types: ``str``, ``int``, ``float``, ``bool``, ``None``, ``Any``, ``list[T]``,
``dict[str, T]``, ``Literal[...]``, an :class:`enum.Enum`, unions of them. An argument
without a default is required; ``T | None = None`` is optional (omit it; ``null`` is not
accepted), and a default other than None is stated in the schema. Descriptions come from
``Annotated[T, "text"]`` or an ``Args:`` section of the docstring; the tool's description
is the docstring before that section (or ``description=``). Constraints are Annotated
metadata: :class:`MinLen` / :class:`MaxLen` (``minItems``/``minLength``/``minProperties``
and the max ones), :class:`Ge` / :class:`Le` (``minimum``/``maximum``).

Effects use a small vocabulary: :class:`Resource` for what a tool ``reads``, ``writes``,
``runs`` (code in the sandbox) and ``spends`` (evaluations of the researcher's budget:
such a tool ``counts_as_eval``), and :class:`Arg` for the arguments the monitor must read
in a particular way (a path read, a path written, code, prose). Every declaration is kept
in :data:`TOOLS` by name; :func:`declared` looks one up.
"""

from __future__ import annotations

import enum
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, Literal, get_args, get_origin

from aar.registry import Registry

from .tools import Tool, ToolHandler


class Resource(enum.StrEnum):
    """What a tool touches."""

    WORKSPACE = "workspace"  # the researcher's own files
    EXPORT = "export"  # the label-free data export and the feature cache (read-only)
    SANDBOX = "sandbox"  # code run isolated
    EVALUATIONS = "evaluations"  # the evaluation server's scored evaluations (the budget)
    FORUM = "forum"  # findings shared on the server
    LEADERBOARD = "leaderboard"  # the server-scored ranking
    ACCOUNT = "account"  # the researcher's own identity, budget and state


class Arg(enum.StrEnum):
    """How an argument is to be read by whoever watches the calls (the monitor)."""

    PATH = "path"  # a path the tool reads (or runs)
    WRITTEN_PATH = "written_path"  # a path the tool creates or replaces
    CODE = "code"  # code the tool runs, or writes into a file
    PROSE = "prose"  # text for people (a finding, a note, a search): a link is a citation


@dataclass(frozen=True)
class MinLen:
    """At least ``n`` items (list), characters (str) or keys (dict)."""

    n: int


@dataclass(frozen=True)
class MaxLen:
    """At most ``n`` items (list), characters (str) or keys (dict)."""

    n: int


@dataclass(frozen=True)
class Ge:
    """A number ``>= value``."""

    value: float


@dataclass(frozen=True)
class Le:
    """A number ``<= value``."""

    value: float


_LEN_KEYS = {"array": "Items", "string": "Length", "object": "Properties"}
_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                            type(None): "null"}


@dataclass(frozen=True)
class ToolDecl:
    """One declared tool: its schema, its effects and its function."""

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any] = field(repr=False, compare=False)
    n_context: int = 0  # positional parameters bound by :meth:`bind`
    reads: frozenset[Resource] = frozenset()
    writes: frozenset[Resource] = frozenset()
    runs: Resource | None = None
    spends: Resource | None = None
    args: Mapping[str, Arg] = field(default_factory=dict)

    @property
    def counts_as_eval(self) -> bool:
        return self.spends is Resource.EVALUATIONS

    @property
    def read_only(self) -> bool:
        """Changes nothing: writes nothing, runs no code, spends nothing."""
        return not self.writes and self.runs is None and self.spends is None

    def role(self, argument: str) -> Arg | None:
        """How ``argument`` is read (None: plain data, or not an argument of this tool)."""
        return self.args.get(argument)

    def takes(self, argument: str) -> bool:
        return argument in self.parameters["properties"]

    def call(self, context: Sequence[Any], arguments: Mapping[str, Any]) -> Any:
        """Run the function with ``context`` and the (validated) call ``arguments``."""
        return self.fn(*context, **arguments)

    def tool(self, handler: ToolHandler) -> Tool:
        """A :class:`Tool` of this declaration run by ``handler``."""
        return Tool(self.name, self.description, self.parameters, handler,
                    counts_as_eval=self.counts_as_eval, decl=self)

    def bind(self, *context: Any) -> Tool:
        """A :class:`Tool` whose handler calls the function with ``context`` first."""
        if len(context) != self.n_context:
            raise TypeError(f"tool {self.name!r} takes {self.n_context} context value(s) "
                            f"before its arguments, got {len(context)}")

        return self.tool(partial(self.call, context))

    def __call__(self, *context: Any, **arguments: Any) -> Any:
        return self.fn(*context, **arguments)


TOOLS: Registry[ToolDecl] = Registry("tool")


def declared(name: str) -> ToolDecl | None:
    """The declaration of the tool called ``name``, or None if no module declared it."""
    return TOOLS.get(name) if name in TOOLS else None


def tool(
    name: str | None = None,
    *,
    description: str | None = None,
    reads: Iterable[Resource] = (),
    writes: Iterable[Resource] = (),
    runs: Resource | None = None,
    spends: Resource | None = None,
    args: Mapping[str, Arg] | None = None,
    register: bool = True,
) -> Callable[[Callable[..., Any]], ToolDecl]:
    """Declare a tool (see the module docstring). ``name`` defaults to the function's;
    ``register=False`` keeps it out of :data:`TOOLS` (a throwaway tool in a test)."""

    def deco(fn: Callable[..., Any]) -> ToolDecl:
        tool_name = name or fn.__name__
        where = f"tool {tool_name!r}"
        summary, arg_docs = _docstring(inspect.getdoc(fn) or "")
        desc = description if description is not None else summary
        if not desc:
            raise TypeError(f"{where}: give it a description (a docstring or description=)")
        params, n_context = _parameters(fn, where, arg_docs)
        roles = dict(args or {})
        for arg, role in roles.items():
            if arg not in params["properties"]:
                raise TypeError(f"{where}: args names {arg!r}, which is not one of its "
                                f"arguments ({', '.join(params['properties']) or 'none'})")
            Arg(role)
        decl = ToolDecl(tool_name, desc, params, fn, n_context,
                        frozenset(Resource(x) for x in reads),
                        frozenset(Resource(x) for x in writes),
                        None if runs is None else Resource(runs),
                        None if spends is None else Resource(spends), roles)
        # a Tool checks the name and the schema's shape; fail here, at the declaration
        decl.tool(lambda a: "")
        if register:
            TOOLS.register(tool_name)(decl)
        return decl

    return deco


# ---------------------------------------------------------------------- signatures


def _docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The description (paragraphs, each on one line) and an ``Args:`` section's texts."""
    lines = doc.splitlines()
    head = next((i for i, line in enumerate(lines)
                 if re.fullmatch(r"(Args|Arguments|Parameters):\s*", line.strip())
                 and not line.startswith(" ")), len(lines))
    paragraphs = re.split(r"\n\s*\n", "\n".join(lines[:head]).strip())
    summary = "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())
    docs: dict[str, list[str]] = {}
    body = [line for line in lines[head + 1:] if line.strip()]
    indent = min((len(x) - len(x.lstrip()) for x in body), default=0)
    current: list[str] | None = None
    for line in body:
        m = re.match(r"(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line.strip())
        if m and len(line) - len(line.lstrip()) == indent:
            current = docs.setdefault(m.group(1), [])
            current.append(m.group(2))
        elif current is not None:
            current.append(line.strip())
    return summary, {k: " ".join(v).strip() for k, v in docs.items()}


def _parameters(fn: Callable[..., Any], where: str, arg_docs: Mapping[str, str]
                ) -> tuple[dict[str, Any], int]:
    sig = inspect.signature(fn)
    n_context = 0
    props: dict[str, Any] = {}
    required: list[str] = []
    globalns = getattr(fn, "__globals__", {})
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"{where}: *{p.name} / **{p.name} cannot be declared as tool "
                            "arguments; name each argument after a bare '*'")
        if p.kind is not p.KEYWORD_ONLY:
            if props:
                raise TypeError(f"{where}: context parameter {p.name!r} must come before '*'")
            n_context += 1
            continue
        if p.annotation is inspect.Parameter.empty:
            raise TypeError(f"{where}: argument {p.name!r} has no type annotation; annotate "
                            "it (str, int, float, bool, list[T], dict[str, T], Literal[...])")
        hint = _hint(p.annotation, globalns, where, p.name)
        optional = p.default is not inspect.Parameter.empty
        schema = _schema(hint, where, p.name, top=optional and p.default is None)
        if "description" not in schema and p.name in arg_docs:
            schema["description"] = arg_docs[p.name]
        if optional and p.default is not None:
            try:
                schema["default"] = json.loads(json.dumps(p.default))
            except (TypeError, ValueError):
                raise TypeError(f"{where}: the default of {p.name!r} ({p.default!r}) is not "
                                "a JSON value") from None
        props[p.name] = schema
        if not optional:
            required.append(p.name)
    return ({"type": "object", "properties": props, "required": required,
             "additionalProperties": False}, n_context)


def _hint(annotation: Any, globalns: dict[str, Any], where: str, name: str) -> Any:
    """An annotation as a type (string annotations evaluated in the function's module)."""
    if not isinstance(annotation, str):
        return annotation
    holder = types.SimpleNamespace(__annotations__={name: annotation})
    try:
        return typing.get_type_hints(holder, globalns=globalns, include_extras=True)[name]
    except Exception as exc:
        raise TypeError(f"{where}: cannot read the type of {name!r} ({annotation!r}): "
                        f"{type(exc).__name__}: {exc}") from None


def _schema(hint: Any, where: str, name: str, *, top: bool = False) -> dict[str, Any]:
    """The JSON schema of a type. ``top``: an optional argument's own type, whose ``None``
    means "omitted" rather than ``null``."""
    origin, params = get_origin(hint), get_args(hint)
    if origin is Annotated:
        schema = _schema(params[0], where, name, top=top)
        for meta in params[1:]:
            _annotate(schema, meta, where, name)
        return schema
    if hint is Any:
        return {}
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum([m.value for m in hint], where, name)
    if origin is Literal:
        return _enum(list(params), where, name)
    if origin in (types.UnionType, typing.Union):
        members = [a for a in params if not (top and a is type(None))]
        if len(members) == 1:
            return _schema(members[0], where, name)
        subs = [_schema(a, where, name) for a in members]
        if all(set(s) == {"type"} and isinstance(s["type"], str) for s in subs):
            return {"type": [s["type"] for s in subs]}
        return {"anyOf": subs}
    if hint in (list, Sequence) or origin in (list, Sequence):
        item = params[0] if params else Any
        items = _schema(item, where, name)
        return {"type": "array", **({"items": items} if items else {})}
    if hint is dict or origin in (dict, Mapping):
        if params and params[0] is not str:
            raise TypeError(f"{where}: argument {name!r}: a JSON object's keys are strings; "
                            f"use dict[str, ...], not {_show(hint)}")
        values = _schema(params[1], where, name) if params else {}
        return {"type": "object", **({"additionalProperties": values} if values else {})}
    raise TypeError(f"{where}: argument {name!r} has a type a JSON schema cannot state: "
                    f"{_show(hint)} (use str, int, float, bool, list[T], dict[str, T], "
                    "Literal[...] or a union of them)")


def _enum(values: list[Any], where: str, name: str) -> dict[str, Any]:
    kinds = {_SCALARS.get(type(v)) for v in values}
    if None in kinds:
        raise TypeError(f"{where}: argument {name!r}: enum values must be JSON scalars, "
                        f"got {values!r}")
    return {**({"type": kinds.pop()} if len(kinds) == 1 else {}), "enum": values}


def _annotate(schema: dict[str, Any], meta: Any, where: str, name: str) -> None:
    kind = schema.get("type")
    if isinstance(meta, str):  # after what says the type, before the constraints
        head: dict[str, Any] = {k: schema.pop(k) for k in ("type", "items", "enum")
                                if k in schema}
        rest = dict(schema)
        schema.clear()
        schema.update(head, description=meta, **rest)
    elif isinstance(meta, MinLen | MaxLen):
        if not isinstance(kind, str) or kind not in _LEN_KEYS:
            raise TypeError(f"{where}: argument {name!r}: {type(meta).__name__} applies to a "
                            f"list, a str or a dict, not {kind or 'this type'}")
        schema[("min" if isinstance(meta, MinLen) else "max") + _LEN_KEYS[kind]] = meta.n
    elif isinstance(meta, Ge | Le):
        if kind not in ("integer", "number"):
            raise TypeError(f"{where}: argument {name!r}: {type(meta).__name__} applies to "
                            f"an int or a float, not {kind or 'this type'}")
        schema["minimum" if isinstance(meta, Ge) else "maximum"] = meta.value
    else:
        raise TypeError(f"{where}: argument {name!r}: unknown Annotated metadata {meta!r} "
                        "(a description string, MinLen, MaxLen, Ge or Le)")


def _show(hint: Any) -> str:
    return getattr(hint, "__name__", None) or repr(hint)
