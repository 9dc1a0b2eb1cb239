"""Escape attempts, run in every isolating mode this machine has, and once with isolation
off (``subprocess-control``), where every attempt must succeed: so each assertion is shown
to fail when the isolation it tests is missing.

The attacker is sandboxed code with a researcher's workspace as its work directory; the
targets are what a research run keeps beside it: the vault's labels, the server database,
the admin token, the run's agent secrets, another researcher's workspace, the parent's
environment (and PID 1's), files outside the work directory, any TCP port but the server's,
UDP, a UNIX socket file, signals to outside processes; and the limits (processes, memory).

``AAR_SANDBOX=bwrap`` or ``AAR_SANDBOX=landlock`` runs only that mode (and fails if it is
unusable, instead of skipping): CI runs the suite once per mode that way. Only loopback
addresses are ever used.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aar.sandbox.runner import (
    Mode,
    SandboxResult,
    bwrap_probe,
    landlock_probe,
    mount_path,
    run_sandboxed,
)
from aar.sandbox.worker import EXPORT_MOUNT
from aar.settings import get_settings

FORCED = os.environ.get("AAR_SANDBOX", "")
CONTROL = "control"


def _modes() -> list[Any]:
    out = []
    for mode, probe in (("bwrap", bwrap_probe()), ("landlock", landlock_probe())):
        if FORCED in ("bwrap", "landlock") and mode != FORCED:
            out.append(pytest.param(mode, marks=pytest.mark.skip(
                reason=f"AAR_SANDBOX={FORCED}: this run checks {FORCED} only")))
        elif not probe.usable and mode != FORCED:
            out.append(pytest.param(mode, marks=pytest.mark.skip(
                reason=f"{mode} is not usable on this machine: {probe.reason}")))
        else:
            out.append(mode)
    out.append(pytest.param(CONTROL, id="subprocess-control"))
    return out


@pytest.fixture(params=_modes())
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Layout:
    work: Path  # alice's workspace: the sandbox's work directory
    export: Path  # the label-free export, mounted read-only
    targets: dict[str, Path]  # name -> a file holding markers[name]
    markers: dict[str, str]
    outside: Path  # a directory the sandbox must not write into


@pytest.fixture
def layout(aar_home: Path) -> Layout:
    s = get_settings()
    markers = {k: f"{k.upper()}-MARKER-{uuid.uuid4().hex}"
               for k in ("vault", "db", "token", "agent_secrets", "other_workspace")}
    run = s.home / "runs" / "r1"
    work = run / "agents" / "alice" / "workspace"
    work.mkdir(parents=True)
    targets = {
        "vault": s.vault_dir / "ds-1" / "labels.json",
        "db": Path(s.db_url.split(":///", 1)[1]),
        "token": s.home / "admin_token",
        "agent_secrets": run / "secrets.json",
        "other_workspace": run / "agents" / "bob" / "workspace" / "ideas" / "best.py",
    }
    for name, path in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "db":
            con = sqlite3.connect(path)
            with con:
                con.execute("create table admin (token text)")
                con.execute("insert into admin values (?)", (markers[name],))
            con.close()
        else:
            path.write_text(json.dumps({"marker": markers[name]}))
    export = s.workspace_dir / "ds-1"
    export.mkdir(parents=True)
    (export / "test.jsonl").write_text('{"id": "id-1", "text": "hello"}\n')
    outside = run / "agents" / "bob" / "workspace"
    return Layout(work, export, targets, markers, outside)


def attempt(mode: str, lay: Layout, code: str, *args: str, **kw: Any) -> SandboxResult:
    opts: dict[str, Any] = {"cpu_seconds": 30, "memory_mb": 2048, "timeout_s": 60.0,
                            "readonly": {lay.export: EXPORT_MOUNT}, **kw}
    run_mode: Mode = "subprocess" if mode == CONTROL else mode  # type: ignore[assignment]
    return run_sandboxed([sys.executable, "-c", textwrap.dedent(code), *args],
                         workdir=lay.work, mode=run_mode, **opts)


def verdict(mode: str, escaped: bool, what: str) -> None:
    if mode == CONTROL:
        assert escaped, (f"{what}: with isolation off the attempt must succeed, else this "
                         "test cannot tell isolation from a broken probe")
    else:
        assert not escaped, f"{what}: ESCAPED in {mode} mode"


READ = """
import json, sys
out = {}
for name, path in json.loads(sys.argv[1]).items():
    try:
        with open(path, "rb") as f:
            out[name] = f.read().decode(errors="replace")
    except OSError as e:
        out[name] = "DENIED " + type(e).__name__
