"""Encoders whose features exist only because a dataset ships them (``synthetic``)."""

from __future__ import annotations

from aar.data.features import SHIPPED_VERSION
from aar.errors import AarError
from aar.models.registry import Encoder, encoder


def _shipped_only(name: str) -> Encoder:
    raise AarError(f"encoder {name} cannot encode text; its features ship with a dataset")


@encoder("syn_weak", description="synthetic: weak view of the latent concept (shipped)",
         precomputed=True, version=SHIPPED_VERSION)
def load_syn_weak() -> Encoder:
    return _shipped_only("syn_weak")


@encoder("syn_strong", description="synthetic: full view of the latent concept (shipped)",
         precomputed=True, version=SHIPPED_VERSION)
def load_syn_strong() -> Encoder:
    return _shipped_only("syn_strong")
