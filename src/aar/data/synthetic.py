"""A synthetic testbed with a latent concept and tunable weak-teacher errors.

Each example has a latent vector ``z``; its label is the sign of ``z · u`` (plus a little
label noise). The dataset ships features for two precomputed encoders:

- ``syn_strong``: a random linear embedding of ``z`` plus small noise: a linear head can
  recover the label almost perfectly, so the ceiling is high.
- ``syn_weak``: sees the concept only partly. ``systematic`` (0..1) swaps part of the
  label direction for a spurious direction ``v``, so the weak teacher is confidently wrong
  wherever ``v`` and ``u`` disagree; ``noise`` adds isotropic noise, which makes errors
  random and concentrated at low confidence.

Use it as ``--dataset synthetic`` or ``synthetic:n=3000,systematic=0.4,noise=1.5,seed=1``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from aar.data.registry import Built, Example, SplitSizes, dataset, opaque_id
from aar.errors import AarError
from aar.util import stable_hash

DEFAULTS: dict[str, float] = {
    "n": 3000,
    "dim": 16,
    "systematic": 0.3,
    "noise": 1.0,
    "label_noise": 0.05,
    "weak_dim": 32,
    "strong_dim": 64,
    "seed": 0,
}


def parse_params(arg: str) -> dict[str, float]:
    out = dict(DEFAULTS)
    for part in filter(None, (p.strip() for p in arg.split(","))):
        key, eq, value = part.partition("=")
        if not eq or key not in DEFAULTS:
            raise AarError(
                f"bad synthetic parameter {part!r}: use KEY=VALUE with KEY in {', '.join(DEFAULTS)}"
            )
        try:
            out[key] = float(value)
        except ValueError:
            raise AarError(f"synthetic parameter {key} must be a number, got {value!r}") from None
    return out


def generate(p: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (labels, weak features, strong features)."""
    rng = np.random.default_rng(int(p["seed"]))
    n, d = int(p["n"]), int(p["dim"])
    z = rng.standard_normal((n, d))
    u, v = np.linalg.qr(rng.standard_normal((d, 2)))[0].T
    score = z @ u + p["label_noise"] * rng.standard_normal(n)
    labels = (score > 0).astype(int)
    s = float(np.clip(p["systematic"], 0.0, 1.0))
    # The weak view: label direction partly replaced by a spurious one, plus noise.
    z_weak = z - np.outer(z @ u, u) + np.outer((1 - s) * (z @ u) + s * (z @ v), u)
    weak = z_weak @ rng.standard_normal((d, int(p["weak_dim"])))
    weak += p["noise"] * rng.standard_normal(weak.shape) * np.sqrt(d)
    strong = z @ rng.standard_normal((d, int(p["strong_dim"])))
    strong += 0.1 * rng.standard_normal(strong.shape) * np.sqrt(d)
    return labels, weak.astype(np.float32), strong.astype(np.float32)


@dataset(
    "synthetic",
    description="latent-concept generator with knobs for systematic and random weak error",
    sizes=SplitSizes(300, 1500, 1200),
    optional_arg=True,
    encoders=("syn_weak", "syn_strong"),
)
def build(params: Mapping[str, str]) -> Built:
    p = parse_params(params.get("arg", ""))
    labels, weak, strong = generate(p)
    tag = stable_hash(p, 8)
    examples = [
        Example(opaque_id("synthetic", f"{tag}/{i}"), f"synthetic {tag} example {i}", int(y))
        for i, y in enumerate(labels)
    ]
    return Built(examples, {"syn_weak": weak, "syn_strong": strong})
