"""``aar research``: start (or join) the evaluation server, give every researcher a token,
a workspace and a direction, run them in parallel processes, watch and enforce their
budgets from outside, and end with a summary.

The orchestrator is the trusted side: it holds the admin token and every agent token in
``secrets.json`` (mode 600, outside every workspace), starts each researcher as a
process (``python -m aar.research.agent_main RUN_DIR NAME``), reads their events and
statuses from the run directory, reports each researcher's status to the server with
that researcher's own token, calls the ``observers`` for every event, stops researchers
at the wall-time or dollar limits (SIGTERM, then SIGKILL) and writes a ``stop`` event
with a final note for any researcher that could not. Evaluations are capped by each
token's server-side budget. ``resume`` continues a run from its directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets as pysecrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aar.agents.llm import mirror_turn
from aar.client import Client
from aar.contracts.api import BoardEntryOut, IntervalOut
from aar.contracts.events import (
    Event,
    Finding,
    ResearcherState,
    Start,
    Stop,
    StopReason,
    parse_event,
)
from aar.contracts.transcript import parse_entry
from aar.data.registry import default_encoders
from aar.errors import AarError
from aar.execution import ExecutorConfig
from aar.research.directions import Direction, load_directions
from aar.research.layout import AgentStatus, RunInfo, RunPaths, RunSecrets, now_iso
from aar.sandbox import isolation_report
from aar.util import atomic_write_json

Observer = Callable[[RunPaths, Event], None]
BACKENDS = ("builtin", "anthropic", "openai", "local")
GRACE_S = 45.0  # after SIGTERM, before SIGKILL
DEFAULT_MAX_EVALS = 150  # per researcher: 30 five-seed submissions


@dataclass
class ResearchConfig:
    dataset: str = "sentiment"
    agents: int = 3
    backend: str = "builtin"
    minutes: float = 10.0
    model: str | None = None
    base_url: str | None = None
    budget_usd: float | None = None  # per researcher
    max_tokens: int | None = None  # per researcher
    max_evals: int | None = DEFAULT_MAX_EVALS  # server evaluations per researcher
    directions: str | None = None
    server: str | None = None
    canary: bool = False
    seed: int = 0
    weak: str | None = None
    strong: str | None = None
    live_view: bool = True
    cpu_slots: int = field(default_factory=lambda: os.cpu_count() or 1)
    executor: ExecutorConfig | None = None  # None: local (on --resume: the run's own)
    context: int | None = None  # the local model's window in tokens (None: its default)

    def dataset_ref(self) -> str:
        if self.canary and not self.dataset.startswith("canary:"):
            return f"canary:{self.dataset}"
        return self.dataset


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + pysecrets.token_hex(2)


def _write_secrets(paths: RunPaths, data: RunSecrets) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.chmod(paths.secrets, 0o600)


def read_run(paths: RunPaths) -> RunInfo:
    if not paths.info.exists():
        raise AarError(f"no run {paths.run_id} in {paths.root.parent}; list them with "
                       f"ls {paths.root.parent}")
    return paths.read_info()


def researchers_executor(cfg: ExecutorConfig | None) -> ExecutorConfig:
    """The executor the researchers use. Each researcher is its own Ray driver, so with no
    ``--address`` they join the cluster ``ray start`` made on this machine (``auto``)
    instead of each starting a private one."""
    cfg = cfg or ExecutorConfig()
    if cfg.kind == "ray" and not cfg.address:
        cfg = replace(cfg, address=os.environ.get("RAY_ADDRESS") or "auto")
    return cfg


def check_executor(cfg: ExecutorConfig) -> None:
    """Fail before any researcher starts when the Ray cluster cannot be reached."""
    if cfg.kind != "ray":
        return
    from aar.execution.ray_cluster import cluster_nodes

    cluster_nodes(cfg.address)


def prepare_dataset(ref: str, weak: str, strong: str) -> str:
    """Prepare the dataset, its fixed baselines and the default student penalty that
    methods read as ``ctx.default_l2`` (trusted side); returns its key."""
    from aar.data.prepare import prepare
    from aar.w2s import baselines

    prep = prepare(ref)
    baselines.ensure(prep, weak, strong)
    return prep.key


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes] | None = None
    term_at: float | None = None
    offset: int = 0  # bytes of events.jsonl already read
    t_offset: int = 0  # bytes of transcript.jsonl mirrored to the server
    t_lines: int = 0  # its lines so far: the next event's seq
    pushed: dict[str, Any] | None = None


def _new_lines(path: Path, offset: int) -> list[bytes]:
    """The complete lines (with their newlines) of a growing file after byte ``offset``."""
    if not path.exists():
        return []
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    return data[:data.rfind(b"\n") + 1].splitlines(keepends=True)


class Orchestrator:
    def __init__(self, paths: RunPaths, info: RunInfo, secrets: RunSecrets, *,
                 observers: Sequence[Observer] = (), server_url: str,
                 live_view: bool = True) -> None:
        self.paths = paths
        self.info = info
        self.secrets = secrets
        self.observers = list(observers)
        self.server_url = server_url
        self.live_view = live_view
        self.procs = {a["name"]: _Proc(a["name"]) for a in info["agents"]}
        self.clients = {n: Client(server_url, t) for n, t in secrets["agents"].items()}

    # -- events, statuses, budgets -----------------------------------------------------
    def _pump_events(self, p: _Proc) -> None:
        lines = _new_lines(self.paths.events(p.name), p.offset)
        p.offset += sum(len(line) for line in lines)
        for line in lines:
            try:
                ev = parse_event(line)
            except ValueError:
                continue
            for obs in self.observers:
                try:
                    obs(self.paths, ev)
                except Exception as exc:  # an observer's bug must not stop the run
                    print(f"warning: observer {obs!r} failed: {exc}", file=sys.stderr)

    def _push_transcript(self, p: _Proc) -> None:
        """Mirror the LLM transcript's new events to the server (for the dashboard); what
        fails to reach it is sent again on the next tick."""
        lines = _new_lines(self.paths.transcript(p.name), p.t_offset)
        for start in range(0, len(lines), 200):
            chunk = lines[start:start + 200]
            turns = []
            for i, line in enumerate(chunk):
                with contextlib.suppress(ValueError):
                    turn = mirror_turn(parse_entry(line), p.t_lines + i)
                    if turn is not None:
                        turns.append(turn)
            try:
                if turns:
                    self.clients[p.name].post_transcript(self.paths.run_id, turns)
            except AarError:
                return  # the next tick tries again
            p.t_offset += sum(len(line) for line in chunk)
            p.t_lines += len(chunk)

    def _push_status(self, p: _Proc, st: AgentStatus) -> None:
        body: dict[str, Any] = {"run_id": self.paths.run_id, "direction": st.direction[:200],
                "state": ResearcherState.known(st.state) or ResearcherState.RUNNING,
                "best_pgr": st.best_pgr, "evals": st.evals,
                "findings": st.findings, "usd": st.usd, "tokens": st.tokens,
                "compute_s": st.compute_s, "reason": st.reason[:2000]}
        if body == p.pushed:
            return
        try:
            self.clients[p.name].put_status(**body)
            p.pushed = body
        except AarError:
            pass  # the next tick tries again

    def _over_budget(self, st: AgentStatus) -> str | None:
        usd = self.info.get("budget_usd")
        if usd is not None and st.usd > usd:
            return "usd"
        tok = self.info.get("max_tokens")
        if tok is not None and st.tokens > tok:
            return "tokens"
        return None

    # -- processes ---------------------------------------------------------------------
    def _start(self, p: _Proc, deadline: float) -> None:
        log = open(self.paths.agent_dir(p.name) / "process.log", "ab")  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if k not in ("AAR_TOKEN",)}
        p.popen = subprocess.Popen(
            [sys.executable, "-m", "aar.research.agent_main", str(self.paths.root), p.name,
             "--deadline", f"{deadline:.3f}"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        (self.paths.agent_dir(p.name) / "pid").write_text(str(p.popen.pid))

    def _terminate(self, p: _Proc, why: str) -> None:
        if p.popen is None or p.popen.poll() is not None or p.term_at is not None:
            return
        p.term_at = time.monotonic()
        self.paths.append_event(p.name, "budget_stop", reason=why)
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.popen.pid, signal.SIGTERM)

    def _kill_late(self, p: _Proc) -> None:
        if (p.popen is not None and p.popen.poll() is None and p.term_at is not None
                and time.monotonic() - p.term_at > GRACE_S):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.popen.pid, signal.SIGKILL)
            p.popen.wait()

    def _ensure_stop_event(self, name: str, why: str) -> None:
        """A researcher killed before it could write its ``stop`` gets one from here."""
        events = self.paths.read_events(name)
        last_start = max((i for i, e in enumerate(events) if isinstance(e, Start)),
                         default=-1)
        if any(isinstance(e, Stop) for e in events[last_start + 1:]):
            return
        st = self.paths.read_status(name)
        best = st.best_pgr if st else None
        note = (f"{name} was stopped from outside ({why}) before it wrote a final note; "
                f"best public PGR so far {best}, {st.evals if st else 0} evaluations.")
        self.paths.append_event(name, "stop", reason=why, final_note=note)
        if st is not None:
            st.state, st.reason = ResearcherState.STOPPED, why
            self.paths.write_status(st)

    # -- the view ----------------------------------------------------------------------
    def table(self) -> Any:
        from rich.table import Table

        t = Table(title=f"aar research {self.paths.run_id} — {self.info['dataset']} "
                        f"({self.info['backend']})")
        for col in ("researcher", "direction", "state", "best PGR", "evals", "findings",
                    "$", "tokens"):
            t.add_column(col)
        for name in self.procs:
            st = self.paths.read_status(name)
            if st is None:
                t.add_row(name, "", "starting", "", "", "", "", "")
                continue
            t.add_row(name, st.direction[:32], st.state,
                      "" if st.best_pgr is None else f"{st.best_pgr:.3f}", str(st.evals),
                      str(st.findings), f"{st.usd:.2f}", str(st.tokens))
        return t

    # -- the loop ----------------------------------------------------------------------
    def run(self, seconds: float, restart: Sequence[str]) -> None:
        t_start = time.monotonic()
        deadline = time.time() + seconds
        for name in restart:
            self._start(self.procs[name], deadline)
        from rich.console import Console
        from rich.live import Live

        console = Console()
        live = Live(self.table(), console=console, refresh_per_second=1) \
            if self.live_view and console.is_terminal else None
        if live is not None:
            live.start()
        try:
            while True:
                alive = [p for p in self.procs.values()
                         if p.popen is not None and p.popen.poll() is None]
                for p in self.procs.values():
                    self._pump_events(p)
                    self._push_transcript(p)
                    st = self.paths.read_status(p.name)
                    if st is not None:
                        self._push_status(p, st)
                        why = self._over_budget(st)
                        if why is not None:
                            self._terminate(p, StopReason.budget(why))
                    if time.time() > deadline + 10:
                        self._terminate(p, "budget:seconds")
                    self._kill_late(p)
                self.info["elapsed_s"] = round(self.info.get("elapsed_s_before", 0.0)
                                               + time.monotonic() - t_start, 1)
                atomic_write_json(self.paths.info, self.info)
                if live is not None:
                    live.update(self.table())
                if not alive:
                    break
                time.sleep(1.0)
        except KeyboardInterrupt:
            for p in self.procs.values():
                self._terminate(p, "interrupted")
            for p in self.procs.values():
                if p.popen is not None:
                    try:
                        p.popen.wait(GRACE_S)
                    except subprocess.TimeoutExpired:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(p.popen.pid, signal.SIGKILL)
        finally:
            if live is not None:
                live.stop()
        for p in self.procs.values():
            if p.popen is not None:
                reason = "killed" if (p.popen.returncode or 0) < 0 else "process ended"
                self._ensure_stop_event(p.name, reason)
            self._pump_events(p)
            self._push_transcript(p)
            st = self.paths.read_status(p.name)
            if st is not None:
                self._push_status(p, st)

    def summary(self) -> dict[str, Any]:
        """Best server-scored result (admin view: exact public and private PGR with their
        intervals) against the library's reference rows, evaluations and time used. The
        best inductive result is ``best``; transductive results are ranked apart
        (``best_transductive``); a board whose gap is too small ranks nothing."""
        admin = Client(self.server_url, self.secrets["admin_token"])
        ref = self.info.get("dataset_key") or self.info["workspace_key"]  # names can be
        pub = admin.leaderboard(ref, split="public")  # ambiguous (several splits prepared)
        prv = admin.leaderboard(ref, split="private")
        names = set(self.procs)
        inductive = [e for e in pub.entries if e.author in names]
        apart = [e for e in pub.transductive if e.author in names]
        mine = inductive + apart
        private = {e.finding: e for e in [*prv.entries, *prv.transductive]}

        def ci(interval: IntervalOut | None) -> dict[str, Any] | None:
            return None if interval is None else interval.as_dict()

        def top(entries: list[BoardEntryOut]) -> dict[str, Any] | None:
            ranked = [(e, e.pgr) for e in entries if e.pgr is not None]
            if not ranked:
                return None
            e, pgr = max(ranked, key=lambda x: x[1])
            p = private.get(e.finding)
            return {"finding": e.finding, "title": e.title, "author": e.author,
                    "public_pgr": pgr, "public_pgr_se": e.pgr_se,
                    "public_pgr_ci": ci(e.pgr_ci), "private_pgr": None if p is None else p.pgr,
                    "private_pgr_ci": None if p is None else ci(p.pgr_ci),
                    "transductive": e.transductive, "above_ceiling": e.above_ceiling}

        refs = [(r, r.pgr) for r in pub.reference
                if r.name.startswith("method ") and r.pgr is not None]
        best_ref = max(refs, key=lambda x: x[1])[0] if refs else None
        evals = sum((self.paths.read_status(n) or AgentStatus(n, "")).evals for n in names)
        authors = {e.author for e in mine}
        author_of: dict[int, str] = {}
        posted: list[Finding] = []
        for n in names:
            for ev in self.paths.read_events(n):
                if isinstance(ev, Finding):
                    author_of[ev.finding_id] = n
                    posted.append(ev)
        builds = sum(1 for ev in posted if ev.builds_on)
        cross = sum(1 for ev in posted if any(author_of.get(b, ev.agent) != ev.agent
                                              for b in ev.builds_on))
        out = {
            "best": top(inductive), "best_transductive": top(apart),
            "gap_status": pub.status,
            "best_reference": None if best_ref is None else {
                "name": best_ref.name, "pgr": best_ref.pgr,
                "pgr_se": best_ref.pgr_se, "params": best_ref.params},
            "results": len(mine), "authors_with_results": sorted(a for a in authors if a),
            "held": len([e for e in pub.held if e.author in names]),
            "findings": len(posted), "findings_building_on_earlier": builds,
            "findings_building_on_others": cross, "evaluations": evals,
            "minutes": round(self.info.get("elapsed_s", 0.0) / 60, 2),
        }
        admin.close()
        return out

    def close(self) -> None:
        for c in self.clients.values():
            c.close()


def _agent_names(run_id: str, directions: list[Direction], n: int) -> list[tuple[str, Direction]]:
    tag = run_id[-4:]
    out = []
    for i in range(n):
        d = directions[i % len(directions)]
        suffix = f"{i // len(directions) + 1}" if n > len(directions) else ""
        out.append((f"{d.slug[:40]}{suffix}-{tag}", d))
    return out


def new_run(cfg: ResearchConfig, run_id: str | None = None
            ) -> tuple[RunPaths, RunInfo, RunSecrets]:
    """Create a run directory: run.json, secrets.json (mode 600) and one folder per
    researcher; prepares the dataset and its baselines. Returns (paths, info, secrets)."""
    if cfg.backend not in BACKENDS:
        raise AarError(f"unknown backend {cfg.backend!r}; choose one of: {', '.join(BACKENDS)}")
    if cfg.minutes <= 0:
        raise AarError(f"--minutes must be positive, got {cfg.minutes}")
    if cfg.agents < 1:
        raise AarError(f"--agents must be at least 1, got {cfg.agents}")
    if cfg.server and not os.environ.get("AAR_ADMIN_TOKEN"):
        raise AarError("--server needs an admin token in AAR_ADMIN_TOKEN to create the "
                       "researchers' tokens")
    model = cfg.model
    if cfg.backend == "local":
        from aar.agents.local_model import DEFAULT_LOCAL_MODEL, check_local_model

        model = model or DEFAULT_LOCAL_MODEL
        if not cfg.base_url:
            check_local_model(model)
    dirs = load_directions(cfg.directions)
    paths = RunPaths.of(run_id or new_run_id())
    if paths.info.exists():
        raise AarError(f"run {paths.run_id} exists already; resume it with --resume "
                       f"{paths.run_id}")
    ref = cfg.dataset_ref()
    weak, strong = default_encoders(ref, cfg.weak, cfg.strong)
    key = prepare_dataset(ref, weak, strong)
    agents = _agent_names(paths.run_id, dirs, cfg.agents)
    info: RunInfo = {
        "kind": "aar.research", "run_id": paths.run_id, "dataset": ref,
        "dataset_key": key, "workspace_key": key, "weak": weak, "strong": strong,
        "backend": cfg.backend,
        "model": model, "base_url": cfg.base_url, "minutes": cfg.minutes,
        "context": cfg.context,
        "budget_usd": cfg.budget_usd, "max_tokens": cfg.max_tokens,
        "max_evals": cfg.max_evals, "canary": cfg.canary, "seed": cfg.seed,
        "server": cfg.server, "cpu_slots": cfg.cpu_slots, "created": now_iso(),
        "executor": researchers_executor(cfg.executor).to_dict(),
        "agents": [{"name": n, "direction": d.slug, "title": d.title,
                    "families": list(d.families), "text": d.text} for n, d in agents],
        "elapsed_s": 0.0,
        # which isolation the researchers' code gets here (an unsafe mode says so)
        "sandbox": isolation_report().to_dict(),
    }
    admin = (os.environ.get("AAR_ADMIN_TOKEN") if cfg.server else None) \
        or "aar_" + pysecrets.token_urlsafe(32)
    secrets: RunSecrets = {"admin_token": admin, "agents": {}}
    for n, _ in agents:
        paths.agent_dir(n).mkdir(parents=True, exist_ok=True)
    _write_secrets(paths, secrets)
    atomic_write_json(paths.info, info)
    return paths, info, secrets


def issue_tokens(paths: RunPaths, info: RunInfo, secrets: RunSecrets,
                 server_url: str) -> None:
    """One agent token per researcher (evaluation budget = ``max_evals``), kept in
    secrets.json; the server URL goes into run.json. The researchers of a run share one
    rationing account on the server (one budget over the labels, one Ladder), so they see
    each other's released results."""
    if not secrets["agents"]:
        with Client(server_url, secrets["admin_token"]) as admin:
            budget = info.get("max_evals")
            for a in info["agents"]:
                tok = admin.create_token(a["name"], budget_per_hour=budget,
                                         budget_total=budget, run=paths.run_id)
                secrets["agents"][a["name"]] = tok.token
        _write_secrets(paths, secrets)
    info["server_url"] = server_url
    atomic_write_json(paths.info, info)


