"""One researcher's world: its workspace, the label-free export, the sandbox and the server.

The operations here are what every researcher does, whatever drives it (an LLM through
the tools of :mod:`aar.research.tools`, or the built-in search): run a method
file in the sandbox with label-free diagnostics, submit it for evaluation (one server
submission per seed), share a finding with a code snapshot. Each is logged as an event in
the run directory. Nothing here ever holds a label: the export is label-free and the
only path to a score is the server's answer.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from aar.client import Client
from aar.contracts import problems
from aar.contracts.api import FindingOut, ReleasedOut
from aar.contracts.events import Evaluation, Event, Finding, SandboxRun
from aar.data.store import Workspace
from aar.errors import AarError
from aar.execution import Executor, Experiment
from aar.research.layout import RunPaths
from aar.util import atomic_write_json

MIN_SEEDS = 5
MAX_SEED = 10_000  # seeds are 0..MAX_SEED-1; each seeds one fit of the method


@contextlib.contextmanager
def cpu_slot(run_root: Path, slots: int) -> Iterator[None]:
    """Hold one of ``slots`` CPU slots of a run (file locks beside run.json), so that the
    researchers' sandbox runs share the machine's cores instead of oversubscribing them."""
    lock_dir = run_root / ".cpu-slots"
    lock_dir.mkdir(parents=True, exist_ok=True)
    fds = []
    try:
        while True:
            for i in range(max(slots, 1)):
                fd = os.open(lock_dir / f"slot-{i}", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue
                fds.append(fd)
                break
            if fds:
                break
            time.sleep(0.2)
        yield
    finally:
        for fd in fds:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def confine(root: Path, rel: str, *, must_exist: bool = False) -> Path:
    """``rel`` resolved inside ``root``; refuses absolute paths, ``..`` and links that lead
    out of ``root`` (an ``AarError`` naming the path)."""
    if not isinstance(rel, str) or not rel.strip():
        raise AarError("give a path relative to your workspace, e.g. ideas/my_method.py")
    if "\x00" in rel:
        raise AarError(f"path {rel!r} contains a NUL character")
    p = Path(rel)
    if p.is_absolute() or rel.startswith("~"):
        raise AarError(f"path {rel!r} is absolute; use a path relative to your workspace")
    if ".." in p.parts:
        raise AarError(f"path {rel!r} contains '..'; paths must stay inside your workspace")
    base = root.resolve()
    target = (base / p).resolve()
    if target != base and base not in target.parents:
        raise AarError(f"path {rel!r} leads outside your workspace (through a link)")
    if must_exist and not target.exists():
        files = sorted(q.relative_to(base).as_posix() for q in base.rglob("*.py")
                       if not any(part.startswith(".") for part in q.relative_to(base).parts))
        raise AarError(f"no such file {rel!r} in your workspace; its Python files: "
                       f"{', '.join(files[:20]) or 'none'} (write_file creates one)")
    return target


def diagnostics(preds: np.ndarray, weak_test: np.ndarray) -> dict[str, Any]:
    """Label-free diagnostics of test predictions (rows = seeds) against the one weak
    teacher's test labels: agreement with them, mean confidence |2p-1|, predicted positive
    rate against the teacher's, and agreement between seeds."""
    preds = np.atleast_2d(np.asarray(preds, dtype=np.float64))
    weak = np.asarray(weak_test, dtype=np.float64)
    if weak.ndim != 1 or weak.shape[0] != preds.shape[1]:
        raise AarError(f"weak test labels have shape {weak.shape}, expected "
                       f"({preds.shape[1]},): one teacher, one label per test example")
    hard = preds >= 0.5
    weak_hard = weak >= 0.5
    agree = float(np.mean(hard == weak_hard[None, :]))
    if len(preds) > 1:
        pairs = [float(np.mean(hard[i] == hard[j])) for i in range(len(hard))
                 for j in range(i + 1, len(hard))]
        between = float(np.mean(pairs))
    else:
        between = 1.0
    return {
        "agreement_with_weak": round(agree, 4),
        "mean_confidence": round(float(np.mean(np.abs(2 * preds - 1))), 4),
        "positive_rate": round(float(np.mean(hard)), 4),
        "weak_positive_rate": round(float(np.mean(weak_hard)), 4),
        "agreement_between_seeds": round(between, 4),
    }


