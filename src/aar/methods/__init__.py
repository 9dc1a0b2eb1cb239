"""W2S methods: one module each, registered with ``@method("name")``.

A method is a function ``fn(ctx: MethodContext, *, hyper=default, ...) -> predictor``: it
fits on the unlabeled split and returns a predictor (a head from ``ctx.train_strong``, an
object with ``predict(examples)``, or a function of ``Examples``) that the harness applies
to the test split; see ``aar.w2s.context``. Its keyword-only parameters with defaults are
its hyperparameters. ``@method(name, transductive=True)`` declares a method that also reads
the test inputs (``ctx.test``). ``aar methods new NAME`` writes a starting module from the
template; ``aar run path/to/file.py`` runs one from a file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aar.errors import AarError
from aar.registry import Registry

MethodFn = Callable[..., Any]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: MethodFn
    description: str
    defaults: dict[str, Any]
    source_file: Path
    transductive: bool = False  # it reads the test inputs while fitting

    def code_hash(self) -> str:
        """Hash of the module that defines the method: a record names the code it ran."""
        return hashlib.sha256(self.source_file.read_bytes()).hexdigest()[:16]

    def resolve_params(self, given: dict[str, Any]) -> dict[str, Any]:
        unknown = set(given) - set(self.defaults)
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise AarError(
                f"method {self.name!r} has no parameter {sorted(unknown)[0]!r} (it has: {known})"
            )
        out = dict(self.defaults)
        for k, v in given.items():
            default = self.defaults[k]
            if default is None:  # "use the context's default": take a number when given one
                out[k] = _number(v)
                continue
            try:
                out[k] = type(default)(v) if default is not None and not isinstance(
                    default, bool) else (_to_bool(v) if isinstance(default, bool) else v)
            except (TypeError, ValueError):
                raise AarError(
                    f"parameter {k} of {self.name!r} must be {type(default).__name__}, got {v!r}"
                ) from None
        return out


def _number(v: Any) -> Any:
    """``v`` as an int or float when it reads as one (a string from the command line)."""
    if isinstance(v, str):
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
    return v


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(v)


def _load_builtin() -> None:
    from aar.methods import builtin  # noqa: F401


METHODS: Registry[MethodSpec] = Registry("method", _load_builtin)


def is_library_file(path: Path) -> bool:
    return Path(__file__).resolve().parent in path.parents


def method(name: str, *, transductive: bool = False) -> Callable[[MethodFn], MethodFn]:
    """Register ``fn`` as method ``name``; its docstring's first line describes it.
    ``transductive``: the method also reads the test split's inputs while fitting."""

    def deco(fn: MethodFn) -> MethodFn:
        sig = inspect.signature(fn)
        defaults = {
            p.name: p.default for p in sig.parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.default is not p.empty
        }
        doc = (inspect.getdoc(fn) or "").strip().splitlines()
        source = Path(inspect.getfile(fn)).resolve()
        if name in METHODS and not is_library_file(METHODS.get(name).source_file) \
                and not is_library_file(source):
            METHODS.forget(name)  # a user's method file loaded again (edited or moved)
        METHODS.register(name)(MethodSpec(
            name, fn, doc[0] if doc else "", defaults, source, transductive
        ))
        return fn

    return deco


def load_method_file(path: Path) -> list[str]:
    """Import a user's method module; returns the names it registered."""
    path = path.resolve()
    if not path.is_file():
        raise AarError(f"no method file {path}")
    before = set(METHODS.names())
    mod_name = f"aar_user_method_{hashlib.sha256(str(path).encode()).hexdigest()[:10]}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except AarError:
        raise
    except Exception as exc:  # a user's file: report, don't crash
        raise AarError(f"{path} failed to import: {type(exc).__name__}: {exc}") from exc
    new = sorted(set(METHODS.names()) - before)
    if not new:
        known = [s.name for s in (METHODS.get(n) for n in METHODS.names())
                 if s.source_file == path]
        if known:
            return known
        raise AarError(f"{path} registers no method; decorate a function with @method(\"name\")")
    return new


def declared_transductive(code: str, method_name: str | None = None) -> bool | None:
    """Whether a method file's method declares ``@method(name, transductive=True)``, read
    from its source without importing it (trusted code never runs method code). The
    method is ``method_name``, else the first registered name in sorted order (the one the
    sandbox worker runs). None when it cannot be told: a computed flag or ``**kwargs``,
    unparsable code, no ``@method``."""
    import ast

    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    decls: list[tuple[str | None, bool | None]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for dec in node.decorator_list:
            f = dec.func if isinstance(dec, ast.Call) else None
            if not isinstance(dec, ast.Call) or not (
                    (isinstance(f, ast.Name) and f.id == "method")
                    or (isinstance(f, ast.Attribute) and f.attr == "method")):
                continue
            arg = dec.args[0] if dec.args else None
            name = arg.value if isinstance(arg, ast.Constant) and isinstance(
                arg.value, str) else None
            flag: bool | None = False
            for kw in dec.keywords:
                if kw.arg is None:  # **kwargs: cannot tell
                    flag = None
                elif kw.arg == "transductive":
                    value = kw.value.value if isinstance(kw.value, ast.Constant) else None
                    flag = value if isinstance(value, bool) else None
            decls.append((name, flag))
    names = sorted(n for n, _ in decls if n is not None)
    chosen = method_name if method_name is not None else (names[0] if names else None)
    flags = [flag for n, flag in decls if n is None or n == chosen]
    if not flags or None in flags:
        return None
    return any(flags)


def resolve_method(ref: str) -> MethodSpec:
    """A registered name, or ``path/to/file.py`` (optionally ``file.py:name``)."""
    if ".py:" in ref:
        file, _, name = ref.rpartition(":")
        load_method_file(Path(file))
        return METHODS.get(name)
    if ref.endswith(".py"):
        return METHODS.get(load_method_file(Path(ref))[0])
    return METHODS.get(ref)
