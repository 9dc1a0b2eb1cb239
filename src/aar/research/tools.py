"""The concrete research tools of one researcher (LLM loop and ``aar mcp`` alike).

``build_tools(researcher)`` returns :class:`~aar.agents.tools.Tool` objects over a
:class:`~aar.research.context.Researcher`: workspace files (confined to the workspace),
Python and method runs in the sandbox (workspace read-write, the label-free export and
feature cache read-only), submissions to the evaluation server, the forum, the
leaderboard and notes. Every call is logged as a ``tool_call`` event in the run directory.
Each tool is declared once with :func:`aar.agents.tooldecl.tool`: its JSON schema comes
from its typed signature, and what it reads, writes, runs and spends (and which argument
is a path, code or prose) is stated there for the MCP server's hints and the monitor.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

from aar.agents.tooldecl import Arg, MinLen, Resource, ToolDecl, tool
from aar.agents.tools import Tool, ToolError, render
from aar.contracts.api import BoardEntryOut
from aar.errors import AarError
from aar.research.context import (
    MAX_SEED,
    MIN_SEEDS,
    Researcher,
    check_seeds,
    confine,
    declared_transductive,
)

MAX_READ_CHARS = 40_000
MAX_FILES = 500

# The method contract as researchers read it (workspace README and LLM system prompt).
METHOD_CONTRACT = """\
- Write method modules under ideas/ (see template.py): one function decorated with
  @method("name"), keyword-only hyperparameters, that FITS on the unlabeled split
  (ctx.strong_features["unlabeled"], ctx.weak_soft["unlabeled"], ctx.texts[...], the
  weak teacher's soft labels: there is one teacher) and RETURNS A PREDICTOR: the head
  from ctx.train_strong(...), an object with predict(examples), or a function of
  examples (aar.w2s.context.Examples: ids, texts, weak/strong features, weak_soft).
  The harness applies it to the test split; verification applies it to examples it
  never saw, so anything fitted (a PCA, a scaler) must be fitted in the method and
  applied inside the predictor (e.g. aar.methods.blocks.fit_pca). Do not return test
  probabilities.
- ctx.train_strong's ridge defaults to ctx.default_l2 (cross-validated on the weak
  labels); ctx.rng is seeded by the seed being run.
