"""Fixed baselines: the weak teacher, the strong ceiling and the default student's penalty.

- **Weak teacher**: a logistic head on weak-encoder features of the whole ``labeled`` split
  with its true labels, its ridge penalty chosen by 5-fold cross-validation on that split.
  Its soft labels on ``unlabeled`` and ``test`` go to the workspace (``weak/<encoder>.npz``).
  There is one teacher, not one per seed: a seed that varied it (a bootstrap sample) could
  only make it worse than the tuned fit. Its cross-validation folds are drawn from the
  vault's secret, and the labeled split never leaves the vault, so nobody can re-run the
  teacher's training from public code and solve for its labels.
- **Strong ceiling**: the best strong-only model trained on the true labels of
  ``unlabeled`` among every trainer a method is offered — the logistic head over the
  whole penalty grid and the gradient trainer (linear and one-hidden-layer) — chosen by
  cross-validated accuracy on ``unlabeled``, then trained on all of it.
- **Default student**: the penalty ``ctx.train_strong`` uses when a method gives none,
  chosen by the same cross-validation rule on the *weak* labels of ``unlabeled`` (label
  free: it is written to the workspace).

For the LoRA student (``--student lora``, :func:`lora_baselines`) the ceiling is the strong
language model LoRA-fine-tuned on the true labels of ``unlabeled``, and the weak teacher
is the head above or, optionally, the weak language model LoRA-fine-tuned on ``labeled``;
both are keyed by their LoRA settings and never mix with the head baselines.

The baselines' test predictions are stored (the ceiling's in the vault), so the scorer
can resample test examples for intervals that include the baselines' own uncertainty.
Everything here is trusted code: it reads the vault.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from aar.data.prepare import Prepared
from aar.errors import AarError
from aar.util import atomic_save_npy, atomic_write_json, read_json, stable_hash
from aar.w2s.context import load_weak_soft
from aar.w2s.features import labeled_features, split_features
from aar.w2s.heads import CV_FOLDS, L2_GRID, cv_l2, fit_logistic_cv, stratified_folds
from aar.w2s.lora import LoraConfig, question_for, subset, train_lora

BASELINE_VERSION = "3"  # 3: tuned by cross-validation on the whole split, no bootstrap
GD_CANDIDATES: tuple[dict[str, int | float], ...] = (
    {"hidden": 0, "epochs": 20, "lr": 1e-3},
    {"hidden": 256, "epochs": 20, "lr": 1e-3},
)


@dataclass(frozen=True)
class Baseline:
    """One fixed baseline: its P(y=1) on the workspace's ``test`` ids and how it was
    chosen (``trainer``: ``logistic`` with ``l2``, or ``gd`` with its settings)."""

    role: str  # "weak" | "ceiling"
    encoder: str
    test_probs: np.ndarray
    choice: dict[str, object]


def _rng(prep: Prepared, *purpose: str) -> np.random.Generator:
    """A generator seeded by the vault's secret and what it is for."""
    return np.random.default_rng([prep.vault.secret, int(stable_hash(list(purpose), 8), 16)])


def _name(*parts: object) -> str:
    return stable_hash([BASELINE_VERSION, L2_GRID, CV_FOLDS, *parts], 10)


def weak_teacher(
    prep: Prepared, weak: str, progress: Callable[[int], None] | None = None,
) -> Baseline:
    """Train (or load) the weak teacher; writes its soft labels to the workspace."""
    vault_file = prep.vault.root / "baselines" / f"weak-{weak}-{_name(weak)}.json"
    ws_file = prep.workspace.weak_path(weak)
    if vault_file.exists() and ws_file.exists():
        return Baseline("weak", weak, load_weak_soft(prep.workspace, weak)["test"],
                        read_json(vault_file))
    x_lab = labeled_features(prep.vault, weak)
    feats = split_features(prep.workspace, weak, progress)
    y = prep.vault.split_labels("labeled")
    head, cv = fit_logistic_cv(x_lab, y, rng=_rng(prep, "weak", weak))
    soft = {s: head.predict_proba(feats[s]).astype(np.float32) for s in ("unlabeled", "test")}
    ws_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = ws_file.with_suffix(".tmp.npz")
    np.savez(tmp, unlabeled=soft["unlabeled"], test=soft["test"])
    tmp.replace(ws_file)
    choice = {"trainer": "logistic", "l2": cv.l2, "cv_log_loss": _keyed(cv.log_loss)}
    atomic_write_json(vault_file, choice)
    return Baseline("weak", weak, soft["test"].astype(np.float64), choice)


