"""Benchmark: which block and pooling of a packaged causal LM make the best features?

    .venv/bin/python bench/bench_lm_layers.py --dataset code --model qwen0.5b \
        [--n 800] [--max-layer 16] [--max-tokens 384] [--labeled 0.25] [--pairs]

One forward pass over ``--n`` examples of the dataset (drawn at random, seed 0) keeps the
residual stream after every block up to ``--max-layer``, pooled two ways (mean, last
token). Then, over 5 random splits by *group* (a problem never straddles train and test;
30% of groups held out), a logistic head with its penalty chosen by 5-fold CV is fitted on
the train part's true labels and scored on the held-out part — the ceiling recipe of
``aar.w2s.baselines`` — for every (block, pooling), next to the weak encoder ``l3``
fitted on a ``--labeled`` fraction of the train part (the weak recipe: fewer labels, weak
features). Prints accuracy per block and pooling, the weak accuracy, the majority-class
rate, and the encoding speed. Features are cached under ``$AAR_HOME/bench``.

``--pairs`` scores the pairwise task instead (``math-pairs``/``code-pairs``): right/wrong
pairs of the same problem are made from the encoded solutions (``make_pairs``), and each
feature is the difference of the two solutions' features, as the pairwise datasets do.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from aar.data.pair_tasks import make_pairs
from aar.data.pairs import split_pair
from aar.data.registry import DATASETS
from aar.models.lm_encoders import LMEncoder
from aar.models.registry import encode_sorted, pad_batch, parse_encoder
from aar.settings import get_settings
from aar.w2s.heads import fit_logistic_cv, normalize


def layer_features(enc: LMEncoder, texts: list[str]) -> np.ndarray:
    """(layers, 2 poolings, n, dim): mean- and last-pooled states after every kept block."""
    import torch

    ids = enc.tokenizer(texts, truncation=True, max_length=enc.max_tokens)["input_ids"]
    n_layers = enc.model.config.num_hidden_layers
    out = np.empty((n_layers, 2, len(texts), enc.dim), dtype=np.float32)

    def run(batch: list[list[int]]) -> np.ndarray:
        x, m = pad_batch(batch, enc.pad_id)
        mask = torch.from_numpy(m)
        with torch.inference_mode():
            states = enc.model(input_ids=torch.from_numpy(x), attention_mask=mask,
                               output_hidden_states=True).hidden_states[1:]
        w = mask.unsqueeze(-1).float()
        last = mask.sum(1) - 1
        rows = torch.arange(len(batch))
        pooled = [torch.cat([(h * w).sum(1) / w.sum(1), h[rows, last]], 1) for h in states]
        return torch.stack(pooled, 1).reshape(len(batch), -1).numpy()

    done = [0]

    def progress(k: int) -> None:
        done[0] += k
        print(f"  {done[0]}/{len(texts)} texts", flush=True)

    flat = encode_sorted(ids, n_layers * 2 * enc.dim, enc.batch_size, run, progress)
    out[:] = flat.reshape(len(texts), n_layers, 2, enc.dim).transpose(1, 2, 0, 3)
    return out


def group_splits(groups: list[str], repeats: int = 5) -> list[np.ndarray]:
    """Boolean test masks, 30% of groups held out each time."""
    names = sorted(set(groups))
    rng = np.random.default_rng(0)
    masks = []
    for _ in range(repeats):
        held = set(rng.permutation(names)[: max(1, int(0.3 * len(names)))])
        masks.append(np.array([g in held for g in groups]))
    return masks


def accuracy(x: np.ndarray, y: np.ndarray, test: np.ndarray, train: np.ndarray) -> float:
    head, _ = fit_logistic_cv(normalize(x[train]), y[train], rng=np.random.default_rng(0))
    return float(((head.predict_proba(normalize(x[test])) >= 0.5) == y[test]).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="code")
    ap.add_argument("--model", default="qwen0.5b")
    ap.add_argument("--n", type=int, default=800)
    ap.add_argument("--max-layer", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=384)
    ap.add_argument("--labeled", type=float, default=0.25)
    ap.add_argument("--pairs", action="store_true", help="score right/wrong pairs")
    a = ap.parse_args()
    examples = DATASETS.get(a.dataset).build({}).examples
    pick = np.random.default_rng(0).permutation(len(examples))[: a.n]
    ex = [examples[i] for i in sorted(pick)]
    texts = [e.text for e in ex]
    y = np.array([e.label for e in ex], dtype=np.float64)
    groups = [e.group or e.id for e in ex]

    cache = get_settings().home / "bench" / (
        f"layers-{a.dataset}-{a.model}-{a.n}-{a.max_layer}-{a.max_tokens}.npy")
    cache.parent.mkdir(parents=True, exist_ok=True)
    enc = LMEncoder("probe", a.model, a.max_layer, "mean", max_tokens=a.max_tokens, batch_size=8)
    ntok = sum(min(len(t), a.max_tokens) for t in enc.tokenizer(texts)["input_ids"])
    if cache.exists():
        feats = np.load(cache)
        print(f"features from {cache}")
    else:
        t = time.perf_counter()
        feats = layer_features(enc, texts)
        dt = time.perf_counter() - t
        np.save(cache, feats)
        print(f"encoded {len(texts)} texts ({ntok} tokens) through {a.max_layer} blocks of "
              f"{a.model} in {dt:.0f} s: {len(texts) / dt:.2f} texts/s, {ntok / dt:.0f} tokens/s")
    weak_x = parse_encoder("l3").factory().encode(texts)
    if a.pairs:  # rows become right/wrong pairs; features become differences
        row = {t: i for i, t in enumerate(texts)}
        pairs = make_pairs(ex, "probe", lambda t: ("", t))
        halves = [split_pair(p.text) for p in pairs]
        first = [row[h[0]] for h in halves if h]
        second = [row[h[1]] for h in halves if h]
        feats = feats[:, :, first] - feats[:, :, second]
        weak_x = weak_x[first] - weak_x[second]
        y = np.array([p.label for p in pairs], dtype=np.float64)
        groups = [p.group or p.id for p in pairs]

    masks = group_splits(groups)
    rng = np.random.default_rng(1)
    weak_acc, majority = [], []
    for test in masks:
        train = np.flatnonzero(~test)
        few = np.zeros(len(y), bool)
        few[rng.choice(train, max(20, int(a.labeled * len(train))), replace=False)] = True
        weak_acc.append(accuracy(weak_x, y, test, few))
        majority.append(max(y[test].mean(), 1 - y[test].mean()))
    task = f"{a.dataset}{' pairs' if a.pairs else ''}"
    print(f"{task}: n={len(y)}, positives {y.mean():.3f}, {len(set(groups))} groups; "
          f"majority class on held-out {np.mean(majority):.3f}; "
          f"weak l3 ({a.labeled:.0%} of train labels) {np.mean(weak_acc):.3f}")
    print(f"{'block':>5} {'mean':>7} {'last':>7}   (held-out accuracy, true labels, mean of 5 "
          "group splits)")
    for layer in range(feats.shape[0]):
        row = [np.mean([accuracy(feats[layer, p], y, m, ~m) for m in masks]) for p in (0, 1)]
        print(f"{layer + 1:>5} {row[0]:>7.3f} {row[1]:>7.3f}")


if __name__ == "__main__":
    main()