print(json.dumps(out))
"""


@pytest.mark.parametrize("target", ["vault", "db", "token", "agent_secrets", "other_workspace"])
def test_read_a_secret_file(mode: str, layout: Layout, target: str) -> None:
    path = layout.targets[target]
    r = attempt(mode, layout, READ, json.dumps({target: str(path)}))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)[target]
    verdict(mode, layout.markers[target] in got, f"read {target} at {path}")
    if mode != CONTROL:
        assert got.startswith("DENIED"), got


def test_reach_the_vault_through_a_link_in_the_work_dir(mode: str, layout: Layout) -> None:
    """A symbolic link planted by the harness's user, and a hard link the code makes
    itself: opening either must not read the labels."""
    vault = layout.targets["vault"]
    (layout.work / "planted").symlink_to(vault)
    r = attempt(mode, layout, """
        import json, os, sys
        out = {}
        try:
            os.link(sys.argv[1], "stolen")
        except OSError as e:
            out["link"] = "DENIED " + type(e).__name__
        for name in ("planted", "stolen"):
            try:
                out[name] = open(name).read()
            except OSError as e:
                out[name] = "DENIED " + type(e).__name__
        print(json.dumps(out))
    """, str(vault))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    marker = layout.markers["vault"]
    verdict(mode, marker in got["planted"], f"read the vault through a symlink: {got}")
    verdict(mode, marker in got["stolen"], f"read the vault through a hard link: {got}")


def test_list_and_walk_the_aar_home(mode: str, layout: Layout) -> None:
    """Not by name either: walking every directory the sandbox can list finds no marker."""
    r = attempt(mode, layout, """
        import json, os, sys
        roots, markers = json.loads(sys.argv[1]), json.loads(sys.argv[2])
        found = []
        for root in roots:
            for dirpath, _, files in os.walk(root):
                for fn in files:
                    try:
                        data = open(os.path.join(dirpath, fn), "rb").read(1 << 20)
                    except OSError:
                        continue
                    found += [m for m in markers if m.encode() in data]
        print(json.dumps(sorted(set(found))))
    """, json.dumps([str(get_settings().home), str(layout.work.parent.parent), "/tmp"]),
        json.dumps(list(layout.markers.values())), cpu_seconds=60, timeout_s=120)
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    verdict(mode, bool(found), f"walk the AAR home: found {found}")


@pytest.fixture
def holder() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A process like the harness: started with an API key and the admin token in its
    environment (so they are in its /proc/PID/environ)."""
    marker = f"sk-ant-PARENT-SECRET-{uuid.uuid4().hex}"
    env = {**os.environ, "ANTHROPIC_API_KEY": marker, "AAR_ADMIN_TOKEN": marker}
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env)
    yield proc, marker
    proc.kill()
    proc.wait()


PROC_ENV = """
import json, os, sys
out = {"env": dict(os.environ)}
for pid in sys.argv[1:]:
    try:
        out[pid] = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
    except OSError as e:
        out[pid] = "DENIED " + type(e).__name__
print(json.dumps(out))
"""


