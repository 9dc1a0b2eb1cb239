"""Live smoke tests against the real APIs; skipped unless an API key is set.

ANTHROPIC_API_KEY / OPENAI_API_KEY enable them; AAR_LIVE_ANTHROPIC_MODEL and
AAR_LIVE_OPENAI_MODEL pick the (cheap) model. Each run is capped at a few cents.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from aar.agents.backends import make_backend
from aar.agents.budget import Budget
from aar.agents.llm import LLMResearcher
from aar.agents.pricing import load_prices
from aar.agents.tools import Tool

LIVE = {
    "anthropic": ("ANTHROPIC_API_KEY", os.environ.get("AAR_LIVE_ANTHROPIC_MODEL",
                                                      "claude-haiku-5-5")),
    "openai": ("OPENAI_API_KEY", os.environ.get("AAR_LIVE_OPENAI_MODEL", "gpt-6-luna")),
}


@pytest.mark.parametrize("provider", sorted(LIVE))
def test_live_tool_round_trip(provider: str, tmp_path: Path) -> None:
    key_var, model = LIVE[provider]
    if not os.environ.get(key_var):
        pytest.skip(f"{key_var} is not set")
    calls: list[dict[str, Any]] = []

    def multiply(args: dict[str, Any]) -> str:
        calls.append(args)
        return str(args["a"] * args["b"])

    tool = Tool("multiply", "Multiply two integers exactly.", {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"]}, multiply)
    backend = make_backend(provider, model, max_tokens=2048)
    budget = Budget(max_usd=0.05, max_seconds=180)
    r = LLMResearcher(backend, None, [tool], budget, tmp_path / "t.jsonl",
                      "You are a careful assistant. Use the multiply tool for arithmetic.",
                      load_prices())
    outcome = r.run("What is 1234 * 5678? Use the tool, then answer with the number.")
    assert outcome.reason == "done", outcome.final_note
    assert {"a": 1234, "b": 5678} in calls or {"a": 5678, "b": 1234} in calls
    assert "7006652" in outcome.final_note.replace(",", "")
    assert outcome.usage.llm_calls >= 2 and outcome.usage.total_tokens > 0
