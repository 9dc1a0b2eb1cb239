"""Isolated execution of method and researcher code (bubblewrap, else Landlock; a
non-isolating subprocess only when asked for by name). ``run_sandboxed`` runs a command;
``run_method_sandboxed`` runs a method file over seeds on a workspace export and returns
its validated test predictions; ``require_isolation`` and ``isolation_report`` say which
mode a machine gets."""

from __future__ import annotations

from typing import Any

from aar.sandbox.runner import (
    WORK_MOUNT,
    IsolationReport,
    Mode,
    SandboxResult,
    bwrap_probe,
    detect_mode,
    isolation_report,
    landlock_probe,
    mount_path,
    require_isolation,
    resolve_mode,
    run_sandboxed,
)

__all__ = [
    "WORK_MOUNT",
    "IsolationReport",
    "Mode",
    "SandboxResult",
    "bwrap_probe",
    "detect_mode",
    "isolation_report",
    "landlock_probe",
    "mount_path",
    "require_isolation",
    "resolve_mode",
    "run_method_sandboxed",
    "run_sandboxed",
]


def __getattr__(name: str) -> Any:
    # imported lazily: ``python -m aar.sandbox.worker`` must not find the worker already
    # imported by its package
    if name == "run_method_sandboxed":
        from aar.sandbox.worker import run_method_sandboxed

        return run_method_sandboxed
    raise AttributeError(name)
