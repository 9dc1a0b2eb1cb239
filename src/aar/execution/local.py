"""The default executor: experiments in this machine's sandbox, a few at a time."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from aar.execution.base import Executor, Experiment, Outcome


def run_local(exp: Experiment, workdir: Path) -> Outcome:
    """One experiment in this machine's sandbox, every seed in one sandboxed process."""
    from aar.sandbox.worker import run_method_sandboxed

    preds = run_method_sandboxed(
        exp.method_file, exp.workspace, exp.weak, exp.strong, list(exp.seeds),
        dict(exp.params), workdir=workdir, method_name=exp.method_name,
        cpu_seconds=exp.cpu_seconds, memory_mb=exp.memory_mb, timeout_s=exp.timeout_s)
    return Outcome(preds, ("local",) * len(exp.seeds))


class LocalExecutor(Executor):
    """``workers`` experiments at once (threads, each waiting on its sandboxed process;
    default: one per CPU). ``run`` runs in the calling thread."""

    kind = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, exp: Experiment, workdir: Path) -> Future[Outcome]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="aar-local")
        return self._pool.submit(run_local, exp, workdir)

    def run(self, exp: Experiment, workdir: Path) -> Outcome:
        return run_local(exp, workdir)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
