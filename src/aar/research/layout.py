"""Where a research run keeps its state. Shared by the researchers, the monitor, the
verifier, the report and the dashboard; nothing here is secret except ``secrets.json``.

    $AAR_HOME/runs/<run_id>/
        run.json            ``RunInfo``: dataset, encoders, backend, agents, server url, times
        secrets.json        ``RunSecrets``: agent tokens (mode 600); never mounted in a sandbox
        verify.json         ``aar verify``'s table (``aar.contracts.api.VerificationIn``)
        agents/<name>/
            workspace/      the researcher's own files (ideas/*.py method modules, notes.md)
            events.jsonl    append-only events, one JSON object per line (see ``Event``)
            status.json     the researcher's latest state (see ``AgentStatus``)
            state.json      what it remembers between sessions (the forum read so far)
            transcript.jsonl  the LLM conversation (LLM backends only;
                            :mod:`aar.contracts.transcript`)
            population.jsonl  the built-in search's candidates (``builtin.Candidate``)

Every file is read through its type, validated: a damaged ``run.json``, ``secrets.json``
or ``status.json`` is an ``AarError`` naming the file, not a ``KeyError`` later.

Events are the models of :mod:`aar.contracts.events` (the union ``Event``, keyed on
``kind``): every event has ``t`` (ISO 8601 UTC), ``agent`` and ``kind``; the kinds are
``start``, ``stop``, ``budget_stop``, ``tool_call``, ``usage``, ``llm_stats``,
``file_write``, ``sandbox_run``, ``evaluation``, ``finding`` and ``forum_read``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic validates these on Python 3.11

from aar.contracts import problems
from aar.contracts.events import Event, ResearcherState, new_event, read_events
from aar.errors import AarError
from aar.settings import get_settings
from aar.util import atomic_write_json


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def runs_dir() -> Path:
    return get_settings().home / "runs"


class AgentInfo(TypedDict):
    """One researcher of a run, as ``run.json`` lists it."""

    name: str  # also its name on the evaluation server
    direction: str  # the starting direction's slug
    title: str
    families: list[str]  # the method families the direction points at
    text: str  # the direction's markdown


class RunInfo(TypedDict, total=False):
    """``run.json``: what a research run is, written by the orchestrator, read by the
    researchers, the monitor, the verifier, the report and ``aar mcp``."""

    kind: str  # "aar.research"
    run_id: str
    dataset: str  # the dataset reference given (name[:arg])
    dataset_key: str  # the prepared dataset's key on the server
    workspace_key: str
    weak: str
    strong: str
    backend: str  # builtin | anthropic | openai | local
    model: str | None
    base_url: str | None  # a user's own model endpoint
    llm_url: str  # the local model server aar started (backend local)
    minutes: float
    context: int | None  # the local model's window in tokens
    budget_usd: float | None
    max_tokens: int | None
    max_evals: int | None
    max_retries: int
    canary: bool
    seed: int
    server: str | None  # an external evaluation server given by --server (None: in-process)
    server_url: str  # the evaluation server this run uses (external or in-process)
    cpu_slots: int
    created: str
    executor: dict[str, Any]  # ExecutorConfig.to_dict()
    agents: list[AgentInfo]
    elapsed_s: float  # time spent over every session of the run
    elapsed_s_before: float  # of the sessions before a resume
    resumed: list[str]  # when each resume started
    finished: str
    summary: dict[str, Any]  # Orchestrator.summary() at the end
    sandbox: dict[str, Any]  # the isolation the researchers' code gets


def server_of(info: RunInfo) -> str | None:
    """The URL of the evaluation server a run uses: ``server_url`` once it started, else the
    external server it was created with (``server``)."""
    return info.get("server_url") or info.get("server")


class RunSecrets(TypedDict):
    """``secrets.json`` (mode 600, never in a workspace): the run's tokens."""

    admin_token: str
    agents: dict[str, str]  # researcher name -> its agent token


@dataclass
class AgentStatus:
    name: str
    direction: str
    state: str = ResearcherState.STARTING  # a ResearcherState (as written in its file)
    best_pgr: float | None = None
    evals: int = 0
    findings: int = 0
    usd: float = 0.0
    tokens: int = 0
    compute_s: float = 0.0
    last_activity: str = field(default_factory=now_iso)
    reason: str = ""


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @classmethod
    def of(cls, run_id: str) -> RunPaths:
        return cls(runs_dir() / run_id)

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def info(self) -> Path:
        return self.root / "run.json"

    def read_info(self) -> RunInfo:
        """``run.json``, checked against :class:`RunInfo` (empty when the run has none
        yet). Raises ``AarError`` when it is not a run's info."""
        return _read(self.info, _INFO, "run info") if self.info.exists() else {}

    def read_secrets(self) -> RunSecrets:
        """``secrets.json``, checked. Raises ``AarError`` when it is missing or damaged."""
        if not self.secrets.exists():
            raise AarError(f"run {self.run_id} has no secrets.json; it cannot be resumed")
        return _read(self.secrets, _SECRETS, "run secrets")

    @property
    def secrets(self) -> Path:
        return self.root / "secrets.json"

    def agent_dir(self, agent: str) -> Path:
        return self.root / "agents" / agent

    def workspace(self, agent: str) -> Path:
        return self.agent_dir(agent) / "workspace"

    def events(self, agent: str) -> Path:
        return self.agent_dir(agent) / "events.jsonl"

    def transcript(self, agent: str) -> Path:
        return self.agent_dir(agent) / "transcript.jsonl"

    def status(self, agent: str) -> Path:
        return self.agent_dir(agent) / "status.json"

    def agents(self) -> list[str]:
        root = self.root / "agents"
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def append_event(self, agent: str, kind: str, **data: Any) -> Event:
        """Append one event (flushed and fsynced: an acknowledged event survives a crash).
        It is checked against its kind's model first: an unknown kind or field, or a field
        of the wrong type, raises ``ValueError`` and writes nothing. The line holds the
        fields as given, in that order."""
        t = now_iso()
        event = new_event(kind, t=t, agent=agent, **data)
        path = self.events(agent)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"t": t, "agent": agent, "kind": kind, **data}, default=str)
                     + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return event

    def read_events(self, agent: str) -> list[Event]:
        """Every complete event; a torn last line (a crash mid-write) is skipped."""
        return read_events(self.events(agent))

    def write_status(self, status: AgentStatus) -> None:
        atomic_write_json(self.status(status.name), asdict(status))

    def read_status(self, agent: str) -> AgentStatus | None:
        path = self.status(agent)
        if not path.exists():
            return None
        return _read(path, _STATUS, "researcher status")


T = TypeVar("T")
_INFO: TypeAdapter[RunInfo] = TypeAdapter(RunInfo)
_SECRETS: TypeAdapter[RunSecrets] = TypeAdapter(RunSecrets)
_STATUS: TypeAdapter[AgentStatus] = TypeAdapter(AgentStatus)


def _read(path: Path, adapter: TypeAdapter[T], what: str) -> T:
    """A run file, validated; ``AarError`` names the file and the first problems."""
    try:
        return adapter.validate_json(path.read_bytes())
    except ValidationError as exc:
        raise AarError(f"{path} is not valid {what}: {problems(exc)}") from None
