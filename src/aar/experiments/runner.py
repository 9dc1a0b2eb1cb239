"""Run a method over seeds, score it against the vault, and keep a re-runnable record."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NotRequired

import numpy as np
from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic validates these on Python 3.11

import aar
from aar.contracts import problems
from aar.contracts.api import ReferenceIn
from aar.data.prepare import Prepared, prepare
from aar.data.splits import PUBLIC
from aar.errors import AarError
from aar.methods import is_library_file, resolve_method
from aar.settings import get_settings
from aar.util import atomic_write_json, stable_hash
from aar.w2s import baselines
from aar.w2s.context import Examples, examples_of, fit_predict
from aar.w2s.features import split_features
from aar.w2s.lora import TARGET_MODULES, LoraConfig, LoraStudent, question_for
from aar.w2s.metrics import MIN_GAP, gap_warning
from aar.w2s.scoring import Scorer, SplitSummary


class RecordConfig(TypedDict):
    """How a run was made (``RunConfig.record``)."""

    method: str  # the method's registered name
    method_ref: str  # as given: a name, a file, or file:name
    library: NotRequired[bool]  # the method is the library's (records before it: by ref)
    dataset: str
    weak: str
    strong: str
    seeds: list[int]
    params: dict[str, Any]  # every hyperparameter, defaults filled in
    student: NotRequired[str]  # lora runs only (a head run's record has no student fields)
    lora: NotRequired[dict[str, Any]]
    weak_trainer: NotRequired[str]


class SeedRecord(TypedDict):
    seed: int
    seconds: float
    scores: dict[str, dict[str, float]]  # per test half: accuracy, auroc, pgr
    predictions: list[float]  # P(y=1) per test id, in ``test_ids`` order


class RunRecord(TypedDict):
    """What ``run`` returns and writes to ``$AAR_HOME/results/<run_id>.json``."""

    kind: str  # "aar.run"
    config: RecordConfig
    transductive: bool
    dataset_key: str
    code_hash: str
    aar_version: str
    python: str
    created: str
    seconds: float
    test_ids: list[str]
    summary: dict[str, SplitSummary]  # per test half
    warning: str | None
    seeds: list[SeedRecord]
    run_id: str
    path: NotRequired[str]  # where it was written (not in the file itself)


@dataclass(frozen=True)
class RunConfig:
    method: str
    dataset: str = "sentiment"
    weak: str = "l3"
    strong: str = "mpnet"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    params: dict[str, Any] = field(default_factory=dict)
    student: str = "head"  # "head": logistic head on strong features; "lora": see aar.w2s.lora
    lora: dict[str, Any] = field(default_factory=dict)  # the LoraConfig of a "lora" student
    weak_trainer: str = "head"  # "head" (the weak encoder's) or "lora" (lora student only)

    def record(self, method: str, params: dict[str, Any], library: bool) -> RecordConfig:
        """The config as recorded, with the method resolved (its registered name, every
        param); a head run's has no student fields (as before them)."""
        out: RecordConfig = {"method": method, "dataset": self.dataset, "weak": self.weak,
                             "strong": self.strong, "seeds": list(self.seeds),
                             "params": params, "method_ref": self.method, "library": library}
        if self.student != "head":
            out |= {"student": self.student, "lora": self.lora,
                    "weak_trainer": self.weak_trainer}
        return out


STUDENTS = ("head", "lora")
NO_TEXT_DATASETS = ("synthetic",)  # their texts are placeholders: nothing for an LM to read


def _lora_inputs(cfg: RunConfig, prep: Prepared, progress: Callable[[str], None] | None
                 ) -> tuple[Scorer, dict[str, Examples], LoraStudent]:
    """Baselines, examples and student of a LoRA-student run (``cfg.student == "lora"``)."""
    if prep.workspace.manifest["dataset"].split(":")[0] in NO_TEXT_DATASETS:
        raise AarError(f"--student lora needs a dataset of real texts; {cfg.dataset!r} has "
                       "placeholder texts (try --dataset sentiment)")
    lcfg = lora_config(cfg.lora)
    lb = baselines.lora_baselines(prep, lcfg, cfg.weak, cfg.weak_trainer, log=progress)
    scorer = Scorer.of_subset(prep, lb.test_ids, lb.weak.test_probs, lb.ceiling.test_probs,
                              cfg.weak, lcfg.strong)
    ws = prep.workspace
    feats = split_features(ws, cfg.weak) if cfg.weak_trainer == "head" else None
    examples = {}
    for s, pos in lb.positions.items():
        wf = feats[s][pos] if feats else np.zeros((len(pos), 0), dtype=np.float32)
        ids, texts = ws.ids(s), ws.texts(s)
        examples[s] = Examples([ids[k] for k in pos], [texts[k] for k in pos], wf,
                               np.zeros((len(pos), 0), dtype=np.float32), lb.weak_soft[s])
    question = lcfg.question or question_for(ws.manifest["dataset"])
    return scorer, examples, LoraStudent(lcfg, question, progress)


def lora_config(values: dict[str, Any]) -> LoraConfig:
    """A recorded LoRA config (``LoraConfig.as_dict()``) back as a config."""
    try:
        return LoraConfig(**{**values, "targets": tuple(values.get("targets", TARGET_MODULES))})
    except TypeError as exc:
        raise AarError(f"bad LoRA config: {exc}") from None


