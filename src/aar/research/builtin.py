"""The built-in researcher (backend ``builtin``, no LLM): evolutionary search over
compositions of the method library's building blocks (:mod:`aar.research.genome`).

Each generation it reads the leaderboard and the forum, picks a parent (its direction's
starting points first, then its own best results or another researcher's best finding,
whose genome travels in the finding's claimed metrics), mutates or crosses it, writes the
candidate as a method module under ``ideas/``, screens it in the sandbox on one seed with
label-free diagnostics (crashes and class-balance collapses are dropped there), submits
the survivors over five seeds and posts each as a ``result`` (ranked by the server),
posting ``negative`` findings when a change brought no gain (the run's Ladder released no
new best) or hurt, and periodic ``insight`` summaries. Candidates are method modules on
the fit/predict contract: they return a predictor, and declare ``transductive`` when
their genome trains on the test inputs. Public values are rationed: a candidate's PGR is
what the run's Ladder released for it, or unknown.
Everything it tried is appended to ``population.jsonl`` so that a resumed run continues
where it stopped. Random choices come from one generator seeded by (seed, name).
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aar.contracts.api import BoardEntryOut
from aar.contracts.events import ResearcherState, StopReason
from aar.errors import AarError
from aar.research import genome as G
from aar.research.context import MIN_SEEDS, Researcher
from aar.research.directions import Direction
from aar.research.layout import AgentStatus, now_iso
from aar.research.tools import init_workspace

MAX_STARTS = 2  # starting genomes from the direction before evolution takes over
INSIGHT_EVERY = 3
# Candidates in a row that failed to run at all: the sandbox or the workspace is broken, not
# the genomes (without this, a researcher whose sandbox cannot start writes thousands of
# candidate files a minute until its deadline).
MAX_FAILED_IN_A_ROW = 10


class StopRequested(Exception):
    """Raised in the researcher's main thread when the orchestrator asks it to stop."""


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise StopRequested(signal.Signals(signum).name)


class Candidate(BaseModel):
    """One candidate the search tried: a line of ``population.jsonl`` (the fields it was
    given, in this order; lines of older versions keep their extra fields)."""

    model_config = ConfigDict(extra="allow")

    key: str  # the genome's key (``genome.key``)
    genome: dict[str, Any]
    file: str  # the method module, relative to the workspace
    origin: str  # how it was made (a starting point, a mutation of ..., a crossover ...)
    builds_on: list[int] = Field(default_factory=list)  # finding ids
    parent_pgr: float | None = None
    pgr: float | None = None  # the public PGR the run's Ladder released for it
    finding: int | None = None  # its result finding
    t: str = ""
    screen: dict[str, Any] | str | None = None  # screening diagnostics, or "failed: ..."
    screen_reject: bool | None = None  # screened out (drifted from the weak labels)
    released: bool | None = None
    transductive: bool | None = None
    submissions: list[int] | None = None

    def line(self) -> str:
        return json.dumps(self.model_dump(exclude_unset=True))


@dataclass(frozen=True)
class Peer:
    """Another researcher's ranked result that carries a genome."""

    genome: dict[str, Any]
    pgr: float
    author: str
    finding: int