def ceiling(
    prep: Prepared, strong: str, progress: Callable[[int], None] | None = None,
) -> Baseline:
    """Train (or load) the strong ceiling: the best strong-only trainer on the true labels
    of ``unlabeled`` by cross-validated accuracy."""
    base = prep.vault.root / "baselines" / f"ceiling-{strong}-{_name(strong, GD_CANDIDATES)}"
    if base.with_suffix(".json").exists() and base.with_suffix(".npy").exists():
        return Baseline("ceiling", strong, np.load(base.with_suffix(".npy")),
                        read_json(base.with_suffix(".json")))
    feats = split_features(prep.workspace, strong, progress)
    x, y = feats["unlabeled"], prep.vault.split_labels("unlabeled")
    head, cv = fit_logistic_cv(x, y, rng=_rng(prep, "ceiling", strong))
    cv_acc = {"logistic": cv.accuracy[cv.l2]}
    gd = _cv_gd(x, y, _rng(prep, "ceiling-gd", strong))
    cv_acc.update({f"gd{k}": acc for k, (_, acc) in enumerate(gd)})
    best = max(cv_acc, key=lambda n: (cv_acc[n], n == "logistic"))
    choice: dict[str, object] = {"trainer": "logistic", "l2": cv.l2}
    probs = head.predict_proba(feats["test"])
    if best != "logistic":
        from aar.w2s.trainers import fit_gd

        cand = gd[int(best[2:])][0]
        gd_head, _ = fit_gd(x, y.astype(np.float64), seed=0, **cand)  # type: ignore[arg-type]
        probs = gd_head.predict_proba(feats["test"])
        choice = {"trainer": "gd", **cand}
    choice["cv_accuracy"] = cv_acc
    atomic_save_npy(base.with_suffix(".npy"), probs)
    atomic_write_json(base.with_suffix(".json"), choice)
    return Baseline("ceiling", strong, probs, choice)


def _cv_gd(x: np.ndarray, y: np.ndarray,
           rng: np.random.Generator) -> list[tuple[dict[str, int | float], float]]:
    """Cross-validated accuracy of each gradient-trainer candidate."""
    from aar.w2s.trainers import fit_gd

    fid = stratified_folds(y, CV_FOLDS, rng)
    out = []
    for cand in GD_CANDIDATES:
        acc = 0.0
        for f in range(CV_FOLDS):
            tr, held = fid != f, fid == f
            head, _ = fit_gd(x[tr], y[tr].astype(np.float64), seed=f, **cand)  # type: ignore[arg-type]
            acc += float(np.mean((head.logits(x[held]) >= 0) == (y[held] == 1))) / CV_FOLDS
        out.append((cand, acc))
    return out


def student_l2(prep: Prepared, weak: str, strong: str) -> float:
    """The default student penalty for (weak, strong): cross-validated on weak labels only,
    stored in the workspace where methods read it."""
    path = prep.workspace.student_path(weak, strong)
    key = _name(weak, strong)
    if path.exists():
        data = read_json(path)
        if data.get("key") == key:
            return float(data["l2"])
    weak_teacher(prep, weak)  # its soft labels are then in the workspace
    weak_u = load_weak_soft(prep.workspace, weak)["unlabeled"]
    x = split_features(prep.workspace, strong)["unlabeled"]
    hard = (weak_u >= 0.5).astype(np.float64)
    cv = cv_l2(x, hard, rng=np.random.default_rng(0))  # label-free: public randomness
    atomic_write_json(path, {"key": key, "l2": cv.l2, "cv_log_loss": _keyed(cv.log_loss),
                             "rule": "5-fold CV log-loss on the weak hard labels"})
    return cv.l2