def post_references(dataset_key: str, admin: Client) -> int:
    """Post the runs of library methods on a dataset recorded in ``$AAR_HOME/results``
    (``aar run`` / ``aar baselines``) to a server through its ``admin`` client: they are
    its leaderboard's reference rows (the server reads no result files). A run posted
    before is replaced, so a resumed run posts again. Returns how many were posted."""
    from aar.experiments.runner import records, reference_body

    posted = 0
    for rec in records():
        ref = reference_body(rec)
        if ref is None or ref.dataset != dataset_key:
            continue
        try:
            admin.post_reference(ref)
        except AarError as exc:
            print(f"warning: reference {ref.run_id} was not posted: "
                  f"{str(exc).splitlines()[0]}", file=sys.stderr)
            continue
        posted += 1
    return posted


def research(cfg: ResearchConfig, *, observers: Sequence[Observer] = (),
             resume: str | None = None, run_id: str | None = None) -> RunInfo:
    """Run (or resume) a research run; returns its run.json with the summary.
    ``observers`` are called with every event any researcher writes."""
    from aar.research.live import LiveServer

    if resume is not None:
        if cfg.minutes <= 0:
            raise AarError(f"--minutes must be positive, got {cfg.minutes}")
        paths = RunPaths.of(resume)
        info = read_run(paths)
        secrets = paths.read_secrets()
        info["elapsed_s_before"] = info.get("elapsed_s", 0.0)
        restart = [a["name"] for a in info["agents"] if not _finished(paths, a["name"])]
        info["resumed"] = [*info.get("resumed", []), now_iso()]
        if cfg.executor is not None:
            info["executor"] = researchers_executor(cfg.executor).to_dict()
    else:
        paths, info, secrets = new_run(cfg, run_id)
        restart = [a["name"] for a in info["agents"]]
    seconds = cfg.minutes * 60
    check_executor(ExecutorConfig.from_dict(info.get("executor")))
    server_url = info.get("server")
    srv = None
    llm = _start_local_model(paths, info)
    if not server_url:
        # the run's researchers share one account on the server: its budget is theirs summed
        budget = (info.get("max_evals") or DEFAULT_MAX_EVALS) * len(info["agents"])
        srv = LiveServer(admin_token=secrets["admin_token"], datasets=(info["dataset"],),
                         run_budget=budget)
        try:
            srv.start()
        except BaseException:
            if llm is not None:
                llm.stop()
            raise
        server_url = srv.url
    if cfg.live_view:  # the command line: tell the user where to watch
        print(f"run {paths.run_id}: dashboard at {server_url}/ (log in with the admin token "
              f"in {paths.secrets})", file=sys.stderr)
    try:
        issue_tokens(paths, info, secrets, server_url)
        with Client(server_url, secrets["admin_token"]) as admin:
            post_references(info.get("dataset_key") or info["workspace_key"], admin)
        orch = Orchestrator(paths, info, secrets, observers=observers, server_url=server_url,
                            live_view=cfg.live_view)
        try:
            orch.run(seconds, restart)
            info["summary"] = orch.summary()
        finally:
            orch.close()
        info["finished"] = now_iso()
        info.pop("elapsed_s_before", None)
        atomic_write_json(paths.info, info)
        (paths.root / "final_note.md").write_text(final_note(paths, info))
        return info
    finally:
        if srv is not None:
            srv.stop()
        if llm is not None:
            llm.stop()


