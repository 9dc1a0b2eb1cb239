"""Where features are stored: one ``.npy`` per (encoder name, encoder version, texts).

The key is the storage's, so it sits with the data: ``aar.models.cache`` computes and
reads features through it, and ``aar.data.prepare`` stores the features a dataset ships
(for the precomputed encoders, whose version is :data:`SHIPPED_VERSION`) without
importing the models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aar.errors import AarError
from aar.util import atomic_save_npy, stable_hash, texts_hash

SHIPPED_VERSION = "1"  # the version of the features a dataset ships with its examples


def features_file(root: Path, encoder: str, version: str, texts: list[str]) -> Path:
    """The file holding ``encoder`` (at ``version``)'s features of ``texts`` under ``root``."""
    safe = encoder.replace("/", "__").replace(":", "_")
    key = stable_hash([encoder, version, texts_hash(texts)], n=20)
    return root / safe / f"{key}.npy"


def save_features(path: Path, encoder: str, texts: list[str], arr: np.ndarray) -> Path:
    """Store the rows of ``texts`` at ``path`` (float32, one row per text)."""
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != len(texts):
        raise AarError(f"features for {encoder}: shape {arr.shape} does not fit {len(texts)} texts")
    atomic_save_npy(path, arr)
    return path
