"""What an executor runs and the one interface every executor offers.

An :class:`Experiment` is one sandboxed run of a method file over seeds on a prepared
workspace (a researcher's candidate, a verification re-run, a library method in
``aar baselines``); its result is the test probabilities, one row per seed. An
:class:`Executor` runs experiments somewhere: :class:`aar.execution.local.LocalExecutor`
in this machine's sandbox (the default), :class:`aar.execution.ray_cluster.RayExecutor`
as Ray tasks on any node of a cluster, each in that node's sandbox. Every seed is an
independent fit, so the rows are the same whichever executor ran them and however it
split the seeds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from aar.data.store import Workspace
from aar.errors import AarError

Kind = Literal["local", "ray"]
KINDS: tuple[Kind, ...] = ("local", "ray")
DEFAULT_TIMEOUT_S = 3600.0
DEFAULT_CPU_SECONDS = 1800
DEFAULT_MEMORY_MB = 8192


@dataclass(frozen=True)
class Resources:
    """What one experiment task asks a Ray node for (the scheduler's requests; the
    sandbox's own CPU-time and memory limits are the experiment's)."""

    cpus: float = 1.0
    memory_mb: int = 2048
    gpus: float = 0.0


@dataclass(frozen=True)
class Experiment:
    """One sandboxed run: ``method_file`` (``method_name`` where it registers several)
    fitted on ``workspace``'s export with ``weak``/``strong`` features, per seed."""

    method_file: Path
    workspace: Workspace
    weak: str
    strong: str
    seeds: tuple[int, ...]
    params: dict[str, Any] = field(default_factory=dict)
    method_name: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    cpu_seconds: int = DEFAULT_CPU_SECONDS
    memory_mb: int = DEFAULT_MEMORY_MB

    def __post_init__(self) -> None:
        if not self.seeds:
            raise AarError("give at least one seed")

    def with_seeds(self, seeds: tuple[int, ...]) -> Experiment:
        return replace(self, seeds=tuple(seeds))


@dataclass(frozen=True)
class ExecutorConfig:
    """Which executor: ``local`` (this machine's sandbox, ``workers`` experiments at
    once) or ``ray`` (the cluster at ``address``; ``None``: the one ``ray start`` made on
    this machine or ``$RAY_ADDRESS``, else a private single-node one)."""

    kind: Kind = "local"
    address: str | None = None
    workers: int | None = None
    resources: Resources = field(default_factory=Resources)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AarError(f"unknown executor {self.kind!r}; choose one of: {', '.join(KINDS)}")
        if self.address and self.kind != "ray":
            raise AarError("--address names a Ray cluster: use it with --executor ray")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ExecutorConfig:
        d = dict(d or {})
        res = Resources(**(d.pop("resources", None) or {}))
        return cls(resources=res, **d)


@dataclass(frozen=True)
class Outcome:
    """An experiment's test probabilities (one row per seed, in the experiment's order)
    and where each seed ran (``local``, or the Ray node's id)."""

    predictions: np.ndarray
    nodes: tuple[str, ...]


class Executor(ABC):
    """Runs experiments; ``submit`` returns at once, ``run`` waits. Errors of the method
    (or of a limit that stopped it) come back as ``AarError``."""

    kind: Kind

    @abstractmethod
    def submit(self, exp: Experiment, workdir: Path) -> Future[Outcome]:
        """Start ``exp``; ``workdir`` is the trusted side's folder for it on this machine
        (an executor on another node uses a fresh one there)."""

    def run(self, exp: Experiment, workdir: Path) -> Outcome:
        return self.submit(exp, workdir).result()

    def where(self) -> str:
        """Where the experiments run, in words (for events and logs)."""
        return self.kind

    def close(self) -> None:  # noqa: B027  (nothing to release by default)
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def make_executor(cfg: ExecutorConfig | None = None) -> Executor:
    cfg = cfg or ExecutorConfig()
    if cfg.kind == "ray":
        from aar.execution.ray_cluster import RayExecutor

        return RayExecutor(cfg.address, cfg.resources)
    from aar.execution.local import LocalExecutor

    return LocalExecutor(cfg.workers)
