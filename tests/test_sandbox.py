"""The sandbox: code run in it cannot reach the vault, the server database, the admin token,
the network or the parent's secrets; limits stop it; the method worker gives the same
predictions as an in-process run in every mode. Every isolation test has a control showing
that the same probe does see the secret (or the socket) when isolation is absent. The
attack catalogue, run in every isolating mode, is ``test_sandbox_escape.py``."""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aar.data.prepare import Prepared, prepare
from aar.errors import AarError
from aar.methods import METHODS, resolve_method
from aar.sandbox import runner
from aar.sandbox.runner import (
    WORK_MOUNT,
    BwrapProbe,
    LandlockProbe,
    Mode,
    SandboxResult,
    bwrap_probe,
    clean_env,
    detect_mode,
    isolation_report,
    landlock_probe,
    mount_path,
    require_isolation,
    resolve_mode,
    run_sandboxed,
)
from aar.sandbox.worker import EXPORT_MOUNT, _read_job_file, run_method_sandboxed
from aar.settings import get_settings
from aar.w2s import baselines
from aar.w2s.context import examples_of, fit_predict

PROBE = bwrap_probe()
LANDLOCK = landlock_probe()
# CI that forces a mode (AAR_SANDBOX=bwrap or landlock) fails on a broken probe instead of
# quietly skipping every isolation test of that mode
FORCED = os.environ.get("AAR_SANDBOX", "")
needs_bwrap = pytest.mark.skipif(not PROBE.usable and FORCED != "bwrap",
                                 reason=f"bubblewrap is not usable here: {PROBE.reason}")
needs_landlock = pytest.mark.skipif(not LANDLOCK.usable and FORCED != "landlock",
                                    reason=f"Landlock is not usable here: {LANDLOCK.reason}")
ISOLATING = pytest.mark.parametrize("mode", [pytest.param("bwrap", marks=needs_bwrap),
                                             pytest.param("landlock", marks=needs_landlock)])
MODES = pytest.mark.parametrize("mode", [pytest.param("bwrap", marks=needs_bwrap),
                                         pytest.param("landlock", marks=needs_landlock),
                                         "subprocess"])
DATA = "synthetic:n=2000,seed=1"
SEEDS = [0, 1, 2]
VANILLA = Path(METHODS.get("vanilla").source_file)


def py(code: str, mode: Mode, workdir: Path, *args: str, **kw: Any) -> SandboxResult:
    opts: dict[str, Any] = {"cpu_seconds": 30, "memory_mb": 2048, "timeout_s": 60.0, **kw}
    return run_sandboxed([sys.executable, "-c", textwrap.dedent(code), *args], workdir=workdir,
                         mode=mode, **opts)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


@pytest.fixture
def secrets(aar_home: Path) -> dict[str, tuple[Path, str]]:
    """A vault labels file, the server's sqlite database and an admin token file, each
    holding a unique marker."""
    s = get_settings()
    out: dict[str, tuple[Path, str]] = {}
    marker = {k: f"{k.upper()}-SECRET-{uuid.uuid4().hex}" for k in ("vault", "db", "token")}
    labels = s.vault_dir / "ds-1" / "labels.json"
    labels.parent.mkdir(parents=True)
    labels.write_text(json.dumps({"id-1": 1, "marker": marker["vault"]}))
    out["vault"] = (labels, marker["vault"])
    db = Path(s.db_url.split(":///", 1)[1])
    with sqlite3.connect(db) as con:
        con.execute("create table admin (token text)")
        con.execute("insert into admin values (?)", (marker["db"],))
    con.close()
    out["db"] = (db, marker["db"])
    token = s.home / "admin_token"
    token.write_text(marker["token"])
    out["token"] = (token, marker["token"])
    return out


@pytest.fixture
def export(aar_home: Path) -> Path:
    """A label-free export beside the vault (what a workspace mount looks like)."""
    d = get_settings().workspace_dir / "ds-1"
    d.mkdir(parents=True)
    (d / "test.jsonl").write_text('{"id": "id-1", "text": "hello"}\n')
    return d


