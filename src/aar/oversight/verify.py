"""Verification of the winners: does a finding's score hold where its researcher never
looked?

**Selection.** ``verify(paths, admin_client)`` takes the top findings of a run by their
mean accuracy on the **public** test half (the half the researchers were scored on; the
same order as public PGR). The private half plays no part in the choice, so the
findings' private-half scores are an unbiased estimate of what they are worth; choosing on
the private half and then reading the private half again (as an earlier version did)
reports the winner's curse as a result.

**Re-runs.** Each chosen finding's code snapshot (``method.py``) is re-run untouched by
the researcher in a fresh sandbox, fitting on the unlabeled split of a preparation and
predicting that preparation's test split (examples the fit never saw, unless the method
declares itself ``transductive``: then it is marked so, for its fit read those test
inputs). Every number is scored by trusted code, :class:`aar.w2s.scoring.Scorer`, as a
PGR with a paired-bootstrap 95% interval over seeds and test examples that includes the
baselines' own uncertainty:

- ``public (seen)``: the finding's submissions on the public half (what was selected on);
- ``private (unbiased)``: the same submissions on the private half, the estimate to quote;
- ``re-run, seen seeds (private)``: the snapshot re-run with the submitted seeds;
  ``reproduces`` says whether every row is bit-identical to the submitted predictions
  (if not, they did not come from this code);
- ``fresh seeds (private)``: seeds the researcher never used, private half;
- ``re-split``: a re-drawn labeled/unlabeled/test split of the same dataset, whole test;
- ``held-out <dataset>``: other datasets (default: the testbed's others prepared here;
  for ``synthetic``, a synthetic variant with more systematic error), whole test;
- ``pair <weak>-><strong>``: another weak/strong model pair, whole test.

A cell whose weak-to-ceiling gap (or its interval's low end) is below
:data:`aar.w2s.metrics.MIN_GAP` has no PGR: it is shown as "gap too small" and never
averaged. ``held`` is the mean PGR of the fresh re-runs whose gap is large enough;
``gap`` is what the researcher saw minus it. The table goes to ``verify.json`` in the run
directory and to the run's server (``POST /api/v1/admin/verifications``), whose dashboard
shows it.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from aar.client import Client
from aar.contracts import problems
from aar.contracts.api import (
    BoardEntryOut,
    EvaluationOut,
    VerificationCell,
    VerificationIn,
    VerificationRow,
)
from aar.data.canary import base_ref
from aar.data.registry import TESTBED, default_encoders
from aar.data.splits import PRIVATE, PUBLIC
from aar.data.store import Workspace
from aar.errors import AarError
from aar.execution import Executor, Experiment
from aar.methods import declared_transductive
from aar.oversight.monitor import read_method
from aar.research.layout import RunPaths, now_iso
from aar.util import atomic_write_json
from aar.w2s.metrics import MIN_GAP, PairedBootstrap, above_interval

if TYPE_CHECKING:
    from aar.w2s.scoring import Scorer

SEEN = "public (seen)"  # the finding's submissions, public half: what it was chosen on
PRIVATE_EST = "private (unbiased)"  # the same submissions on the private half
RERUN = "re-run, seen seeds (private)"  # the snapshot re-run with the submitted seeds
FRESH = "fresh seeds (private)"
RESPLIT = "re-split"
SYNTHETIC = ("syn_weak", "syn_strong")
SUBMITTED = (SEEN, PRIVATE_EST, RERUN)  # not re-runs where the researcher never looked
WHOLE = (PUBLIC, PRIVATE)
GAP_TOO_SMALL = "gap too small"


def selection_rule(top: int) -> str:
    """The rule that chose the verified findings, in words (the table and report show it)."""
    return (f"the top {top} ranked result finding(s) of this run's researchers "
            "(transductive ones included, marked) by mean accuracy on the public test half "
            "(what they were scored on; the order of public PGR); the private half played "
            "no part in the choice, so 'private (unbiased)' is the estimate to quote")


@dataclass(frozen=True)
class Target:
    """Where to re-run: a dataset reference, an encoder pair, a split seed, and the test
    halves scored together (the whole test split unless the researcher saw part of it)."""

    label: str
    dataset: str
    weak: str
    strong: str
    split_seed: int = 0
    halves: tuple[str, ...] = WHOLE


@dataclass
class Cell:
    """One PGR of a finding somewhere, with its 95% interval over seeds and test examples.

    ``status``: ``ok``; ``gap too small`` (no PGR: the ceiling does not beat the weak
    teacher by ``MIN_GAP`` with confidence); ``error`` (the re-run failed); ``n/a`` (no
    data)."""

    label: str
    mean: float | None  # PGR; None unless status is ok
    low: float | None = None
    high: float | None = None
    n: int = 0  # seeds
    status: str = "ok"
    per_seed: list[float | None] = field(default_factory=list)  # PGR of each seed
    accuracy: float | None = None  # transfer accuracy (mean over seeds)
    per_seed_accuracy: list[float] = field(default_factory=list)
    weak: float | None = None  # the weak teacher's accuracy on the same examples
    ceiling: float | None = None
    ceiling_low: float | None = None  # the ceiling's 95% interval
    ceiling_high: float | None = None
    gap: float | None = None  # ceiling - weak
    gap_low: float | None = None
    above_ceiling: bool = False  # accuracy above the ceiling's interval: review it
    halves: list[str] = field(default_factory=list)
    n_examples: int = 0
    dataset: str = ""
    pair: str = ""
    error: str | None = None
    note: str | None = None

    @property
    def ci95(self) -> float | None:
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ci95": self.ci95}

    def model(self) -> VerificationCell:
        """The cell as the table holds it (every field set: all of them are written)."""
        return VerificationCell(**self.as_dict())

    def __str__(self) -> str:
        return fmt_cell(self.model())


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def joined(scorer: Scorer, halves: tuple[str, ...]) -> tuple[Scorer, str]:
    """``scorer`` able to score ``halves`` together as one sample, and that sample's name
    (a single half is itself)."""
    if len(halves) == 1:
        return scorer, halves[0]
    key = "+".join(halves)
    return replace(
        scorer,
        index={**scorer.index, key: np.concatenate([scorer.index[h] for h in halves])},
        labels={**scorer.labels, key: np.concatenate([scorer.labels[h] for h in halves])},
    ), key


def score_cell(label: str, scorer: Scorer, rows: np.ndarray, halves: tuple[str, ...],
               **extra: Any) -> Cell:
    """The cell of prediction ``rows`` (seeds, n_test) on ``halves``, scored by the one
    scorer: PGR and the paired-bootstrap interval, or "gap too small"."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    s, key = joined(scorer, halves)
    b = s.bootstrap(rows, key)
    accs = [float(s.correct(r, key).mean()) for r in rows]
    return cell_from(label, b, accs, halves=list(halves), n_examples=len(s.index[key]),
                     **extra)


