"""Token usage to dollars, with a price table users can edit.

The defaults live in ``prices.toml`` beside this module; ``$AAR_HOME/prices.toml`` and an
explicit ``--prices FILE`` are merged over them key by key (later wins).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aar.errors import AarError

DEFAULT_PRICES_FILE = Path(__file__).with_name("prices.toml")
_RATE_KEYS = ("input", "output", "cache_write", "cache_read")
# what may follow a listed id in a model name that still means the same model:
# a snapshot date, "-latest", a "[1m]" context tag, or an Ollama-style ":tag"
_SUFFIX = re.compile(r"^(?:[-@](?:\d{4}-?\d{2}-?\d{2}|latest|v\d[\w.:-]*)|\[\w+\]|:[\w.-]+)+$")


class TokenCounts(Protocol):
    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...

    @property
    def cache_write_tokens(self) -> int: ...

    @property
    def cache_read_tokens(self) -> int: ...


@dataclass(frozen=True)
class Rates:
    """US dollars per million tokens."""

    input: float = 0.0
    output: float = 0.0
    cache_write: float = 0.0
    cache_read: float = 0.0

    def cost(self, usage: TokenCounts) -> float:
        return (usage.input_tokens * self.input + usage.output_tokens * self.output
                + usage.cache_write_tokens * self.cache_write
                + usage.cache_read_tokens * self.cache_read) / 1_000_000


@dataclass(frozen=True)
class ModelPrice:
    rates: Rates
    long_threshold: int | None = None
    long_rates: Rates | None = None

    def rates_for(self, usage: TokenCounts) -> Rates:
        prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
        if self.long_rates is not None and self.long_threshold is not None \
                and prompt > self.long_threshold:
            return self.long_rates
        return self.rates

    def cost(self, usage: TokenCounts) -> float:
        return self.rates_for(usage).cost(usage)


@dataclass(frozen=True)
class PriceTable:
    models: Mapping[str, ModelPrice]
    default: ModelPrice = field(default_factory=lambda: ModelPrice(Rates()))
    sources: tuple[str, ...] = ()

    def resolve(self, model: str) -> str | None:
        """The table key that prices ``model``, or None when only the default applies."""
        candidates = [model]
        if "/" in model:  # "openai/gpt-4o", "anthropic.claude-..." style prefixes
            candidates.append(model.rsplit("/", 1)[1])
        for name in candidates:
            if name in self.models:
                return name
        for name in candidates:
            best = None
            for key in self.models:
                if name.startswith(key) and _SUFFIX.match(name[len(key):]) \
                        and (best is None or len(key) > len(best)):
                    best = key
            if best is not None:
                return best
        return None

    def lookup(self, model: str) -> tuple[ModelPrice, bool]:
        """(price, known): unknown models get the ``[default]`` price and ``known=False``."""
        key = self.resolve(model)
        return (self.default, False) if key is None else (self.models[key], True)

    def cost(self, model: str, usage: TokenCounts) -> float:
        return self.lookup(model)[0].cost(usage)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _rates(data: Mapping[str, Any], where: str) -> Rates:
    values: dict[str, float] = {}
    for key in _RATE_KEYS:
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise AarError(f"{where}.{key} must be a non-negative number, got {value!r}")
            values[key] = float(value)
    if "input" not in values or "output" not in values:
        raise AarError(f"{where} needs at least `input` and `output` (USD per million tokens)")
    # a model without published cache prices is billed as plain input
    values.setdefault("cache_write", values["input"])
    values.setdefault("cache_read", values["input"])
    return Rates(**values)


def _model_price(data: Mapping[str, Any], where: str) -> ModelPrice:
    if not isinstance(data, Mapping):
        raise AarError(f"{where} must be a table of prices")
    rates = _rates(data, where)
    long = data.get("long")
    if long is None:
        return ModelPrice(rates)
    if not isinstance(long, Mapping) or not isinstance(long.get("threshold"), int):
        raise AarError(f"{where}.long needs an integer `threshold` (prompt tokens)")
    return ModelPrice(rates, int(long["threshold"]), _rates(long, f"{where}.long"))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise AarError(f"price file {path} does not exist; pass an existing TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise AarError(f"price file {path} is not valid TOML: {exc}") from None


def load_prices(
    path: str | Path | None = None,
    *,
    home: Path | None = None,
    include_home: bool = True,
) -> PriceTable:
    """Defaults, then ``$AAR_HOME/prices.toml`` (if present), then ``path`` (``--prices``)."""
    files = [DEFAULT_PRICES_FILE]
    if include_home:
        if home is None:
            from aar.settings import get_settings

            home = get_settings().home
        user = home / "prices.toml"
        if user.is_file():
            files.append(user)
    if path is not None:
        files.append(Path(path).expanduser())
    merged: dict[str, Any] = {}
    for f in files:
        merged = _merge(merged, _read_toml(f))
    models_raw = merged.get("models", {})
    if not isinstance(models_raw, Mapping):
        raise AarError("price file: [models] must be a table of model ids")
    models = {str(k): _model_price(v, f'models."{k}"') for k, v in models_raw.items()}
    default_raw = merged.get("default", {"input": 0.0, "output": 0.0})
    return PriceTable(models, _model_price(default_raw, "default"),
                      tuple(str(f) for f in files))


_DEFAULT_TABLE: PriceTable | None = None


def default_prices() -> PriceTable:
    """The shipped table alone (no user overrides), loaded once."""
    global _DEFAULT_TABLE
    if _DEFAULT_TABLE is None:
        _DEFAULT_TABLE = load_prices(include_home=False)
    return _DEFAULT_TABLE


def cost(model: str, usage: TokenCounts, table: PriceTable | None = None) -> float:
    """Dollars for one call's token counts on ``model``."""
    return (table or default_prices()).cost(model, usage)


def cost_per_hour(usd: float, seconds: float) -> float | None:
    """Dollars per hour of wall time (None when no time has passed)."""
    return usd / (seconds / 3600.0) if seconds > 0 else None