PEEK = """
import json, os, sys
paths, skip, markers, sweep = (json.loads(a) for a in sys.argv[1:5])
opened = {}
for name, p in paths.items():
    try:
        with open(p, "rb") as f:
            opened[name] = "READ " + f.read().decode(errors="replace")
    except (FileNotFoundError, PermissionError) as e:
        opened[name] = type(e).__name__
leaks = []  # every file reachable outside the system and interpreter trees
for root, dirs, files in os.walk("/") if sweep else ():
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]
    for fn in files:
        fp = os.path.join(root, fn)
        try:
            with open(fp, "rb") as f:
                data = f.read(1 << 20)
        except OSError:
            continue
        leaks += [fp for m in markers if m.encode() in data]
print(json.dumps({"opened": opened, "leaks": leaks}))
"""


def peek(mode: Mode, work: Path, secrets: dict[str, tuple[Path, str]], export: Path,
         sweep: bool) -> tuple[dict[str, Any], str]:
    paths = {k: str(p) for k, (p, _) in secrets.items()}
    paths["vault_via_home"] = str(get_settings().home / "vault" / "ds-1" / "labels.json")
    skip = ["/proc", "/sys", "/dev", "/usr", *map(str, runner._python_dirs())]
    markers = [m for _, m in secrets.values()]
    r = py(PEEK, mode, work, json.dumps(paths), json.dumps(skip), json.dumps(markers),
           json.dumps(sweep), readonly={export: EXPORT_MOUNT}, cpu_seconds=60, timeout_s=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stdout


@needs_bwrap
def test_bwrap_is_usable() -> None:
    assert PROBE.usable, PROBE.reason


@needs_landlock
def test_landlock_is_usable() -> None:
    assert LANDLOCK.usable and LANDLOCK.abi >= 1, LANDLOCK.reason


# -- file isolation ------------------------------------------------------------------------


@ISOLATING
def test_sandboxed_code_cannot_read_the_vault_the_database_or_the_admin_token(
        mode: Mode, work: Path, secrets: dict[str, tuple[Path, str]], export: Path) -> None:
    seen, stdout = peek(mode, work, secrets, export, sweep=True)
    for name in (*secrets, "vault_via_home"):
        assert seen["opened"][name] in ("FileNotFoundError", "PermissionError"), name
    assert seen["leaks"] == []
    for _, marker in secrets.values():
        assert marker not in stdout


def test_the_probe_sees_the_secrets_when_nothing_isolates_it(
        work: Path, secrets: dict[str, tuple[Path, str]], export: Path) -> None:
    """Control: in subprocess mode the same probe reads every secret, so the test above
    would fail if bubblewrap or Landlock exposed them."""
    seen, stdout = peek("subprocess", work, secrets, export, sweep=False)
    for name, (_, marker) in secrets.items():
        assert seen["opened"][name].startswith("READ"), name
        assert marker in stdout


@needs_bwrap
def test_sandbox_sees_only_its_own_mounts(work: Path, export: Path) -> None:
    r = py("""
        import json, os
        print(json.dumps({d: sorted(os.listdir(d)) for d in ("/", "/sandbox", "/etc", "/tmp")}))
    """, "bwrap", work, readonly={export: EXPORT_MOUNT})
    seen = json.loads(r.stdout)
    # The interpreter, the venv and aar's own source are bound where they are on the host
    # (a checkout under /tmp or /home shows its top folder there, and nothing else).
    python_dirs = runner._python_dirs()
    under_tmp = {p.parts[2] for p in python_dirs if Path("/tmp") in p.parents}
    roots = {p.parts[1] for p in python_dirs}
    assert seen["/sandbox"] == ["export", "work"]
    assert seen["/tmp"] == sorted(under_tmp)
    assert "passwd" not in seen["/etc"] and "shadow" not in seen["/etc"]
    assert not ({"home", "var", "srv", "mnt", "opt"} - roots) & set(seen["/"])


@needs_landlock
def test_landlock_sees_real_paths_but_cannot_list_around_them(work: Path, export: Path) -> None:
    r = py("""
        import json, os, sys
        out = {"cwd": os.getcwd(), "work": sorted(os.listdir(".")),
               "export": sorted(os.listdir(sys.argv[1]))}
        for d in ("/", "/etc", "/tmp", "/proc", "/home", os.path.dirname(sys.argv[1])):
            try:
                out[d] = sorted(os.listdir(d))
            except OSError as e:
                out[d] = type(e).__name__
        print(json.dumps(out))
    """, "landlock", work, str(export), readonly={export: EXPORT_MOUNT})
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["cwd"] == str(work.resolve()) and seen["export"] == ["test.jsonl"]
    for d in ("/", "/etc", "/tmp", str(export.parent)):
        assert seen[d] == "PermissionError", d
    assert seen["/home"] in ("PermissionError", "FileNotFoundError")
    if LANDLOCK.netns:  # its own PID namespace: /proc lists the launcher's init and itself
        assert [p for p in seen["/proc"] if p.isdigit()] == ["1", "2"]


@ISOLATING
def test_writes_land_in_the_workdir_and_the_export_is_read_only(
        mode: Mode, work: Path, export: Path) -> None:
    tmp_name = f"aar-sandbox-{uuid.uuid4().hex}"
    inside = mount_path(mode, export, EXPORT_MOUNT)
    r = py(f"""
        import errno, os
        open("result.txt", "w").write("written inside")
        open(os.path.join(os.environ["TMPDIR"], "t"), "w").write("private tmp")
        try:
            open("/tmp/{tmp_name}", "w").write("shared tmp")
        except OSError:
            pass
        for target in ("{inside}/test.jsonl", "{inside}/new.txt", "/usr/x"):
            try:
                open(target, "w").write("tampered")
                print("WROTE", target)
            except OSError as e:
                print("DENIED", target, errno.errorcode[e.errno])
    """, mode, work, readonly={export: EXPORT_MOUNT})
    assert r.returncode == 0, r.stderr
    assert (work / "result.txt").read_text() == "written inside"
    assert "WROTE" not in r.stdout and r.stdout.count("DENIED") == 3
    assert (export / "test.jsonl").read_text() == '{"id": "id-1", "text": "hello"}\n'
    assert not (export / "new.txt").exists()
    assert not Path("/tmp", tmp_name).exists()


def test_mounting_a_secret_or_a_clashing_path_is_refused(
        work: Path, secrets: dict[str, tuple[Path, str]], aar_home: Path) -> None:
    s = get_settings()
    for host in (s.vault_dir, s.home, s.home.parent, secrets["db"][0], s.vault_dir / "ds-1"):
        with pytest.raises(AarError, match="refusing"):
            py("pass", "subprocess", work, readonly={host: "/sandbox/x"})
    with pytest.raises(AarError, match="refusing"):
        py("pass", "subprocess", s.home)
    (s.home / "workspace").mkdir()
    with pytest.raises(AarError, match="overlaps"):
        py("pass", "subprocess", work, readonly={s.home / "workspace": "/usr/lib/x"})
    with pytest.raises(AarError, match="overlaps"):
        py("pass", "subprocess", work, readonly={s.home / "workspace": WORK_MOUNT})


# -- network and environment ---------------------------------------------------------------

CONNECT = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3).close()
    print("CONNECTED")
