"""Typed contracts for the objects that cross a seam between aar's layers.

Each module here depends on nothing in aar but the foundations (``errors``, ``util``), so
every layer may import it: ``flags`` (flag kinds, severities and the one flag type),
``events`` (the events of a research run, keyed on ``kind``), ``api`` (the evaluation
server's response bodies).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import ValidationError


class Named(StrEnum):
    """A StrEnum that can look a value up without raising (the contracts' enums)."""

    @classmethod
    def known(cls, value: str) -> Self | None:
        """The member whose value is ``value``, None when there is none."""
        try:
            return cls(value)
        except ValueError:
            return None


def problems(exc: ValidationError, limit: int = 3) -> str:
    """What a validation found, in one line: ``field.path: message; ...`` (the first
    ``limit`` problems)."""
    return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'value'}: {e['msg']}"
                     for e in exc.errors()[:limit])
