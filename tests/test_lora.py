"""The LoRA student: a tiny causal LM built from a config and a word-level tokenizer
(fast), and one real short fine-tune of the packaged qwen0.5b (slow)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from aar.data.splits import PUBLIC
from aar.errors import AarError
from aar.w2s import lora
from aar.w2s.context import Examples, MethodContext

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

POS = ["good", "great", "fine", "superb", "lovely", "fun"]
NEG = ["bad", "awful", "poor", "dull", "ugly", "sad"]
FILLER = ["the", "film", "was", "a", "story", "and", "very", "it", "movie", "plot"]
WORDS = ["[PAD]", "[UNK]", "No", "Yes", "Question", "Answer", ":", "?", "Is", "this",
         "review", "positive", "sentiment", "of", *POS, *NEG, *FILLER]

@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """Tiny matrices: one thread is fastest, and steady on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = lora.LoraConfig(weak="tiny", strong="tiny", rank=4, alpha=4, lr=1e-2, batch_size=8,
                       micro_batch=4, epochs=3, max_tokens=24, device="cpu")


def tiny_lm(seed: int = 0) -> tuple[Any, Any]:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=64, pad_token_id=0)
    return fast, Qwen2ForCausalLM(cfg).eval()


def corpus(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    texts = [" ".join([*rng.choice(POS if k else NEG, 3), rng.choice(FILLER)]) for k in y]
    return texts, y.astype(np.float64)


def examples(texts: list[str]) -> Examples:
    n = len(texts)
    return Examples([str(i) for i in range(n)], texts, np.zeros((n, 0)), np.zeros((n, 0)),
                    np.full(n, 0.5))


def test_loss_falls_and_predictions_learn() -> None:
    texts, y = corpus(48, 0)
    lm = tiny_lm()
    before = lora.LoraPredictor(lm[1], lora.Prompter.of(lm[0], lora.DEFAULT_QUESTION, 24),
                                "cpu", 8).predict_texts(texts)
    pred = lora.train_lora(TINY, lm, texts, y, seed=0)
    assert len(pred.history) == 3 * 6
    assert np.mean(pred.history[-3:]) < 0.7 * np.mean(pred.history[:3])
    test_texts, test_y = corpus(40, 1)
    p = pred.predict(examples(test_texts))
    assert p.shape == (40,) and p.dtype == np.float64
    assert ((p >= 0) & (p <= 1)).all()
    assert np.mean((p >= 0.5) == (test_y == 1)) >= 0.8
    assert not np.allclose(pred.predict_texts(texts), before)


def test_soft_targets_and_zero_weights() -> None:
    texts, y = corpus(24, 2)
    junk, _ = corpus(8, 3)
    ref = lora.train_lora(TINY, tiny_lm(), texts, y, seed=1)
    mixed = lora.train_lora(TINY, tiny_lm(), texts + junk, np.r_[y, 1 - y[:8]],
                            np.r_[np.ones(24), np.zeros(8)], seed=1)
    assert ref.history == mixed.history  # weight-0 examples leave training untouched
    np.testing.assert_allclose(ref.predict_texts(texts), mixed.predict_texts(texts))
    # a soft target of 0.5 everywhere pulls predictions towards 0.5, unlike hard labels
    flat = lora.train_lora(TINY, tiny_lm(), texts, np.full(24, 0.5), seed=1)
    assert np.abs(flat.predict_texts(texts) - 0.5).mean() < \
        np.abs(ref.predict_texts(texts) - 0.5).mean()


def test_logconf_runs() -> None:
    texts, y = corpus(24, 4)
    cfg = dataclasses.replace(TINY, loss="logconf", logconf_warmup=0.5)
    pred = lora.train_lora(cfg, tiny_lm(), texts, y, seed=0)
    assert all(np.isfinite(pred.history))
    t = lora.logconf_target(torch.tensor([[0.0, 2.0], [0.0, -1.0], [0.0, 1.0], [1.0, 0.0]]),
                            torch.full((4,), 0.5), 1.0, 0.5)
    assert t.tolist() == [1.0, 0.0, 1.0, 0.0]


def test_train_strong_uses_the_lora_student() -> None:
    texts, y = corpus(16, 5)
    lm = tiny_lm()

    @dataclasses.dataclass(frozen=True)
    class Student:
        def fit(self, t: list[str], target: np.ndarray, weights: np.ndarray | None,
                seed: int) -> lora.LoraPredictor:
            return lora.train_lora(TINY, lm, t, target, weights, seed=seed)

    ex = examples(texts)
    ctx = MethodContext("synthetic", 0, ex, None, np.random.default_rng(0), student=Student())
    pred = ctx.train_strong(y)
    assert isinstance(pred, lora.LoraPredictor)
    assert pred.predict(ex).shape == (16,)
    with pytest.raises(AarError, match="LoRA student"):
        ctx.train_strong(y, x=np.zeros((16, 3)))
    with pytest.raises(AarError, match="reads strong features"):
        ctx.strong_features["unlabeled"]  # knn_relabel & co. need the head student


def test_clear_errors() -> None:
    with pytest.raises(AarError, match="unknown LoRA preset"):
        lora.preset("nope")
    with pytest.raises(AarError, match="unknown LoRA setting"):
        lora.preset("offline", {"rnak": "8"}, device="cpu")
    with pytest.raises(AarError, match="bad value"):
        lora.preset("offline", {"rank": "big"}, device="cpu")
    with pytest.raises(AarError, match="unknown LoRA loss"):
        lora.LoraConfig(loss="mse")
    with pytest.raises(AarError, match="positive weight"):
        lora.train_lora(TINY, tiny_lm(), ["good"], [1.0], [0.0], seed=0)
    with pytest.raises(AarError, match="one target and weight per text"):
        lora.train_lora(TINY, tiny_lm(), ["good", "bad"], [1.0], seed=0)
    with pytest.raises(AarError, match="cannot load language model"):
        lora.load_causal_lm("/nonexistent/folder/of/a/model")
    tok, _ = tiny_lm()
    with pytest.raises(AarError, match="no room"):
        lora.Prompter.of(tok, lora.DEFAULT_QUESTION, 4)


def test_presets_and_subsets() -> None:
    cpu = lora.preset("offline", device="cpu")
    assert (cpu.strong, cpu.weak, cpu.epochs, cpu.unlabeled_size) == ("qwen0.5b", "smollm",
                                                                      1, 768)
    assert lora.preset("offline", {"strong": "qwen1.5b"}, device="cpu").strong == "qwen1.5b"
    gpu = lora.preset("offline", {"epochs": "2"}, device="cuda")
    assert (gpu.strong, gpu.rank, gpu.alpha, gpu.rslora, gpu.lr, gpu.batch_size, gpu.epochs,
            gpu.unlabeled_size) == ("qwen1.5b", 32, 32, True, 1e-4, 32, 2, None)
    assert lora.preset("reference", device="cpu").strong == "Qwen/Qwen3-4B-Base"
    factors = [lora._schedule(k, 8, 0.25) for k in range(8)]
    assert factors[:3] == [1 / 3, 2 / 3, 1.0] and factors[-1] == 1 / 6
    assert lora._schedule(0, 4, 0.0) == 1.0
    ids = [f"id{i}" for i in range(100)]
    pos = lora.subset(ids, 10, "s")
    assert len(pos) == 10 and list(pos) == sorted(pos)
    assert list(lora.subset(ids, 10, "s")) == list(pos)
    assert len(lora.subset(ids, None, "s")) == 100


def test_run_with_the_lora_student(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``aar run --student lora --weak-trainer lora`` end to end on a jsonl dataset, tiny LMs."""
    import json

    from aar.experiments.runner import RunConfig, run

    texts, y = corpus(240, 6)
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps({"id": i, "question": "Is this review positive ?",
                                        "choice": t, "label": int(k)}) + "\n"
                            for i, (t, k) in enumerate(zip(texts, y, strict=True))))
    monkeypatch.setattr(lora, "load_causal_lm", lambda name: tiny_lm())
    cfg = dataclasses.replace(TINY, unlabeled_size=24, test_size=40, labeled_size=24, epochs=2)
    rec = run(RunConfig("confident", f"jsonl:{path}", seeds=(0,), student="lora",
                        lora=cfg.as_dict(), weak_trainer="lora"))
    assert rec["config"]["student"] == "lora" and rec["config"]["lora"]["rank"] == 4
    assert len(rec["test_ids"]) == 40 and len(rec["seeds"][0]["predictions"]) == 40
    s = rec["summary"][PUBLIC]
    assert 0 <= s["weak"] <= 1 and 0 <= s["ceiling"] <= 1
    with pytest.raises(AarError, match="real texts"):
        run(RunConfig("vanilla", "synthetic", "syn_weak", "syn_strong", seeds=(0,),
                      student="lora", lora=cfg.as_dict()))
    with pytest.raises(AarError, match="needs --student lora"):
        run(RunConfig("vanilla", "synthetic", seeds=(0,), weak_trainer="lora"))


@pytest.mark.slow
def test_real_qwen05b_short_finetune() -> None:
    try:
        from aar.models.causal_lm import lm_folder

        lm_folder("qwen0.5b")
    except Exception as exc:  # no packages offline, no disk: nothing to test here
        pytest.skip(f"qwen0.5b folder unavailable: {exc}")
    texts = ["a wonderful, moving film", "dull and lifeless", "sharp, funny and warm",
             "a tedious mess", "beautifully acted", "painfully boring"] * 2
    y = np.array([1, 0, 1, 0, 1, 0] * 2, dtype=np.float64)
    cfg = dataclasses.replace(lora.preset("offline", device="cpu"), rank=8, alpha=8,
                              epochs=2, batch_size=6, micro_batch=6, max_tokens=32)
    pred = lora.train_lora(cfg, "qwen0.5b", texts, y, seed=0,
                           question=lora.question_for("sentiment"))
    assert np.mean(pred.history[-2:]) < np.mean(pred.history[:2])
    p = pred.predict_texts(texts[:6])
    assert ((p >= 0.5) == (y[:6] == 1)).mean() >= 5 / 6