def ensure(prep: Prepared, weak: str, strong: str) -> None:
    """Train (or load) everything a method run of (weak, strong) needs: the weak teacher,
    the ceiling and the default student penalty."""
    ceiling(prep, strong)
    student_l2(prep, weak, strong)  # trains the weak teacher first


def _keyed(d: dict[float, float]) -> dict[str, float]:
    return {f"{k:g}": v for k, v in d.items()}



# --------------------------------------------------------------------------- LoRA baselines
# For ``--student lora``: the ceiling is the strong language model LoRA-fine-tuned on the
# true labels of ``unlabeled``; the weak teacher is the encoder head above, or (weak
# trainer ``lora``) the weak language model LoRA-fine-tuned on the ``labeled`` split.
# Keyed by their LoRA settings (``lora-`` names), so they never mix with the head ones.
# On a subset (CPU sizes), every split is the same public, label-free subset of ids.

LORA_VERSION = "2"  # 2: learning rate decays linearly to 0
LORA_SUBSET_SALT = "aar-lora-subset"


@dataclass(frozen=True)
class LoraBaselines:
    """What a LoRA-student run is scored against, on its subsets of the workspace.

    ``positions``: split -> positions of the run's examples in the workspace split;
    ``weak_soft``: split -> the weak teacher's P(y=1) on them (all a method sees);
    ``test_ids``: the test ids scored, in workspace order."""

    positions: dict[str, np.ndarray]
    weak_soft: dict[str, np.ndarray]
    test_ids: list[str]
    weak: Baseline
    ceiling: Baseline


def _pick(items: list[str], positions: np.ndarray) -> list[str]:
    return [items[int(k)] for k in positions]


def lora_positions(prep: Prepared, cfg: LoraConfig) -> dict[str, np.ndarray]:
    ws = prep.workspace
    return {s: subset(ws.ids(s), getattr(cfg, f"{s}_size"), f"{LORA_SUBSET_SALT}:{s}")
            for s in ("unlabeled", "test")}


def _lora_name(role: str, cfg: LoraConfig, question: str, *drop: str) -> str:
    return "lora-" + stable_hash([LORA_VERSION, role, cfg.key(*drop), question], 10)


def _vault_seed(prep: Prepared, *purpose: str) -> int:
    return int(_rng(prep, *purpose).integers(2**31))


def lora_ceiling(prep: Prepared, cfg: LoraConfig, question: str,
                 log: Callable[[str], None] | None = None) -> Baseline:
    """Train (or load) the LoRA ceiling: ``cfg.strong`` fine-tuned (cross-entropy) on the
    true labels of the run's ``unlabeled`` examples; its test predictions stay in the vault."""
    cfg = replace(cfg, loss="xent")
    name = _lora_name("ceiling", cfg, question, "weak", "labeled_size", "logconf_alpha",
                      "logconf_warmup")
    base = prep.vault.root / "baselines" / f"ceiling-{name}"
    if base.with_suffix(".json").exists() and base.with_suffix(".npy").exists():
        return Baseline("ceiling", cfg.strong, np.load(base.with_suffix(".npy")),
                        read_json(base.with_suffix(".json")))
    pos = lora_positions(prep, cfg)
    ws = prep.workspace
    texts = _pick(ws.texts("unlabeled"), pos["unlabeled"])
    y = prep.vault.split_labels("unlabeled")[pos["unlabeled"]].astype(np.float64)
    if log:
        log(f"LoRA ceiling: fine-tuning {cfg.strong} on {len(texts)} true labels")
    pred = train_lora(cfg, cfg.strong, texts, y, seed=_vault_seed(prep, "ceiling", name),
                      question=question, log=log)
    probs = pred.predict_texts(_pick(ws.texts("test"), pos["test"]))
    choice: dict[str, object] = {"trainer": "lora", "model": cfg.strong, "config": cfg.as_dict(),
                                 "question": question, "n_train": len(texts),
                                 "final_loss": pred.history[-1]}
    atomic_save_npy(base.with_suffix(".npy"), probs)
    atomic_write_json(base.with_suffix(".json"), choice)
    return Baseline("ceiling", cfg.strong, probs, choice)


