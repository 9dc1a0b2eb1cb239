"""LLM backends behind one neutral conversation format (see :mod:`.base`)."""

from __future__ import annotations

from typing import Any

from aar.errors import AarError

from .base import (
    AssistantTurn,
    Backend,
    BackendError,
    CallUsage,
    Message,
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolResultsTurn,
    ToolSpec,
    UserTurn,
)

PROVIDERS = ("anthropic", "openai")

__all__ = [
    "PROVIDERS",
    "AssistantTurn",
    "Backend",
    "BackendError",
    "CallUsage",
    "Message",
    "ToolCall",
    "ToolChoice",
    "ToolResult",
    "ToolResultsTurn",
    "ToolSpec",
    "UserTurn",
    "make_backend",
]


def make_backend(
    provider: str,
    model: str | None = None,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    max_retries: int = 6,
    timeout: float = 600.0,
    max_tokens: int | None = None,
    **options: Any,
) -> Backend:
    """A backend by provider name: ``anthropic`` or ``openai`` (any compatible endpoint)."""
    common: dict[str, Any] = {"api_key": api_key, "base_url": base_url,
                              "max_retries": max_retries, "timeout": timeout, **options}
    if max_tokens is not None:
        common["max_tokens"] = max_tokens
    if provider == "anthropic":
        from .anthropic_backend import DEFAULT_ANTHROPIC_MODEL, AnthropicBackend

        return AnthropicBackend(model or DEFAULT_ANTHROPIC_MODEL, **common)
    if provider == "openai":
        from .openai_backend import DEFAULT_OPENAI_MODEL, OpenAIBackend

        return OpenAIBackend(model or DEFAULT_OPENAI_MODEL, **common)
    raise AarError(f"unknown backend {provider!r}; choose one of: {', '.join(PROVIDERS)}")
