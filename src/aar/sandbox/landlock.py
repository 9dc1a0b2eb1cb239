"""Landlock isolation without root: a tiny launcher that restricts itself, then execs.

The sandbox runner starts ``python -I -S landlock.py POLICY_JSON -- CMD...``. This file
is run as a script, not imported as ``aar.sandbox.landlock``, and uses the standard
library only: ``-I -S`` skips ``site`` and the environment, so nothing from the venv runs
before the restriction (and the interpreter starts in ~20 ms). In order, it

1. moves into fresh user, PID, mount, network and IPC namespaces (``unshare``) when the
   kernel lets an unprivileged process do it, which cuts the network entirely (only a
   loopback interface that is down) and makes the host's capabilities meaningless; the
   launcher then forks: the original process only waits and relays the exit status, its
   child is PID 1 of the new namespace and mounts a private ``/proc`` (only the sandbox's
   own processes; the host's ``/proc`` where a container forbids that mount) and forks
   the command as PID 2; when the command ends, PID 1 exits and the kernel kills every
   process the command left behind, even ones in their own session;
2. opens every rule's path (``O_PATH``), then drops every capability it still has
   (bounding set, ambient set, then ``capset`` to zero), so a sandbox started by root
   keeps no capability (no module loading, no raw sockets, no ``chown``);
3. sets ``PR_SET_NO_NEW_PRIVS`` (set-uid binaries grant nothing);
4. creates a Landlock ruleset that handles every file-system right the running ABI knows
   (and TCP bind/connect from ABI 4, abstract UNIX sockets and signals from ABI 6),
   adds one rule per path, plus one TCP-connect rule for the server port when one is
   given, and restricts itself;
5. installs a seccomp filter that refuses ``socket(AF_UNIX, ...)``, because Landlock (up
   to ABI 7) does not restrict ``connect`` to a UNIX socket *file* such as PostgreSQL's
   or Docker's (``socketpair`` still works); without a network namespace it also refuses
   IPv4/IPv6 sockets other than TCP (UDP, ICMP), which Landlock does not restrict;
6. execs the command, which inherits all of it and cannot undo any of it.

Why a launcher instead of a ``preexec_fn``: the parent may run threads (the research
orchestrator does), and after ``fork`` only async-signal-safe work is safe; ``ctypes``,
JSON parsing and ``unshare(CLONE_NEWUSER)`` (which needs a single-threaded caller) are
not. A fresh interpreter is single-threaded and can fail with a clear message. The cost
is one extra interpreter start (measured in ``bench/bench_sandbox.py``).

What the restriction allows is decided by the trusted runner (``runner.landlock_policy``)
and passed in as JSON: ``{"rules": [[path, "ro"|"rx"|"rw"|"dev"], ...], "port": int|null,
"netns": bool, "nproc": int|null, "report": bool}``. Paths are not remapped: the code sees
real host paths, and every path not named (``$AAR_HOME``, the vault, the database, other workspaces,
``/etc`` except the loader's files, ``/sys`` except the CPU description) cannot be opened,
listed, written or executed. ``/proc`` is readable because Python libraries need
``/proc/self`` (threadpoolctl reads ``/proc/self/maps``); other processes' ``environ``,
``maps``, ``fd`` and ``mem`` stay closed by Landlock's ptrace scoping, and with the private
``/proc`` the host's processes are not even listed. Landlock does not hide a path's
existence from ``stat`` and does not restrict ``chmod``/``utime`` by path: code can change
the mode bits (not the contents) of files owned by the uid that started it, which for a
root-run aar means root's files; run aar as an ordinary user, or use bwrap, to avoid it.

On failure the launcher writes one line starting ``aar-landlock:`` to stderr and exits
with ``LAUNCH_FAILED`` without running anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import platform
import resource
import signal
import struct
import sys
from typing import Any

LAUNCH_FAILED = 125
PREFIX = "aar-landlock:"

# since Linux 5.1 new system calls have one number on every architecture (alpha aside)
SYSCALLS = {"landlock_create_ruleset": 444, "landlock_add_rule": 445,
            "landlock_restrict_self": 446}
CAPSET = {"x86_64": 126, "aarch64": 91}
KNOWN_ARCHES = ("x86_64", "aarch64")
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_RULE_NET_PORT = 2

# file-system rights, by the ABI that introduced them
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
FS_ABI1 = (1 << 13) - 1
FS_BY_ABI = {1: FS_ABI1, 2: FS_ABI1 | FS_REFER, 3: FS_ABI1 | FS_REFER | FS_TRUNCATE,
             5: FS_ABI1 | FS_REFER | FS_TRUNCATE | FS_IOCTL_DEV}
FILE_ONLY = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

ACCESS = {
    "ro": FS_READ_FILE | FS_READ_DIR,
    "rx": FS_READ_FILE | FS_READ_DIR | FS_EXECUTE,
    "dev": FS_READ_FILE | FS_WRITE_FILE,
    "rw": -1,  # every handled right
}

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
PID_MAX_MIN = 301
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522
AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
SOCK_STREAM = 1


class LaunchError(Exception):
    pass


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _prctl(libc: ctypes.CDLL, option: int, *args: int) -> int:
    """``prctl`` with every argument passed as a full unsigned long (unused ones zero)."""
    full = [ctypes.c_ulong(a) for a in (*args, 0, 0, 0, 0)[:4]]
    return int(libc.prctl(ctypes.c_int(option), *full))


def fs_rights(abi: int) -> int:
    """The file-system rights Landlock ABI ``abi`` handles."""
    return FS_BY_ABI[max(k for k in FS_BY_ABI if k <= abi)] if abi >= 1 else 0


def landlock_abi() -> int:
    """The running kernel's Landlock ABI version: 0 when Landlock is missing or disabled,
    or the architecture is one this module does not know."""
    if sys.platform != "linux" or platform.machine() not in KNOWN_ARCHES:
        return 0
    libc = _libc()
    abi = libc.syscall(SYSCALLS["landlock_create_ruleset"], None, ctypes.c_size_t(0),
                       ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    return int(abi) if abi > 0 else 0


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise LaunchError(f"{what} failed: {os.strerror(err)} (errno {err})")
    return ret


def _unshare(libc: ctypes.CDLL, net: bool) -> bool:
    """New user, PID, mount and IPC namespaces (and network, if ``net``); False when the
    kernel forbids unprivileged user namespaces."""
    flags = (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC
             | (CLONE_NEWNET if net else 0))
    if libc.unshare(ctypes.c_int(flags)) == 0:
        return True
    if ctypes.get_errno() not in (errno.EPERM, errno.EINVAL, errno.ENOSPC, errno.EUSERS,
                                  errno.ENOSYS, errno.EACCES):
        _check(-1, "unshare")
    return False


def _private_proc(libc: ctypes.CDLL) -> bool:
    """In the new mount namespace, make every mount private and mount a fresh ``/proc``
    that shows this PID namespace alone. False (nothing changed) where it is refused."""
    if libc.mount(b"none", b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None) != 0:
        return False
    return libc.mount(b"proc", b"/proc", b"proc",
                      ctypes.c_ulong(MS_NOSUID | MS_NODEV | MS_NOEXEC), None) == 0


def _cap_pids(nproc: int) -> int:
    """Cap the PIDs of this PID namespace (``pid_max`` is per namespace from Linux 6.14;
    at least 301). RLIMIT_NPROC does not bind uid 0, so for a sandbox started by root
    this is what stops a fork bomb. The cap set, or 0 where the kernel has none."""
    want = max(nproc + 8, PID_MAX_MIN)
    try:
        with open("/proc/sys/kernel/pid_max", "w") as f:
            f.write(str(want))
        with open("/proc/sys/kernel/pid_max") as f:
            return want if int(f.read()) == want else 0
    except (OSError, ValueError):
        return 0


def _exit_as(status: int) -> None:
    """End this process the way a child with wait status ``status`` ended."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def _supervise(child: int, status_pipe: int) -> None:
    """The outer launcher: wait for the namespace's init, then end as its command ended
    (the init passes the command's raw wait status through ``status_pipe``)."""
    _, status = os.waitpid(child, 0)
    data = os.read(status_pipe, 4)
    _exit_as(struct.unpack("=i", data)[0] if len(data) == 4 else status)