def test_read_the_parents_environment(mode: str, layout: Layout,
                                      holder: tuple[subprocess.Popen[bytes], str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    proc, marker = holder
    monkeypatch.setenv("ANTHROPIC_API_KEY", marker)  # the caller's own environment too
    monkeypatch.setenv("AAR_ADMIN_TOKEN", marker)
    deadline = time.monotonic() + 10
    while marker.encode() not in Path(f"/proc/{proc.pid}/environ").read_bytes():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = attempt(mode, layout, PROC_ENV, str(proc.pid), str(os.getpid()))
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert marker not in json.dumps(seen["env"])  # never inherited, not even in control
    verdict(mode, marker in seen[str(proc.pid)], "read another process's /proc/PID/environ")


def test_read_pid_1_environ(mode: str, layout: Layout) -> None:
    try:
        host = Path("/proc/1/environ").read_bytes().decode(errors="replace")
    except OSError as exc:
        if mode == CONTROL:
            pytest.skip(f"this test process cannot read /proc/1/environ itself ({exc}), so "
                        "an unisolated process cannot either")
        host = None
    r = attempt(mode, layout, PROC_ENV, "1")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["1"]
    # isolated: refused, or PID 1 of the sandbox's own namespace (its clean environment)
    verdict(mode, host is not None and got == host, "read the host's /proc/1/environ")


WRITE = """
import json, sys
out = {}
for path in json.loads(sys.argv[1]):
    try:
        with open(path, "w") as f:
            f.write("tampered")
        out[path] = "WROTE"
    except OSError as e:
        out[path] = "DENIED " + type(e).__name__
print(json.dumps(out))
"""


def test_write_outside_the_work_dir(mode: str, layout: Layout) -> None:
    tag = uuid.uuid4().hex
    s = get_settings()
    host_paths = {
        "export": layout.export / "test.jsonl",
        "export_new": layout.export / f"new-{tag}",
        "vault": layout.targets["vault"],
        "other_workspace": layout.outside / f"planted-{tag}.py",
        "aar_home": s.home / f"planted-{tag}",
        "tmp": Path("/tmp") / f"aar-escape-{tag}",
    }
    before = {k: p.read_bytes() for k, p in host_paths.items() if p.exists()}
    inside = [mount_path("subprocess" if mode == CONTROL else mode,  # type: ignore[arg-type]
                         layout.export, EXPORT_MOUNT) + "/test.jsonl"
              if k == "export" else str(p) for k, p in host_paths.items()]
    inside[1] = inside[0].replace("test.jsonl", f"new-{tag}")
    try:
        r = attempt(mode, layout, WRITE, json.dumps(inside))
        assert r.returncode == 0, r.stderr
        changed = [k for k, p in host_paths.items()
                   if (p.read_bytes() if p.exists() else None) != before.get(k)]
    finally:
        for k in ("export_new", "other_workspace", "aar_home", "tmp"):
            host_paths[k].unlink(missing_ok=True)
    if mode == CONTROL:
        assert sorted(changed) == sorted(host_paths), changed
    else:
        assert changed == [], f"{mode} wrote to the host: {changed}"
    # and writing inside the work dir works in every mode
    r = attempt(mode, layout, "open('ok.txt', 'w').write('fine')")
    assert r.returncode == 0 and (layout.work / "ok.txt").read_text() == "fine", r.stderr


@pytest.fixture
def server_and_other() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two loopback TCP listeners: the "evaluation server" and anything else."""
    socks = []
    for _ in range(2):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        socks.append(srv)
    yield socks[0], socks[1]
    for srv in socks:
        srv.close()


NET = """
import json, socket, sys
server, other, udp = (int(a) for a in sys.argv[1:4])
out = {}
for name, port in (("server", server), ("other", other)):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
        out[name] = "CONNECTED"
    except OSError as e:
        out[name] = "BLOCKED " + type(e).__name__
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"exfiltrated", ("127.0.0.1", udp))
    out["udp"] = "SENT"
except OSError as e:
    out["udp"] = "BLOCKED " + type(e).__name__
print(json.dumps(out))
"""


def test_connect_anywhere_but_the_server(
        mode: str, layout: Layout, server_and_other: tuple[socket.socket, socket.socket]
) -> None:
    """The sandbox is given the server's port. bwrap never has network (the harness
    submits); landlock allows TCP to that port where its ABI can say so, else nothing.
    Every other port and UDP are refused in every isolating mode."""
    server, other = server_and_other
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.5)
    sp, op, up = (s.getsockname()[1] for s in (server, other, udp))
    abi = landlock_probe().abi
    # landlock: with the server's port (Landlock TCP rules, ABI >= 4) and without it (a
    # network namespace, or TCP rules with no port allowed)
    variants: list[int | None] = [sp, None] if mode == "landlock" else [sp]
    results = []
    for port in variants:
        r = attempt(mode, layout, NET, str(sp), str(op), str(up), server_port=port)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        try:
            arrived = udp.recv(64) == b"exfiltrated"
        except TimeoutError:
            arrived = False
        results.append((port, got, arrived))
    udp.close()
    for port, got, arrived in results:
        escaped = got["other"] == "CONNECTED" or arrived
        verdict(mode, escaped, f"reach a port other than the server's ({port=}): {got}")
        server_open = mode == CONTROL or (mode == "landlock" and port is not None and abi >= 4)
        assert got["server"] == "CONNECTED" if server_open else got["server"].startswith(
            "BLOCKED"), got


def test_connect_to_a_unix_socket_file(mode: str, layout: Layout, tmp_path: Path) -> None:
    """Like PostgreSQL's or Docker's socket: a path Landlock alone would not guard."""
    path = tmp_path / "db.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(2)
    try:
        r = attempt(mode, layout, """
            import socket, sys
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(sys.argv[1])
                print("CONNECTED")
            except OSError as e:
                print("BLOCKED", type(e).__name__)
        """, str(path))
    finally:
        srv.close()
    assert r.returncode == 0, r.stderr
    verdict(mode, r.stdout.startswith("CONNECTED"), f"connect to {path}: {r.stdout}")


def test_signal_a_process_outside(mode: str, layout: Layout,
                                  holder: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, _ = holder
    r = attempt(mode, layout, """
        import os, signal, sys
        try:
            os.kill(int(sys.argv[1]), signal.SIGTERM)
            print("SIGNALLED")
        except OSError as e:
            print("BLOCKED", type(e).__name__)
    """, str(proc.pid))
    assert r.returncode == 0, r.stderr
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=3)
    verdict(mode, proc.returncode == -signal.SIGTERM, f"kill pid {proc.pid}: {r.stdout}")


FORK_BOMB = """
import os, sys, time
made = 0
for _ in range(int(sys.argv[1])):
    try:
        if os.fork() == 0:
            time.sleep(20)
            os._exit(0)
        made += 1
    except OSError as e:
        print("REFUSED", made, type(e).__name__)
        break
