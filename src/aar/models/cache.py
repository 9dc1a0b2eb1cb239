"""Content-addressed feature cache: one ``.npy`` per (encoder, version, texts).

``get_features`` returns cached rows or loads the encoder and computes them (with a
progress callback per batch). Precomputed encoders (features shipped by a dataset, e.g.
``syn_weak``) can only be read back; asking for texts they never saw is a clear error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aar.data.features import features_file, save_features
from aar.errors import AarError
from aar.models.registry import EncoderSpec, Progress, parse_encoder
from aar.settings import get_settings
from aar.util import atomic_save_npy


def features_path(encoder: str | EncoderSpec, texts: list[str],
                  root: Path | None = None) -> Path:
    """Where the features of ``texts`` live: under ``root`` (default: the shared feature
    cache; the vault keeps the labeled split's apart, out of method code's reach)."""
    spec = parse_encoder(encoder) if isinstance(encoder, str) else encoder
    return features_file(root or get_settings().features_dir, spec.name, spec.version, texts)


def has_features(encoder: str, texts: list[str]) -> bool:
    return features_path(encoder, texts).exists()


def put_features(encoder: str, texts: list[str], arr: np.ndarray,
                 root: Path | None = None) -> Path:
    """Store rows for ``texts`` (computed elsewhere, e.g. a held-out copy's)."""
    return save_features(features_path(encoder, texts, root), encoder, texts, arr)


def get_features(
    encoder: str, texts: list[str], progress: Progress | None = None,
    root: Path | None = None, *, pairwise: bool = False,
) -> np.ndarray:
    """float32 (len(texts), dim): from the cache, else encoded now and cached. For a
    pairwise dataset (``aar.data.pairs``) a row is ``f(prompt + first) - f(prompt + second)``;
    the halves are what is encoded and cached."""
    if pairwise:
        from aar.data.pairs import split_pair

        halves = [split_pair(t) for t in texts]
        if any(h is None for h in halves):
            raise AarError(f"encoder {encoder}: a text of this pairwise dataset is not a pair")
        # a response may sit in several pairs: each distinct half is encoded once
        unique = sorted({x for h in halves if h is not None for x in h})
        row = {x: i for i, x in enumerate(unique)}
        feats = get_features(encoder, unique, _rescaled(progress, len(unique), len(texts)),
                             root)
        first = [row[h[0]] for h in halves if h is not None]
        second = [row[h[1]] for h in halves if h is not None]
        return feats[first] - feats[second]
    spec = parse_encoder(encoder)
    path = features_path(spec, texts, root)
    if path.exists():
        try:
            arr = np.load(path)  # a copy, not a map: the file may be replaced later
            if arr.ndim == 2 and arr.shape[0] == len(texts):
                return arr
        except (ValueError, OSError):
            pass  # a damaged file is recomputed below
        path.unlink(missing_ok=True)
    if spec.precomputed:
        raise AarError(
            f"encoder {spec.name} only has features shipped by its dataset; "
            "these texts have none (use it with the dataset that provides it)"
        )
    arr = _encode_resumable(spec, list(texts), path.with_suffix(".partial.npy"), progress)
    if arr.shape[0] != len(texts) or not np.isfinite(arr).all():
        raise AarError(f"encoder {spec.name} returned bad features {arr.shape}")
    atomic_save_npy(path, arr)
    path.with_suffix(".partial.npy").unlink(missing_ok=True)
    return arr


def _rescaled(progress: Progress | None, inner: int, outer: int) -> Progress | None:
    """Progress over ``inner`` items reported in units of ``outer`` (halves -> pairs)."""
    if progress is None or inner == 0:
        return progress
    done = [0, 0]  # inner items seen, outer units reported

    def report(k: int) -> None:
        done[0] += k
        step = done[0] * outer // inner - done[1]
        if step:
            done[1] += step
            progress(step)

    return report


CHUNK = 1024  # texts encoded between checkpoints


def _encode_resumable(spec: EncoderSpec, texts: list[str], partial: Path,
                      progress: Progress | None) -> np.ndarray:
    """Encode in chunks, saving the rows done so far after each one, so an interrupted
    encoding (Ctrl-C, a crash) resumes where it stopped instead of starting over."""
    if not texts:  # nothing to encode, but the encoder still knows its width
        return np.asarray(spec.factory().encode([], progress=progress), dtype=np.float32)
    done: list[np.ndarray] = []
    if partial.exists():
        try:
            prev = np.load(partial)
            if prev.ndim == 2 and prev.shape[0] <= len(texts):
                done.append(prev)
                if progress is not None:
                    progress(prev.shape[0])
        except (ValueError, OSError):
            partial.unlink(missing_ok=True)  # damaged: start over
    n_done = done[0].shape[0] if done else 0
    model = None
    for start in range(n_done, len(texts), CHUNK):
        if model is None:  # loaded only when something is left to encode
            model = spec.factory()
        done.append(np.asarray(model.encode(texts[start:start + CHUNK], progress=progress),
                               dtype=np.float32))
        if start + CHUNK < len(texts):
            atomic_save_npy(partial, np.concatenate(done))
    return np.concatenate(done)