def _init(target: int, status_pipe: int) -> None:
    """PID 1 of the sandbox's namespace: reap everything, and when the command ``target``
    ends, report its status and exit, which makes the kernel kill every process left."""
    while True:
        pid, status = os.wait()
        if pid == target:
            os.write(status_pipe, struct.pack("=i", status))
            os._exit(0)


def _drop_capabilities(libc: ctypes.CDLL) -> None:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 63
    for cap in range(last + 1):  # needs CAP_SETPCAP: an unprivileged caller has none to drop
        _prctl(libc, PR_CAPBSET_DROP, cap)
    _prctl(libc, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = struct.pack("=Ii", LINUX_CAPABILITY_VERSION_3, 0)
    data = bytes(24)  # two {effective, permitted, inheritable} u32 triples, all zero
    nr = CAPSET.get(platform.machine())
    if nr is not None:
        _check(libc.syscall(nr, header, data), "capset")


def _seccomp_sockets(libc: ctypes.CDLL, stream_only: bool) -> None:
    """A classic-BPF filter: ``socket(AF_UNIX, ...)`` fails with EACCES; with
    ``stream_only`` (no network namespace) so does every IPv4/IPv6 socket that is not TCP,
    since Landlock restricts TCP alone (no UDP, no ICMP to reach out with)."""
    machine = platform.machine()
    audit_arch = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}[machine]
    nr_socket = {"x86_64": 41, "aarch64": 198}[machine]
    ld_abs, jeq, jge, alu_and, ret = 0x20, 0x15, 0x35, 0x54, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | errno.EACCES
    kill = 0x80000000  # SECCOMP_RET_KILL_PROCESS: a foreign syscall ABI (i386, x32)
    # (code, jump-if-true, jump-if-false, k); jumps name a label, resolved below
    prog: list[tuple[int, int | str, int | str, int] | str] = [
        (ld_abs, 0, 0, 4),  # seccomp_data.arch
        (jeq, 0, "kill", audit_arch),
        (ld_abs, 0, 0, 0),  # seccomp_data.nr
        (jge, "kill", 0, 0x40000000),  # the x32 ABI shares AUDIT_ARCH_X86_64
        (jeq, 0, "allow", nr_socket),
        (ld_abs, 0, 0, 16),  # seccomp_data.args[0] (domain), low 32 bits
        (jeq, "deny", 0 if stream_only else "allow", AF_UNIX),
    ]
    if stream_only:
        prog += [
            (jeq, "type", 0, AF_INET),
            (jeq, "type", "allow", AF_INET6),
            "type",
            (ld_abs, 0, 0, 24),  # seccomp_data.args[1] (type), low 32 bits
            (alu_and, 0, 0, 0xF),  # without SOCK_NONBLOCK / SOCK_CLOEXEC
            (jeq, "allow", "deny", SOCK_STREAM),
        ]
    prog += ["deny", (ret, 0, 0, deny), "allow", (ret, 0, 0, allow), "kill", (ret, 0, 0, kill)]
    labels: dict[str, int] = {}
    for item in prog:
        if isinstance(item, str):
            labels[item] = sum(1 for x in prog[:prog.index(item)] if not isinstance(x, str))
    code = b""
    for i, ins in enumerate(x for x in prog if not isinstance(x, str)):
        op, jt, jf, k = ins
        off = [labels[j] - i - 1 if isinstance(j, str) else j for j in (jt, jf)]
        code += struct.pack("=HBBI", op, off[0], off[1], k)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = ctypes.create_string_buffer(struct.pack("@HP", len(code) // 8,
                                                    ctypes.addressof(buf)))
    _check(_prctl(libc, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog)),
           "seccomp")


