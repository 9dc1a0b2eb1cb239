"""Budgets on wall time, dollars, tokens and evaluations, and the usage they are charged with.

The researcher loop (and the MCP server) own the :class:`Budget`; the model never sees
it except through the loop's messages. Every charge and check takes a lock, so tools
running in other threads may charge it too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

LIMITS = ("seconds", "usd", "tokens", "evals")


@dataclass
class Usage:
    """What a researcher has spent. ``input_tokens`` excludes cache reads and writes."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    usd: float = 0.0
    evals: int = 0
    seconds: float = 0.0
    llm_calls: int = 0
    tool_calls: int = 0
    llm_seconds: float = 0.0  # wall time of the model calls (compute time for a local model)

    @property
    def total_tokens(self) -> int:
        """Every token billed: input, output, cache writes and cache reads."""
        return (self.input_tokens + self.output_tokens + self.cache_write_tokens
                + self.cache_read_tokens)

    @property
    def usd_per_hour(self) -> float | None:
        """Dollars per researcher-hour of wall time (None before any time has passed)."""
        return self.usd / (self.seconds / 3600.0) if self.seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total_tokens"] = self.total_tokens
        data["usd_per_hour"] = self.usd_per_hour
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def copy(self) -> Usage:
        return Usage(**asdict(self))


class Budget:
    """Limits (None = unlimited) plus the running usage they are checked against.

    Wall time counts from :meth:`start` (called by the loop) and adds to ``usage.seconds``
    carried over from earlier sessions of the same run. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        max_seconds: float | None = None,
        max_usd: float | None = None,
        max_tokens: int | None = None,
        max_evals: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (("max_seconds", max_seconds), ("max_usd", max_usd),
                            ("max_tokens", max_tokens), ("max_evals", max_evals)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.max_seconds = max_seconds
        self.max_usd = max_usd
        self.max_tokens = max_tokens
        self.max_evals = max_evals
        self._clock = clock
        self._lock = threading.Lock()
        self._usage = Usage()
        self._base_seconds = 0.0
        self._started_at: float | None = None

    # -- limits --------------------------------------------------------------------------
    def limits(self) -> dict[str, float | None]:
        return {"seconds": self.max_seconds, "usd": self.max_usd,
                "tokens": self.max_tokens, "evals": self.max_evals}

    # -- time ----------------------------------------------------------------------------
    def start(self, prior: Usage | None = None) -> None:
        """Begin (or resume) the clock; ``prior`` is what earlier sessions already spent."""
        with self._lock:
            if prior is not None:
                self._usage = prior.copy()
            self._base_seconds = self._usage.seconds
            self._started_at = self._clock()

    def _seconds(self) -> float:
        if self._started_at is None:
            return self._base_seconds
        return self._base_seconds + max(0.0, self._clock() - self._started_at)

    # -- charges -------------------------------------------------------------------------
    def charge_llm(
        self,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_read_tokens: int = 0,
        usd: float = 0.0,
        *,
        seconds: float = 0.0,
    ) -> None:
        with self._lock:
            u = self._usage
            u.llm_seconds += seconds
            u.input_tokens += input_tokens
            u.output_tokens += output_tokens
            u.cache_write_tokens += cache_write_tokens
            u.cache_read_tokens += cache_read_tokens
            u.usd += usd
            u.llm_calls += 1

    def charge_eval(self, n: int = 1) -> None:
        with self._lock:
            self._usage.evals += n

    def charge_tool_call(self) -> None:
        with self._lock:
            self._usage.tool_calls += 1

    # -- reading -------------------------------------------------------------------------
    def usage(self) -> Usage:
        """A snapshot of the usage so far, wall time included."""
        with self._lock:
            snap = self._usage.copy()
            snap.seconds = self._seconds()
            return snap

    def remaining(self) -> dict[str, float | None]:
        """What is left of each limit (None = unlimited; never below 0)."""
        u = self.usage()
        spent = {"seconds": u.seconds, "usd": u.usd, "tokens": float(u.total_tokens),
                 "evals": float(u.evals)}
        out: dict[str, float | None] = {}
        for name, limit in self.limits().items():
            out[name] = None if limit is None else max(0.0, float(limit) - spent[name])
        return out

    def exhausted(self) -> str | None:
        """The first limit reached ("seconds", "usd", "tokens" or "evals"), or None."""
        for name, left in self.remaining().items():
            if left is not None and left <= 0:
                return name
        return None

    def describe(self) -> str:
        u = self.usage()
        parts = [f"{u.seconds / 60:.1f} min", f"${u.usd:.4f}", f"{u.total_tokens} tokens",
                 f"{u.evals} evals"]
        limits = self.limits()
        shown = []
        for part, name in zip(parts, LIMITS, strict=True):
            limit = limits[name]
            if limit is None:
                shown.append(part)
            elif name == "seconds":
                shown.append(f"{part} of {limit / 60:.1f}")
            elif name == "usd":
                shown.append(f"{part} of ${limit:.2f}")
            else:
                shown.append(f"{part} of {int(limit)}")
        return ", ".join(shown)