def _seed(s: object) -> int:
    v: int | None = None
    if isinstance(s, bool):
        v = None
    elif isinstance(s, int | np.integer) or (isinstance(s, float) and s.is_integer()):
        v = int(s)
    elif isinstance(s, str):
        v = int(s) if s.strip().isdigit() else None
    if v is None:
        raise AarError(f"seed {s!r} is not a whole number; give seeds in 0..{MAX_SEED - 1}")
    if not 0 <= v < MAX_SEED:
        raise AarError(f"seed {v} out of range: seeds are whole numbers 0..{MAX_SEED - 1} "
                       "(a seed only seeds the method's random generator, ctx.rng)")
    return v


def check_seeds(seeds: list[Any]) -> list[int]:
    """Seeds as distinct ints in ``0..MAX_SEED-1`` (there is one weak teacher: a seed only
    seeds the method's random generator); a one-line error otherwise."""
    out = [_seed(s) for s in seeds]
    if not out:
        raise AarError("give at least one seed")
    if len(set(out)) != len(out):
        raise AarError("seeds must be distinct")
    return out


def declared_transductive(path: Path, method_name: str | None = None) -> bool:
    """Whether the method file declares itself transductive; where its source cannot tell
    (a computed flag, ``**kwargs``), it counts as transductive."""
    from aar.methods import declared_transductive as declared

    return declared(path.read_text(errors="replace"), method_name) is not False


def _max_pgr(answers: list[ReleasedOut | None]) -> float | None:
    pgrs = [float(a.pgr) for a in answers if a is not None and a.pgr is not None]
    return max(pgrs) if pgrs else None


@dataclass(frozen=True)
class Submitted:
    """What :meth:`Researcher.submit` did: one submission per seed and the server's
    (rationed) answer."""

    submission_ids: list[int]
    seeds: list[int]
    public: ReleasedOut | None  # the Ladder's answer to the last seed's submission
    released: bool  # the Ladder released a new best for one of them
    released_pgr: float | None  # the best public PGR released for them
    ladder_best_pgr: float | None  # the run's best released PGR so far
    transductive: bool
    diagnostics: dict[str, Any]  # label-free diagnostics of the predictions

    def as_dict(self) -> dict[str, Any]:
        """As the ``submit`` tool shows it."""
        return {"submission_ids": self.submission_ids, "seeds": self.seeds,
                "public": self.public.as_dict() if self.public is not None else {},
                "released": self.released, "released_pgr": self.released_pgr,
                "ladder_best_pgr": self.ladder_best_pgr, "transductive": self.transductive,
                "diagnostics": self.diagnostics}


@dataclass(frozen=True)
class Shared:
    """A finding :meth:`Researcher.share` posted, with its leaderboard PGR (a ranked
    result's public value; None when hidden, or not a result)."""

    finding: FindingOut
    public_pgr: float | None


class _State(BaseModel):
    """``state.json``: what a researcher remembers between sessions."""

    forum_seen: str | None = None  # the server time of its last read of the forum