def _start_local_model(paths: RunPaths, info: RunInfo) -> Any:
    """For ``--backend local`` without ``--base-url``: llama.cpp's server on the packaged
    model, its URL in run.json as ``llm_url`` (the caller stops it)."""
    if info["backend"] != "local" or info.get("base_url"):
        return None
    from aar.agents.local_model import DEFAULT_CONTEXT, DEFAULT_LOCAL_MODEL, LocalModelServer

    llm = LocalModelServer(info.get("model") or DEFAULT_LOCAL_MODEL,
                           context=info.get("context") or DEFAULT_CONTEXT,
                           log_path=paths.root / "local_model.log")
    info["llm_url"] = llm.start()
    info["context"] = llm.context
    atomic_write_json(paths.info, info)
    return llm


def _finished(paths: RunPaths, name: str) -> bool:
    """A researcher that stopped on its own evaluation budget is not restarted."""
    st = paths.read_status(name)
    return (st is not None and st.state == ResearcherState.STOPPED
            and st.reason == StopReason.BUDGET_EVALS)


def best_lines(summary: dict[str, Any]) -> list[str]:
    """The run's best server-scored results (inductive, and transductive apart) and the
    best library method on record."""
    lines = []
    for key, what in (("best", "Best server-scored result"),
                      ("best_transductive", "Best transductive result (ranked apart)")):
        b = summary.get(key)
        if b:
            lines.append(f"{what}: finding #{b['finding']} by {b['author']}: public PGR "
                         f"{_pgr_text(b['public_pgr'], b.get('public_pgr_ci'))} (private "
                         f"{_pgr_text(b.get('private_pgr'), b.get('private_pgr_ci'))})"
                         f" — {b['title']}")
    if summary.get("gap_status"):
        lines.append(str(summary["gap_status"]))
    r = summary.get("best_reference")
    if r:
        lines.append(f"Best library method on record: {r['name']} PGR {r['pgr']:.3f}")
    return lines


def _pgr_text(pgr: float | None, ci: dict[str, Any] | None = None) -> str:
    """``0.412 [0.301, 0.520]``; ``—`` when there is no PGR (gap too small)."""
    if pgr is None:
        return "—"
    if ci and ci.get("low") is not None and ci.get("high") is not None:
        return f"{pgr:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"
    return f"{pgr:.3f}"


def final_note(paths: RunPaths, info: RunInfo) -> str:
    s = info.get("summary") or {}
    lines = [f"# Research run {paths.run_id}", "",
             f"Dataset {info['dataset']} ({info['weak']} -> {info['strong']}), backend "
             f"{info['backend']}, {len(info['agents'])} researchers, "
             f"{s.get('minutes')} minutes, {s.get('evaluations')} evaluations.", "",
             *best_lines(s), ""]
    for a in info["agents"]:
        stops = [e for e in paths.read_events(a["name"]) if isinstance(e, Stop)]
        if stops:
            lines.append(f"- {a['name']}: {stops[-1].final_note}")
    return "\n".join(lines) + "\n"
