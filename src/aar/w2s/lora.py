"""A student that fine-tunes a causal language model with LoRA (``--student lora``).

Classification as next-token prediction: each text becomes a prompt that ends with a
question and ``"Answer:"``, and P(y=1) is the softmax over the logits of the two label
tokens (``" No"``, ``" Yes"``) at the prompt's last position: only those two rows of the
output layer are computed. The loss is the cross-entropy of that two-way distribution to a
*soft* target with per-example weights, so the label-level W2S methods (filter, reweight,
relabel) work unchanged: they only produce targets and weights. ``loss="logconf"`` adds
Burns et al.'s auxiliary confidence loss (the target mixed with the student's own
hardened predictions, the mix warming up over training).

Defaults follow the reference run: LoRA rank 32, alpha 32, rsLoRA on every projection
(q, k, v, o, gate, up, down), AdamW at lr 1e-4, batch 32, 5 epochs, bf16 autocast on a GPU
(float32 on the CPU). Two presets name the model pair:

- ``reference``: Qwen/Qwen1.5-0.5B-Chat (weak) and Qwen/Qwen3-4B-Base (strong), by model
  hub id or local folder;
- ``offline``: the packaged ``qwen0.5b`` (weak) and ``qwen1.5b`` (strong), no hub needed.
  On a CPU it takes :data:`CPU_SIZES` instead: the packaged ``smollm`` (weak) and
  ``qwen0.5b`` (strong), a fixed public subset of the data, short prompts and one epoch,
  so that a run on 2 cores reports a PGR in about an hour.

torch, transformers and peft are imported inside the functions that use them, and the
device ("cuda" when available) is decided when training starts, never at import.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aar.errors import AarError

if TYPE_CHECKING:
    import torch

    from aar.w2s.context import Examples

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LABEL_WORDS = (" No", " Yes")  # y=0, y=1: one token each (checked with the tokenizer)
LOSSES = ("xent", "logconf")
# The question asked after each text, by dataset family; others get DEFAULT_QUESTION.
QUESTIONS = {
    "sentiment": "Is the sentiment of this review positive?",
    "tweets": "Is the sentiment of this tweet positive?",
    "math": "Is the final answer of this solution correct?",
    "code": "Does this program pass its tests?",
}
DEFAULT_QUESTION = "Is the statement above true?"


@dataclass(frozen=True)
class LoraConfig:
    """One LoRA fine-tuning setup (the student's, or a LoRA baseline's).

    ``batch_size`` examples make one optimizer step, run ``micro_batch`` at a time
    (gradient accumulation). ``*_size``: train/score on a seeded subset of that many
    examples of the split (None: all of it). ``question``: None for the dataset's.
    ``device``: None for "cuda" when available, else "cpu". ``seed`` is mixed with the
    run's seed.
    """

    weak: str = "qwen0.5b"
    strong: str = "qwen1.5b"
    rank: int = 32
    alpha: int = 32
    rslora: bool = True
    targets: tuple[str, ...] = TARGET_MODULES
    lr: float = 1e-4
    warmup: float = 0.0  # fraction of the steps over which lr ramps up; then down to 0
    batch_size: int = 32
    micro_batch: int = 8
    epochs: int = 5
    max_tokens: int = 512
    loss: str = "xent"
    logconf_alpha: float = 0.75
    logconf_warmup: float = 0.2
    gradient_checkpointing: bool = False
    unlabeled_size: int | None = None
    test_size: int | None = None
    labeled_size: int | None = None
    question: str | None = None
    seed: int = 0
    device: str | None = None
    threads: int | None = None  # torch CPU threads while training and scoring (None: torch's)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise AarError(f"unknown LoRA loss {self.loss!r}; known: {', '.join(LOSSES)}")
        for name in ("rank", "batch_size", "micro_batch", "epochs", "max_tokens"):
            if getattr(self, name) < 1:
                raise AarError(f"LoRA {name} must be at least 1, got {getattr(self, name)}")
        for name in ("unlabeled_size", "test_size", "labeled_size"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise AarError(f"LoRA {name} must be at least 2 (or none), got {value}")
        if not 0 <= self.warmup <= 1:
            raise AarError(f"LoRA warmup must be a fraction of training in [0, 1], got "
                           f"{self.warmup}")
        if not self.lr > 0:
            raise AarError(f"LoRA lr must be positive, got {self.lr}")
        if self.threads is not None and self.threads < 1:
            raise AarError(f"LoRA threads must be at least 1 (or none), got {self.threads}")
        if self.device not in (None, "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise AarError(f"LoRA device must be cpu or cuda, got {self.device!r}")

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "targets": list(self.targets)}

    def key(self, *drop: str) -> dict[str, Any]:
        """The fields that decide a trained model, less ``drop`` (for cache keys)."""
        out = self.as_dict()
        for name in ("device", *drop):
            out.pop(name)
        return out


PRESETS: dict[str, LoraConfig] = {
    "reference": LoraConfig(weak="Qwen/Qwen1.5-0.5B-Chat", strong="Qwen/Qwen3-4B-Base"),
    "offline": LoraConfig(weak="qwen0.5b", strong="qwen1.5b"),
}
# The offline preset on a CPU, sized for 2 cores so that one run reports a PGR in about an
# hour: the models one size down (smollm -> qwen0.5b; qwen1.5b needs three times the
# compute), 768 unlabeled examples to train on, 2,000 test examples to score (with 1,000 the
# public half's ceiling - weak interval, 0.087 [0.042, 0.131], reached below 0.05), 96
# labeled ones for a LoRA weak teacher; prompts cut to 64 tokens (sentiment snippets: 24 on
# average), one epoch of batches of 16 with the learning rate ramped up over the first
# quarter. Measured with a probe (README): batches of 8 at lr 3e-4 diverged to 0.56; 384
# examples at 1e-4 gave 0.77, 768 in batches of 16 0.84 (qwen0.5b zero-shot: 0.73-0.75).
# Any of it can be overridden
# (--lora strong=qwen1.5b; --lora threads=1 on a machine shared with other jobs).
CPU_SIZES: dict[str, Any] = {
    "weak": "smollm", "strong": "qwen0.5b", "unlabeled_size": 768, "test_size": 2000,
    "labeled_size": 96, "max_tokens": 64, "epochs": 1, "batch_size": 16, "micro_batch": 8,
    "warmup": 0.25,
}


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def preset(name: str, overrides: dict[str, str] | None = None,
           device: str | None = None) -> LoraConfig:
    """The named preset, on ``device`` (default: cuda when available), with ``overrides``
    (field name -> text, as given on the command line) applied last."""
    if name not in PRESETS:
        raise AarError(f"unknown LoRA preset {name!r}; known: {', '.join(PRESETS)}")
    cfg = PRESETS[name]
    dev = device or (overrides or {}).get("device") or default_device()
    if name == "offline" and not dev.startswith("cuda"):
        cfg = dataclasses.replace(cfg, **CPU_SIZES)
    return with_overrides(dataclasses.replace(cfg, device=dev), overrides or {})


def with_overrides(cfg: LoraConfig, overrides: dict[str, str]) -> LoraConfig:
    """``cfg`` with fields set from text values (``none`` for an unset size)."""
    fields = {f.name: f for f in dataclasses.fields(LoraConfig)}
    values: dict[str, Any] = {}
    for name, text in overrides.items():
        if name not in fields:
            raise AarError(f"unknown LoRA setting {name!r}; known: {', '.join(fields)}")
        values[name] = _parse(name, str(fields[name].type), text)
    return dataclasses.replace(cfg, **values)


def _parse(name: str, kind: str, text: str) -> Any:
    if "None" in kind and text.lower() in ("none", ""):
        return None
    try:
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
        if kind.startswith("bool"):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if kind.startswith("tuple"):
            return tuple(t for t in text.split(",") if t)
    except ValueError:
        raise AarError(f"bad value {text!r} for LoRA setting {name} ({kind})") from None
    return text


def question_for(dataset: str) -> str:
    return QUESTIONS.get(dataset.split(":")[0], DEFAULT_QUESTION)


def subset(ids: Sequence[str], size: int | None, salt: str) -> np.ndarray:
    """Positions of a fixed, public, label-free subset of ``size`` of ``ids`` (all when
    None or larger): the ids with the smallest hash under ``salt``, in their own order."""
    if size is None or size >= len(ids):
        return np.arange(len(ids))
    rank = [hashlib.sha256(f"{salt}\x00{i}".encode()).hexdigest() for i in ids]
    return np.sort(np.argsort(rank, kind="stable")[:size])


# --------------------------------------------------------------------------- models


def load_causal_lm(name: str) -> tuple[Any, Any]:
    """(tokenizer, float32 causal LM): a packaged model by name (``qwen0.5b``), a local
    folder, or a model hub id when the hub or its local cache has it."""
    from aar.models.causal_lm import LMS, load_lm

    if name in LMS:
        return load_lm(name, causal=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name)
    except (OSError, ValueError) as exc:
        where = "local folder" if Path(name).exists() else "model hub id"
        raise AarError(
            f"cannot load language model {name!r} ({where}): {str(exc).splitlines()[0][:160]}; "
            f"use a packaged model ({', '.join(LMS)}, e.g. --preset offline), or fetch it "
            "where this machine can read it and pass the folder (--lora strong=PATH)"
        ) from None
    return tokenizer, model.float()


@dataclass(frozen=True)
class Prompter:
    """Texts -> token ids of prompts that end where the label token would come."""

    prefix: tuple[int, ...]  # the tokenizer's start token(s), if it adds any
    suffix: tuple[int, ...]  # "\n\nQuestion: ...\nAnswer:"
    labels: tuple[int, int]  # token ids of LABEL_WORDS
    pad: int
    max_tokens: int
    tokenizer: Any = field(repr=False, compare=False)

    @classmethod
    def of(cls, tokenizer: Any, question: str, max_tokens: int) -> Prompter:
        def ids(text: str, special: bool = False) -> list[int]:
            return list(tokenizer(text, add_special_tokens=special)["input_ids"])

        labels = [ids(w) for w in LABEL_WORDS]
        if any(len(t) != 1 for t in labels) or labels[0] == labels[1]:
            raise AarError(f"the tokenizer does not make {LABEL_WORDS} one distinct token "
                           f"each (got {labels}); this model cannot be a LoRA student here")
        with_special, plain = ids("a", True), ids("a")
        prefix = with_special[:len(with_special) - len(plain)]
        suffix = ids(f"\n\nQuestion: {question}\nAnswer:")
        if len(prefix) + len(suffix) >= max_tokens:
            raise AarError(f"max_tokens {max_tokens} leaves no room for the text after the "
                           f"{len(prefix) + len(suffix)}-token question; raise it")
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        return cls(tuple(prefix), tuple(suffix), (labels[0][0], labels[1][0]), int(pad),
                   max_tokens, tokenizer)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Prompt ids; a long text keeps its *last* tokens (a solution's final answer)."""
        room = self.max_tokens - len(self.prefix) - len(self.suffix)
        body = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
        return [[*self.prefix, *b[-room:], *self.suffix] for b in body]