def cell_from(label: str, b: PairedBootstrap, accs: list[float], **extra: Any) -> Cell:
    ok = b.gap_ok
    weak, ceil = b.weak.mean, b.ceiling.mean
    per_seed = [_finite((a - weak) / (ceil - weak)) if ok else None for a in accs]
    return Cell(
        label, _finite(b.pgr.mean) if ok else None, _finite(b.pgr.low) if ok else None,
        _finite(b.pgr.high) if ok else None, len(accs), "ok" if ok else GAP_TOO_SMALL,
        per_seed, _finite(b.accuracy.mean), accs, _finite(weak), _finite(ceil),
        _finite(b.ceiling.low), _finite(b.ceiling.high), _finite(b.gap.mean),
        _finite(b.gap.low),
        b.above_ceiling,
        note=None if ok else f"ceiling - weak is {b.gap.mean:.3f} [{b.gap.low:.3f}, "
                             f"{b.gap.high:.3f}], below {MIN_GAP} with 95% confidence",
        **extra)


def error_cell(label: str, message: str, **extra: Any) -> Cell:
    return Cell(label, None, status="error", error=message.splitlines()[0] if message
                else "failed", **extra)


def encoders(dataset: str, weak: str | None = None,
             strong: str | None = None) -> tuple[str, str]:
    """The pair given (a finding's, on its own dataset), else the dataset's default; the
    synthetic testbed always uses its own encoders."""
    if base_ref(dataset).split(":")[0] == "synthetic":
        return SYNTHETIC
    return default_encoders(dataset, weak, strong)


def default_heldout(dataset: str) -> list[str]:
    """The testbed's other datasets prepared here (preparing one is a download and an
    encoding: ask for it with ``--heldout``); a synthetic variant for ``synthetic``."""
    from aar.data.prepare import default_key

    name = base_ref(dataset).split(":")[0]
    if name == "synthetic":
        return ["synthetic:systematic=0.5,seed=1"]
    return [d for d in TESTBED if d != name and default_key(d) is not None]


