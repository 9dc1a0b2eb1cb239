"""Run untrusted method and researcher code away from the vault.

Three modes, chosen by ``AAR_SANDBOX`` (``auto`` by default, or ``bwrap`` / ``landlock`` /
``subprocess``). ``auto`` takes the first isolating mode that works here, ``bwrap`` then
``landlock``, and refuses to run (``AarError`` naming what to install) when neither does:

- ``bwrap`` (Debian ``bubblewrap``): a fresh set of namespaces (``--unshare-all``) whose
  file system holds only the system libraries (``/usr`` and the ``/lib*``, ``/bin`` links),
  a handful of ``/etc`` files the dynamic loader needs, the interpreter (``sys.base_prefix``),
  the venv (``sys.prefix``) and the directory that holds the ``aar`` package, all
  read-only; a private ``/tmp``, ``/proc`` and ``/dev``; the work directory read-write at
  ``WORK_MOUNT`` (also the cwd and ``$HOME``); and the read-only mounts the caller names.
  The AAR home, vault, packages, results and database are never mounted. There is no
  network at all, not even to the evaluation server: submissions are made by the trusted
  harness outside the sandbox, which is stricter than "only the server". The code runs
  as uid 65534 in its own user namespace (when the kernel allows it) with no capabilities.
- ``landlock`` (Linux >= 5.13, no root, no package): the kernel's Landlock LSM, applied by
  a small launcher before ``exec`` (see ``aar.sandbox.landlock``). Nothing is mounted, so
  the code sees real host paths (``mount_path`` says where), but it can open only the
  system directories, the loader's ``/etc`` files, the interpreter, venv and ``aar``
  package (read-only), the caller's read-only paths, ``/dev/null`` and friends,
  ``/proc`` (its own PID namespace's where the kernel allows) and
  ``/sys/devices/system/cpu`` (read-only), and the work directory and a private temporary
  directory (read-write); other processes' ``/proc/<pid>/environ`` (ptrace scoping), the
  AAR home, vault, database and other workspaces are refused. In a PID namespace (with
  user namespaces) every process it leaves behind dies with it. The network is cut by
  a fresh network namespace when unprivileged user namespaces work, else by Landlock's
  TCP rules (ABI >= 4); with ``server_port`` (ABI >= 4) TCP connect to that port alone
  is allowed. Capabilities are dropped, UNIX socket files cannot be opened (seccomp),
  signals and ptrace cannot reach processes outside the sandbox (Landlock scopes).
- ``subprocess``: only when asked for by name (``AAR_SANDBOX=subprocess``, or
  ``--unsafe-sandbox``): the same clean environment, cwd, resource limits and wall
  timeout, but the process sees the host's files and network. Every run logs a warning
  and ``SandboxResult.mode`` says so.

In all modes: CPU time, address space, file size, process count and core dumps are
limited with ``setrlimit`` before ``exec``; a wall timeout kills the whole process group;
the environment is built from an allow-list (``clean_env``): ``PATH``, ``HOME``, locale,
``PYTHONHASHSEED=0``, thread counts, the variables that select BLAS/OpenMP/NumPy kernels
(so sandboxed results are bit-identical to in-process ones) and what the caller passes
explicitly, never the parent's API keys, tokens or database URL.

Also read from the environment: ``AAR_BWRAP`` (the bubblewrap binary, or ``none`` to hide
it, as CI does to prove a machine without it), ``AAR_SANDBOX_NETNS=0`` (landlock mode
without a network namespace: Landlock's TCP rules and seccomp alone cut the network).
``aar doctor`` says which mode a machine gets and why.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Literal

from aar.errors import AarError
from aar.sandbox.landlock import LAUNCH_FAILED
from aar.sandbox.landlock import PREFIX as LAUNCH_PREFIX
from aar.settings import get_settings

log = logging.getLogger(__name__)

Mode = Literal["bwrap", "landlock", "subprocess"]
MODES: tuple[Mode, ...] = ("bwrap", "landlock", "subprocess")
ISOLATING: tuple[Mode, ...] = ("bwrap", "landlock")  # the order ``auto`` tries them in

SANDBOX_ROOT = "/sandbox"
WORK_MOUNT = f"{SANDBOX_ROOT}/work"  # the read-write work directory, cwd and $HOME
SANDBOX_UID = 65534  # "nobody" inside the sandbox's own user namespace

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
             "/etc/alternatives")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "RAYON_NUM_THREADS",
               "BLIS_NUM_THREADS", "GOTO_NUM_THREADS")
# Inherited from the parent because they choose the numerical kernels (OpenBLAS core type
# and cache sizes, MKL's code path and CNR mode, BLIS architecture, OpenMP schedule and
# reductions, NumPy's SIMD dispatch): without them a sandboxed run can take another
# kernel and differ from the in-process run in the last bits.
KERNEL_VAR_PREFIXES = ("OPENBLAS_", "GOTO", "OMP_", "GOMP_", "KMP_", "MKL_", "BLIS_",
                       "NUMEXPR_", "VECLIB_", "NPY_", "ARMPL_")
# ... but a name that smells of a credential is never inherited, whatever its prefix
SECRET_NAME_RE = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|_URL$|_DSN$",
                            re.I)
# the read-only extras Landlock mode allows beside the system and Python directories
LANDLOCK_READ = ("/proc", "/sys/devices/system/cpu")
LANDLOCK_DEV_RW = ("/dev/null", "/dev/zero", "/dev/full")
LANDLOCK_DEV_RO = ("/dev/random", "/dev/urandom")
LANDLOCK_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "landlock.py")
PROBE_TIMEOUT_S = 20.0
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) or run on "
                "Linux >= 5.13 with Landlock enabled (check with: aar doctor); or accept "
                "NO isolation with AAR_SANDBOX=subprocess / --unsafe-sandbox")
UNSAFE_WARNING = ("sandbox mode subprocess: code runs with NO file or network isolation (it "
                  "can read the vault and the database); asked for by AAR_SANDBOX=subprocess "
                  "or --unsafe-sandbox")


@dataclass(frozen=True)
class SandboxResult:
    returncode: int  # negative: killed by that signal (normalised in both modes)
    stdout: str
    stderr: str
    timed_out: bool
    killed_reason: str | None  # "timeout" | "cpu" | "memory" | "file_size" | "signal:NAME"
    mode: Mode
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def stderr_tail(self, lines: int = 20) -> str:
        return "\n".join(self.stderr.rstrip().splitlines()[-lines:])


# --- mode detection ------------------------------------------------------------------


@dataclass(frozen=True)
class BwrapProbe:
    usable: bool
    reason: str  # why not, or which profile works
    userns: bool = False  # run as SANDBOX_UID in a new user namespace
    tmpfs_size: bool = False  # bwrap knows ``--size`` (0.7+)
    exe: str = "bwrap"


def _bwrap_exe() -> str | None:
    """The bubblewrap binary: ``$AAR_BWRAP`` (a path, or ``none`` to hide it) or PATH's."""
    forced = os.environ.get("AAR_BWRAP", "").strip()
    if forced:
        return None if forced.lower() == "none" else shutil.which(forced)
    return shutil.which("bwrap")