@dataclass
class Researcher:
    """A researcher's handle on the run: paths, identity, data references, server client.

    ``max_evals`` is the number of server evaluations (one per seed) this researcher may
    spend; the server enforces it too (the token's budget), this side only avoids asking
    for what would be refused.
    """

    paths: RunPaths
    name: str
    direction: str
    dataset: str  # the dataset's key on the server (a name can be ambiguous)
    workspace_key: str
    weak: str
    strong: str
    client: Client
    max_evals: int | None = None
    sandbox_timeout_s: float = 900.0
    cpu_slots: int = 0  # > 0: local sandbox runs wait for one of this many run-wide CPU slots
    executor: Executor | None = None  # where sandbox runs go (None: this machine's sandbox)
    evals_used: int = 0
    findings_posted: int = 0
    best_pgr: float | None = None
    compute_s: float = 0.0
    _export: Workspace | None = field(default=None, repr=False)

    # -- places ------------------------------------------------------------------------
    @property
    def workspace(self) -> Path:
        return self.paths.workspace(self.name)

    @property
    def export(self) -> Workspace:
        if self._export is None:
            self._export = Workspace(self.workspace_key)
        return self._export

    @property
    def state_path(self) -> Path:
        return self.paths.agent_dir(self.name) / "state.json"

    @property
    def forum_seen(self) -> str | None:
        """When this researcher last read the forum (the server's time), None if never."""
        p = self.state_path
        if not p.exists():
            return None
        try:
            return _State.model_validate_json(p.read_text()).forum_seen
        except ValidationError as exc:
            raise AarError(f"{p} is not a researcher's state ({problems(exc)}); "
                           "move it away to start from an unread forum") from None

    def forum_read(self, now: str | None) -> None:
        """Remember that the forum was read up to ``now``."""
        atomic_write_json(self.state_path, _State(forum_seen=now).model_dump())

    def event(self, kind: str, **data: Any) -> Event:
        """Log one event of this researcher (checked against its kind's model)."""
        return self.paths.append_event(self.name, kind, **data)

    def restore_counters(self) -> None:
        """Counters from the events already on disk (a resumed run keeps its tallies)."""
        for ev in self.paths.read_events(self.name):
            if isinstance(ev, Evaluation):
                self.evals_used += len(ev.submission_ids)
                pgr = ev.public_pgr
                if pgr is not None and (self.best_pgr is None or pgr > self.best_pgr):
                    self.best_pgr = float(pgr)
            elif isinstance(ev, Finding):
                self.findings_posted += 1
                pgr = ev.public_pgr
                if pgr is not None and (self.best_pgr is None or pgr > self.best_pgr):
                    self.best_pgr = float(pgr)
            elif isinstance(ev, SandboxRun):
                self.compute_s += float(ev.seconds or 0.0)

    # -- sandbox -------------------------------------------------------------------------
    def weak_test(self) -> np.ndarray:
        """The weak teacher's P(y=1) on the test split (one teacher: a 1-D array)."""
        with np.load(self.export.weak_path(self.weak)) as z:
            return np.asarray(z["test"], dtype=np.float64)

    def run_method(self, rel: str, seeds: list[int], params: dict[str, Any] | None = None
                   ) -> tuple[np.ndarray, dict[str, Any]]:
        """Run the method file ``rel`` (in the workspace) in the sandbox over ``seeds``: it
        fits and returns a predictor, the harness applies it to the test split. Returns
        (test probabilities per seed, label-free diagnostics)."""
        from aar.execution.local import LocalExecutor

        path = confine(self.workspace, rel, must_exist=True)
        seeds = check_seeds(list(seeds))
        t0 = time.monotonic()
        ok, diag, err, nodes = False, None, None, None
        executor = self.executor or LocalExecutor(1)
        slot = (cpu_slot(self.paths.root, self.cpu_slots)
                if self.cpu_slots > 0 and executor.kind == "local" else contextlib.nullcontext())
        try:
            with slot:
                out = executor.run(Experiment(path, self.export, self.weak, self.strong,
                                              tuple(seeds), dict(params or {}),
                                              timeout_s=self.sandbox_timeout_s),
                                   self.workspace)
            preds, nodes = out.predictions, list(out.nodes)
            diag = diagnostics(preds, self.weak_test())
            ok = True
            return preds, diag
        except AarError as exc:
            err = str(exc).splitlines()[0]
            raise
        finally:
            seconds = time.monotonic() - t0
            self.compute_s += seconds
            self.event("sandbox_run", file=rel, seeds=list(seeds), params=params or {},
                       ok=ok, diagnostics=diag, error=err, seconds=round(seconds, 2),
                       executor=executor.kind, nodes=nodes)

    # -- server --------------------------------------------------------------------------
    def evals_left(self) -> int | None:
        return None if self.max_evals is None else max(self.max_evals - self.evals_used, 0)

    def submit(self, rel: str, params: dict[str, Any] | None = None,
               seeds: list[int] | None = None, label: str | None = None,
               known: dict[int, np.ndarray] | None = None) -> Submitted:
        """Run ``rel`` over at least five seeds in the sandbox and send each seed's test
        predictions to the server. Returns submission ids, the server's (rationed) answers
        and the diagnostics. ``known``: predictions of some seeds already computed by this
        harness (a screening run of the same file and params), not run again."""
        seeds = list(range(MIN_SEEDS)) if seeds is None else check_seeds(list(seeds))
        if len(seeds) < MIN_SEEDS:
            raise AarError(f"submit at least {MIN_SEEDS} distinct seeds (a result needs them)")
        left = self.evals_left()
        if left is not None and left < len(seeds):
            raise AarError(f"evaluation budget: {left} evaluations left, {len(seeds)} needed")
        known = dict(known or {})
        todo = [s for s in seeds if s not in known]
        if todo:
            fresh, _ = self.run_method(rel, todo, params)
            known.update(zip(todo, fresh, strict=True))
        preds = np.stack([known[s] for s in seeds])
        diag = diagnostics(preds, self.weak_test())
        transductive = declared_transductive(confine(self.workspace, rel, must_exist=True))
        ids = self.export.ids("test")
        method = (label or Path(rel).stem)[:128]
        subs: list[int] = []
        answers: list[ReleasedOut | None] = []
        for seed, row in zip(seeds, preds, strict=True):
            r = self.client.evaluate(self.dataset, row.tolist(), ids=ids, seed=seed,
                                     method=method, transductive=transductive)
            self.evals_used += 1
            subs.append(r.id)
            answers.append(r.public)
        # The Ladder answers with the run's best released score; it releases a new one
        # only when a submission beats that best by its step.
        run_best = _max_pgr(answers)
        mine = _max_pgr([a for a in answers if a is not None and a.released])
        if mine is not None and (self.best_pgr is None or mine > self.best_pgr):
            self.best_pgr = mine
        self.event("evaluation", submission_ids=subs, method=method, file=rel, seeds=seeds,
                   params=params or {}, public_pgr=mine, released=mine is not None,
                   ladder_best_pgr=run_best, diagnostics=diag, transductive=transductive)
        last = answers[-1] if answers else None
        return Submitted(subs, seeds, last,
                         any(a is not None and bool(a.released) for a in answers),
                         mine, run_best, transductive, diag)

    def snapshot(self, rel: str) -> bytes:
        """A tar.gz holding the method file as ``method.py`` (the finding's code)."""
        data = confine(self.workspace, rel, must_exist=True).read_bytes()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
            info = tarfile.TarInfo("method.py")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tf.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    def share(self, type: str, title: str, body: str = "", *, file: str | None = None,
              params: dict[str, Any] | None = None, seeds: list[int] | None = None,
              submission_ids: list[int] | None = None, builds_on: list[int] | None = None,
              extra_metrics: dict[str, Any] | None = None) -> Shared:
        """Post a finding; with ``file`` its code snapshot (``method.py``) goes with it and
        the metrics say how to re-run it: method, params, encoders, seeds, submissions."""
        metrics: dict[str, Any] = dict(extra_metrics or {})
        code = None
        if file is not None:
            code = self.snapshot(file)
            metrics.update({"method": Path(file).stem, "params": params or {},
                            "weak": self.weak, "strong": self.strong,
                            "seeds": list(seeds or []),
                            "submission_ids": list(submission_ids or [])})
        f = self.client.post_finding(type, title, body, metrics=metrics,
                                     dataset=self.dataset if submission_ids else None,
                                     submissions=submission_ids or [], code=code,
                                     builds_on=builds_on or [])
        self.findings_posted += 1
        pgr = None
        if type == "result":
            pgr = self.result_pgr(f.id)
            if pgr is not None and (self.best_pgr is None or pgr > self.best_pgr):
                self.best_pgr = pgr
        self.event("finding", finding_id=f.id, title=title, type=type,
                   builds_on=builds_on or [], public_pgr=pgr, file=file)
        return Shared(f, pgr)

    def result_pgr(self, finding_id: int) -> float | None:
        """The leaderboard's public (coarsened) PGR of one of the result findings, ranked
        with the inductive results or apart with the transductive ones; None when it is
        hidden or the gap is too small for a PGR."""
        board = self.client.leaderboard(self.dataset)
        for e in [*board.entries, *board.transductive]:
            if e.finding == finding_id:
                return None if e.pgr is None else float(e.pgr)
        return None