def default_pairs(dataset: str, weak: str, strong: str) -> list[tuple[str, str, str]]:
    if base_ref(dataset).split(":")[0] == "synthetic":
        return [("synthetic:noise=2,weak_dim=8,seed=2", *SYNTHETIC)]
    return [(dataset, "l3", "minilm")] if (weak, strong) != ("l3", "minilm") else [
        (dataset, "minilm", "mpnet")]


def fresh_seeds(used: list[int], n: int) -> list[int]:
    """The first ``n`` seeds the finding never used."""
    if n < 1:
        raise AarError("verify with at least one fresh seed (--seeds)")
    taken = {int(s) for s in used}
    out: list[int] = []
    s = 0
    while len(out) < n:
        if s not in taken:
            out.append(s)
        s += 1
    return out


def reuse_features(src: Workspace, dst: Workspace, encoder: str) -> int:
    """Cache ``dst``'s features from ``src``'s (a re-drawn split holds mostly the same
    texts, in another order): only texts ``src`` lacks are encoded. Returns how many were
    encoded (-1: nothing to reuse, or ``dst`` is cached already)."""
    from aar.models.cache import get_features, has_features, put_features

    dst_texts, src_texts = dst.all_texts(), src.all_texts()
    if has_features(encoder, dst_texts) or not has_features(encoder, src_texts):
        return -1
    known = get_features(encoder, src_texts)
    row = {t: i for i, t in enumerate(src_texts)}
    missing = sorted({t for t in dst_texts if t not in row})
    try:
        new = get_features(encoder, missing) if missing else known[:0]
    except AarError:  # an encoder whose features only ship with a dataset
        return -1
    extra = {t: i for i, t in enumerate(missing)}
    arr = np.stack([known[row[t]] if t in row else new[extra[t]] for t in dst_texts])
    put_features(encoder, dst_texts, arr)
    return len(missing)


def row_sha256(row: np.ndarray) -> str:
    """The digest the server keeps of a submission (float32, workspace test order)."""
    return hashlib.sha256(np.asarray(row, dtype=np.float32).tobytes()).hexdigest()


def run_target(method_file: Path, target: Target, seeds: list[int], params: dict[str, Any],
               workdir: Path, timeout_s: float, executor: Executor | None = None
               ) -> tuple[Cell, np.ndarray | None]:
    """Re-run a method on a target in a fresh sandbox job (on ``executor``, default this
    machine's sandbox) and score it (trusted code, here). Returns the cell and the
    predictions (None when the re-run failed)."""
    from aar.data.prepare import prepare
    from aar.execution.local import LocalExecutor
    from aar.w2s import baselines
    from aar.w2s.scoring import Scorer

    extra: dict[str, Any] = {"dataset": target.dataset,
                             "pair": f"{target.weak}->{target.strong}"}
    try:
        prep = prepare(target.dataset, seed=target.split_seed)
        if target.split_seed != 0:
            base = prepare(target.dataset).workspace
            for encoder in (target.weak, target.strong):
                reuse_features(base, prep.workspace, encoder)
        scorer = Scorer.of(prep, target.weak, target.strong)
        baselines.student_l2(prep, target.weak, target.strong)
        job = Path(tempfile.mkdtemp(prefix="verify-", dir=workdir))
        try:
            exp = Experiment(method_file, prep.workspace, target.weak, target.strong,
                             tuple(seeds), params, timeout_s=timeout_s)
            preds = (executor or LocalExecutor(1)).run(exp, job).predictions
        finally:
            shutil.rmtree(job, ignore_errors=True)
        return score_cell(target.label, scorer, preds, target.halves, **extra), preds
    except AarError as exc:
        return error_cell(target.label, str(exc), **extra), None


@dataclass(frozen=True)
class VerifyConfig:
    top: int = 3
    seeds: int = 5
    heldout: tuple[str, ...] | None = None  # None: default_heldout(dataset)
    pairs: tuple[tuple[str, str, str], ...] | None = None  # (dataset, weak, strong)
    resplit_seed: int = 1
    timeout_s: float = 1800.0


def _public_key(entry: BoardEntryOut) -> tuple[float, float, int]:
    """Sort key of a public-board entry: best public accuracy first (PGR breaks a tie
    only where accuracy is missing), then the older finding."""
    acc, pgr = entry.accuracy, entry.pgr
    return (-(float(acc) if acc is not None and math.isfinite(acc) else -1.0),
            -(float(pgr) if pgr is not None and math.isfinite(pgr) else -1e9),
            entry.finding)


