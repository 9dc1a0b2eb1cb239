"""``aar doctor``: what this machine gives aar, and what to install for the rest.

The one thing that matters most is the sandbox's isolation mode (``bwrap``, else
``landlock``, else none: ``aar research`` and ``aar verify`` then refuse to start). The
optional parts are looked up without starting them: bubblewrap and Chromium by path, a
GPU by the presence of ``nvidia-smi`` (no torch import, no driver query), the database by
``AAR_DB_URL`` (its password is never printed).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aar.sandbox import runner
from aar.sandbox.runner import INSTALL_HINT, IsolationReport
from aar.settings import get_settings

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@dataclass(frozen=True)
class Part:
    name: str
    present: bool
    detail: str  # what was found, or why it is missing
    needed_for: str
    install: str  # what to do when it is missing ("" when present)


@dataclass(frozen=True)
class Diagnosis:
    isolation: IsolationReport
    parts: list[Part] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"isolation": self.isolation.to_dict(), "parts": [asdict(p) for p in self.parts]}


def verdict(report: IsolationReport | None = None) -> str:
    """One line: the sandbox mode this machine gets and why."""
    r = report or runner.isolation_report()
    if r.mode is None:
        return f"sandbox: NONE - research and verify will refuse to run; {INSTALL_HINT}"
    if not r.isolated:
        return f"sandbox: {r.mode} - NOT ISOLATED (asked for by AAR_SANDBOX={r.requested})"
    return f"sandbox: {r.mode} - {r.reason}"


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _chromium() -> str | None:
    forced = os.environ.get("AAR_CHROMIUM")
    if forced:
        return forced if os.access(forced, os.X_OK) else None
    return next((p for n in CHROMIUM_NAMES if (p := shutil.which(n))), None)


def diagnose() -> Diagnosis:
    bw, ll = runner.bwrap_probe(), runner.landlock_probe()
    parts = [
        Part("bubblewrap", bw.usable, bw.reason,
             "the strictest sandbox (own mounts, uid 65534, no network)",
             "" if bw.usable else "apt-get install bubblewrap (Debian/Ubuntu), dnf install "
             "bubblewrap (Fedora); it also needs unprivileged user namespaces"),
        Part("Landlock", ll.usable, ll.reason,
             "the sandbox without bubblewrap (no root, no package)",
             "" if ll.usable else "Linux >= 5.13 with Landlock in the LSM list "
             "(CONFIG_SECURITY_LANDLOCK=y, lsm=...,landlock)"),
    ]
    chromium = _chromium()
    parts.append(Part("Chromium", chromium is not None, chromium or "not found",
                      "the dashboard's browser tests",
                      "" if chromium else "apt-get install chromium (or set AAR_CHROMIUM)"))
    smi = shutil.which("nvidia-smi")
    parts.append(Part("GPU", smi is not None,
                      f"nvidia-smi at {smi} (driver not queried)" if smi else "no nvidia-smi",
                      "faster encoding with large models (everything runs on CPU)",
                      "" if smi else "optional: an NVIDIA GPU with its driver"))
    url = os.environ.get("AAR_DB_URL", "")
    pg = url.startswith("postgres")
    db = _redact(url) if url else f"sqlite at {get_settings().home / 'aar.db'} (AAR_DB_URL unset)"
    parts.append(Part("PostgreSQL", pg, db,
                      "a shared evaluation server for many machines (sqlite is fine for one)",
                      "" if pg else "optional: AAR_DB_URL=postgresql+psycopg://user:pw@host/db"))
    return Diagnosis(runner.isolation_report(), parts)
