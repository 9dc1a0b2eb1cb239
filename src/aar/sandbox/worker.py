"""Run a method file over seeds inside the sandbox.

The harness (``run_method_sandboxed``, trusted, outside) copies the method file into a
fresh job directory inside the work directory, writes a request there and starts
``python -m aar.sandbox.worker REQUEST`` in the sandbox with the workspace export mounted
read-only at ``EXPORT_MOUNT`` and the feature cache at ``FEATURES_MOUNT``. The worker
(untrusted side) builds each seed's context from the export alone, runs the method and
writes ``predictions.npy`` (one row per seed) and ``report.json``; the harness reads them
without following links and validates every row. The method file is never imported on
the host.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import time
import traceback
import uuid
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

from aar.data.store import Workspace
from aar.errors import AarError
from aar.sandbox.runner import (
    SANDBOX_ROOT,
    WORK_MOUNT,
    mount_path,
    resolve_mode,
    run_sandboxed,
)
from aar.settings import get_settings

EXPORT_MOUNT = f"{SANDBOX_ROOT}/export"
FEATURES_MOUNT = f"{SANDBOX_ROOT}/features"
JOB_PREFIX = ".aar-run-"
MAX_REPORT_BYTES = 1 << 20
DEFAULT_CPU_SECONDS = 1800
DEFAULT_MEMORY_MB = 8192
DEFAULT_TIMEOUT_S = 3600.0


# --- harness side (trusted) ----------------------------------------------------------


def run_method_sandboxed(
    method_file: Path,
    workspace: Workspace,
    weak: str,
    strong: str,
    seeds: list[int],
    params: dict[str, Any],
    *,
    workdir: Path,
    method_name: str | None = None,
    cpu_seconds: int = DEFAULT_CPU_SECONDS,
    memory_mb: int = DEFAULT_MEMORY_MB,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    threads: int = 1,
) -> np.ndarray:
    """Test probabilities of ``method_file`` (``method_name`` if it registers several) for
    each seed, computed in the sandbox: shape ``(len(seeds), n_test)``.

    Weak and strong features are cached first (trusted code), so the sandbox only reads.
    Raises ``AarError`` with the tail of the worker's stderr when the method fails or a
    limit stops it.
    """
    from aar.w2s.features import split_features
    from aar.w2s.scoring import check_predictions

    method_file = Path(method_file)
    if not method_file.is_file():
        raise AarError(f"no method file {method_file}")
    if not seeds:
        raise AarError("give at least one seed")
    n_test = len(workspace.ids("test"))
    for encoder in (weak, strong):
        split_features(workspace, encoder)
    if not workspace.student_path(weak, strong).exists():
        raise AarError(f"no default student settings for {weak} -> {strong} in "
                       f"{workspace.root}; compute the baselines first (aar setup)")
    features = get_settings().features_dir
    mode = resolve_mode()
    work = Path(workdir).resolve()
    job = work / f"{JOB_PREFIX}{uuid.uuid4().hex[:12]}"
    job.mkdir(parents=True)
    shutil.copyfile(method_file, job / method_file.name)
    inside = mount_path(mode, work, WORK_MOUNT)
    job_in = f"{inside}/{job.name}"
    request = {
        "method_file": f"{job_in}/{method_file.name}", "method_name": method_name,
        "key": workspace.key, "export": mount_path(mode, workspace.root, EXPORT_MOUNT),
        "weak": weak, "strong": strong, "seeds": [int(s) for s in seeds], "params": params,
        "out": job_in,
    }
    (job / "request.json").write_text(json.dumps(request))
    env = {"AAR_HOME": f"{inside}/.aar", "AAR_FEATURES_DIR": mount_path(mode, features,
                                                                        FEATURES_MOUNT),
           "AAR_PACKAGES_DIR": f"{inside}/.aar/packages"}
    result = run_sandboxed(
        [sys.executable, "-m", "aar.sandbox.worker", f"{job_in}/request.json"],
        workdir=work, readonly={workspace.root: EXPORT_MOUNT, features: FEATURES_MOUNT},
        env=env, cpu_seconds=cpu_seconds, memory_mb=memory_mb, timeout_s=timeout_s,
        threads=threads, mode=mode,
    )
    name = method_file.name
    if result.killed_reason in ("timeout", "cpu", "memory", "file_size"):
        limit = {"timeout": f"the wall-clock limit ({timeout_s:g}s)",
                 "cpu": f"the CPU time limit ({cpu_seconds}s)",
                 "memory": f"the memory limit ({memory_mb} MB)",
                 "file_size": "the file size limit"}[result.killed_reason]
        raise AarError(f"{name} hit {limit} in the sandbox\n{result.stderr_tail()}")
    report = _read_job_json(job, "report.json")
    if not result.ok or report is None or report.get("error"):
        err = (report or {}).get("error") or f"worker exited with status {result.returncode}"
        raise AarError(f"{name} failed in the sandbox ({result.mode}): {err}\n"
                       f"{result.stderr_tail()}")
    raw = _read_job_file(job, "predictions.npy", max_bytes=16 * n_test * len(seeds) + 4096)
    try:
        preds = np.load(BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise AarError(f"{name}: the sandbox wrote unreadable predictions ({exc})") from None
    if preds.shape != (len(seeds), n_test):
        raise AarError(f"{name}: predictions have shape {preds.shape}, expected "
                       f"({len(seeds)}, {n_test})")
    out = np.stack([check_predictions(row, n_test) for row in preds])
    shutil.rmtree(job, ignore_errors=True)
    return out


def _read_job_file(job: Path, name: str, *, max_bytes: int) -> bytes:
    """Read ``job/name`` without following a link planted by the sandboxed code."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        dfd = os.open(job, flags | os.O_DIRECTORY)
    except OSError as exc:
        raise AarError(f"sandbox job directory {job} is gone or replaced ({exc})") from None
    try:
        fd = os.open(name, flags | os.O_NONBLOCK, dir_fd=dfd)
    except FileNotFoundError:
        raise AarError(f"the sandbox wrote no {name} in {job}") from None
    except OSError as exc:
        raise AarError(f"cannot read {name} from the sandbox ({exc})") from None
    finally:
        os.close(dfd)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise AarError(f"{name} written by the sandbox is not a regular file")
        if st.st_size > max_bytes:
            raise AarError(f"{name} written by the sandbox is too large ({st.st_size} bytes)")
        return f.read(max_bytes + 1)[:max_bytes]