@dataclass(frozen=True)
class Chosen:
    """A finding chosen for verification: its entry on the admin's exact public board,
    and its rank there by the selection rule."""

    entry: BoardEntryOut
    public_rank: int

    @property
    def finding(self) -> int:
        return self.entry.finding


class Verifier:
    def __init__(self, paths: RunPaths, admin: Client, config: VerifyConfig | None = None,
                 progress: Callable[[str], None] | None = None,
                 executor: Executor | None = None) -> None:
        self.paths = paths
        self.executor = executor
        self.admin = admin
        self.cfg = config or VerifyConfig()
        self.progress = progress or (lambda _msg: None)
        self._rows: list[VerificationRow] = []
        self._notes: list[str] = []
        self.info = paths.read_info()

    def dataset(self) -> str:
        ds = self.info.get("dataset")
        if not ds:
            raise AarError(f"{self.paths.info} names no dataset; is {self.paths.root} a "
                           "research run?")
        return str(ds)

    def top_findings(self) -> list[Chosen]:
        """The run's ranked result findings with the best mean **public** accuracy (the
        admin's exact public board); see :func:`selection_rule`."""
        if self.cfg.top < 1:
            raise AarError("verify at least one finding (--top)")
        authors = set(self.paths.agents())
        board = self.admin.leaderboard(self.dataset(), split="public")
        listed = [*board.entries, *board.transductive]  # ranked apart
        entries = [e for e in listed if not authors or e.author in authors]
        ranked = sorted(entries, key=_public_key)
        return [Chosen(e, k) for k, e in enumerate(ranked, 1)][: self.cfg.top]

    def targets(self, dataset: str, weak: str, strong: str) -> list[Target]:
        out = [Target(FRESH, dataset, weak, strong, halves=(PRIVATE,)),
               Target(RESPLIT, dataset, weak, strong, split_seed=self.cfg.resplit_seed)]
        held = self.cfg.heldout if self.cfg.heldout is not None else default_heldout(dataset)
        if self.cfg.heldout is None and not held:
            self._note("no other testbed dataset is prepared here: no held-out re-run "
                       "(name some with --heldout)")
        for ref in held:
            out.append(Target(f"held-out {ref}", ref, *encoders(ref)))
        pairs = self.cfg.pairs if self.cfg.pairs is not None else default_pairs(
            dataset, weak, strong)
        for ref, w, s in pairs:
            where = "" if ref == dataset else f" ({ref})"
            out.append(Target(f"pair {w}->{s}{where}", ref, w, s))
        return out

    def _note(self, text: str) -> None:
        if text not in self._notes:
            self._notes.append(text)

    def verify_finding(self, chosen: Chosen) -> VerificationRow:
        from aar.data.prepare import prepare
        from aar.w2s.scoring import Scorer

        entry = chosen.entry
        fid = entry.finding
        finding = self.admin.finding(fid)
        metrics = finding.claimed_metrics
        dataset = self.dataset()
        weak, strong = encoders(dataset, metrics.get("weak"), metrics.get("strong"))
        claimed = metrics.get("params")
        params: dict[str, Any] = dict(claimed) if isinstance(claimed, dict) else {}
        if not finding.archive:
            raise AarError(f"finding {fid} has no code snapshot to re-run")
        code = read_method(self.admin.download_archive(finding.archive))
        if code is None:
            raise AarError(f"finding {fid}'s code snapshot holds no method.py")
        out_dir = self.paths.root / "verify" / f"finding-{fid}"
        out_dir.mkdir(parents=True, exist_ok=True)
        method_file = out_dir / "method.py"
        method_file.write_text(code)
        subs = sorted((self.admin.evaluation(s) for s in finding.submissions),
                      key=lambda s: (s.seed is None, s.seed or 0, s.id))
        used = [s.seed for s in subs if s.seed is not None]
        scorer = Scorer.of(prepare(dataset), weak, strong)
        cells: dict[str, Cell] = {}

        # The same seeds again: does this code give what was submitted, bit for bit?
        reproduces: bool | None = None
        again: np.ndarray | None = None
        if used and len(set(used)) == len(used) == len(subs):
            self.progress(f"finding {fid}: {RERUN}")
            cells[RERUN], again = run_target(
                method_file, Target(RERUN, dataset, weak, strong, halves=(PRIVATE,)), used,
                params, out_dir, self.cfg.timeout_s, self.executor)
            reproduces = again is not None and all(
                _same(row, sub, scorer) for row, sub in zip(again, subs, strict=True))
        if reproduces and again is not None:  # the submitted predictions, exactly
            cells[SEEN] = score_cell(SEEN, scorer, again, (PUBLIC,))
            cells[PRIVATE_EST] = score_cell(PRIVATE_EST, scorer, again, (PRIVATE,))
        else:
            cells[SEEN] = server_cell(SEEN, scorer, subs, PUBLIC)
            cells[PRIVATE_EST] = server_cell(PRIVATE_EST, scorer, subs, PRIVATE)

        seeds = fresh_seeds(used, self.cfg.seeds)
        for t in self.targets(dataset, weak, strong):
            self.progress(f"finding {fid}: {t.label}")
            cells[t.label], _ = run_target(method_file, t, seeds, params, out_dir,
                                           self.cfg.timeout_s, self.executor)
            self._save(VerificationRow(finding=fid, partial=True,
                                       cells={k: c.model() for k, c in cells.items()}))
        order = [SEEN, PRIVATE_EST, RERUN]
        cells = {k: cells[k] for k in [*order, *(k for k in cells if k not in order)]
                 if k in cells}
        held_mean, used_cells, left_out = what_held(cells)
        seen, private = cells[SEEN].mean, cells[PRIVATE_EST].mean
        return VerificationRow(
            finding=fid, title=finding.title, author=finding.author,
            method=metrics.get("method"), params=params, weak=weak, strong=strong,
            transductive=True if entry.transductive else declared_transductive(code),
            public_rank=chosen.public_rank,
            public_accuracy=entry.accuracy,
            seeds_seen=used, seeds_fresh=seeds,
            cells={k: c.model() for k, c in cells.items()},
            reproduces=reproduces,
            held_mean=held_mean, held_cells=used_cells, held_left_out=left_out,
            gap=None if seen is None or held_mean is None else float(seen - held_mean),
            optimism=None if seen is None or private is None else float(seen - private),
            above_ceiling=[k for k, c in cells.items() if c.above_ceiling],
        )

    def run(self) -> VerificationIn:
        self._rows = []
        self._notes = []
        for chosen in self.top_findings():
            try:
                row = self.verify_finding(chosen)
            except AarError as exc:
                row = VerificationRow(finding=chosen.finding, title=chosen.entry.title,
                                      author=chosen.entry.author,
                                      public_rank=chosen.public_rank,
                                      error=str(exc).splitlines()[0])
            self._rows.append(row)
        return self._save()

    def _save(self, partial: VerificationRow | None = None) -> VerificationIn:
        """Write verify.json: the rows so far (and the finding in progress, marked
        ``partial``), so that a long verification keeps what it measured. The file holds
        the fields each row and cell was given (:func:`table_json`)."""
        rows = [*self._rows, *([partial] if partial is not None else [])]
        config: dict[str, Any] = json.loads(json.dumps(asdict(self.cfg)))  # tuples: lists
        table = VerificationIn(run=self.paths.run_id, dataset=self.dataset(), t=now_iso(),
                               config=config, selection=selection_rule(self.cfg.top),
                               min_gap=MIN_GAP, notes=list(self._notes), rows=rows)
        atomic_write_json(self.paths.root / "verify.json", table_json(table))
        self._post(table)
        return table

    def _post(self, table: VerificationIn) -> None:
        """Send the table to the run's server, where the dashboard shows it (the server
        reads no run folder); a server that refuses it costs the table nothing."""
        try:
            self.admin.post_verification(table)
        except AarError as exc:
            self.progress("the verification table was not posted to the server: "
                          f"{str(exc).splitlines()[0]}")


