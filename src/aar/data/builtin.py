"""Imports every built-in dataset module so their ``@dataset`` decorators run."""

from aar.data import (  # noqa: F401
    canary,
    code_humaneval,
    hf,
    jsonl,
    math_champ,
    pair_tasks,
    preference_hub,
    sentiment,
    synthetic,
    tweets,
)