def _read_job_json(job: Path, name: str) -> dict[str, Any] | None:
    try:
        data = json.loads(_read_job_file(job, name, max_bytes=MAX_REPORT_BYTES))
    except (AarError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --- sandbox side (untrusted) --------------------------------------------------------


def _load_spec(path: Path, name: str | None) -> Any:
    """Load the methods ``path`` registers into a registry without the built-ins, so a copy
    of a built-in module (same method name) is a valid method file too."""
    import aar.methods as am
    from aar.registry import Registry

    am.METHODS = Registry("method")
    names = am.load_method_file(path)
    return am.METHODS.get(name or names[0])


def _predict(request: dict[str, Any]) -> dict[str, Any]:
    from aar.w2s.context import examples_of, fit_predict

    spec = _load_spec(Path(request["method_file"]), request.get("method_name"))
    params = spec.resolve_params(request.get("params") or {})
    ws = Workspace(request["key"], root_dir=Path(request["export"]))
    examples = examples_of(ws, request["weak"], request["strong"])
    rows, per_seed = [], []
    for seed in request["seeds"]:
        t0 = time.perf_counter()
        rows.append(fit_predict(spec, ws, request["weak"], request["strong"], seed, params,
                                examples))
        per_seed.append({"seed": seed, "seconds": time.perf_counter() - t0})
    np.save(Path(request["out"]) / "predictions.npy", np.stack(rows))
    return {"method": spec.name, "code_hash": spec.code_hash(), "params": params,
            "transductive": spec.transductive, "seeds": per_seed, "error": None}


def main(argv: list[str] | None = None) -> int:
    """Entry point inside the sandbox: ``python -m aar.sandbox.worker REQUEST.json``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m aar.sandbox.worker REQUEST.json", file=sys.stderr)
        return 2
    request = json.loads(Path(args[0]).read_text())
    out = Path(request["out"])
    try:
        report = _predict(request)
        code = 0
    except Exception as exc:  # the method's own failure: report it, exit non-zero
        traceback.print_exc()
        report = {"error": f"{type(exc).__name__}: {exc}", "seeds": []}
        code = 1
    (out / "report.json").write_text(json.dumps(report, default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