def _accuracy(sub: EvaluationOut, half: str) -> float | None:
    """A submission's accuracy on a test half (the admin's view carries it), or None."""
    if sub.scores is None:
        return None
    split = {PUBLIC: sub.scores.test_public, PRIVATE: sub.scores.test_private}.get(half)
    return None if split is None else split.accuracy


def _same(row: np.ndarray, sub: EvaluationOut, scorer: Scorer) -> bool:
    """Whether a re-run row is the submitted prediction vector: by the server's digest
    when it gives one, else by the accuracy on both halves."""
    if sub.sha256:
        return row_sha256(row) == sub.sha256
    stored = np.asarray(row, dtype=np.float32).astype(np.float64)
    return all(
        (acc := _accuracy(sub, h)) is not None
        and abs(float(scorer.correct(stored, h).mean()) - acc) < 1e-9
        for h in WHOLE)


def server_cell(label: str, scorer: Scorer, subs: list[EvaluationOut], half: str) -> Cell:
    """A half's cell from the server's per-submission accuracies, when the submitted
    predictions could not be reproduced: the PGR of their mean accuracy against the same
    baselines, without an interval (the predictions themselves are not at hand)."""
    accs = [float(a) for s in subs if (a := _accuracy(s, half)) is not None]
    if not accs:
        return Cell(label, None, status="n/a", halves=[half], note="no scored submission")
    b = scorer.bootstrap(scorer.weak_probs, half)  # the baselines' gap and interval
    cell = cell_from(label, b, accs, halves=[half], n_examples=len(scorer.index[half]))
    acc = float(np.mean(accs))
    mean = None if cell.status != "ok" else _finite((acc - b.weak.mean) / b.gap.mean)
    return replace(cell, mean=mean, low=None, high=None, accuracy=acc,
                   above_ceiling=above_interval(acc, b.ceiling.high),
                   note=cell.note or "from the server's scores: the snapshot did not "
                                     "reproduce the submitted predictions, so no interval")


