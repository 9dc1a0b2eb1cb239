"""The concrete research tools of one researcher (LLM loop and ``aar mcp`` alike).

``build_tools(researcher)`` returns :class:`~aar.agents.tools.Tool` objects over a
:class:`~aar.research.context.Researcher`: workspace files (confined to the workspace),
Python and method runs in the sandbox (workspace read-write, the label-free export and
feature cache read-only), submissions to the evaluation server, the forum, the
leaderboard and notes. Every call is logged as a ``tool_call`` event in the run directory.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aar.agents.tools import Tool, ToolError
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
          ) -> Callable[[dict[str, Any]], str]:
    def handler(args: dict[str, Any]) -> str:
        ok, text = False, ""
        try:
            out = fn(args)
            text = out if isinstance(out, str) else json.dumps(out, default=str, indent=1)
            ok = True
            return text
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


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or [],
            "additionalProperties": False}


def build_tools(r: Researcher) -> list[Tool]:
    """The research tools of researcher ``r``."""
    ws = r.workspace

    def list_files(a: dict[str, Any]) -> Any:
        base = confine(ws, a.get("path") or ".", must_exist=True)
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

    def read_file(a: dict[str, Any]) -> Any:
        p = confine(ws, a["path"], must_exist=True)
        if not p.is_file():
            raise ToolError(f"{a['path']!r} is not a file")
        text = p.read_text(errors="replace")
        return text if len(text) <= MAX_READ_CHARS else text[:MAX_READ_CHARS] + "\n[... cut]"

    def write_file(a: dict[str, Any]) -> Any:
        p = confine(ws, a["path"])
        if p.is_symlink():
            raise ToolError(f"{a['path']!r} is a link; write a regular file")
        if p.suffix == ".py":
            python_or_refuse(a["path"], a["content"])
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(a["content"])
        r.event("file_write", path=a["path"], bytes=len(a["content"].encode()))
        return f"wrote {a['path']} ({len(a['content'])} characters)"

    def run_python(a: dict[str, Any]) -> Any:
        from aar.sandbox.runner import WORK_MOUNT, mount_path, resolve_mode, run_sandboxed
        from aar.sandbox.worker import EXPORT_MOUNT, FEATURES_MOUNT
        from aar.settings import get_settings

        if bool(a.get("path")) == bool(a.get("code")):
            raise ToolError("give exactly one of 'path' (a .py file in your workspace) or "
                            "'code'")
        mode = resolve_mode()
        inside = mount_path(mode, ws.resolve(), WORK_MOUNT)
        tmp = None
        if a.get("code"):
            tmp = ws / ".scratch" / f"run_{uuid.uuid4().hex[:8]}.py"
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(a["code"])
            target = tmp.resolve()
        else:
            target = confine(ws, a["path"], must_exist=True)
        rel = target.relative_to(ws.resolve()).as_posix()
        features = get_settings().features_dir
        export = r.export.root
        env = {"AAR_EXPORT": mount_path(mode, export, EXPORT_MOUNT),
               "AAR_FEATURES_DIR": mount_path(mode, features, FEATURES_MOUNT),
               "AAR_HOME": f"{inside}/.aar", "AAR_WORKSPACE_KEY": r.workspace_key,
               "AAR_WEAK": r.weak, "AAR_STRONG": r.strong}
        timeout = float(min(max(a.get("timeout_s") or 300, 1), 1800))
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

    def run_method(a: dict[str, Any]) -> Any:
        seeds = check_seeds(list(a.get("seeds") or [0, 1]))
        path = confine(ws, a["path"], must_exist=True)
        params = method_params(a, "run_method")
        preds, diag = r.run_method(a["path"], seeds, params)
        call = {"name": "submit", "arguments": {
            "path": a["path"], **({"params": params} if params else {}),
            "seeds": list(range(MIN_SEEDS))}}
        return {"seeds": seeds, "n_test": int(preds.shape[1]),
                "transductive": declared_transductive(path), "diagnostics": diag,
                "note": "label-free: agreement with the weak teacher is not accuracy",
                "next": f"to have it scored: {json.dumps(call)}; or change the method "
                        "(its params, or its code with write_file) and run it again"}

    submitted: dict[str, list[int]] = {}  # (code, params, seeds) -> submission ids

    def submit(a: dict[str, Any]) -> Any:
        params = method_params(a, "submit")
        code = confine(ws, a["path"], must_exist=True).read_bytes()
        seeds = sorted(a.get("seeds") or range(MIN_SEEDS))
        key = json.dumps([hashlib.sha256(code).hexdigest(), params, seeds], sort_keys=True,
                         default=str)
        if key in submitted:
            raise ToolError(f"already submitted as {submitted[key]}: the same code, params "
                            "and seeds; nothing was spent. Change the params or the code")
        out = r.submit(a["path"], params, a.get("seeds"), a.get("label"))
        submitted[key] = out["submission_ids"]
        return {**out, "next": "share_finding type result with these submission_ids; "
                               "submitting the same file and params again spends "
                               "evaluations on the same method: change its params or code"}

    def share_finding(a: dict[str, Any]) -> Any:
        f = r.share(a["type"], a["title"], a.get("body") or "", file=a.get("path"),
                    params=method_params(a, "share_finding"), seeds=a.get("seeds"),
                    submission_ids=a.get("submission_ids"), builds_on=a.get("builds_on"))
        return {"id": f["id"], "type": f["type"], "archive": f.get("archive"),
                "builds_on": f.get("builds_on"), "leaderboard_pgr": f.get("public_pgr"),
                "next": "run_method with other params, or write a new method file under "
                        "ideas/ (write_file) that changes one thing, then run_method it"}

    def read_forum(a: dict[str, Any]) -> Any:
        # an empty filter is no filter (small models send every argument, empty)
        res = r.client.findings(a.get("query") or None, type=a.get("type") or None,
                                author=a.get("author") or None,
                                limit=int(a.get("limit") or 20))
        return {"total": res["total"], "items": [
            {k: f.get(k) for k in ("id", "type", "title", "author", "claimed_metrics",
                                   "builds_on", "votes", "created")} for f in res["items"]]}

    def read_finding(a: dict[str, Any]) -> Any:
        f = r.client.finding(int(a["id"]))
        if a.get("with_code") and f.get("archive"):
            import io
            import tarfile

            data = r.client.download_archive(f["archive"])
            with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                member = next((m for m in tf.getmembers() if m.name == "method.py"), None)
                fh = tf.extractfile(member) if member is not None else None
                f["code"] = fh.read().decode(errors="replace")[:MAX_READ_CHARS] if fh else None
        return f

    def catch_up(a: dict[str, Any]) -> Any:
        state = r.load_state()
        since = state.get("forum_seen")
        res = r.client.findings(since=since, limit=50)
        r.save_state(forum_seen=res.get("now"))
        items = [{k: f.get(k) for k in ("id", "type", "title", "author", "claimed_metrics",
                                        "builds_on")}
                 for f in res["items"] if f.get("author") != r.name]
        return {"since": since, "new_or_active": items, "total": len(items)}

    def leaderboard(a: dict[str, Any]) -> Any:
        b = r.client.leaderboard(r.dataset)
        keys = ("rank", "finding", "title", "author", "pgr", "pgr_ci", "pgr_se", "accuracy",
                "n_seeds", "status", "hidden")

        def rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{k: e[k] for k in keys if e.get(k) is not None} for e in entries[:20]]

        return {"baselines": b.get("baselines"), "status": b.get("status"),
                "entries": rows(b.get("entries") or []),
                "transductive": rows(b.get("transductive") or []),
                "held": b.get("held") or [],
                "reference": [{k: e.get(k) for k in ("name", "pgr", "accuracy")}
                              for e in b.get("reference", [])]}

    def notes(a: dict[str, Any]) -> Any:
        p = ws / "notes.md"
        if a.get("append"):
            with open(p, "a", encoding="utf-8") as fh:
                fh.write(a["append"].rstrip() + "\n")
            r.event("file_write", path="notes.md", bytes=len(a["append"].encode()))
        return p.read_text() if p.exists() else "(no notes yet)"

    def status(a: dict[str, Any]) -> Any:
        return {"name": r.name, "direction": r.direction, "dataset": r.dataset,
                "weak": r.weak, "strong": r.strong, "evals_used": r.evals_used,
                "evals_left": r.evals_left(), "best_public_pgr": r.best_pgr,
                "findings": r.findings_posted}

    path_prop = {"type": "string", "description": "path relative to your workspace"}
    params_prop = {"type": "object", "description": "values of the method's keyword "
                   'hyperparameters, e.g. {"l2": 1.0}; omit for the defaults',
                   "additionalProperties": {"type": ["number", "string", "boolean", "null"]}}
    seeds_prop = {"type": "array", "items": {"type": "integer"},
                  "description": f"distinct seeds 0..{MAX_SEED - 1}: each seeds one fit of the "
                                 "method (ctx.rng); there is one weak teacher"}
    submit_seeds_prop = {**seeds_prop, "minItems": MIN_SEEDS}
    specs: list[tuple[str, str, dict[str, Any], Callable[[dict[str, Any]], Any], bool]] = [
        ("list_files", "List the files of your workspace (or of a folder in it).",
         _obj({"path": path_prop}), list_files, False),
        ("read_file", "Read a text file of your workspace.", _obj({"path": path_prop},
                                                                   ["path"]), read_file, False),
        ("write_file", "Write (create or replace) a text file in your workspace, e.g. a "
         "method module under ideas/.",
         _obj({"path": path_prop, "content": {"type": "string"}}, ["path", "content"]),
         write_file, False),
        ("run_python", "Run Python in the sandbox (cwd = your workspace, read-write; the "
         "label-free export at $AAR_EXPORT and the feature cache read-only; no network). "
         "Give 'code' or the 'path' of a .py file.",
         _obj({"code": {"type": "string"}, "path": path_prop,
               "timeout_s": {"type": "number"}}), run_python, False),
        ("run_method", "Run a method file (one @method) over a few seeds in the sandbox: the "
         "method fits on the unlabeled split and returns a predictor, the harness applies "
         "it to the test split. Get label-free diagnostics of those test predictions: "
         "agreement with the weak labels, mean confidence, predicted class balance, "
         "agreement between seeds, and whether the method is declared transductive. "
         "Spends no evaluation.",
         _obj({"path": path_prop, "seeds": seeds_prop, "params": params_prop}, ["path"]),
         run_method, False),
        ("submit", f"Run a method file over >= {MIN_SEEDS} seeds in the sandbox (its "
         "predictor applied to the test split by the harness) and submit each seed's test "
         "predictions to the evaluation server (spends one evaluation per seed). Returns "
         "submission ids (link them in a 'result' finding) and the server's rationed "
         "answer. A method declared transductive is marked and ranked apart.",
         _obj({"path": path_prop, "params": params_prop, "seeds": submit_seeds_prop,
               "label": {"type": "string"}}, ["path"]), submit, True),
        ("share_finding", "Post a finding to the forum: type result (link >= 5 submission "
         "ids of distinct seeds: it is ranked on the leaderboard), negative, insight, "
         "hypothesis or error. With 'path' the method file goes with it as the code "
         "snapshot; 'builds_on' lists ids of findings you built on.",
         _obj({"type": {"type": "string", "enum": ["result", "negative", "insight",
                                                   "hypothesis", "error"]},
               "title": {"type": "string"}, "body": {"type": "string"}, "path": path_prop,
               "params": params_prop, "seeds": seeds_prop,
               "submission_ids": {"type": "array", "items": {"type": "integer"}},
               "builds_on": {"type": "array", "items": {"type": "integer"}}},
              ["type", "title"]), share_finding, False),
        ("read_forum", "List or search the forum's findings (newest activity first).",
         _obj({"query": {"type": "string"}, "type": {"type": "string"},
               "author": {"type": "string"}, "limit": {"type": "integer"}}),
         read_forum, False),
        ("read_finding", "Read one finding in full; with_code=true also its method.py.",
         _obj({"id": {"type": "integer"}, "with_code": {"type": "boolean"}}, ["id"]),
         read_finding, False),
        ("catch_up", "What is new or active on the forum since your last catch_up "
         "(others' findings only).", _obj({}), catch_up, False),
        ("leaderboard", "The server-scored leaderboard of this dataset (public split, "
         "coarsened; values of another run's results are hidden): inductive results ranked "
         "in 'entries', transductive ones apart, your results held for review (flagged), and "
         "the reference rows. PGR is null when the weak-to-ceiling gap is too small to "
         "report it.", _obj({}), leaderboard, False),
        ("notes", "Read your notes (notes.md); with 'append' add a line first.",
         _obj({"append": {"type": "string"}}), notes, False),
        ("my_status", "Your direction, dataset, encoders, evaluations used and left, best "
         "public PGR.", _obj({}), status, False),
    ]
    return [Tool(name, desc, schema, _wrap(r, name, fn), counts_as_eval=evals)
            for name, desc, schema, fn, evals in specs]


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
