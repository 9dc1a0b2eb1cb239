"""Imports run one way: a package imports only packages of its own layer or below.

The layer order (README, "How the pieces fit") is ``LAYERS`` below, lowest first. Every
import in ``src/aar`` counts, at module level or inside a function. A package's
``commands.py`` (its subcommands of the ``aar`` CLI) belongs to the CLI layer on top. An
arrow that still runs the wrong way is listed in ``KNOWN`` with the reason; the test fails
on a new one and on a listed one that is gone, so the list only shrinks.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "aar"

LAYERS: tuple[frozenset[str], ...] = tuple(frozenset(names.split()) for names in (
    "errors settings util registry contracts",  # foundations: no aar imports but each other
    "data",  # datasets, packages, splits, the vault and workspace stores
    "models",  # encoders, the feature cache, causal LMs
    "w2s",  # the W2S core: method context, heads, baselines, scoring, LoRA student
    "methods",  # the method library and its registry
    "sandbox",  # running method code isolated
    "execution",  # where experiments run: this machine or a Ray cluster
    "experiments",  # runs and sweeps of methods, their records
    "client server",  # the evaluation server and its HTTP client
    "agents",  # the LLM loop, its backends, generic tools, budgets, prices
    "research",  # researchers, their tools, the orchestrator
    "oversight",  # the monitor, verification, the report
    "doctor cli __main__",  # the command line (and every package's commands.py)
))
LAYER = {pkg: i for i, names in enumerate(LAYERS) for pkg in names}
CLI = len(LAYERS) - 1

# (importing module, imported package): why it is still there
KNOWN: dict[tuple[str, str], str] = {}


def _package(module: str) -> str:
    return module.split(".")[1]


def _layer(module: str) -> int:
    return CLI if module.endswith(".commands") else LAYER[_package(module)]


def _imports(path: Path, module: str) -> set[str]:
    """The aar modules ``path`` imports, absolute or relative, anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("aar."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                out.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module and node.module.startswith("aar."):
                out.add(node.module)
    return out


def arrows() -> dict[tuple[str, str], int]:
    """Every import between two packages: (module, imported package) -> its layer."""
    found: dict[tuple[str, str], int] = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        module = ".".join(("aar", *parts))
        if module == "aar":
            continue
        for target in _imports(path, module):
            if target.count(".") >= 1 and _package(target) != _package(module):
                found[(module, _package(target))] = LAYER[_package(target)]
    return found


def test_every_package_has_a_layer() -> None:
    packages = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
                if (p.suffix == ".py" and p.stem != "__init__")
                or (p.is_dir() and (p / "__init__.py").exists())}
    assert packages == set(LAYER), packages ^ set(LAYER)


def test_imports_run_from_higher_layers_to_lower_ones() -> None:
    wrong = {(module, pkg) for (module, pkg), layer in arrows().items()
             if layer > _layer(module)}
    new = sorted(wrong - set(KNOWN))
    gone = sorted(set(KNOWN) - wrong)
    assert not new, f"imports against the layer order (see LAYERS): {new}"
    assert not gone, f"fixed: remove them from KNOWN: {gone}"


def test_the_check_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    mod = tmp_path / "m.py"
    mod.write_text("from .blocks import x\n\ndef f():\n    from aar.research import y\n")
    assert _imports(mod, "aar.methods.m") == {"aar.methods.blocks", "aar.research"}
    init = tmp_path / "__init__.py"
    init.write_text("from ..w2s import context\n")
    assert _imports(init, "aar.methods") == {"aar.w2s"}


def test_the_server_knows_nothing_of_methods_or_torch() -> None:
    """The evaluation server scores predictions: it has no use for the method library, the
    experiment runner or torch (importing them cost its dashboard seconds at login)."""
    upward = {(m, p) for m, p in arrows() if m.startswith(("aar.server", "aar.client"))
              and p in ("methods", "sandbox", "execution", "experiments")}
    assert not upward, upward
    code = ("import sys, aar.server.app, aar.server.dashboard.routes, aar.client; "
            "print(sorted({m.split('.')[0] if not m.startswith('aar.') else m "
            "for m in sys.modules if m.startswith(('torch', 'sklearn', 'aar.methods', "
            "'aar.experiments'))}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", out