def what_held(cells: dict[str, Cell]) -> tuple[float | None, list[str], dict[str, str]]:
    """The mean PGR of the fresh re-runs (every cell but what was submitted) with a PGR:
    cells whose gap is too small, and failed re-runs, are left out, with why."""
    used: list[str] = []
    left_out: dict[str, str] = {}
    for label, c in cells.items():
        if label in SUBMITTED:
            continue
        if c.status == "ok" and c.mean is not None:
            used.append(label)
        else:
            left_out[label] = c.error or c.status
    if not used:
        return None, used, left_out
    return float(np.mean([cells[k].mean for k in used])), used, left_out


def table_json(table: VerificationIn) -> dict[str, Any]:
    """The table as ``verify.json`` holds it (and ``aar verify --json`` prints it): the
    fields each row and cell was given, in the models' order; NaN stays NaN, as the file
    always held it (posting it turns NaN into null)."""
    return table.model_dump(mode="json", exclude_unset=True)


def read_table(path: Path) -> VerificationIn | None:
    """A ``verify.json`` (None when there is none). Keys a table of another version holds
    beyond the models' are kept in its rows and cells, and dropped at its top level. A file
    that is not a table raises :class:`AarError` naming it."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        known = {k: v for k, v in data.items() if k in VerificationIn.model_fields}
        return VerificationIn.model_validate(known)
    except (OSError, ValueError) as exc:  # a pydantic ValidationError is a ValueError
        why = problems(exc) if isinstance(exc, ValidationError) else " ".join(str(exc).split())
        raise AarError(f"{path} is not a readable verification table ({why[:300]}); "
                       "run `aar verify` again, or remove the file") from None


def columns(table: VerificationIn) -> list[str]:
    """Cell labels in table order: what was seen, the private half, then the re-runs from
    the nearest to the farthest from the researcher's setting."""
    fixed = [SEEN, PRIVATE_EST, RERUN, FRESH, RESPLIT]

    def rank(label: str) -> tuple[int, str]:
        if label in fixed:
            return fixed.index(label), ""
        return (len(fixed) if label.startswith("held-out") else len(fixed) + 1), label

    labels = {label for row in table.rows for label in row.cells}
    return sorted(labels, key=rank)


def fmt_cell(cell: VerificationCell | None, digits: int = 2) -> str:
    """``0.52 [0.41, 0.63]``; ``gap too small``; ``error``; ``n/a``; a result above the
    ceiling's interval says so. No cell, or an empty one: nothing."""
    if cell is None or not cell.model_fields_set:
        return ""
    status = cell.status or "ok"
    if cell.error or status == "error":
        return "error"
    if status == GAP_TOO_SMALL:
        return GAP_TOO_SMALL
    mean = cell.mean
    if mean is None:
        return "n/a"
    low, high = cell.low, cell.high
    text = f"{mean:.{digits}f}"
    if low is not None and high is not None:
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    if cell.above_ceiling:
        text += " (above ceiling)"
    return text


def fmt_transductive(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "unknown"}[value]
