"""Claude through the official ``anthropic`` SDK: the Messages API with tool use.

The long system prompt and the tool definitions carry ``cache_control: ephemeral``
breakpoints, and so does the newest message, so each call reads the conversation so far
from the prompt cache. Rate limits (429), overload (529) and server errors are retried by
the SDK itself (``max_retries``, honouring ``retry-after``); what is left surfaces as one
:class:`BackendError`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import anthropic

from .base import (
    AssistantTurn,
    BackendError,
    CallUsage,
    Message,
    ToolCall,
    ToolChoice,
    ToolSpec,
    UserTurn,
)

DEFAULT_ANTHROPIC_MODEL = "claude-opus-5-5"
_CACHE = {"type": "ephemeral"}


def _input_block(block: Any) -> dict[str, Any]:
    """A response content block as the request form that replays it."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return {"type": "text", "text": block.text}
    if kind == "thinking":
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    if kind == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.data}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name,
                "input": dict(block.input)}
    dumped: dict[str, Any] = block.model_dump(mode="json", exclude_none=True)
    return dumped


def _assistant_content(turn: AssistantTurn) -> list[dict[str, Any]]:
    if turn.provider == "anthropic" and turn.provider_blocks:
        return [dict(b) for b in turn.provider_blocks]
    content: list[dict[str, Any]] = []
    if turn.text:
        content.append({"type": "text", "text": turn.text})
    for call in turn.tool_calls:
        content.append({"type": "tool_use", "id": call.id, "name": call.name,
                        "input": call.arguments})
    return content or [{"type": "text", "text": "(no reply)"}]


def to_anthropic_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Neutral turns as Messages API ``messages`` (same-role neighbours merged)."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        content: list[dict[str, Any]]
        if isinstance(msg, UserTurn):
            role, content = "user", [{"type": "text", "text": msg.text or "(empty)"}]
        elif isinstance(msg, AssistantTurn):
            role, content = "assistant", _assistant_content(msg)
        else:
            role = "user"
            content = [{"type": "tool_result", "tool_use_id": r.call_id,
                        "content": r.content or "(no output)", "is_error": r.is_error}
                       for r in msg.results]
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(content)
        else:
            out.append({"role": role, "content": content})
    return out


def _error_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return f"{err.get('type', 'error')}: {err.get('message', '')}".strip()
    return str(exc.message)


class AnthropicBackend:
    provider = "anthropic"

    def __init__(
        self,
        model: str = DEFAULT_ANTHROPIC_MODEL,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = 6,
        timeout: float = 600.0,
        max_tokens: int = 16_384,
        cache_prompt: bool = True,
        client: anthropic.Anthropic | None = None,
    ) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.cache_prompt = cache_prompt
        if client is None:
            key = api_key or os.environ.get("ANTHROPIC_API_KEY")
            if not key:
                raise BackendError(
                    "no Anthropic API key: set ANTHROPIC_API_KEY or pass --api-key")
            client = anthropic.Anthropic(api_key=key, base_url=base_url,
                                         max_retries=max_retries, timeout=timeout)
        self.client = client

    def _request(
        self, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec],
        max_tokens: int, tool_choice: ToolChoice,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "messages": to_anthropic_messages(messages),
        }
        if system:
            block: dict[str, Any] = {"type": "text", "text": system}
            if self.cache_prompt:
                block["cache_control"] = dict(_CACHE)
            request["system"] = [block]
        if tools:
            specs: list[dict[str, Any]] = [
                {"name": t.name, "description": t.description, "input_schema": t.input_schema}
                for t in tools]
            if self.cache_prompt:
                specs[-1]["cache_control"] = dict(_CACHE)
            request["tools"] = specs
            if tool_choice == "none":
                request["tool_choice"] = {"type": "none"}
        if self.cache_prompt and request["messages"]:
            last = request["messages"][-1]["content"][-1]
            if last.get("type") in ("text", "tool_result"):
                last["cache_control"] = dict(_CACHE)
        return request

    def complete(
        self,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        max_tokens: int | None = None,
        tool_choice: ToolChoice = "auto",
        temperature: float | None = None,
    ) -> AssistantTurn:
        request = self._request(system, messages, tools, max_tokens or self.max_tokens,
                                tool_choice)
        if temperature is not None:
            request["temperature"] = temperature
        try:
            response = self.client.messages.create(**request)
        except anthropic.APIStatusError as exc:
            raise BackendError(
                f"Anthropic API returned {exc.status_code} for model {self.model} "
                f"({_error_message(exc)})",
                status=exc.status_code,
                retryable=exc.status_code in (408, 409, 429) or exc.status_code >= 500,
            ) from None
        except anthropic.APIConnectionError as exc:
            raise BackendError(
                f"cannot reach the Anthropic API at {self.client.base_url}: {exc}",
                retryable=True) from None
        except anthropic.AnthropicError as exc:
            raise BackendError(f"Anthropic SDK error: {exc}") from None
        texts: list[str] = []
        calls: list[ToolCall] = []
        blocks: list[dict[str, Any]] = []
        for block in response.content:
            blocks.append(_input_block(block))
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                calls.append(ToolCall(block.id, block.name, dict(block.input)))
        u = response.usage
        usage = CallUsage(
            input_tokens=u.input_tokens or 0,
            output_tokens=u.output_tokens or 0,
            cache_write_tokens=u.cache_creation_input_tokens or 0,
            cache_read_tokens=u.cache_read_input_tokens or 0,
        )
        return AssistantTurn(
            text="\n".join(t for t in texts if t),
            tool_calls=tuple(calls),
            usage=usage,
            stop_reason=str(response.stop_reason or ""),
            model=str(response.model or self.model),
            provider=self.provider,
            provider_blocks=tuple(blocks),
        )