def run(cfg: RunConfig, progress: Callable[[str], None] | None = None) -> RunRecord:
    """Run ``cfg`` and return its record (also written under ``$AAR_HOME/results``)."""
    spec = resolve_method(cfg.method)
    params = spec.resolve_params(cfg.params)
    if not cfg.seeds:
        raise AarError("give at least one seed")
    if cfg.student not in STUDENTS:
        raise AarError(f"unknown student {cfg.student!r}; use {' or '.join(STUDENTS)}")
    if cfg.weak_trainer != "head" and cfg.student != "lora":
        raise AarError("--weak-trainer lora needs --student lora")
    prep = prepare(cfg.dataset)
    student: LoraStudent | None = None
    if cfg.student == "lora":
        scorer, examples, student = _lora_inputs(cfg, prep, progress)
    else:
        scorer = Scorer.of(prep, cfg.weak, cfg.strong)
        baselines.student_l2(prep, cfg.weak, cfg.strong)
        examples = examples_of(prep.workspace, cfg.weak, cfg.strong)
    per_seed: list[SeedRecord] = []
    t_all = time.perf_counter()
    for seed in cfg.seeds:
        if progress:
            progress(f"seed {seed}")
        t0 = time.perf_counter()
        probs = fit_predict(spec, prep.workspace, cfg.weak, cfg.strong, seed, params, examples,
                            student=student)
        seconds = time.perf_counter() - t0
        scores = scorer.score(probs)
        per_seed.append({
            "seed": seed, "seconds": seconds,
            "scores": {s: asdict(v) for s, v in scores.items()},
            "predictions": probs.tolist(),
        })
    summary = scorer.summary(np.array([r["predictions"] for r in per_seed]))
    weak_acc, ceil_acc = scorer.fixed[PUBLIC]
    config = cfg.record(spec.name, params, is_library_file(spec.source_file))
    record: RunRecord = {
        "kind": "aar.run",
        "config": config,
        "transductive": spec.transductive,
        "dataset_key": prep.key,
        "code_hash": spec.code_hash(),
        "aar_version": aar.__version__,
        "python": platform.python_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - t_all,
        "test_ids": scorer.ids,
        "summary": summary,
        "warning": gap_warning(weak_acc, ceil_acc) or (
            None if summary[PUBLIC]["gap_ok"] else
            f"gap too small: the interval of ceiling - weak reaches below {MIN_GAP}, so "
            "PGR is not reported"),
        "seeds": per_seed,
        "run_id": f"{spec.name}-{prep.name}-{stable_hash(config, 8)}-{int(time.time())}",
    }
    path = get_settings().results_dir / f"{record['run_id']}.json"
    atomic_write_json(path, record)
    record["path"] = str(path)
    return record


def rerun(path: Path) -> tuple[RunRecord, bool]:
    """Re-run a record's config; returns the new record and whether every prediction is
    bit-identical to the stored one."""
    old = read_record(path)
    c = old["config"]
    cfg = RunConfig(c["method_ref"], c["dataset"], c["weak"], c["strong"],
                    tuple(c["seeds"]), c["params"], c.get("student", "head"), c.get("lora", {}),
                    c.get("weak_trainer", "head"))
    new = run(cfg)
    same = [a["predictions"] for a in old["seeds"]] == [b["predictions"] for b in new["seeds"]]
    if new["code_hash"] != old["code_hash"]:
        same = False
    return new, same


_RECORD: TypeAdapter[RunRecord] = TypeAdapter(RunRecord)


def read_record(path: Path) -> RunRecord:
    """A run record (``$AAR_HOME/results/<run_id>.json``), validated against
    :class:`RunRecord`. Raises ``AarError`` when it is missing or not a run record."""
    if not path.is_file():
        raise AarError(f"no result record at {path}")
    try:
        rec = _RECORD.validate_json(path.read_bytes())
    except ValidationError as exc:
        raise AarError(f"{path} is not an aar run record ({problems(exc)})") from None
    if rec["kind"] != "aar.run":
        raise AarError(f"{path} is not an aar run record (kind {rec['kind']!r})")
    return rec


def records() -> Iterator[RunRecord]:
    """Every run record under ``$AAR_HOME/results``, oldest file name first; files that
    are not valid records (other versions' shapes, damaged files) are skipped."""
    root = get_settings().results_dir
    for path in sorted(root.glob("*.json")) if root.is_dir() else []:
        try:
            yield read_record(path)
        except (OSError, AarError):
            continue


def is_library_run(rec: RunRecord) -> bool:
    """A run of a library method (records before the ``library`` field go by their method
    reference: a ``.py`` file is not the library)."""
    ref = rec["config"]["method_ref"]
    return rec["config"].get("library", not (ref.endswith(".py") or ".py:" in ref))


def reference_body(rec: RunRecord) -> ReferenceIn | None:
    """A library method's run as a leaderboard reference row (what the orchestrator and
    ``aar references`` post); None for a method file's run. Non-finite scores (a PGR
    where the gap was too small) become null."""
    if not is_library_run(rec):
        return None
    cfg = rec["config"]
    seeds = [{split: {k: v if math.isfinite(v) else None for k, v in vals.items()}
              for split, vals in s["scores"].items()} for s in rec["seeds"]]
    return ReferenceIn(run_id=rec["run_id"], dataset=rec["dataset_key"], method=cfg["method"],
                       params=cfg["params"], weak=cfg["weak"], strong=cfg["strong"],
                       created=rec["created"], seeds=seeds)
