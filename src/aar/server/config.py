"""Server settings: one frozen object, built from the environment or given in code."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from aar.settings import get_settings


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass(frozen=True)
class ServerConfig:
    """Everything the evaluation server can be tuned by.

    ``datasets``: dataset references the server accepts besides every dataset already
    prepared in ``$AAR_HOME`` (each is prepared at first use). ``budget_*`` are the default
    per-agent evaluation budgets (an agent's own may differ); they pace one agent.
    ``run_budget`` rations the labels: the evaluations one account (a research run's
    researchers together, or a lone agent) may spend on one universe of examples (a
    dataset with its canary and its re-drawn splits); the bound in ``GET /info`` is
    computed from it. ``eta`` is the Ladder's step
    and ``noise`` the scale of the Laplace noise on its comparisons, both in accuracy units
    (see ``aar.server.ladder``).
    """

    db_url: str = field(default_factory=lambda: get_settings().db_url)
    datasets: tuple[str, ...] = ()
    budget_per_hour: int = field(
        default_factory=lambda: _env_int("AAR_BUDGET_PER_HOUR", 30))
    budget_total: int = field(default_factory=lambda: _env_int("AAR_BUDGET_TOTAL", 300))
    run_budget: int = field(default_factory=lambda: _env_int("AAR_RUN_BUDGET", 300))
    eta: float = field(default_factory=lambda: _env_float("AAR_LADDER_ETA", 0.01))
    noise: float | None = None  # default: eta / 4
    max_releases: int = 20  # the Ladder stops releasing after this many new bests
    noise_seed: int | None = None  # only for tests: makes the Ladder's noise reproducible
    max_body_bytes: int = 8 << 20
    max_archive_bytes: int = 1 << 20
    max_archive_unpacked_bytes: int = 16 << 20
    max_archive_members: int = 2000
    min_seeds: int = 5
    probe_window: int = 10  # earlier submissions the probing detector compares against
    admin_token: str | None = field(
        default_factory=lambda: os.environ.get("AAR_ADMIN_TOKEN") or None)

    @property
    def ladder_noise(self) -> float:
        return self.eta / 4 if self.noise is None else self.noise
