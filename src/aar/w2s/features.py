"""Per-split features of a prepared dataset, from the content-addressed cache."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from aar.data.store import WORKSPACE_SPLITS, Vault, Workspace


def split_features(
    ws: Workspace, encoder: str, progress: Callable[[int], None] | None = None
) -> dict[str, np.ndarray]:
    """Features of the workspace's splits (``unlabeled`` and ``test``), by split."""
    from aar.models.cache import get_features

    arr = get_features(encoder, ws.all_texts(), progress=progress,
                       pairwise=bool(ws.manifest.get("pairwise")))
    out: dict[str, np.ndarray] = {}
    start = 0
    for split in WORKSPACE_SPLITS:
        n = len(ws.ids(split))
        out[split] = np.asarray(arr[start:start + n])
        start += n
    return out


def labeled_features(
    vault: Vault, encoder: str, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """Features of the ``labeled`` split (trusted code only: cached inside the vault)."""
    from aar.models.cache import get_features

    return get_features(encoder, vault.labeled_texts(), progress=progress,
                        root=vault.features_dir, pairwise=bool(vault.meta.get("pairwise")))
