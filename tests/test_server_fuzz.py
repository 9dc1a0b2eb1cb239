"""Schema fuzzing: schemathesis generates requests (valid and invalid) for every operation
of the served OpenAPI schema, sent with an admin token and with an agent token; the server
must never answer 5xx, and every error must be the JSON ``{"error": ...}`` shape."""

# Fixtures come from test_server_support (imported below); tests take them as arguments.

from __future__ import annotations

import os

import pytest
from test_server_support import Env

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

EXAMPLES = int(os.environ.get("AAR_FUZZ_EXAMPLES", "12"))


def fuzz(operation: object, mode: object, tokens: list[dict[str, str]],
         failures: list[str]) -> int:
    """Send EXAMPLES generated cases of one operation with each token; returns the count."""
    label = operation.label  # type: ignore[attr-defined]
    strategy = operation.as_strategy(generation_mode=mode)  # type: ignore[attr-defined]
    sent = 0

    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None,
                         derandomize=True, suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(case=strategy)
    def run(case: object) -> None:
        nonlocal sent
        for headers in tokens:
            response = case.call(headers=headers)  # type: ignore[attr-defined]
            sent += 1
            if response.status_code >= 500:
                failures.append(f"{label}: {response.status_code} {response.text[:200]}")
            elif response.status_code >= 400:
                body = response.json()
                if not isinstance(body, dict) or "error" not in body:
                    failures.append(f"{label}: error without 'error': {response.text[:200]}")

    run()
    return sent


def test_fuzz_the_served_schema_finds_no_5xx(env: Env) -> None:
    from schemathesis import GenerationMode

    alice = env.agent("alice")
    # Some state for the id-taking routes to find.
    sub = env.evaluate(alice, env.noisy(0), seed=0).json()["id"]
    env.client.post("/api/v1/findings", json={"type": "insight", "title": "seed",
                                              "submissions": [sub]}, headers=alice)
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", env.app)
    failures: list[str] = []
    sent = 0
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            sent += fuzz(result.ok(), mode, [env.admin, alice], failures)
    assert sent > 100
    assert not failures, "\n".join(failures[:10])