else:
    print("FORKED", made)
"""


def test_fork_bomb_hits_the_process_limit(mode: str, layout: Layout) -> None:
    """A budget of 24 new tasks stops 600 forks (control: a budget of 2000 lets them run).
    The kernel never applies RLIMIT_NPROC to uid 0; for root, landlock mode caps its PID
    namespace instead (``pid_max``, Linux >= 6.14), which bwrap cannot do."""
    budget = 2000 if mode == CONTROL else 24
    if os.getuid() == 0 and mode == "bwrap":
        pytest.skip("bwrap run by root: the kernel ignores RLIMIT_NPROC for uid 0")
    if os.getuid() == 0 and mode == "landlock" and not landlock_probe().pid_max:
        pytest.skip("landlock run by root on a kernel without per-namespace pid_max: the "
                    "kernel ignores RLIMIT_NPROC for uid 0")
    r = attempt(mode, layout, FORK_BOMB, "600", nproc=budget, timeout_s=60)
    assert r.returncode == 0, r.stderr
    verdict(mode, r.stdout.startswith("FORKED 600"), f"fork 600 processes: {r.stdout}")
    if mode != CONTROL:
        assert r.stdout.startswith("REFUSED"), r.stdout


def test_memory_blow_up_hits_the_memory_limit(mode: str, layout: Layout) -> None:
    limit = 4096 if mode == CONTROL else 512
    r = attempt(mode, layout, """
        import sys
        blocks = [bytearray(64 << 20) for _ in range(int(sys.argv[1]) // 64)]
        print("ALLOCATED", sum(map(len, blocks)) >> 20)
    """, "1536", memory_mb=limit)
    escaped = r.returncode == 0 and "ALLOCATED 1536" in r.stdout
    verdict(mode, escaped, f"allocate 1.5 GB under a {limit} MB limit")
    if mode != CONTROL:
        assert r.killed_reason == "memory", r.stderr_tail()