- Test inputs are off limits unless the method is registered with
  @method("name", transductive=True): then ctx.test (Examples of the test split, no
  labels) and ctx.*["test"] are available, and its results are marked transductive
  and ranked apart on the leaderboard."""


def _log_args(args: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in args.items():
        out[k] = (v[:300] + f"... [{len(v)} chars]") if isinstance(v, str) and len(v) > 300 \
            else v
    return out


def _wrap(r: Researcher, name: str, fn: Callable[[dict[str, Any]], Any]
          ) -> Callable[[dict[str, Any]], Any]:
    def handler(args: dict[str, Any]) -> Any:
        ok, text = False, ""
        try:
            out = fn(args)
            text = render(out)
            ok = True
            return out
        except AarError as exc:  # ServerError included: the model can act on it
            text = str(exc)
            raise ToolError(text) from None
        except ToolError as exc:
            text = str(exc)
            raise
        finally:
            r.event("tool_call", tool=name, args=_log_args(args), ok=ok, result=text[:500])
    return handler


CALL_KEYS = ("path", "seeds", "label")  # arguments of the tools, never method parameters


def method_params(a: dict[str, Any], tool: str) -> dict[str, Any]:
    """The call's ``params``: the method's keyword values (never a JSON schema of them, nor
    the tool's own arguments put inside it)."""
    params = a.get("params") or {}
    if isinstance(params.get("properties"), dict) or params.get("type") == "object":
        raise ToolError("'params' holds the values of the method's keyword hyperparameters, "
                        'e.g. {"l2": 1.0}; this looks like a JSON schema. Omit it to run '
                        "the method with its defaults")
    inside = [k for k in CALL_KEYS if k in params]
    if inside:
        fixed = {**{k: v for k, v in a.items() if k != "params"},
                 **{k: params[k] for k in inside if k not in a}}
        rest = {k: v for k, v in params.items() if k not in inside}
        if rest:
            fixed["params"] = rest
        raise ToolError(f"{', '.join(repr(k) for k in inside)} belong(s) to the call, not "
                        "to the method's 'params'; call: "
                        + json.dumps({"name": tool, "arguments": fixed}))
    return params


def python_or_refuse(path: str, content: str) -> None:
    """Refuse a ``.py`` file that is not Python (compiled, never run): nothing is written,
    and the error says where, so a model fixes the file instead of running it."""
    try:
        compile(content, path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        line = (exc.text or "").strip()[:120]
        raise ToolError(f"{path} is not valid Python, so nothing was written: {exc.msg} "
                        f"(line {exc.lineno}: {line!r}); a method module is Python like "
                        "template.py") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ToolError(f"{path} is not valid Python, so nothing was written: "
                        f"{type(exc).__name__}") from None


@dataclass
class Session:
    """What the tools of one researcher share: the researcher, and what it submitted so
    far ((code, params, seeds) -> submission ids), so that the same thing is not paid twice."""

    r: Researcher
    submitted: dict[str, list[int]] = field(default_factory=dict)


WsPath = Annotated[str, "path relative to your workspace"]
Params = Annotated[dict[str, float | str | bool | None],
                   "values of the method's keyword hyperparameters, e.g. {\"l2\": 1.0}; omit "
                   "for the defaults"]
Seeds = Annotated[list[int], f"distinct seeds 0..{MAX_SEED - 1}: each seeds one fit of the "
                             "method (ctx.rng); there is one weak teacher"]
SubmitSeeds = Annotated[Seeds, MinLen(MIN_SEEDS)]
FindingType = Literal["result", "negative", "insight", "hypothesis", "error"]
_WS = (Resource.WORKSPACE,)


def _given(**args: Any) -> dict[str, Any]:
    """The arguments a call gave (an omitted optional one arrives as None: JSON null is
    refused by every schema here)."""
    return {k: v for k, v in args.items() if v is not None}


@tool(reads=_WS, args={"path": Arg.PATH})
def list_files(s: Session, *, path: WsPath | None = None) -> Any:
    """List the files of your workspace (or of a folder in it)."""
    ws = s.r.workspace
    base = confine(ws, path or ".", must_exist=True)
    if base.is_file():
        return [str(base.relative_to(ws.resolve()))]
    files = []
    for p in sorted(base.rglob("*")):
        rel = p.relative_to(ws.resolve())
        if any(part.startswith(".aar-run-") for part in rel.parts):
            continue
        if p.is_file() and not p.is_symlink():
            files.append(f"{rel} ({p.stat().st_size} bytes)")
        if len(files) >= MAX_FILES:
            files.append("... (more files not shown)")
            break
    return "\n".join(files) or "(empty)"


@tool(reads=_WS, args={"path": Arg.PATH})
def read_file(s: Session, *, path: WsPath) -> Any:
    """Read a text file of your workspace."""
    p = confine(s.r.workspace, path, must_exist=True)
    if not p.is_file():
        raise ToolError(f"{path!r} is not a file")
    text = p.read_text(errors="replace")
    return text if len(text) <= MAX_READ_CHARS else text[:MAX_READ_CHARS] + "\n[... cut]"


@tool(writes=_WS, args={"path": Arg.WRITTEN_PATH, "content": Arg.CODE})
def write_file(s: Session, *, path: WsPath, content: str) -> Any:
    """Write (create or replace) a text file in your workspace, e.g. a method module under
    ideas/."""
    p = confine(s.r.workspace, path)
    if p.is_symlink():
        raise ToolError(f"{path!r} is a link; write a regular file")
    if p.suffix == ".py":
        python_or_refuse(path, content)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(content)
    s.r.event("file_write", path=path, bytes=len(content.encode()))
    return f"wrote {path} ({len(content)} characters)"


@tool(reads=(Resource.WORKSPACE, Resource.EXPORT), writes=_WS, runs=Resource.SANDBOX,
      args={"code": Arg.CODE, "path": Arg.PATH})
def run_python(s: Session, *, code: str | None = None, path: WsPath | None = None,
               timeout_s: float | None = None) -> Any:
    """Run Python in the sandbox (cwd = your workspace, read-write; the label-free export at
    $AAR_EXPORT and the feature cache read-only; no network). Give 'code' or the 'path' of
    a .py file."""
    from aar.sandbox.runner import WORK_MOUNT, mount_path, resolve_mode, run_sandboxed
    from aar.sandbox.worker import EXPORT_MOUNT, FEATURES_MOUNT
    from aar.settings import get_settings

    r, ws = s.r, s.r.workspace
    if bool(path) == bool(code):
        raise ToolError("give exactly one of 'path' (a .py file in your workspace) or "
                        "'code'")
    mode = resolve_mode()
    inside = mount_path(mode, ws.resolve(), WORK_MOUNT)
    tmp = None
    if code:
        tmp = ws / ".scratch" / f"run_{uuid.uuid4().hex[:8]}.py"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(code)
        target = tmp.resolve()
    else:
        target = confine(ws, path or "", must_exist=True)
    rel = target.relative_to(ws.resolve()).as_posix()
    features = get_settings().features_dir
    export = r.export.root
    env = {"AAR_EXPORT": mount_path(mode, export, EXPORT_MOUNT),
           "AAR_FEATURES_DIR": mount_path(mode, features, FEATURES_MOUNT),
           "AAR_HOME": f"{inside}/.aar", "AAR_WORKSPACE_KEY": r.workspace_key,
           "AAR_WEAK": r.weak, "AAR_STRONG": r.strong}
    timeout = float(min(max(timeout_s or 300, 1), 1800))
    t0 = time.monotonic()
    try:
        res = run_sandboxed([sys.executable, f"{inside}/{rel}"], workdir=ws,
                            readonly={export: EXPORT_MOUNT, features: FEATURES_MOUNT},
                            env=env, cpu_seconds=int(timeout * 2) + 10, memory_mb=8192,
                            timeout_s=timeout, mode=mode)
    finally:
        r.compute_s += time.monotonic() - t0
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    r.event("sandbox_run", file=rel if tmp is None else "<code>", seeds=[], ok=res.ok,
            diagnostics=None, seconds=round(res.seconds, 2), mode=res.mode)
    return {"returncode": res.returncode, "timed_out": res.timed_out,
            "killed": res.killed_reason, "sandbox": res.mode,
            "stdout": res.stdout[-8000:], "stderr": res.stderr[-4000:]}


@tool(reads=(Resource.WORKSPACE, Resource.EXPORT), runs=Resource.SANDBOX,
      args={"path": Arg.PATH})
def run_method(s: Session, *, path: WsPath, seeds: Seeds | None = None,
               params: Params | None = None) -> Any:
    """Run a method file (one @method) over a few seeds in the sandbox: the method fits on
    the unlabeled split and returns a predictor, the harness applies it to the test split.
    Get label-free diagnostics of those test predictions: agreement with the weak labels,
    mean confidence, predicted class balance, agreement between seeds, and whether the
    method is declared transductive. Spends no evaluation."""
    checked = check_seeds(list(seeds or [0, 1]))
    file = confine(s.r.workspace, path, must_exist=True)
    method = method_params(_given(path=path, seeds=seeds, params=params), "run_method")
    preds, diag = s.r.run_method(path, checked, method)
    call = {"name": "submit", "arguments": {
        "path": path, **({"params": method} if method else {}),
        "seeds": list(range(MIN_SEEDS))}}
    return {"seeds": checked, "n_test": int(preds.shape[1]),
            "transductive": declared_transductive(file), "diagnostics": diag,
            "note": "label-free: agreement with the weak teacher is not accuracy",
            "next": f"to have it scored: {json.dumps(call)}; or change the method "
                    "(its params, or its code with write_file) and run it again"}


@tool(description=f"Run a method file over >= {MIN_SEEDS} seeds in the sandbox (its "
      "predictor applied to the test split by the harness) and submit each seed's test "
      "predictions to the evaluation server (spends one evaluation per seed). Returns "
      "submission ids (link them in a 'result' finding) and the server's rationed "
      "answer. A method declared transductive is marked and ranked apart.",
      reads=(Resource.WORKSPACE, Resource.EXPORT), runs=Resource.SANDBOX,
      spends=Resource.EVALUATIONS, args={"path": Arg.PATH})
def submit(s: Session, *, path: WsPath, params: Params | None = None,
           seeds: SubmitSeeds | None = None, label: str | None = None) -> Any:
    method = method_params(_given(path=path, params=params, seeds=seeds, label=label),
                           "submit")
    code = confine(s.r.workspace, path, must_exist=True).read_bytes()
    chosen = sorted(seeds or range(MIN_SEEDS))
    key = json.dumps([hashlib.sha256(code).hexdigest(), method, chosen], sort_keys=True,
                     default=str)
    if key in s.submitted:
        raise ToolError(f"already submitted as {s.submitted[key]}: the same code, params "
                        "and seeds; nothing was spent. Change the params or the code")
    out = s.r.submit(path, method, seeds, label)
    s.submitted[key] = out.submission_ids
    return {**out.as_dict(), "next": "share_finding type result with these submission_ids; "
                           "submitting the same file and params again spends "
                           "evaluations on the same method: change its params or code"}


@tool(reads=_WS, writes=(Resource.FORUM,),
      args={"title": Arg.PROSE, "body": Arg.PROSE, "path": Arg.PATH})
def share_finding(s: Session, *, type: FindingType, title: str, body: str | None = None,
                  path: WsPath | None = None, params: Params | None = None,
                  seeds: Seeds | None = None, submission_ids: list[int] | None = None,
                  builds_on: list[int] | None = None) -> Any:
    """Post a finding to the forum: type result (link >= 5 submission ids of distinct
    seeds: it is ranked on the leaderboard), negative, insight, hypothesis or error. With
    'path' the method file goes with it as the code snapshot; 'builds_on' lists ids of
    findings you built on."""
    given = _given(type=type, title=title, body=body, path=path, params=params, seeds=seeds,
                   submission_ids=submission_ids, builds_on=builds_on)
    f = s.r.share(type, title, body or "", file=path,
                  params=method_params(given, "share_finding"), seeds=seeds,
                  submission_ids=submission_ids, builds_on=builds_on)
    return {"id": f.finding.id, "type": f.finding.type, "archive": f.finding.archive,
            "builds_on": f.finding.builds_on, "leaderboard_pgr": f.public_pgr,
            "next": "run_method with other params, or write a new method file under "
                    "ideas/ (write_file) that changes one thing, then run_method it"}


@tool(reads=(Resource.FORUM,), args={"query": Arg.PROSE})
def read_forum(s: Session, *, query: str | None = None, type: str | None = None,
               author: str | None = None, limit: int | None = None) -> Any:
    """List or search the forum's findings (newest activity first)."""
    # an empty filter is no filter (small models send every argument, empty)
    res = s.r.client.findings(query or None, type=type or None, author=author or None,
                              limit=int(limit or 20))
    return {"total": res.total, "items": [
        {"id": f.id, "type": f.type, "title": f.title, "author": f.author,
         "claimed_metrics": f.claimed_metrics, "builds_on": f.builds_on, "votes": f.votes,
         "created": f.created} for f in res.items]}


@tool(reads=(Resource.FORUM,))
def read_finding(s: Session, *, id: int, with_code: bool | None = None) -> Any:
    """Read one finding in full; with_code=true also its method.py."""
    f = s.r.client.finding(int(id))
    out = f.as_dict()  # the finding as the server sent it
    if with_code and f.archive:
        import io
        import tarfile

        data = s.r.client.download_archive(f.archive)
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            member = next((m for m in tf.getmembers() if m.name == "method.py"), None)
            fh = tf.extractfile(member) if member is not None else None
            out["code"] = fh.read().decode(errors="replace")[:MAX_READ_CHARS] if fh else None
    return out


@tool(reads=(Resource.FORUM,), writes=(Resource.ACCOUNT,))
def catch_up(s: Session) -> Any:
    """What is new or active on the forum since your last catch_up (others' findings
    only)."""
    r = s.r
    since = r.forum_seen
    res = r.client.findings(since=since, limit=50)
    r.forum_read(res.now)
    items = [{"id": f.id, "type": f.type, "title": f.title, "author": f.author,
              "claimed_metrics": f.claimed_metrics, "builds_on": f.builds_on}
             for f in res.items if f.author != r.name]
    return {"since": since, "new_or_active": items, "total": len(items)}


@tool(reads=(Resource.LEADERBOARD,))
def leaderboard(s: Session) -> Any:
    """The server-scored leaderboard of this dataset (public split, coarsened; values of
    another run's results are hidden): inductive results ranked in 'entries', transductive
    ones apart, your results held for review (flagged), and the reference rows. PGR is null
    when the weak-to-ceiling gap is too small to report it."""
    b = s.r.client.leaderboard(s.r.dataset)
    keys = ("rank", "finding", "title", "author", "pgr", "pgr_ci", "pgr_se", "accuracy",
            "n_seeds", "status", "hidden")

    def rows(entries: list[BoardEntryOut]) -> list[dict[str, Any]]:
        out = []
        for e in entries[:20]:
            sent = e.as_dict()  # the entry as the server sent it, less what is empty
            out.append({k: sent[k] for k in keys if sent.get(k) is not None})
        return out

    return {"baselines": b.baselines.as_dict(), "status": b.status,
            "entries": rows(b.entries), "transductive": rows(b.transductive),
            "held": [h.as_dict() for h in b.held],
            "reference": [{"name": e.name, "pgr": e.pgr, "accuracy": e.accuracy}
                          for e in b.reference]}


@tool(reads=_WS, writes=_WS, args={"append": Arg.PROSE})
def notes(s: Session, *, append: str | None = None) -> Any:
    """Read your notes (notes.md); with 'append' add a line first."""
    p = s.r.workspace / "notes.md"
    if append:
        with open(p, "a", encoding="utf-8") as fh:
            fh.write(append.rstrip() + "\n")
        s.r.event("file_write", path="notes.md", bytes=len(append.encode()))
    return p.read_text() if p.exists() else "(no notes yet)"


@tool(reads=(Resource.ACCOUNT,))
def my_status(s: Session) -> Any:
    """Your direction, dataset, encoders, evaluations used and left, best public PGR."""
    r = s.r
    return {"name": r.name, "direction": r.direction, "dataset": r.dataset,
            "weak": r.weak, "strong": r.strong, "evals_used": r.evals_used,
            "evals_left": r.evals_left(), "best_public_pgr": r.best_pgr,
            "findings": r.findings_posted}


# The research tools, in the order the model sees them.
RESEARCH_TOOLS: tuple[ToolDecl, ...] = (
    list_files, read_file, write_file, run_python, run_method, submit, share_finding,
    read_forum, read_finding, catch_up, leaderboard, notes, my_status)


def build_tools(r: Researcher) -> list[Tool]:
    """The research tools of researcher ``r`` (each call logged as a ``tool_call`` event)."""
    s = Session(r)
    return [d.tool(_wrap(r, d.name, partial(d.call, (s,)))) for d in RESEARCH_TOOLS]


def workspace_readme(r: Researcher) -> str:
    """The README written into a fresh workspace."""
    return f"""# Workspace of researcher {r.name}

Direction: {r.direction}
Dataset: {r.dataset} (weak encoder {r.weak} -> strong encoder {r.strong})

{METHOD_CONTRACT}
- run_method runs one over a few seeds in the sandbox with label-free diagnostics;
  submit sends >= {MIN_SEEDS} seeds to the evaluation server; share_finding posts it
  (type result, with the submission ids) so that it is ranked.
- Building blocks: aar.methods.blocks (priors, confidence, kNN propagation, cross-fitting,
  PCA fitted on some rows and applied to any (fit_pca), noisy-channel EM, product of
  experts, self-training).
- No labels are in reach: the only score comes from the server.
"""


def method_template() -> str:
    from importlib.resources import files

    return files("aar.methods").joinpath("template.py.txt").read_text()


def init_workspace(r: Researcher) -> Path:
    """Create the workspace's starting files (idempotent: existing files are kept)."""
    ws = r.workspace
    (ws / "ideas").mkdir(parents=True, exist_ok=True)
    readme = ws / "README.md"
    if not readme.exists():
        readme.write_text(workspace_readme(r))
    tpl = ws / "template.py"
    if not tpl.exists():
        tpl.write_text(method_template().replace("{name}", "my_method")
                       .replace("{path}", "ideas/my_method.py"))
    notes = ws / "notes.md"
    if not notes.exists():
        notes.write_text(f"# Notes of {r.name}\n\nDirection: {r.direction}\n\n")
    return ws
