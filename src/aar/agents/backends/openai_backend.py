"""Any Chat Completions endpoint through the official ``openai`` SDK, with ``tools``.

Pointed at OpenAI by default, or with ``base_url`` at any compatible server (a local
vLLM, llama.cpp or Ollama server). Local servers often omit usage, tool-call ids or emit
arguments that are not JSON; each case is handled (estimated usage, generated ids, a
parse error sent back to the model). Retries on 429/5xx come from the SDK
(``max_retries``, honouring ``retry-after``).

``text_tool_calls=True`` (the local backend) also reads calls the model *wrote* in its
text when the server returned none (see :mod:`.textcalls`); such a turn is replayed as the
text the model wrote, without structured ``tool_calls``, so its chat template sees what
the model produced. ``constrained_calls=True`` (aar's own llama.cpp server) goes further:
the request's ``response_format`` carries :func:`.textcalls.call_schema`, so the server's
grammar lets the model write nothing but one well-formed call of one of the tools.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, Literal

import openai

from .base import (
    AssistantTurn,
    BackendError,
    CallUsage,
    Message,
    ToolCall,
    ToolChoice,
    ToolSpec,
    UserTurn,
    estimate_tokens,
    parse_arguments,
)
from .textcalls import call_schema, parse_text_calls

DEFAULT_OPENAI_MODEL = "gpt-6.2-sol"
ERROR_PREFIX = "ERROR: "
TEXT_CALLS = {"type": "text_tool_calls"}  # provider block: the calls were parsed from text


def _arguments_text(call: ToolCall) -> str:
    if call.raw_arguments is not None:
        return call.raw_arguments
    return json.dumps(call.arguments)


def to_openai_messages(system: str, messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Neutral turns as Chat Completions ``messages`` (system first, one tool msg a result)."""
    out: list[dict[str, Any]] = []
    if system:
        out.append({"role": "system", "content": system})
    for msg in messages:
        if isinstance(msg, UserTurn):
            out.append({"role": "user", "content": msg.text})
        elif isinstance(msg, AssistantTurn):
            entry: dict[str, Any] = {"role": "assistant", "content": msg.text or None}
            if msg.tool_calls and TEXT_CALLS not in msg.provider_blocks:
                entry["tool_calls"] = [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.name, "arguments": _arguments_text(c)}}
                    for c in msg.tool_calls]
            elif not msg.text:
                entry["content"] = ""
            out.append(entry)
        else:
            for r in msg.results:
                text = r.content or "(no output)"
                out.append({"role": "tool", "tool_call_id": r.call_id,
                            "content": ERROR_PREFIX + text if r.is_error else text})
    return out


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(exc.message)


class OpenAIBackend:
    provider = "openai"

    def __init__(
        self,
        model: str = DEFAULT_OPENAI_MODEL,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = 6,
        timeout: float = 600.0,
        max_tokens: int | None = 16_384,
        max_tokens_param: Literal["max_completion_tokens", "max_tokens"] | None = None,
        client: openai.OpenAI | None = None,
        text_tool_calls: bool = False,
        constrained_calls: bool = False,
    ) -> None:
        self.model = model
        self.text_tool_calls = text_tool_calls or constrained_calls
        self.constrained_calls = constrained_calls
        self.max_tokens = max_tokens
        # OpenAI's own models take `max_completion_tokens`; local servers know `max_tokens`
        self.max_tokens_param = max_tokens_param or (
            "max_completion_tokens" if base_url is None and client is None else "max_tokens")
        if client is None:
            key = api_key or os.environ.get("OPENAI_API_KEY")
            if not key:
                if base_url is None:
                    raise BackendError(
                        "no OpenAI API key: set OPENAI_API_KEY, pass --api-key, or pass "
                        "--base-url for a local OpenAI-compatible server")
                key = "not-needed"  # local servers ignore the key, the SDK insists on one
            client = openai.OpenAI(api_key=key, base_url=base_url, max_retries=max_retries,
                                   timeout=timeout)
        self.client = client

    def _request(
        self, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec],
        max_tokens: int | None, tool_choice: ToolChoice,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.model,
                                   "messages": to_openai_messages(system, messages)}
        if tools:
            request["tools"] = [
                {"type": "function",
                 "function": {"name": t.name, "description": t.description,
                              "parameters": t.input_schema}}
                for t in tools]
            if tool_choice == "none":
                request["tool_choice"] = "none"
            elif self.constrained_calls:
                request["response_format"] = {"type": "json_object",
                                              "schema": call_schema(tools)}
        if max_tokens:
            request[self.max_tokens_param] = max_tokens
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
            response = self.client.chat.completions.create(**request)
        except openai.APIStatusError as exc:
            raise BackendError(
                f"chat completions endpoint {self.client.base_url} returned "
                f"{exc.status_code} for model {self.model} ({_error_message(exc)})",
                status=exc.status_code,
                retryable=exc.status_code in (408, 409, 429) or exc.status_code >= 500,
            ) from None
        except openai.APIConnectionError as exc:
            raise BackendError(
                f"cannot reach the chat completions endpoint {self.client.base_url}: {exc}",
                retryable=True) from None
        except openai.OpenAIError as exc:
            raise BackendError(f"OpenAI SDK error: {exc}") from None
        if not response.choices:
            raise BackendError(f"{self.client.base_url} returned no choices for {self.model}")
        choice = response.choices[0]
        message = choice.message
        text = message.content or ""
        calls: list[ToolCall] = []
        for i, tc in enumerate(message.tool_calls or []):
            function = getattr(tc, "function", None)
            if function is None:  # a custom (non-function) tool call: not ours
                continue
            raw = function.arguments
            args, error = parse_arguments(raw)
            call_id = tc.id or f"call_{len(messages)}_{i}"
            calls.append(ToolCall(call_id, function.name, args,
                                  raw if error is not None else None, error))
        blocks: tuple[dict[str, Any], ...] = ()
        if not calls and self.text_tool_calls and tools and tool_choice != "none":
            calls = parse_text_calls(text, f"call_{len(messages)}")
            blocks = (TEXT_CALLS,) if calls else ()
        u = response.usage
        if u is not None:
            details = u.prompt_tokens_details
            cached = (details.cached_tokens or 0) if details else 0
            written = (getattr(details, "cache_write_tokens", None) or 0) if details else 0
            usage = CallUsage(
                input_tokens=max(0, (u.prompt_tokens or 0) - cached - written),
                output_tokens=u.completion_tokens or 0,
                cache_write_tokens=written,
                cache_read_tokens=cached,
            )
        else:
            sent = json.dumps(request["messages"]) + json.dumps(request.get("tools", []))
            got = text + "".join(_arguments_text(c) for c in calls)
            usage = CallUsage(estimate_tokens(sent), estimate_tokens(got), estimated=True)
        return AssistantTurn(
            text=text,
            tool_calls=tuple(calls),
            usage=usage,
            stop_reason=str(choice.finish_reason or ""),
            model=str(response.model or self.model),
            provider=self.provider,
            provider_blocks=blocks,
        )