def restrict(policy: dict[str, Any]) -> dict[str, Any]:
    """Apply ``policy`` to this process (irreversibly); return what was achieved. With user
    namespaces this forks: the caller continues as PID 1 of a new PID namespace (``pidns``
    in the result) while the original process only waits and relays the exit status."""
    libc = _libc()
    abi = landlock_abi()
    if abi < 1:
        raise LaunchError("Landlock is not available in this kernel (needs Linux >= 5.13 "
                          "with Landlock enabled)")
    fs = fs_rights(abi)
    port = policy.get("port")
    net_rules = abi >= 4
    fds: list[tuple[int, int]] = []
    try:
        # a network namespace cuts everything, the server too: use it unless a server port
        # must stay reachable and Landlock can allow exactly that port
        want_netns = bool(policy.get("netns", True)) and not (port and net_rules)
        userns = _unshare(libc, want_netns)
        netns = userns and want_netns
        if not netns and not net_rules:
            raise LaunchError(f"cannot cut the network: no user namespaces and Landlock ABI "
                              f"{abi} < 4 cannot restrict TCP")
        status_pipe = -1
        if userns:  # the next child is PID 1 of the new PID namespace
            read_end, status_pipe = os.pipe()
            child = os.fork()
            if child:
                os.close(status_pipe)
                _supervise(child, read_end)
            os.close(read_end)
            _prctl(libc, PR_SET_PDEATHSIG, signal.SIGKILL)
        if userns and policy.get("nproc"):
            # a new user namespace counts its tasks from zero: the budget is exact here
            n = int(policy["nproc"])
            resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
        # /proc of the sandbox's own PID namespace only, where the kernel allows the mount
        # (not inside containers that mask parts of /proc); else the host's, where
        # Landlock's ptrace scoping still refuses other processes' environ, maps, fd, mem
        private_proc = userns and _private_proc(libc)
        pid_cap = _cap_pids(int(policy["nproc"])) if private_proc and policy.get("nproc") else 0
        for path, kind in policy["rules"]:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            access = fs if ACCESS[kind] == -1 else ACCESS[kind] & fs
            if not os.path.isdir(path):
                access &= FILE_ONLY
            fds.append((fd, access))
        _drop_capabilities(libc)
        _check(_prctl(libc, PR_SET_NO_NEW_PRIVS, 1), "prctl(PR_SET_NO_NEW_PRIVS)")
        fields = [fs]
        if abi >= 4:
            fields.append(NET_BIND_TCP | NET_CONNECT_TCP)
        if abi >= 6:
            fields.append(SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL)
        attr = struct.pack(f"={len(fields)}Q", *fields)
        ruleset = _check(libc.syscall(SYSCALLS["landlock_create_ruleset"], attr,
                                      ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)),
                         "landlock_create_ruleset")
        for fd, access in fds:
            if access:
                rule = struct.pack("=Qi", access, fd)
                _check(libc.syscall(SYSCALLS["landlock_add_rule"], ctypes.c_int(ruleset),
                                    ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH), rule,
                                    ctypes.c_uint32(0)), "landlock_add_rule(path)")
        allowed_port = None
        if port and net_rules and not netns:
            rule = struct.pack("=QQ", NET_CONNECT_TCP, int(port))
            _check(libc.syscall(SYSCALLS["landlock_add_rule"], ctypes.c_int(ruleset),
                                ctypes.c_int(LANDLOCK_RULE_NET_PORT), rule, ctypes.c_uint32(0)),
                   "landlock_add_rule(port)")
            allowed_port = int(port)
        _check(libc.syscall(SYSCALLS["landlock_restrict_self"], ctypes.c_int(ruleset),
                            ctypes.c_uint32(0)), "landlock_restrict_self")
        os.close(ruleset)
        _seccomp_sockets(libc, stream_only=not netns)
    finally:
        for fd, _ in fds:
            os.close(fd)
    return {"abi": abi, "netns": netns, "pidns": userns, "private_proc": private_proc,
            "pid_max": pid_cap,
            "tcp_port": allowed_port,
            "uid": os.getuid(), "status_pipe": status_pipe}


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(f"{PREFIX} usage: landlock.py POLICY_JSON -- CMD [ARGS...]", file=sys.stderr)
        return LAUNCH_FAILED
    try:
        policy = json.loads(argv[0])
        achieved = restrict(policy)
    except (LaunchError, OSError, ValueError, KeyError, TypeError) as exc:
        print(f"{PREFIX} {exc}", file=sys.stderr)
        return LAUNCH_FAILED
    status_pipe = achieved.pop("status_pipe")
    if policy.get("report"):
        print(f"{PREFIX} {json.dumps(achieved)}", file=sys.stderr, flush=True)
    cmd = argv[2:]
    if achieved["pidns"]:
        target = os.fork()
        if target:
            _init(target, status_pipe)
        os.close(status_pipe)
    try:
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        print(f"{PREFIX} cannot run {cmd[0]}: {exc}", file=sys.stderr)
    return LAUNCH_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