class BuiltinResearcher:
    def __init__(self, r: Researcher, direction: Direction, *, seed: int = 0,
                 deadline: float | None = None, screen_seed: int = 0) -> None:
        self.r = r
        self.direction = direction
        known = tuple(f for f in direction.families if f in G.FAMILIES)
        self.families = known or G.FAMILIES  # an old direction file may name retired ones
        self.rng = random.Random(zlib.crc32(f"{seed}:{r.name}".encode()))
        self.deadline = deadline
        self.screen_seed = screen_seed
        self.pop_path = r.paths.agent_dir(r.name) / "population.jsonl"
        self.population: list[Candidate] = []
        self.tried: set[str] = set()
        self.others: dict[int, Peer] = {}
        self.cost_s: float | None = None  # running estimate of one candidate's wall time
        self.state = ResearcherState.STARTING

    # -- persistence -----------------------------------------------------------------
    def _load(self) -> None:
        for rec in population(self.pop_path):
            self.population.append(rec)
            self.tried.add(rec.key)
        self.r.restore_counters()

    def _record(self, rec: Candidate) -> None:
        self.population.append(rec)
        self.tried.add(rec.key)
        with open(self.pop_path, "a", encoding="utf-8") as fh:
            fh.write(rec.line() + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def status(self, state: ResearcherState | None = None, reason: str = "") -> None:
        if state:
            self.state = state
        self.r.paths.write_status(AgentStatus(
            name=self.r.name, direction=self.direction.title, state=self.state,
            best_pgr=self.r.best_pgr, evals=self.r.evals_used,
            findings=self.r.findings_posted, compute_s=round(self.r.compute_s, 1),
            last_activity=now_iso(), reason=reason))

    # -- the forum ---------------------------------------------------------------------
    def read_forum(self) -> None:
        """This run's other researchers' ranked results that carry a genome, with their
        public PGR (earlier runs on the same server are not built on: a run starts fresh)."""
        board = self.r.client.leaderboard(self.r.dataset)
        new = self.r.client.findings(since=self.r.forum_seen, limit=50)
        self.r.forum_read(new.now)
        entries = [*board.entries, *board.transductive]
        self.others.update(peer_results(entries, self.r.name, set(self.r.paths.agents())))
        self.r.event("forum_read", results_seen=len(self.others),
                     new_findings=len(new.items))

    # -- choosing the next candidate ---------------------------------------------------
    def _own_ranked(self) -> list[Candidate]:
        return sorted((p for p in self.population if p.pgr is not None),
                      key=lambda p: -(p.pgr or 0.0))

    def _starts(self) -> list[dict[str, Any]]:
        starts = G.start_genomes(self.families)
        if len(starts) > MAX_STARTS:
            starts = [starts[0], starts[-1]][:MAX_STARTS]
        return starts

    def propose(self) -> tuple[dict[str, Any], str, list[int], float | None]:
        """(genome, origin, builds_on finding ids, parent's PGR). The direction's starting
        points come first, except that a result of another researcher at least as good as
        my best is built on as soon as I have a result of my own."""
        own = self._own_ranked()
        others = sorted(self.others.values(), key=lambda o: -o.pgr)
        own_best = own[0].pgr if own and own[0].pgr is not None else -1e9
        ahead = bool(own) and bool(others) and others[0].pgr >= own_best
        elsewhere = {G.key(o.genome) for o in self.others.values()}
        fresh = [g for g in self._starts() if G.key(g) not in self.tried | elsewhere]
        if fresh and (not ahead or not own):
            g = fresh[0]
            return g, f"a starting point of the direction ({G.describe(g)})", [], None
        parent_pgr: float | None
        for _ in range(30):
            roll = self.rng.random()
            if others and (others[0].pgr >= own_best or roll < 0.25):
                o = others[0] if self.rng.random() < 0.7 else self.rng.choice(others[:3])
                child = G.mutate(o.genome, self.rng, self.families)
                origin = f"a mutation of {o.author}'s finding #{o.finding} (PGR {o.pgr:.3f})"
                parent_pgr, builds = o.pgr, [o.finding]
            elif others and own and roll < 0.4:
                o = others[0]
                child = G.mutate(G.crossover(own[0].genome, o.genome, self.rng),
                                 self.rng, self.families, n_changes=1)
                origin = f"a crossover of my #{own[0].finding} with {o.author}'s #{o.finding}"
                parent_pgr, builds = max(own_best, o.pgr), [o.finding]
                if own[0].finding:
                    builds.append(own[0].finding)
            elif own:
                p = own[0] if self.rng.random() < 0.6 else self.rng.choice(own[:3])
                child = G.mutate(p.genome, self.rng, self.families)
                origin = f"a mutation of my finding #{p.finding} (PGR {p.pgr:.3f})"
                parent_pgr = p.pgr
                builds = [p.finding] if p.finding else []
            else:
                child = G.mutate(self.rng.choice(self._starts()), self.rng, self.families)
                origin, parent_pgr, builds = "a mutation of a starting point", None, []
            if G.key(child) not in self.tried | elsewhere:
                return child, origin, sorted(set(builds)), parent_pgr
        g = G.mutate(G.BASE, self.rng, G.FAMILIES, n_changes=3)
        return g, "a random restart", [], None

    # -- one candidate -----------------------------------------------------------------
    def _time_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.time()

    def _affordable(self) -> str | None:
        left = self.r.evals_left()
        if left is not None and left < MIN_SEEDS:
            return "evals"
        need = 1.3 * (self.cost_s or 0.0)
        if self._time_left() <= max(need, 1.0):
            return "time"
        return None

    def step(self) -> Candidate:
        self.read_forum()
        g, origin, builds, parent_pgr = self.propose()
        n = len(self.population)
        name = f"{self.r.name.replace('-', '_')}_g{n:03d}"
        rel = f"ideas/{name}.py"
        path = self.r.workspace / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(G.render(name, g, agent=self.r.name, direction=self.direction.title,
                                 origin=origin, dataset=self.r.dataset))
        self.r.event("file_write", path=rel, bytes=path.stat().st_size)
        rec = Candidate(key=G.key(g), genome=g, file=rel, origin=origin, builds_on=builds,
                        parent_pgr=parent_pgr, pgr=None, finding=None, t=now_iso())
        t0 = time.monotonic()
        try:
            screen, diag = self.r.run_method(rel, [self.screen_seed])
        except AarError as exc:
            rec.screen = f"failed: {str(exc).splitlines()[0][:300]}"
            self._record(rec)
            return rec
        rec.screen = diag
        drift = abs(diag["positive_rate"] - diag["weak_positive_rate"])
        if drift > 0.15 or diag["agreement_with_weak"] < 0.6:
            rec.screen_reject = True
            self._record(rec)
            self.r.share("negative", f"Screened out: {G.describe(g)}"[:200],
                         f"{origin[:1].upper() + origin[1:]}. On seed {self.screen_seed} "
                         f"its test predictions drift from the weak labels (label-free "
                         f"diagnostics: {json.dumps(diag)}), a sign of collapsed or "
                         "inverted labels; not submitted.",
                         extra_metrics={"genome": g, **diag})
            return rec
        if self._affordable() is not None:
            self._record(rec)
            return rec
        seeds = list(range(MIN_SEEDS))  # the screening seed is among them: not run twice
        sub = self.r.submit(rel, {}, seeds, label=name, known={self.screen_seed: screen[0]})
        body = (f"Method `{rel}` ({G.describe(g)}), {origin}. Direction: "
                f"{self.direction.title}. Submitted over seeds {seeds}; label-free "
                f"diagnostics: {json.dumps(sub.diagnostics)}.")
        f = self.r.share("result", f"{G.describe(g)}"[:200], body, file=rel, params={},
                         seeds=seeds, submission_ids=sub.submission_ids, builds_on=builds,
                         extra_metrics={"genome": g, "origin": origin[:200]})
        rec.pgr, rec.finding = f.public_pgr, f.finding.id
        rec.released, rec.transductive = sub.released, sub.transductive
        rec.submissions = sub.submission_ids
        elapsed = time.monotonic() - t0
        self.cost_s = elapsed if self.cost_s is None else 0.5 * self.cost_s + 0.5 * elapsed
        self._record(rec)
        pgr = rec.pgr
        run_best = sub.ladder_best_pgr
        if pgr is None and parent_pgr is not None and run_best is not None:
            # Not released: the Ladder saw no gain over the run's best by its step.
            self.r.share("negative", f"No gain over the run's best: {G.describe(g)}"[:200],
                         f"{origin[:1].upper() + origin[1:]} did not beat the run's best "
                         f"public score (PGR {run_best:.3f}) by the Ladder's step, so its "
                         f"value was not released (result #{f.finding.id}, 5 seeds).",
                         builds_on=sorted({*builds, f.finding.id}),
                         extra_metrics={"genome": g, "parent_pgr": parent_pgr,
                                        "run_best_pgr": run_best})
        elif pgr is not None and parent_pgr is not None and pgr < parent_pgr - 0.05:
            self.r.share("negative", f"Hurt ({parent_pgr:.2f} -> {pgr:.2f}): {G.describe(g)}"
                         [:200], f"{origin[:1].upper() + origin[1:]} scored lower than its "
                         f"parent: public PGR {pgr:.3f} vs {parent_pgr:.3f} over 5 seeds "
                         f"(result #{f.finding.id}).", submission_ids=None,
                         builds_on=sorted({*builds, f.finding.id}),
                         extra_metrics={"genome": g, "pgr": pgr, "parent_pgr": parent_pgr})
        submitted = [p for p in self.population if p.finding]
        if submitted and len(submitted) % INSIGHT_EVERY == 0:
            self.insight(submitted)
        return rec

    def insight(self, submitted: list[Candidate]) -> None:
        """Which gene values went with improvements among my submitted candidates. Public
        values are rationed: a candidate counts as an improvement when the Ladder
        released its value (it beat the run's best by the Ladder's step)."""
        by: dict[tuple[str, Any], list[float]] = defaultdict(list)
        for p in submitted:
            for gene, value in G.normalize(p.genome).items():
                by[(gene, value)].append(float(p.pgr is not None))
        rate = sum(p.pgr is not None for p in submitted) / len(submitted)
        effects = sorted(((sum(v) / len(v) - rate, gene, value, len(v))
                          for (gene, value), v in by.items() if 0 < len(v) < len(submitted)),
                         reverse=True)
        lines = [f"- {gene}={value!r}: {d:+.0%} improvement rate vs mean ({n} candidates)"
                 for d, gene, value, n in effects[:3] + effects[-2:]]
        ranked = self._own_ranked()
        best = ranked[0] if ranked else None
        head = (f"{rate:.0%} of them improved on the run's best (released by the Ladder)"
                + ("" if best is None else f"; my best public PGR {best.pgr:.3f} "
                   f"(#{best.finding}: {G.describe(best.genome)})") + ".")
        self.r.share("insight",
                     f"{self.r.name}: what moved PGR over {len(submitted)} candidates",
                     head + ("\n" + "\n".join(lines) if lines else ""),
                     builds_on=[best.finding] if best and best.finding else [],
                     extra_metrics={"candidates": len(submitted),
                                    "improvement_rate": round(rate, 4),
                                    "best_pgr": None if best is None else best.pgr})

    # -- the loop ----------------------------------------------------------------------
    def final_note(self, reason: str) -> str:
        """What I tried and what the run's Ladder released of it (public values are
        released only for submissions that beat the run's best)."""
        scored = self._own_ranked()
        tried = len(self.population)
        submitted = sum(1 for p in self.population if p.finding)
        counts = f"{tried} candidates tried, {submitted} submitted"
        if not scored:
            return (f"{self.r.name} ({self.direction.title}) stopped ({reason}): {counts}, "
                    f"none released by the run's Ladder; {self.r.evals_used} evaluations "
                    "used.")
        b = scored[0]
        return (f"{self.r.name} ({self.direction.title}) stopped ({reason}): best public PGR "
                f"{b.pgr:.3f} from finding #{b.finding} ({b.file}: "
                f"{G.describe(b.genome)}); {counts}, {len(scored)} released, "
                f"{self.r.evals_used} evaluations, {self.r.findings_posted} findings.")

    def run(self, max_steps: int | None = None) -> str:
        """Search until the deadline, the evaluation budget or ``max_steps``; returns the
        final note (also logged as the ``stop`` event)."""
        old: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
            for s in old:
                signal.signal(s, _on_term)
        reason: str = StopReason.DONE
        try:
            init_workspace(self.r)
            self._load()
            self.r.event("start", direction=self.direction.title, resumed=bool(self.population),
                         families=list(self.families))
            self.status(ResearcherState.RUNNING)
            steps = failed = 0
            while max_steps is None or steps < max_steps:
                why = self._affordable()
                if why is not None:
                    reason = StopReason.budget(why)
                    break
                rec = self.step()
                steps += 1
                failed = failed + 1 if isinstance(rec.screen, str) else 0
                if failed >= MAX_FAILED_IN_A_ROW:
                    raise AarError(f"{failed} candidates in a row failed to run (the last: "
                                   f"{rec.screen}); stopping instead of trying more")
                self.status()
        except StopRequested as exc:
            reason = f"{StopReason.ORCHESTRATOR} ({exc})"
        except AarError as exc:
            reason = f"error: {str(exc).splitlines()[0][:300]}"
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        note = self.final_note(reason)
        self.r.event("stop", reason=reason, final_note=note)
        notes = self.r.workspace / "notes.md"
        with open(notes, "a", encoding="utf-8") as fh:
            fh.write(f"\n## Final note ({now_iso()})\n\n{note}\n")
        self.status(ResearcherState.FAILED if reason.startswith(StopReason.ERROR)
                    else ResearcherState.STOPPED, reason)
        return note


def peer_results(entries: list[BoardEntryOut], me: str,
                 peers: set[str]) -> dict[int, Peer]:
    """Leaderboard entries by ``peers`` other than ``me`` that carry a genome and a PGR."""
    out = {}
    for e in entries:
        g = e.claimed.get("genome")
        if e.author in peers - {me} and isinstance(g, dict) and e.pgr is not None:
            out[e.finding] = Peer(G.normalize(g), float(e.pgr), e.author, e.finding)
    return out


def population(path: Path) -> list[Candidate]:
    """The candidates a builtin researcher recorded (``population.jsonl``); a line that is
    not a candidate (a torn last line) is skipped."""
    if not path.exists():
        return []
    out: list[Candidate] = []
    for line in path.read_text().splitlines():
        try:
            out.append(Candidate.model_validate_json(line))
        except ValueError:
            continue
    return out

