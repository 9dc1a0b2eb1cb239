"""Causal language models as text encoders: ``smollm``, ``qwen0.5b``, ``qwen1.5b`` and
``lm:MODEL/LAYER/POOL`` for any other layer or pooling.

Features are the residual stream after block ``LAYER`` — middle layers of a decoder LM
give better linear-probe features than the last one, which is shaped for next-token
prediction — pooled over the text's tokens: ``mean`` (masked average) or ``last`` (the
final token, which in a causal model has read the whole text). Only the first ``LAYER``
blocks are kept, so encoding costs about LAYER/L of a full forward pass. Texts are cut at
``MAX_TOKENS`` tokens, keeping their *end* (the final answer of a solution, the last lines
of a program); no chat template. Defaults per model were chosen by measurement
(``bench/bench_lm_layers.py``, README "Language-model encoders").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aar.errors import AarError
from aar.models.causal_lm import LMS, get_lm, load_lm
from aar.models.registry import (
    Encoder,
    Progress,
    encode_sorted,
    encoder,
    encoder_family,
    pooled_states,
    torch_device,
)

MAX_TOKENS = 384
POOLINGS = ("mean", "last")


class LMEncoder:
    """Hidden states of a truncated causal LM, mean- or last-token pooled."""

    def __init__(self, name: str, model_name: str, layer: int, pool: str,
                 max_tokens: int = MAX_TOKENS, batch_size: int = 16) -> None:
        if pool not in POOLINGS:
            raise AarError(f"unknown pooling {pool!r}; use one of {', '.join(POOLINGS)}")
        spec = get_lm(model_name)
        if not 1 <= layer <= spec.layers:
            raise AarError(f"{model_name} has blocks 1..{spec.layers}; got layer {layer}")
        self.name = name
        self.dim = spec.dim
        self.pool = pool
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.tokenizer, model = load_lm(model_name, layer)
        self.tokenizer.truncation_side = "left"
        self.device = torch_device()
        self.model: Any = model.to(self.device).eval()
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))

    def encode(self, texts: list[str], progress: Progress | None = None) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_tokens)["input_ids"]
        return encode_sorted(ids, self.dim, self.batch_size, self._run, progress)

    def _run(self, batch: list[list[int]]) -> np.ndarray:
        return pooled_states(self.model, batch, self.pad_id, self.device, self.pool)


# model -> (layer, pooling): the default of the plain encoder name
DEFAULTS: dict[str, tuple[int, str]] = {
    "smollm": (20, "mean"),
    "qwen0.5b": (12, "mean"),
    "qwen1.5b": (14, "mean"),
}


def _register(model_name: str) -> None:
    spec = LMS[model_name]
    layer, pool = DEFAULTS[model_name]

    @encoder(
        model_name,
        description=f"{spec.title} (GGUF), {pool} of block {layer}/{spec.layers} "
                    f"({spec.dim}-d, causal LM)",
        packages=spec.packages,
        version=f"lm2:{layer}:{pool}:{MAX_TOKENS}",
    )
    def load() -> Encoder:
        return LMEncoder(model_name, model_name, layer, pool)


for _name in DEFAULTS:
    _register(_name)


@encoder_family(
    "lm",
    description="lm:MODEL/LAYER/POOL: a packaged causal LM (smollm, qwen0.5b, qwen1.5b) "
                "at another block or pooling (mean|last), e.g. lm:qwen1.5b/20/last",
    version=f"lm2:{MAX_TOKENS}",
)
def load_lm_family(arg: str) -> Encoder:
    parts = arg.split("/")
    if len(parts) != 3 or not parts[1].isdigit():
        raise AarError(f"bad lm encoder {arg!r}: use lm:MODEL/LAYER/POOL, e.g. lm:qwen0.5b/12/mean")
    model_name, layer, pool = parts
    return LMEncoder(f"lm:{arg}", model_name, int(layer), pool)
