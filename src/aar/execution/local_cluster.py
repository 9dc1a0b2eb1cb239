"""A Ray cluster of several nodes on this machine, for tests and benchmarks: a head and
worker nodes, each a ``ray start --block`` process in a session of its own, started with a
clean environment (no database URL, no token, an empty ``AAR_HOME`` and its own
``AAR_NODE_DIR``) and a fresh cluster token. ``kill_node`` SIGKILLs every process of a
node's session at once, as a machine that loses power would.

    with LocalRayCluster(tmp) as c:
        c.start_head(cpus=1); c.add_node(cpus=2)
        env = c.client_env()          # what a driver needs: RAY_ADDRESS and the token
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from aar.errors import AarError

KEEP_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "AAR_SANDBOX", "AAR_BWRAP", "AAR_SANDBOX_NETNS",
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
OBJECT_STORE_BYTES = 100_000_000


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[bytes]
    dir: Path  # AAR_NODE_DIR: what the node received and unpacked

    @property
    def sid(self) -> int:
        return self.proc.pid  # start_new_session: the session's id is the leader's pid


def session_pids(sid: int) -> list[int]:
    """Every live process of session ``sid`` (a node's ``ray start``, raylet, workers)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry)) == sid:
                    out.append(int(entry))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRayCluster:
    def __init__(self, root: Path, token: str | None = None) -> None:
        self.root = Path(root)
        self.port = free_port()
        self.token = token or secrets.token_hex(32)
        self.nodes: list[Node] = []
        self.address = f"127.0.0.1:{self.port}"

    def _env(self, node_dir: Path) -> dict[str, str]:
        env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent),
                                       env.get("PATH", "/usr/bin:/bin")])
        (node_dir / "home").mkdir(parents=True, exist_ok=True)
        env.update(AAR_NODE_DIR=str(node_dir), AAR_HOME=str(node_dir / "home"),
                   HOME=str(node_dir / "home"), RAY_AUTH_MODE="token",
                   RAY_AUTH_TOKEN=self.token, RAY_USAGE_STATS_ENABLED="0",
                   PYTHONUNBUFFERED="1")
        return env

    def client_env(self) -> dict[str, str]:
        """What a driver on this machine adds to its environment to join the cluster."""
        return {"RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN": self.token}

    def _start(self, name: str, args: list[str], cpus: int) -> Node:
        node_dir = self.root / name
        node_dir.mkdir(parents=True, exist_ok=True)
        ray = str(Path(sys.executable).parent / "ray")
        log = open(node_dir / "ray.log", "ab")  # noqa: SIM115 (the child keeps it)
        proc = subprocess.Popen(
            [ray, "start", "--block", f"--num-cpus={cpus}", "--num-gpus=0",
             f"--object-store-memory={OBJECT_STORE_BYTES}", "--disable-usage-stats",
             "--node-ip-address=127.0.0.1", *args],
            env=self._env(node_dir), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=node_dir)
        log.close()
        node = Node(name, proc, node_dir)
        self.nodes.append(node)
        return node

    def start_head(self, cpus: int = 1) -> Node:
        node = self._start("head", ["--head", f"--port={self.port}",
                                    "--include-dashboard=false",
                                    f"--temp-dir={self.root / 'ray-tmp'}"], cpus)
        self.wait_for(1)
        return node

    def add_node(self, cpus: int = 1) -> Node:
        node = self._start(f"worker{len(self.nodes)}", [f"--address={self.address}"], cpus)
        self.wait_for(sum(1 for n in self.nodes if n.proc.poll() is None))
        return node

    def alive_nodes(self) -> int:
        code = ("import ray; ray.init(logging_level='error', log_to_driver=False); "
                "print(sum(1 for n in ray.nodes() if n['Alive']))")
        env = {**os.environ, **self.client_env()}
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, timeout=60, check=False)
        try:
            return int(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return 0

    def wait_for(self, n: int, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [x.name for x in self.nodes if x.proc.poll() is not None]
            if dead and any(x.proc.returncode not in (None, -signal.SIGKILL)
                            for x in self.nodes):
                raise AarError(f"ray node(s) {dead} exited; see {self.root}/*/ray.log")
            if self.alive_nodes() >= n:
                return
            time.sleep(1.0)
        raise AarError(f"the local Ray cluster did not reach {n} nodes in {timeout_s:g}s")

    def kill_node(self, node: Node) -> int:
        """SIGKILL every process of the node at once; returns how many there were."""
        pids = session_pids(node.sid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        node.proc.wait(30)
        return len(pids)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in reversed(self.nodes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(20)
            self.kill_node(node)  # whatever is left of its session

    def __enter__(self) -> LocalRayCluster:
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
