"""Experiments as Ray tasks: one task per seed, on any node of a cluster, each in that
node's sandbox.

The driver (a researcher, ``aar baselines``, ``aar verify``) puts the experiment's
:class:`~aar.execution.bundle.Bundle` (label-free export and features) into Ray's object
store once and passes each task a reference to it, the method file's text and the run's
settings: never a path of this machine, the vault, the database or a token. On its node a
task unpacks the bundle once per node (``aar.execution.bundle.materialize``), points
``AAR_HOME`` at an empty folder of the node (no vault there), drops any database URL or
token the node's environment holds, and runs the method with
:func:`aar.sandbox.worker.run_method_sandboxed` in the node's own sandbox (bubblewrap,
else Landlock, else it refuses, as on one machine). A task whose node dies is retried on
another node (``max_retries``); a method that fails is not retried: its error comes back
as an ``AarError``. Tasks are spread over the nodes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from aar.errors import AarError
from aar.execution.base import Executor, Experiment, Outcome, Resources
from aar.execution.bundle import Bundle, materialize, node_dir

MAX_RETRIES = 3  # a task whose node (or worker process) dies runs again elsewhere
# What a node's process may hold from its own environment but a task never needs.
DROPPED_ENV = ("AAR_DB_URL", "AAR_TOKEN", "AAR_ADMIN_TOKEN", "AAR_SERVER_URL",
               "AAR_PACKAGES_DIR", "AAR_CACHE_DIR", "ANTHROPIC_API_KEY", "OPENAI_API_KEY")


def _ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError:
        raise AarError("--executor ray needs Ray: pip install 'aar[ray]' (or pip install "
                       "ray) on every node") from None
    return ray


def _init(ray: Any, address: str | None) -> None:
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level="warning", configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "this machine"
        raise AarError(f"cannot reach a Ray cluster at {where}: {str(exc).splitlines()[0]} "
                       "(start one with `ray start --head`, then pass --address "
                       "HOST:PORT)") from None


def cluster_nodes(address: str | None) -> list[dict[str, Any]]:
    """The cluster's live nodes (id, address, CPUs, GPUs); an ``AarError`` naming the
    address when it cannot be reached."""
    ray = _ray()
    if ray.is_initialized():
        return _nodes(ray)
    _init(ray, address)
    try:
        return _nodes(ray)
    finally:
        ray.shutdown()


def _nodes(ray: Any) -> list[dict[str, Any]]:
    return [{"id": n["NodeID"], "address": n["NodeManagerAddress"],
             "cpus": n["Resources"].get("CPU", 0), "gpus": n["Resources"].get("GPU", 0)}
            for n in ray.nodes() if n.get("Alive")]


def run_on_node(digest: str, box: list[Any], key: str, file_name: str, source: str,
                exp: dict[str, Any]) -> dict[str, Any]:
    """The task body, on whichever node Ray chose: unpack the bundle (once per node), run
    the method in this node's sandbox, return its predictions (or its error) and the node."""
    ray = _ray()
    from aar.data.store import Workspace
    from aar.sandbox.worker import run_method_sandboxed

    node = ray.get_runtime_context().get_node_id()
    base = node_dir()
    out: dict[str, Any] = {"node": node, "host": socket.gethostname(), "predictions": None,
                           "error": None}
    try:
        fetched: list[bool] = []

        def fetch() -> bytes:
            fetched.append(True)
            return bytes(ray.get(box[0]))

        bundle = materialize(digest, fetch, base)
        out["fetched"] = bool(fetched)
        home = base / "home"
        home.mkdir(parents=True, exist_ok=True)
        for var in DROPPED_ENV:
            os.environ.pop(var, None)
        os.environ["AAR_HOME"] = str(home)
        os.environ["AAR_FEATURES_DIR"] = str(bundle / "features")
        job = base / "jobs" / uuid.uuid4().hex[:16]
        job.mkdir(parents=True)
        try:
            method_file = job / "method" / file_name
            method_file.parent.mkdir()
            method_file.write_text(source)
            work = job / "work"
            work.mkdir()
            out["predictions"] = run_method_sandboxed(
                method_file, Workspace(key, root_dir=bundle / "export"), exp["weak"],
                exp["strong"], list(exp["seeds"]), dict(exp["params"]), workdir=work,
                method_name=exp["method_name"], cpu_seconds=int(exp["cpu_seconds"]),
                memory_mb=int(exp["memory_mb"]), timeout_s=float(exp["timeout_s"]))
        finally:
            shutil.rmtree(job, ignore_errors=True)
    except AarError as exc:
        out["error"] = str(exc)
    return out


class RayExecutor(Executor):
    """Experiments on the Ray cluster at ``address`` (see :class:`ExecutorConfig`)."""

    kind = "ray"

    def __init__(self, address: str | None = None, resources: Resources | None = None) -> None:
        self.address = address
        self.resources = resources or Resources()
        self._lock = threading.Lock()
        self._bundles: dict[tuple[str, tuple[str, ...]], tuple[str, Any]] = {}
        self._remote: Any = None
        self._gather = ThreadPoolExecutor(32, thread_name_prefix="aar-ray-gather")
        self._started = False

    def _connect(self) -> Any:
        ray = _ray()
        with self._lock:
            if self._remote is None:
                if not ray.is_initialized():
                    _init(ray, self.address)
                    self._started = True
                r = self.resources
                self._remote = ray.remote(run_on_node).options(
                    num_cpus=r.cpus, num_gpus=r.gpus, memory=int(r.memory_mb) << 20,
                    max_retries=MAX_RETRIES, retry_exceptions=False,
                    scheduling_strategy="SPREAD")
        return ray

    def _bundle(self, exp: Experiment) -> tuple[str, Any]:
        ray = self._connect()
        k = (str(exp.workspace.root), (exp.weak, exp.strong))
        with self._lock:
            if k not in self._bundles:
                b = Bundle.of(exp.workspace, (exp.weak, exp.strong))
                self._bundles[k] = (b.digest, ray.put(b.data))
            return self._bundles[k]

    def submit(self, exp: Experiment, workdir: Path) -> Future[Outcome]:
        ray = self._connect()
        digest, ref = self._bundle(exp)
        source = Path(exp.method_file).read_text()
        settings = {"weak": exp.weak, "strong": exp.strong, "params": dict(exp.params),
                    "method_name": exp.method_name, "cpu_seconds": exp.cpu_seconds,
                    "memory_mb": exp.memory_mb, "timeout_s": exp.timeout_s}
        refs = [self._remote.remote(digest, [ref], exp.workspace.key,
                                    Path(exp.method_file).name, source,
                                    {**settings, "seeds": [int(s)]})
                for s in exp.seeds]
        return self._gather.submit(self._collect, ray, refs, Path(exp.method_file).name)

    @staticmethod
    def _collect(ray: Any, refs: list[Any], name: str) -> Outcome:
        try:
            results = ray.get(refs)
        except ray.exceptions.RayError as exc:
            raise AarError(f"{name}: the Ray task failed after {MAX_RETRIES} retries: "
                           f"{str(exc).splitlines()[0]}") from None
        for r in results:
            if r["error"]:
                raise AarError(r["error"])
        preds = np.concatenate([np.atleast_2d(r["predictions"]) for r in results])
        return Outcome(preds, tuple(str(r["node"]) for r in results))

    def where(self) -> str:
        return f"ray ({self.address or 'auto'})"

    def close(self) -> None:
        self._gather.shutdown(wait=True)
        with self._lock:
            self._bundles.clear()
            self._remote = None
            if self._started:
                with contextlib.suppress(Exception):
                    _ray().shutdown()
                self._started = False