@functools.cache
def bwrap_probe() -> BwrapProbe:
    """Try a trivial Python run under bubblewrap once per process and remember the answer:
    bwrap may be installed yet unusable (no user namespaces, seccomp in a container)."""
    exe = _bwrap_exe()
    if exe is None:
        hidden = os.environ.get("AAR_BWRAP", "").strip().lower() == "none"
        return BwrapProbe(False, "bwrap is hidden (AAR_BWRAP=none)" if hidden else
                          "bwrap not found on PATH (install the Debian package bubblewrap)")
    first_error = ""
    with tempfile.TemporaryDirectory(prefix="aar-bwrap-probe-") as tmp:
        for userns, size in ((True, True), (False, True), (True, False), (False, False)):
            probe = BwrapProbe(True, f"{exe}: userns={userns} tmpfs_size={size}", userns, size,
                               exe)
            argv = _bwrap_argv([sys.executable, "-c", "import sys"], Path(tmp), {}, probe,
                               tmpfs_bytes=64 << 20)
            try:
                proc = subprocess.run(argv, capture_output=True, timeout=PROBE_TIMEOUT_S,
                                      env=clean_env(WORK_MOUNT), check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return BwrapProbe(False, f"bwrap failed to start: {exc}")
            if proc.returncode == 0:
                return probe
            first_error = first_error or proc.stderr.decode(errors="replace").strip()
    return BwrapProbe(False, f"bwrap is installed but unusable: {first_error or 'no output'}")


@dataclass(frozen=True)
class LandlockProbe:
    usable: bool
    reason: str  # why not, or what works
    abi: int = 0  # the kernel's Landlock ABI (0: none)
    netns: bool = False  # the network is cut by a user+network namespace (else by Landlock)
    pid_max: bool = False  # a per-namespace PID cap works (stops fork bombs even as root)


def _netns_wanted() -> bool:
    """``AAR_SANDBOX_NETNS=0`` skips the network namespace (Landlock's TCP rules only)."""
    return os.environ.get("AAR_SANDBOX_NETNS", "1").strip() not in ("0", "false", "no")


@functools.cache
def landlock_probe() -> LandlockProbe:
    """Check Landlock's ABI, then start a real Python (venv and ``aar`` imported) under the
    launcher once per process and remember what it achieved."""
    from aar.sandbox.landlock import landlock_abi

    abi = landlock_abi()
    if abi < 1:
        return LandlockProbe(False, f"Landlock is not available (kernel {os.uname().release}; "
                             "needs Linux >= 5.13 with Landlock enabled)")
    with tempfile.TemporaryDirectory(prefix="aar-landlock-probe-") as tmp:
        work = Path(tmp)
        policy = landlock_policy(work, {}, work, None, nproc=64)
        policy["report"] = True
        argv = [sys.executable, "-I", "-S", LANDLOCK_SCRIPT, json.dumps(policy), "--",
                sys.executable, "-c", "import aar.sandbox"]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=PROBE_TIMEOUT_S,
                                  env=clean_env(str(work), tmpdir=str(work)), cwd=work,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return LandlockProbe(False, f"the Landlock launcher failed to start: {exc}", abi)
    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    report = next((ln[len(LAUNCH_PREFIX):].strip() for ln in lines
                   if ln.startswith(LAUNCH_PREFIX)), "")
    if proc.returncode == LAUNCH_FAILED or proc.returncode != 0:
        why = report or (lines[-1] if lines else f"exit status {proc.returncode}")
        return LandlockProbe(False, f"Landlock ABI {abi} but the sandbox cannot start: {why}",
                             abi)
    try:
        achieved = json.loads(report)
    except ValueError:
        return LandlockProbe(False, f"the Landlock launcher said {report!r}", abi)
    netns = bool(achieved.get("netns"))
    net = "network namespace" if netns else "Landlock TCP rules (no user namespaces)"
    return LandlockProbe(True, f"Landlock ABI {abi}, network cut by {net}", abi, netns,
                         bool(achieved.get("pid_max")))


def detect_mode() -> Mode | None:
    """The isolating mode this machine gets (``bwrap``, else ``landlock``), or None."""
    if bwrap_probe().usable:
        return "bwrap"
    if landlock_probe().usable:
        return "landlock"
    return None


def _warn_unisolated() -> None:
    log.warning("%s", UNSAFE_WARNING)


def resolve_mode(requested: str | None = None) -> Mode:
    """The mode to use: ``requested`` or ``$AAR_SANDBOX`` (``auto``, ``bwrap``, ``landlock``,
    ``subprocess``). ``auto`` never falls back to ``subprocess``: with no isolating mode
    it raises ``AarError`` saying what to install."""
    want = (requested or os.environ.get("AAR_SANDBOX") or "auto").strip().lower()
    if want not in ("auto", *MODES):
        raise AarError(f"AAR_SANDBOX={want!r} is not a sandbox mode; use auto, bwrap, "
                       "landlock or subprocess")
    if want == "subprocess":
        return "subprocess"
    if want == "bwrap":
        probe = bwrap_probe()
        if not probe.usable:
            raise AarError(f"AAR_SANDBOX=bwrap but {probe.reason}; install bubblewrap or use "
                           "AAR_SANDBOX=auto")
        return "bwrap"
    if want == "landlock":
        ll = landlock_probe()
        if not ll.usable:
            raise AarError(f"AAR_SANDBOX=landlock but {ll.reason}; use AAR_SANDBOX=auto")
        return "landlock"
    mode = detect_mode()
    if mode is None:
        raise AarError(f"no isolating sandbox on this machine ({bwrap_probe().reason}; "
                       f"{landlock_probe().reason}): {INSTALL_HINT}")
    return mode


def require_isolation(allow_unsafe: bool = False) -> Mode:
    """For commands that run untrusted code (``aar research``, ``aar verify``): the mode
    they will get, checked before they start. ``allow_unsafe`` (``--unsafe-sandbox``)
    selects ``subprocess`` for this process and its children, with a warning; otherwise
    an ``AarError`` says what to install when nothing isolates."""
    if allow_unsafe:
        os.environ["AAR_SANDBOX"] = "subprocess"
    mode = resolve_mode()
    if mode == "subprocess":
        _warn_unisolated()
    return mode


@dataclass(frozen=True)
class IsolationReport:
    """What isolates sandboxed code on this machine, for a run's record."""

    mode: Mode | None  # what ``resolve_mode()`` gives now (None: it refuses)
    isolated: bool
    reason: str
    bwrap: str  # the bubblewrap probe's answer
    landlock: str  # the Landlock probe's answer
    landlock_abi: int
    requested: str  # $AAR_SANDBOX or "auto"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def isolation_report() -> IsolationReport:
    """Which mode sandboxed runs get here and why (never raises)."""
    requested = (os.environ.get("AAR_SANDBOX") or "auto").strip().lower()
    bw, ll = bwrap_probe(), landlock_probe()
    mode: Mode | None = None
    try:
        got = resolve_mode()
        reason = {"bwrap": f"bubblewrap works ({bw.reason})",
                  "landlock": f"{ll.reason}" + ("" if bw.usable else f"; {bw.reason}"),
                  "subprocess": UNSAFE_WARNING}[got]
        mode = got
    except AarError as exc:
        reason = str(exc)
    return IsolationReport(mode, mode in ISOLATING, reason, bw.reason, ll.reason, ll.abi,
                           requested)


def mount_path(mode: Mode, host: Path, mount: str) -> str:
    """Where the code in the sandbox finds ``host``: its mount point under bwrap, or the host
    path itself in ``landlock`` and ``subprocess`` modes (which mount nothing)."""
    return mount if mode == "bwrap" else str(host)


# --- what may be mounted -------------------------------------------------------------


def secret_paths() -> list[Path]:
    """Host paths that must never be visible in the sandbox, nor any directory above them:
    the AAR home root, vault, raw packages (with labels), results and the sqlite database."""
    s = get_settings()
    out = [s.home, s.vault_dir, s.packages_dir, s.results_dir]
    url = s.db_url
    if url.startswith("sqlite") and ":///" in url:
        db = url.split(":///", 1)[1].split("?", 1)[0]
        if db and db != ":memory:":
            out.append(Path(db))
    return [_abs(p) for p in out]


def _abs(p: Path) -> Path:
    return Path(os.path.realpath(p))


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_mountable(host: Path, secrets: Sequence[Path] | None = None) -> Path:
    """Resolve ``host`` and refuse it when it is, contains or lies inside a secret path
    (the AAR home root itself is refused; its ``workspace``/``features`` subtrees are fine)."""
    path = _abs(host)
    for secret in secrets if secrets is not None else secret_paths():
        home_root = secret == _abs(get_settings().home)
        inside = secret in path.parents
        if path == secret or path in secret.parents or (inside and not home_root):
            raise AarError(f"refusing to expose {host} in the sandbox: it is or holds {secret}")
    return path


def _python_dirs() -> list[Path]:
    """Interpreter, venv and the directory holding the ``aar`` package, deepest-first
    duplicates removed (a directory already inside another one is not bound twice)."""
    import aar

    cands = [sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix,
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
             os.path.dirname(os.path.dirname(os.path.abspath(aar.__file__)))]
    paths: list[Path] = []
    for c in cands:
        for p in (Path(os.path.abspath(c)), _abs(Path(c))):
            if p not in paths:
                paths.append(p)
    system = [Path(d) for d in SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    keep = [p for p in paths if not any(q in p.parents for q in [*paths, *system])]
    return sorted(keep, key=lambda p: (len(p.parts), str(p)))


# --- the bwrap command line ----------------------------------------------------------


def _bwrap_argv(argv: Sequence[str], workdir: Path, readonly: Mapping[Path, str],
                probe: BwrapProbe, *, tmpfs_bytes: int) -> list[str]:
    out = [probe.exe, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
           "--hostname", "sandbox"]
    if probe.userns:
        out += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    out += ["--proc", "/proc", "--dev", "/dev"]
    if probe.tmpfs_size:
        out += ["--size", str(tmpfs_bytes)]
    out += ["--tmpfs", "/tmp"]
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            out += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            out += ["--ro-bind", d, d]
    for f in ETC_FILES:
        if os.path.exists(f):
            out += ["--ro-bind", f, f]
    for p in _python_dirs():
        out += ["--ro-bind", str(p), str(p)]
    out += ["--bind", str(workdir), WORK_MOUNT]
    for host, dest in readonly.items():
        out += ["--ro-bind", str(host), dest]
    return [*out, "--chdir", WORK_MOUNT, "--", *argv]


def _check_layout(workdir: Path, readonly: Mapping[Path, str]) -> dict[Path, str]:
    """Validate mounts: host paths exist and hold no secret; mount points are absolute and
    overlap neither each other nor the system and Python directories."""
    secrets = secret_paths()
    for p in _python_dirs():
        check_mountable(p, secrets)
        if _overlaps(p, Path(SANDBOX_ROOT)):
            raise AarError(f"the Python installation at {p} overlaps the sandbox's {SANDBOX_ROOT}")
    taken = [Path(WORK_MOUNT), *(Path(d) for d in (*SYSTEM_DIRS, "/proc", "/dev", "/tmp", "/etc"))]
    taken += _python_dirs()
    out: dict[Path, str] = {}
    for host, dest in readonly.items():
        if not os.path.exists(host):
            raise AarError(f"cannot mount {host} in the sandbox: it does not exist")
        d = Path(dest)
        if not d.is_absolute() or ".." in d.parts or d == Path("/"):
            raise AarError(f"sandbox mount point {dest!r} must be an absolute path below /")
        clash = next((t for t in taken if _overlaps(d, t)), None)
        if clash is not None:
            raise AarError(f"sandbox mount point {dest} overlaps {clash}; use one below "
                           f"{SANDBOX_ROOT}/")
        taken.append(d)
        out[check_mountable(host, secrets)] = str(d)
    return out


# --- environment and limits ----------------------------------------------------------


def kernel_env(parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's variables that select numerical kernels (``KERNEL_VAR_PREFIXES``),
    minus thread counts (the sandbox sets its own) and anything named like a secret."""
    src = os.environ if parent is None else parent
    return {k: v for k, v in src.items()
            if k.startswith(KERNEL_VAR_PREFIXES) and k not in THREAD_VARS
            and not SECRET_NAME_RE.search(k)}


def clean_env(home: str, *, threads: int = 1, tmpdir: str = "/tmp",
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of sandboxed code, from an allow-list: fixed values, the
    kernel-selecting variables of ``kernel_env`` and ``extra``; nothing else is inherited."""
    env = {
        **kernel_env(),
        "PATH": os.pathsep.join([os.path.join(sys.prefix, "bin"), "/usr/local/bin", "/usr/bin",
                                 "/bin"]),
        "HOME": home, "USER": "sandbox", "LOGNAME": "sandbox", "TMPDIR": tmpdir,
        "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1", "PYTHONUNBUFFERED": "1",
        **{v: str(threads) for v in THREAD_VARS},
    }
    env.update(extra or {})
    return env


def landlock_policy(work: Path, mounts: Mapping[Path, str], private: Path,
                    server_port: int | None, nproc: int | None = None) -> dict[str, Any]:
    """What the Landlock launcher allows: system, loader and Python directories read and
    execute; a few device and CPU-description files; the caller's read-only paths; the work
    and private temporary directories read-write. Everything else is refused."""
    rules: list[tuple[str, str]] = []
    rules += [(d, "rx") for d in SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    rules += [(f, "ro") for f in ETC_FILES if os.path.exists(f)]
    rules += [(str(p), "rx") for p in _python_dirs()]
    rules += [(f, "ro") for f in (*LANDLOCK_READ, *LANDLOCK_DEV_RO) if os.path.exists(f)]
    rules += [(f, "dev") for f in LANDLOCK_DEV_RW if os.path.exists(f)]
    rules += [(str(host), "ro") for host in mounts]
    rules += [(str(work), "rw"), (str(private), "rw")]
    return {"rules": rules, "port": server_port, "netns": _netns_wanted(), "nproc": nproc,
            "report": False}


def _user_tasks() -> int:
    """Threads this uid already runs: RLIMIT_NPROC counts them, so the budget goes on top."""
    uid, n = str(os.getuid()), 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                status = f.read()
        except OSError:
            continue
        m_uid = re.search(r"^Uid:\s+(\d+)", status, re.M)
        m_thr = re.search(r"^Threads:\s+(\d+)", status, re.M)
        if m_uid and m_uid.group(1) == uid:
            n += int(m_thr.group(1)) if m_thr else 1
    return n


def _limiter(cpu_seconds: int, memory_mb: int, file_mb: int, nproc: int) -> Callable[[], None]:
    """A preexec_fn that only calls setrlimit (safe enough after fork)."""
    mem = memory_mb << 20
    limits = [
        (resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 2)),  # SIGXCPU, then SIGKILL
        (resource.RLIMIT_AS, (mem, mem)),
        (resource.RLIMIT_FSIZE, (file_mb << 20, file_mb << 20)),
        (resource.RLIMIT_NPROC, (nproc, nproc)),
        (resource.RLIMIT_CORE, (0, 0)),
    ]
    capped = []
    for what, (soft, hard) in limits:  # never ask for more than the current hard limit
        _, cur_hard = resource.getrlimit(what)
        if cur_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        capped.append((what, (soft, hard)))

    def apply() -> None:
        for what, lim in capped:
            resource.setrlimit(what, lim)

    return apply


# --- running -------------------------------------------------------------------------


def _wait_unreaped(pid: int, timeout_s: float) -> bool:
    """Wait for ``pid`` to exit without reaping it (its process group id stays reserved, so
    killing the group afterwards cannot hit a recycled pid). False on timeout."""
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.05)


def _read_tail(f: IO[bytes], limit: int) -> str:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    start = max(0, size - limit)
    f.seek(start)
    text = f.read().decode(errors="replace")
    return f"[... {start} bytes cut ...]\n{text}" if start else text


_MEMORY_RE = re.compile(r"MemoryError|bad_alloc|Cannot allocate memory|out of memory", re.I)


def _killed_reason(rc: int, timed_out: bool, stderr: str) -> str | None:
    if timed_out:
        return "timeout"
    tail = stderr[-4000:]
    if rc < 0:
        sig = -rc
        if sig == signal.SIGXCPU:
            return "cpu"
        if sig == signal.SIGXFSZ:
            return "file_size"
        if _MEMORY_RE.search(tail):
            return "memory"
        try:
            return f"signal:{signal.Signals(sig).name}"
        except ValueError:
            return f"signal:{sig}"
    if rc != 0 and _MEMORY_RE.search(tail):
        return "memory"
    return None


def run_sandboxed(
    argv: Sequence[str],
    *,
    workdir: Path,
    readonly: Mapping[Path, str] | None = None,
    env: Mapping[str, str] | None = None,
    cpu_seconds: int,
    memory_mb: int,
    timeout_s: float,
    stdin: str | None = None,
    file_mb: int = 1024,
    nproc: int = 256,
    threads: int = 1,
    max_output_bytes: int = 1 << 20,
    mode: Mode | None = None,
    server_port: int | None = None,
) -> SandboxResult:
    """Run ``argv`` isolated, with ``workdir`` read-write as its cwd (``WORK_MOUNT`` under
    bwrap) and each ``readonly`` host path mounted read-only at its mount point.

    In ``landlock`` and ``subprocess`` modes nothing is mounted: code sees host paths (see
    ``mount_path``). ``env`` adds to the clean environment. ``server_port``: in landlock
    mode with ABI >= 4, TCP connect to this port (on any address) stays allowed and
    nothing else; bwrap mode never has network. Output beyond ``max_output_bytes`` per
    stream is cut from the front; ``nproc`` is a budget of new tasks on top of the uid's
    current ones. Raises ``AarError`` when the sandbox itself cannot start.
    """
    if not argv:
        raise AarError("nothing to run in the sandbox: empty command")
    mode = mode or resolve_mode()
    work = check_mountable(Path(workdir))
    if not work.is_dir():
        raise AarError(f"sandbox work directory {workdir} does not exist")
    mounts = _check_layout(work, readonly or {})
    limiter = _limiter(cpu_seconds, memory_mb, file_mb, _user_tasks() + nproc)
    with tempfile.TemporaryDirectory(prefix="aar-sandbox-") as private, \
            tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.TemporaryFile() as inp:
        if stdin is not None:
            inp.write(stdin.encode())
            inp.seek(0)
        if mode == "bwrap":
            probe = bwrap_probe()
            if not probe.usable:
                raise AarError(f"sandbox mode bwrap requested but {probe.reason}")
            cmd = _bwrap_argv(argv, work, mounts, probe, tmpfs_bytes=memory_mb << 20)
            child_env = clean_env(WORK_MOUNT, threads=threads, extra=env)
        elif mode == "landlock":
            ll = landlock_probe()
            if not ll.usable:
                raise AarError(f"sandbox mode landlock requested but {ll.reason}")
            policy = landlock_policy(work, mounts, Path(private), server_port, nproc)
            cmd = [sys.executable, "-I", "-S", LANDLOCK_SCRIPT, json.dumps(policy), "--",
                   *argv]
            child_env = clean_env(str(work), threads=threads, tmpdir=private, extra=env)
        else:
            _warn_unisolated()
            cmd = list(argv)
            child_env = clean_env(str(work), threads=threads, tmpdir=private, extra=env)
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd, cwd=work, env=child_env, stdin=inp if stdin is not None else subprocess.DEVNULL,
            stdout=out, stderr=err, start_new_session=True, preexec_fn=limiter, close_fds=True,
        )
        try:
            timed_out = not _wait_unreaped(proc.pid, timeout_s)
        finally:  # also on KeyboardInterrupt: never leave the group running
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        seconds = time.monotonic() - t0
        if mode == "bwrap" and 128 < rc < 128 + signal.NSIG:
            rc = 128 - rc  # bwrap reports a signalled child as 128 + signal
        stdout, stderr = _read_tail(out, max_output_bytes), _read_tail(err, max_output_bytes)
    if mode == "landlock" and rc == LAUNCH_FAILED and stderr.startswith(LAUNCH_PREFIX):
        raise AarError(f"the landlock sandbox could not start: {stderr.splitlines()[0]}")
    return SandboxResult(rc, stdout, stderr, timed_out, _killed_reason(rc, timed_out, stderr),
                         mode, seconds)
