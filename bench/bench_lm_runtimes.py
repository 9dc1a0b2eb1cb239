"""Benchmark: LM encoders on a CPU, transformers against llama.cpp, on the same texts.

    .venv/bin/python bench/bench_lm_runtimes.py [--models qwen0.5b qwen1.5b] [--n 64]
        [--dataset code] [--threads 2]

For each packaged causal LM, over ``--n`` texts of ``--dataset`` (cut at 384 tokens):

- transformers, the way ``aar``'s encoders run it: the converted float32 folder, the
  whole model and the encoder's default truncation (``aar.models.lm_encoders.DEFAULTS``);
- llama.cpp (``llama-cpp-python``, when installed) on the joined Q4_K_M GGUF in embedding
  mode with mean pooling: the whole model, as llama.cpp offers no way to stop early.

Prints load seconds, texts/s and tokens/s per runtime, and peak resident memory.

llama.cpp's context is a whole number of 256-token blocks: it rounds ``n_ctx`` up to one,
and with a batch smaller than the rounded context its mean pooling aborts
(``GGML_ASSERT(ggml_can_mul_mat(a, b))``, llama-cpp-python 0.3.36), so the context and
batch here are that rounded size. A llama.cpp failure is reported and the bench goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import multiprocessing
import resource
import time
from pathlib import Path

import torch

from aar.data.registry import DATASETS
from aar.models.causal_lm import get_lm, lm_gguf
from aar.models.lm_encoders import DEFAULTS, MAX_TOKENS, LMEncoder


def rss_mb() -> float:
    """This process's peak resident memory. ``VmHWM`` where Linux has it: ``ru_maxrss``
    survives ``exec``, so a spawned child would report its parent's peak."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def row(model: str, runtime: str, load: float, n: int, tokens: int, seconds: float) -> None:
    print(f"{model:9} {runtime:28} {load:>7.1f} {n / seconds:>8.2f} {tokens / seconds:>9.0f} "
          f"{rss_mb():>10.0f}", flush=True)


def bench_transformers(model: str, texts: list[str], layer: int) -> None:
    t = time.perf_counter()
    enc = LMEncoder("bench", model, layer, DEFAULTS[model][1])
    load = time.perf_counter() - t
    ids = enc.tokenizer(texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    tokens = sum(len(i) for i in ids)
    enc.encode(texts[:4])  # warm-up
    t = time.perf_counter()
    enc.encode(texts)
    row(model, f"transformers, {layer}/{get_lm(model).layers} blocks", load, len(texts), tokens,
        time.perf_counter() - t)


def bench_llama_cpp(model: str, texts: list[str], threads: int) -> None:
    from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama

    t = time.perf_counter()
    ctx = -(-(MAX_TOKENS + 16) // 256) * 256  # llama.cpp's own rounding of n_ctx
    llm = Llama(model_path=str(lm_gguf(model)), embedding=True, n_ctx=ctx,
                n_batch=ctx, n_ubatch=ctx, n_threads=threads,
                pooling_type=LLAMA_POOLING_TYPE_MEAN,
                verbose=False)
    load = time.perf_counter() - t
    cut = [llm.tokenize(x.encode(), add_bos=False)[-MAX_TOKENS:] for x in texts]
    tokens = sum(len(c) for c in cut)
    llm.embed(llm.detokenize(cut[0]).decode(errors="ignore"))  # warm-up
    t = time.perf_counter()
    for c in cut:
        llm.embed(llm.detokenize(c).decode(errors="ignore"))
    row(model, f"llama.cpp Q4_K_M, {get_lm(model).layers} blocks", load, len(texts), tokens,
        time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["qwen0.5b", "qwen1.5b"])
    ap.add_argument("--dataset", default="code")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    texts = [e.text for e in DATASETS.get(a.dataset).build({}).examples[: a.n]]
    has_llama = importlib.util.find_spec("llama_cpp") is not None
    print(f"{a.n} {a.dataset} texts, {a.threads} threads"
          + ("" if has_llama else "; llama-cpp-python not installed: llama.cpp rows skipped"))
    print(f"{'model':9} {'runtime':28} {'load s':>7} {'texts/s':>8} {'tokens/s':>9} "
          f"{'peak RSS MB':>10}")
    for model in a.models:
        spec = get_lm(model)
        bench_transformers(model, texts, DEFAULTS[model][0])
        bench_transformers(model, texts, spec.layers)
        if has_llama:  # in a child process: a llama.cpp abort must not end the bench
            child = multiprocessing.get_context("spawn").Process(
                target=bench_llama_cpp, args=(model, texts, a.threads))
            child.start()
            child.join()
            if child.exitcode:
                print(f"{model:9} llama.cpp embedding mode failed (exit code {child.exitcode})")


if __name__ == "__main__":
    main()
