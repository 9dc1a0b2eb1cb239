"""The two sides of the security boundary.

- ``Vault`` (``$AAR_HOME/vault/<key>/``): every ground-truth label, the public/private
  partition of the test split, the ``labeled`` split's ids and texts (only the weak
  teacher trains on them), the baselines' predictions and a secret that seeds every random
  choice of trusted code (so the weak teacher cannot be re-run, and inverted, from public
  code). Only trusted code (the weak teacher's training, scoring, the evaluation server)
  opens it.
- ``Workspace`` (``$AAR_HOME/workspace/<key>/``): ids and texts of ``unlabeled`` and of one
  merged ``test`` split in sorted id order, and the weak teacher's soft labels on them.
  Method and agent code may read all of it; it holds no label, no labeled-split example
  and no hint of the partition.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from aar.errors import AarError
from aar.settings import get_settings
from aar.util import atomic_write_bytes, atomic_write_json, read_json

WORKSPACE_SPLITS = ("unlabeled", "test")


@dataclass(frozen=True)
class Vault:
    key: str

    @property
    def root(self) -> Path:
        return get_settings().vault_dir / self.key

    @property
    def features_dir(self) -> Path:
        """The feature cache of the labeled split's texts, on the trusted side."""
        return self.root / "features"

    def exists(self) -> bool:
        return (self.root / "splits.json").exists() and (self.root / "secret.json").exists()

    def write(self, labels: dict[str, int], splits: dict[str, list[str]], meta: dict,
              labeled_texts: dict[str, str]) -> None:
        atomic_write_json(self.root / "labels.json", labels)
        atomic_write_json(self.root / "meta.json", meta)
        atomic_write_json(self.root / "labeled_texts.json", labeled_texts)
        atomic_write_json(self.root / "secret.json", {"secret": secrets.randbits(128)})
        atomic_write_json(self.root / "splits.json", splits)  # written last: marks complete

    @cached_property
    def splits(self) -> dict[str, list[str]]:
        if not self.exists():
            raise AarError(f"dataset {self.key} is not prepared; run `aar setup` first")
        return read_json(self.root / "splits.json")

    @cached_property
    def labels(self) -> dict[str, int]:
        return read_json(self.root / "labels.json")

    @cached_property
    def meta(self) -> dict:
        return read_json(self.root / "meta.json")

    @cached_property
    def secret(self) -> int:
        """A random number drawn when the dataset was prepared: the root of every random
        choice of trusted code (cross-validation folds of the baselines)."""
        return int(read_json(self.root / "secret.json")["secret"])

    def labeled_texts(self) -> list[str]:
        """Texts of the ``labeled`` split, in split order (the weak teacher's inputs)."""
        texts = read_json(self.root / "labeled_texts.json")
        return [texts[i] for i in self.splits["labeled"]]

    def split_labels(self, split: str) -> np.ndarray:
        return np.array([self.labels[i] for i in self.splits[split]], dtype=np.int64)


@dataclass(frozen=True)
class Workspace:
    key: str
    root_dir: Path | None = None  # a copy of the export elsewhere (a sandbox mount)

    @property
    def root(self) -> Path:
        return self.root_dir or get_settings().workspace_dir / self.key

    def exists(self) -> bool:
        return (self.root / "manifest.json").exists()

    def write(self, records: dict[str, list[tuple[str, str]]], manifest: dict) -> None:
        for split in WORKSPACE_SPLITS:
            lines = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in records[split])
            atomic_write_bytes(self.root / f"{split}.jsonl", lines.encode())
        atomic_write_json(self.root / "manifest.json", manifest)  # last: marks complete

    @cached_property
    def manifest(self) -> dict:
        if not self.exists():
            raise AarError(f"dataset {self.key} is not prepared; run `aar setup` first")
        return read_json(self.root / "manifest.json")

    @cached_property
    def _records(self) -> dict[str, list[dict[str, str]]]:
        _ = self.manifest
        return {
            s: [json.loads(line) for line in (self.root / f"{s}.jsonl").read_text().splitlines()]
            for s in WORKSPACE_SPLITS
        }

    def ids(self, split: str) -> list[str]:
        return [r["id"] for r in self._records[split]]

    def texts(self, split: str) -> list[str]:
        return [r["text"] for r in self._records[split]]

    def all_texts(self) -> list[str]:
        """Texts of every split in workspace order: the unit of feature caching."""
        return [t for s in WORKSPACE_SPLITS for t in self.texts(s)]

    def weak_path(self, name: str) -> Path:
        return self.root / "weak" / f"{name}.npz"

    def student_path(self, weak: str, strong: str) -> Path:
        """The default student head's settings for a pair, chosen on weak labels only."""
        return self.root / "student" / f"{weak}--{strong}.json"