except OSError as e:
    print("BLOCKED", type(e).__name__, e)
"""


@pytest.fixture
def listener() -> Any:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    yield srv
    srv.close()


@ISOLATING
def test_sandboxed_code_cannot_open_a_tcp_connection(mode: Mode, work: Path,
                                                     listener: socket.socket) -> None:
    r = py(CONNECT, mode, work, str(listener.getsockname()[1]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("BLOCKED")


def test_subprocess_mode_reaches_the_socket(work: Path, listener: socket.socket) -> None:
    """Control for the test above (and a statement of what the fallback does not isolate)."""
    r = py(CONNECT, "subprocess", work, str(listener.getsockname()[1]))
    assert r.stdout.startswith("CONNECTED"), r.stdout + r.stderr


@MODES
def test_environment_is_clean(mode: Mode, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    leaked = {"ANTHROPIC_API_KEY": "sk-ant-SECRET-1", "OPENAI_API_KEY": "sk-SECRET-2",
              "AAR_ADMIN_TOKEN": "ADMIN-SECRET-3", "AAR_DB_URL": "postgresql://u:PW-SECRET-4@h/db",
              "AWS_SECRET_ACCESS_KEY": "AWS-SECRET-5"}
    for k, v in leaked.items():
        monkeypatch.setenv(k, v)
    # kernel-selecting variables are kept (bit-identical BLAS), secret-looking ones never
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    monkeypatch.setenv("OMP_API_TOKEN", "OMP-SECRET-6")
    leaked["OMP_API_TOKEN"] = "OMP-SECRET-6"
    r = py("""
        import json, os
        print(json.dumps({"env": dict(os.environ), "cwd": os.getcwd(),
                          "proc": open("/proc/self/environ", "rb").read().decode()}))
    """, mode, work, env={"EXTRA": "given"})
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert not set(leaked) & set(seen["env"])
    for v in leaked.values():
        assert v not in r.stdout
    home = WORK_MOUNT if mode == "bwrap" else str(work.resolve())
    assert seen["env"]["HOME"] == home and seen["cwd"] == home
    assert seen["env"]["EXTRA"] == "given" and seen["env"]["PYTHONHASHSEED"] == "0"
    assert seen["env"]["OMP_NUM_THREADS"] == "1" and seen["env"]["MKL_CBWR"] == "COMPATIBLE"
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        assert seen["env"].get(k) == os.environ.get(k), k
    assert "HOME=" in seen["proc"]  # its own /proc/self is readable, and as clean
    assert r.mode == mode


def test_clean_env_is_an_allow_list() -> None:
    parent = {"OPENBLAS_CORETYPE": "Haswell", "OMP_SCHEDULE": "static", "KMP_AFFINITY": "x",
              "NPY_DISABLE_CPU_FEATURES": "AVX512F", "OMP_NUM_THREADS": "8",
              "MKL_SERVICE_KEY": "s", "BLIS_AUTH": "s", "ANTHROPIC_API_KEY": "s", "LD_PRELOAD": "x",
              "DATABASE_URL": "s", "PYTHONPATH": "/evil"}
    from aar.sandbox.runner import kernel_env

    assert kernel_env(parent) == {"OPENBLAS_CORETYPE": "Haswell", "OMP_SCHEDULE": "static",
                                  "KMP_AFFINITY": "x", "NPY_DISABLE_CPU_FEATURES": "AVX512F"}
    env = clean_env("/h", threads=3)
    assert env["OMP_NUM_THREADS"] == "3" and "PYTHONPATH" not in env


# -- limits --------------------------------------------------------------------------------


@MODES
def test_cpu_limit_kills_a_busy_loop(mode: Mode, work: Path) -> None:
    r = py("while True: pass", mode, work, cpu_seconds=1, timeout_s=30)
    assert r.killed_reason == "cpu" and not r.timed_out and r.returncode < 0
    assert r.seconds < 15


@MODES
def test_memory_limit_stops_a_big_allocation(mode: Mode, work: Path) -> None:
    code = "import sys; b = bytearray(int(sys.argv[1]) << 20); print('allocated', len(b))"
    small = py(code, mode, work, "64", memory_mb=768)
    assert small.returncode == 0 and "allocated" in small.stdout, small.stderr
    big = py(code, mode, work, "1536", memory_mb=768)
    assert big.returncode != 0 and "allocated" not in big.stdout
    assert big.killed_reason == "memory", big.stderr


def _alive(marker: str) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(int(pid))
        except OSError:
            pass
    return pids


@MODES
def test_wall_timeout_kills_the_process_and_its_children(mode: Mode, work: Path) -> None:
    marker = f"aar-sandbox-child-{uuid.uuid4().hex}"
    # in a PID namespace (bwrap; landlock with user namespaces) even a child in its own
    # session dies with the sandbox; the fallback can only kill the process group
    own_session = mode == "bwrap" or (mode == "landlock" and LANDLOCK.netns)
    r = py(f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(100)", "{marker}"],
                         start_new_session={own_session})
        time.sleep(100)
    """, mode, work, timeout_s=1.5)
    assert r.timed_out and r.killed_reason == "timeout"
    assert r.seconds < 10
    deadline = time.monotonic() + 5
    while _alive(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(marker) == []


def test_output_is_capped(work: Path) -> None:
    r = py("print('x' * 200_000 + 'END')", "subprocess", work, max_output_bytes=1000)
    assert r.stdout.startswith("[... ") and r.stdout.rstrip().endswith("END")
    assert len(r.stdout) < 1100


# -- mode selection ------------------------------------------------------------------------


@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "bwrap_probe", lambda: BwrapProbe(False, "no bwrap in this test"))