def _label_logits(model: Any, prompts: Sequence[list[int]], prompter: Prompter,
                  device: str) -> torch.Tensor:
    """(batch, 2) logits of the two label tokens after each prompt (right-padded batch)."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    lengths = torch.tensor([len(p) for p in prompts])
    ids = torch.full((len(prompts), int(lengths.max())), prompter.pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for k, p in enumerate(prompts):
        ids[k, :len(p)] = torch.tensor(p)
        mask[k, :len(p)] = 1
    hidden = base.get_decoder()(input_ids=ids.to(device), attention_mask=mask.to(device))
    last = hidden.last_hidden_state[torch.arange(len(prompts), device=device),
                                    lengths.to(device) - 1]
    head = base.get_output_embeddings()
    rows = head.weight[list(prompter.labels)]
    logits = last.float() @ rows.float().T
    if getattr(head, "bias", None) is not None:
        logits = logits + head.bias[list(prompter.labels)].float()
    return logits


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """torch's CPU thread count set to ``n`` (when given) inside, restored after."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _autocast(device: str) -> Any:
    import contextlib

    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --------------------------------------------------------------------------- losses


def soft_xent(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy of the two-way softmax to soft targets P(y=1)."""
    import torch

    logp = torch.log_softmax(logits, dim=-1)
    return -((1 - target) * logp[:, 0] + target * logp[:, 1])


def logconf_target(logits: torch.Tensor, target: torch.Tensor, alpha: float,
                   prior: float) -> torch.Tensor:
    """(1 - alpha) * target + alpha * own hardened predictions: the ``prior`` fraction of
    the (micro-)batch with the largest margin z1 - z0 set to 1 (the threshold follows the
    class prior, so hardening never pushes a batch onto one class)."""
    import torch

    with torch.no_grad():
        margin = logits[:, 1] - logits[:, 0]
        own = torch.zeros_like(target)
        n_pos = round(prior * len(margin))
        if n_pos > 0:
            own[torch.argsort(margin, descending=True, stable=True)[:n_pos]] = 1.0
    return (1 - alpha) * target + alpha * own


# --------------------------------------------------------------------------- training


@dataclass
class LoraPredictor:
    """A LoRA-fine-tuned LM as a predictor: ``predict(examples)`` scores
    ``examples.texts``. ``history``: the weighted training loss of each optimizer step."""

    model: Any = field(repr=False)
    prompter: Prompter = field(repr=False)
    device: str
    batch: int  # examples scored at once
    history: list[float] = field(default_factory=list)
    threads: int | None = None

    def predict(self, examples: Examples) -> np.ndarray:
        return self.predict_texts(examples.texts)

    def predict_texts(self, texts: Sequence[str]) -> np.ndarray:
        """P(y=1) of each text, float64, in order (batched by length)."""
        import torch

        prompts = self.prompter.encode(texts)
        order = np.argsort([len(p) for p in prompts], kind="stable")
        out = np.empty(len(prompts), dtype=np.float64)
        self.model.eval()
        with torch.inference_mode(), _autocast(self.device), _threads(self.threads):
            for start in range(0, len(order), self.batch):
                idx = order[start:start + self.batch]
                z = _label_logits(self.model, [prompts[i] for i in idx], self.prompter,
                                  self.device)
                out[idx] = torch.softmax(z.float(), dim=-1)[:, 1].double().cpu().numpy()
        return out


def train_lora(
    cfg: LoraConfig,
    lm: str | tuple[Any, Any],
    texts: Sequence[str],
    target: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    seed: int,
    question: str = DEFAULT_QUESTION,
    log: Callable[[str], None] | None = None,
) -> LoraPredictor:
    """Fine-tune ``lm`` (a model name for :func:`load_causal_lm`, or a (tokenizer, model)
    pair, which is modified in place) with LoRA on ``texts`` to soft ``target`` P(y=1).
    Examples of weight 0 are left out, so they cannot matter."""
    with _threads(cfg.threads):
        return _train_lora(cfg, lm, texts, target, weights, seed=seed, question=question,
                           log=log)


def _train_lora(cfg: LoraConfig, lm: str | tuple[Any, Any], texts: Sequence[str],
                target: np.ndarray, weights: np.ndarray | None, *, seed: int, question: str,
                log: Callable[[str], None] | None) -> LoraPredictor:
    import torch
    from peft import LoraConfig as PeftConfig
    from peft import get_peft_model

    target = np.clip(np.asarray(target, dtype=np.float64).reshape(-1), 0.0, 1.0)
    w = np.ones(len(target)) if weights is None else np.asarray(weights, dtype=np.float64)
    if not (len(texts) == len(target) == len(w)):
        raise AarError(f"LoRA training needs one target and weight per text: {len(texts)} "
                       f"texts, {len(target)} targets, {len(w)} weights")
    if not np.isfinite(target).all() or not np.isfinite(w).all() or (w < 0).any():
        raise AarError("LoRA targets and weights must be finite, weights non-negative")
    keep = np.flatnonzero(w > 0)
    if len(keep) == 0:
        raise AarError("no example has a positive weight: nothing to train the student on")
    device = cfg.device or default_device()
    tokenizer, base = load_causal_lm(lm) if isinstance(lm, str) else lm
    prompter = Prompter.of(tokenizer, cfg.question or question, cfg.max_tokens)
    prompts = prompter.encode([texts[int(i)] for i in keep])
    tt = torch.tensor(target[keep], dtype=torch.float32)
    wt = torch.tensor(w[keep], dtype=torch.float32)
    prior = float(np.average(target[keep], weights=w[keep]))
    seed = int(np.random.SeedSequence([cfg.seed, seed]).generate_state(1)[0])
    model: Any
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # peft asks transformers a question transformers 5 calls deprecated: not ours
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
        torch.manual_seed(seed)
        model = get_peft_model(base, PeftConfig(
            r=cfg.rank, lora_alpha=cfg.alpha, use_rslora=cfg.rslora,
            target_modules=list(cfg.targets), lora_dropout=0.0, bias="none"))
    model.to(device)
    if cfg.gradient_checkpointing:
        model.get_base_model().gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    n = len(prompts)
    total = cfg.epochs * math.ceil(n / cfg.batch_size)
    history: list[float] = []
    model.train()
    for epoch in range(cfg.epochs):
        order = rng.permutation(n)
        for start in range(0, n, cfg.batch_size):
            batch = order[start:start + cfg.batch_size]
            progress = len(history) / total
            for group in opt.param_groups:
                group["lr"] = cfg.lr * _schedule(len(history), total, cfg.warmup)
            a = cfg.logconf_alpha * min(1.0, progress / cfg.logconf_warmup) \
                if cfg.logconf_warmup > 0 else cfg.logconf_alpha
            wsum = float(wt[batch].sum())
            value = 0.0
            for m0 in range(0, len(batch), cfg.micro_batch):
                idx = batch[m0:m0 + cfg.micro_batch]
                with _autocast(device):
                    z = _label_logits(model, [prompts[i] for i in idx], prompter, device)
                t, wi = tt[idx].to(device), wt[idx].to(device)
                if cfg.loss == "logconf":
                    t = logconf_target(z.detach(), t, a, prior)
                loss = (wi * soft_xent(z.float(), t)).sum() / wsum
                loss.backward()
                value += float(loss.detach())
            opt.step()
            opt.zero_grad(set_to_none=True)
            history.append(value)
        if log:
            log(f"LoRA epoch {epoch + 1}/{cfg.epochs}: loss {np.mean(history[-5:]):.4f}")
    model.eval()
    return LoraPredictor(model, prompter, device, max(cfg.micro_batch, cfg.batch_size), history,
                         cfg.threads)


def _schedule(step: int, total: int, warmup: float) -> float:
    """Learning-rate factor of ``step`` (0-based) of ``total``: a linear ramp up over the
    first ``warmup`` fraction, then linearly down towards 0 at the end."""
    ramp = math.ceil(warmup * total)
    if step < ramp:
        return (step + 1) / (ramp + 1)
    return (total - step) / (total - ramp)


@dataclass(frozen=True)
class LoraStudent:
    """The strong student of ``--student lora``: what ``ctx.train_strong`` calls."""

    config: LoraConfig
    question: str = DEFAULT_QUESTION
    log: Callable[[str], None] | None = None

    def fit(self, texts: Sequence[str], target: np.ndarray, weights: np.ndarray | None,
            seed: int) -> LoraPredictor:
        return train_lora(self.config, self.config.strong, texts, target, weights, seed=seed,
                          question=self.question, log=self.log)