def lora_weak_teacher(prep: Prepared, cfg: LoraConfig, question: str,
                      log: Callable[[str], None] | None = None) -> tuple[str, Baseline]:
    """Train (or load) the LoRA weak teacher: ``cfg.weak`` fine-tuned on the ``labeled``
    split's true labels (a vault-seeded subset of ``labeled_size``), its soft labels on
    the run's ``unlabeled`` and ``test`` examples written to the workspace under the
    returned name. Its seeds come from the vault's secret, like the head teacher's folds."""
    cfg = replace(cfg, loss="xent")
    name = _lora_name("weak", cfg, question, "strong", "logconf_alpha", "logconf_warmup")
    vault_file = prep.vault.root / "baselines" / f"weak-{name}.json"
    ws_file = prep.workspace.weak_path(name)
    if vault_file.exists() and ws_file.exists():
        return name, Baseline("weak", cfg.weak, load_weak_soft(prep.workspace, name)["test"],
                              read_json(vault_file))
    texts, y = prep.vault.labeled_texts(), prep.vault.split_labels("labeled")
    if cfg.labeled_size is not None and cfg.labeled_size < len(texts):
        keep = np.sort(_rng(prep, "weak-lora-subset", name).permutation(len(texts))
                       [:cfg.labeled_size])
        texts, y = _pick(texts, keep), y[keep]
    if log:
        log(f"LoRA weak teacher: fine-tuning {cfg.weak} on {len(texts)} labeled examples")
    pred = train_lora(cfg, cfg.weak, texts, y.astype(np.float64),
                      seed=_vault_seed(prep, "weak-lora", name), question=question, log=log)
    pos, ws = lora_positions(prep, cfg), prep.workspace
    soft = {s: pred.predict_texts(_pick(ws.texts(s), pos[s])).astype(np.float32)
            for s in ("unlabeled", "test")}
    ws_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = ws_file.with_suffix(".tmp.npz")
    np.savez(tmp, unlabeled=soft["unlabeled"], test=soft["test"])
    tmp.replace(ws_file)
    choice: dict[str, object] = {"trainer": "lora", "model": cfg.weak, "config": cfg.as_dict(),
                                 "question": question, "n_train": len(texts),
                                 "final_loss": pred.history[-1]}
    atomic_write_json(vault_file, choice)
    return name, Baseline("weak", cfg.weak, soft["test"].astype(np.float64), choice)


def lora_baselines(prep: Prepared, cfg: LoraConfig, weak: str, weak_trainer: str = "head",
                   log: Callable[[str], None] | None = None) -> LoraBaselines:
    """Train (or load) the weak teacher (``weak_trainer``: the ``weak`` encoder's head, or
    ``lora``) and the LoRA ceiling for a LoRA-student run."""
    question = cfg.question or question_for(prep.workspace.manifest["dataset"])
    pos = lora_positions(prep, cfg)
    if weak_trainer == "lora":
        name, teacher = lora_weak_teacher(prep, cfg, question, log)
        soft = load_weak_soft(prep.workspace, name)
    elif weak_trainer == "head":
        teacher = weak_teacher(prep, weak)
        soft = {s: v[pos[s]] for s, v in load_weak_soft(prep.workspace, weak).items()}
        teacher = replace(teacher, test_probs=teacher.test_probs[pos["test"]])
    else:
        raise AarError(f"unknown weak trainer {weak_trainer!r}; use head or lora")
    test_ids = _pick(prep.workspace.ids("test"), pos["test"])
    return LoraBaselines(pos, soft, test_ids, teacher, lora_ceiling(prep, cfg, question, log))