@pytest.fixture
def no_landlock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "landlock_probe",
                        lambda: LandlockProbe(False, "no Landlock in this test"))


def test_forced_subprocess_mode_runs_clean_and_says_so_every_time(
        work: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AAR_SANDBOX", "subprocess")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-SECRET")
    with caplog.at_level(logging.WARNING, logger="aar.sandbox.runner"):
        r = run_sandboxed([sys.executable, "-c", "import os; print(sorted(os.environ))"],
                          workdir=work, cpu_seconds=10, memory_mb=1024, timeout_s=30)
        run_sandboxed([sys.executable, "-c", "pass"], workdir=work, cpu_seconds=10,
                      memory_mb=1024, timeout_s=30)
    assert r.mode == "subprocess" and r.returncode == 0
    assert "ANTHROPIC_API_KEY" not in r.stdout and "HOME" in r.stdout
    warnings = [m for m in caplog.messages if "NO file or network isolation" in m]
    assert len(warnings) == 2


@needs_landlock
def test_auto_takes_landlock_without_bubblewrap(no_bwrap: None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AAR_SANDBOX", "auto")
    assert detect_mode() == "landlock" and resolve_mode() == "landlock"
    assert require_isolation() == "landlock"
    report = isolation_report()
    assert report.mode == "landlock" and report.isolated and report.landlock_abi >= 1
    monkeypatch.setenv("AAR_SANDBOX", "bwrap")
    with pytest.raises(AarError, match="bubblewrap"):
        resolve_mode()


def test_without_isolation_auto_refuses_and_says_what_to_install(
        no_bwrap: None, no_landlock: None, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AAR_SANDBOX", "auto")
    assert detect_mode() is None
    with pytest.raises(AarError, match=r"install bubblewrap.*Landlock"):
        resolve_mode()
    with pytest.raises(AarError, match="--unsafe-sandbox"):
        require_isolation()
    report = isolation_report()
    assert report.mode is None and not report.isolated and "install" in report.reason
    for mode in ("bwrap", "landlock"):
        monkeypatch.setenv("AAR_SANDBOX", mode)
        with pytest.raises(AarError, match=f"AAR_SANDBOX={mode} but"):
            resolve_mode()
    monkeypatch.setenv("AAR_SANDBOX", "docker")
    with pytest.raises(AarError, match="not a sandbox mode"):
        resolve_mode()
    # asking by name is the only way to run unisolated, and it is loud
    monkeypatch.setenv("AAR_SANDBOX", "auto")
    with caplog.at_level(logging.WARNING, logger="aar.sandbox.runner"):
        assert require_isolation(allow_unsafe=True) == "subprocess"
    assert os.environ["AAR_SANDBOX"] == "subprocess"
    assert any("NO file or network isolation" in m for m in caplog.messages)
    assert isolation_report().mode == "subprocess" and not isolation_report().isolated


@pytest.mark.parametrize("how", ["path", "env"])
def test_probe_reports_a_missing_bwrap(how: str, monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    if how == "path":
        monkeypatch.delenv("AAR_BWRAP", raising=False)
        monkeypatch.setenv("PATH", str(tmp_path))
    else:
        monkeypatch.setenv("AAR_BWRAP", "none")
    bwrap_probe.cache_clear()
    try:
        probe = bwrap_probe()
        assert not probe.usable and ("not found" if how == "path" else "hidden") in probe.reason
        assert detect_mode() == ("landlock" if LANDLOCK.usable else None)
    finally:
        bwrap_probe.cache_clear()


@needs_bwrap
def test_auto_picks_bwrap_when_it_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AAR_SANDBOX", raising=False)
    assert detect_mode() == "bwrap" and resolve_mode() == "bwrap"


# -- the method worker ---------------------------------------------------------------------


@pytest.fixture
def synthetic() -> Prepared:
    prep = prepare(DATA)
    baselines.weak_teacher(prep, "syn_weak")
    baselines.student_l2(prep, "syn_weak", "syn_strong")
    return prep


@pytest.fixture(scope="session")
def tiny_method(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("methods") / "tiny_sandbox_method.py"
    path.write_text(textwrap.dedent("""
        import numpy as np
        from aar.methods import method

        @method("tiny_sandbox_method")
        def tiny(ctx, *, shrink: float = 0.5):
            head = ctx.train_strong(ctx.weak_soft["unlabeled"], l2=2.0)
            return lambda ex: 0.5 + shrink * (head.predict_proba(ex.strong_features) - 0.5)
    """))
    return path


def in_process(ref: str, prep: Prepared, params: dict[str, Any]) -> np.ndarray:
    spec = resolve_method(ref)
    resolved = spec.resolve_params(params)
    ex = examples_of(prep.workspace, "syn_weak", "syn_strong")
    return np.stack([fit_predict(spec, prep.workspace, "syn_weak", "syn_strong", s, resolved, ex)
                     for s in SEEDS])


def sandboxed(path: Path, prep: Prepared, params: dict[str, Any], work: Path,
              **kw: Any) -> np.ndarray:
    return run_method_sandboxed(path, prep.workspace, "syn_weak", "syn_strong", SEEDS, params,
                                workdir=work, **kw)


@MODES
def test_vanilla_in_the_sandbox_matches_in_process(mode: Mode, synthetic: Prepared, work: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AAR_SANDBOX", mode)
    got = sandboxed(VANILLA, synthetic, {"l2": 2.0}, work)
    want = in_process("vanilla", synthetic, {"l2": 2.0})
    assert got.shape == (len(SEEDS), len(synthetic.workspace.ids("test")))
    np.testing.assert_array_equal(got, want)
    assert not list(work.glob(".aar-run-*"))  # the job directory is cleaned up


@MODES
def test_a_method_file_in_the_sandbox_matches_in_process(
        mode: Mode, synthetic: Prepared, work: Path, tiny_method: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AAR_SANDBOX", mode)
    got = sandboxed(tiny_method, synthetic, {"shrink": "0.8"}, work)
    np.testing.assert_array_equal(got, in_process(str(tiny_method), synthetic, {"shrink": 0.8}))
    assert np.abs(got - 0.5).max() <= 0.4 + 1e-12


def _method(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(f"from aar.methods import method\n\n@method({name!r})\n"
                    f"def fn(ctx):\n{textwrap.indent(textwrap.dedent(body), '    ')}\n")
    return path


@ISOLATING
def test_a_method_that_opens_the_vault_gets_an_error(
        mode: Mode, synthetic: Prepared, work: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AAR_SANDBOX", mode)
    labels = synthetic.vault.root / "labels.json"
    assert labels.is_file()
    thief = _method(tmp_path, "thief", f"""
        import json
        labels = json.load(open({str(labels)!r}))
        return [float(labels[i]) for i in ctx.ids["test"]]
    """)
    with pytest.raises(AarError, match=r"FileNotFoundError|PermissionError") as err:
        sandboxed(thief, synthetic, {}, work)
    assert str(labels) in str(err.value)
    via_api = _method(tmp_path, "thief_api", """
        from aar.data.store import Vault
        labels = Vault(ctx.dataset).labels
        return [0.5] * len(ctx.ids["test"])
    """)
    with pytest.raises(AarError, match="failed in the sandbox"):
        sandboxed(via_api, synthetic, {}, work)


@MODES
def test_method_errors_and_limits_are_reported(mode: Mode, synthetic: Prepared, work: Path,
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AAR_SANDBOX", mode)
    boom = _method(tmp_path, "boom", "raise ValueError('boom-1234')")
    with pytest.raises(AarError, match=r"ValueError: boom-1234") as err:
        sandboxed(boom, synthetic, {}, work)
    assert "Traceback" in str(err.value)  # the worker's stderr tail
    bad = _method(tmp_path, "bad_shape", "return lambda ex: [0.5, 0.5]")
    with pytest.raises(AarError, match="shape"):
        sandboxed(bad, synthetic, {}, work)
    spin = _method(tmp_path, "spin", "while True:\n    pass")
    with pytest.raises(AarError, match="CPU time limit"):
        sandboxed(spin, synthetic, {}, work, cpu_seconds=4, timeout_s=60)


def test_outputs_planted_as_links_are_not_followed(tmp_path: Path,
                                                   secrets: dict[str, tuple[Path, str]]) -> None:
    job = tmp_path / "job"
    job.mkdir()
    (job / "report.json").symlink_to(secrets["vault"][0])
    with pytest.raises(AarError) as err:
        _read_job_file(job, "report.json", max_bytes=1 << 20)
    assert secrets["vault"][1] not in str(err.value)
    linked = tmp_path / "linked-job"
    linked.symlink_to(secrets["vault"][0].parent, target_is_directory=True)
    with pytest.raises(AarError, match="replaced"):
        _read_job_file(linked, "labels.json", max_bytes=1 << 20)


# -- the commands that run untrusted code, and aar doctor ----------------------------------


@pytest.mark.parametrize("command", [["research", "--minutes", "0.01"], ["verify"]])
def test_research_and_verify_refuse_to_start_without_isolation(
        command: list[str], no_bwrap: None, no_landlock: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from aar.cli import app

    monkeypatch.setenv("AAR_SANDBOX", "auto")
    result = CliRunner().invoke(app, command)
    assert isinstance(result.exception, AarError), result.output
    assert "install bubblewrap" in str(result.exception)
    assert "--unsafe-sandbox" in str(result.exception)
    # asked for by name, the same command gets past the check (and fails later, elsewhere)
    result = CliRunner().invoke(app, [*command, "--unsafe-sandbox", "--run", "no-such-run"]
                                if command == ["verify"] else [*command, "--unsafe-sandbox",
                                                                "--dataset", "no-such-data"])
    assert "install bubblewrap" not in str(result.exception)
    assert os.environ["AAR_SANDBOX"] == "subprocess"


def test_doctor_names_the_mode_and_the_missing_parts(
        no_bwrap: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from aar.doctor import diagnose, verdict

    monkeypatch.setenv("AAR_SANDBOX", "auto")
    monkeypatch.setenv("AAR_DB_URL", "postgresql+psycopg://u:PW-SECRET-7@db.local:5432/aar")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("AAR_CHROMIUM", raising=False)
    d = diagnose()
    parts = {p.name: p for p in d.parts}
    assert set(parts) == {"bubblewrap", "Landlock", "Chromium", "GPU", "PostgreSQL"}
    assert not parts["bubblewrap"].present and "apt-get install bubblewrap" in \
        parts["bubblewrap"].install
    assert not parts["Chromium"].present and "chromium" in parts["Chromium"].install
    assert not parts["GPU"].present  # no nvidia-smi on this PATH
    assert parts["PostgreSQL"].present and "PW-SECRET-7" not in json.dumps(d.to_dict())
    line = verdict(d.isolation)
    assert "\n" not in line
    if LANDLOCK.usable:
        assert line.startswith("sandbox: landlock - Landlock ABI")
        assert parts["Landlock"].present
    else:
        assert line.startswith("sandbox: NONE") and "install bubblewrap" in line
    monkeypatch.setenv("AAR_SANDBOX", "subprocess")
    assert "NOT ISOLATED" in verdict()
