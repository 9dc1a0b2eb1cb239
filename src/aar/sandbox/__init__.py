"""Isolated execution of method and researcher code (bubblewrap, else a restricted
subprocess). ``run_sandboxed`` runs a command; ``run_method_sandboxed`` runs a method file
over seeds on a workspace export and returns its validated test predictions."""

from __future__ import annotations

from typing import Any

from aar.sandbox.runner import (
    WORK_MOUNT,
    Mode,
    SandboxResult,
    bwrap_probe,
    detect_mode,
    mount_path,
    resolve_mode,
    run_sandboxed,
)

__all__ = [
    "WORK_MOUNT",
    "Mode",
    "SandboxResult",
    "bwrap_probe",
    "detect_mode",
    "mount_path",
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
