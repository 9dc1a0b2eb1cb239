"""LoRA student speed: training and scoring examples/s and tokens/s, peak memory.

    python bench/bench_lora.py [--model qwen0.5b] [--n 32] [--batch 16] [--max-tokens 64]
                               [--threads N]

On the CPU it fine-tunes ``--model`` (a packaged LM) for one epoch on ``--n`` short review
texts with the offline preset's CPU settings, then scores them, and prints examples/s,
tokens/s (prompt tokens through the model) and the process's peak RSS. With CUDA it also
runs the ``offline`` preset end to end (``aar run vanilla --student lora --preset offline
--dataset sentiment --seeds 1``) and prints its examples/s, peak GPU memory and PGR.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time

import numpy as np

GOOD = ["a warm, funny and moving film", "sharp writing and a superb cast",
        "one of the most charming movies of the year", "beautifully shot and acted"]
BAD = ["a dull, lifeless mess", "the plot makes no sense and the jokes fall flat",
       "tedious from start to finish", "a waste of a talented cast"]


def texts_of(n: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    out = [f"{rng.choice(GOOD if k else BAD)}, {rng.choice(GOOD if k else BAD)}." for k in y]
    return out, y.astype(np.float64)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


def cpu_bench(model: str, n: int, batch: int, max_tokens: int, threads: int | None) -> None:
    import torch

    from aar.w2s import lora

    cfg = dataclasses.replace(lora.preset("offline", device="cpu"), batch_size=batch,
                              micro_batch=batch, max_tokens=max_tokens, epochs=1,
                              threads=threads)
    texts, y = texts_of(n)
    t0 = time.perf_counter()
    tok_model = lora.load_causal_lm(model)
    load_s = time.perf_counter() - t0
    question = lora.question_for("sentiment")
    tokens = sum(len(p) for p in lora.Prompter.of(tok_model[0], question, max_tokens)
                 .encode(texts))
    t0 = time.perf_counter()
    pred = lora.train_lora(cfg, tok_model, texts, y, seed=0, question=question)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    p = pred.predict_texts(texts)
    score_s = time.perf_counter() - t0
    print(f"LoRA on CPU: {model}, {threads or torch.get_num_threads()} torch thread(s), "
          f"rank {cfg.rank}, batch {batch}, {n} examples of {tokens / n:.1f} prompt tokens "
          f"(max {max_tokens})")
    print(f"  load        {load_s:6.1f} s")
    print(f"  train       {train_s:6.1f} s  {n / train_s:6.2f} examples/s  "
          f"{tokens / train_s:7.1f} tokens/s  (loss {pred.history[0]:.3f} -> "
          f"{pred.history[-1]:.3f})")
    print(f"  score       {score_s:6.1f} s  {n / score_s:6.2f} examples/s  "
          f"{tokens / score_s:7.1f} tokens/s  (train accuracy {np.mean((p >= .5) == y):.2f})")
    print(f"  peak RSS    {peak_rss_gb():6.2f} GB")


def gpu_bench() -> None:
    import torch

    from aar.data.prepare import prepare
    from aar.experiments.runner import RunConfig, run
    from aar.w2s import lora
    from aar.w2s.baselines import lora_positions

    cfg = lora.preset("offline", device="cuda")
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    rec = run(RunConfig("vanilla", "sentiment", seeds=(0,), student="lora",
                        lora=cfg.as_dict()), print)
    seconds = time.perf_counter() - t0
    s = rec["summary"]["test_public"]
    n_test = len(rec["test_ids"])
    n_train = len(lora_positions(prepare("sentiment"), cfg)["unlabeled"])
    seed_s = rec["seeds"][0]["seconds"]
    print(f"offline preset on {torch.cuda.get_device_name()}: {seconds:.0f} s for baselines + "
          f"1 seed ({seed_s:.0f} s: {n_train} examples x {cfg.epochs} epochs, "
          f"{n_train * cfg.epochs / seed_s:.1f} examples/s with scoring {n_test} test)")
    print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    pgr = f"{s['pgr']['mean']:.3f}" if s["gap_ok"] else "gap too small"
    print(f"  weak {s['weak']:.3f}  ceiling {s['ceiling']:.3f}  transfer "
          f"{s['accuracy']['mean']:.3f}  PGR {pgr}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen0.5b")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's own, as the CPU preset)")
    ap.add_argument("--no-gpu", action="store_true", help="skip the end-to-end GPU run")
    args = ap.parse_args()
    cpu_bench(args.model, args.n, args.batch, args.max_tokens, args.threads)
    import torch

    if torch.cuda.is_available() and not args.no_gpu:
        gpu_bench()


if __name__ == "__main__":
    main()
