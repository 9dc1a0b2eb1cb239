"""The research report of a run: ``report.md`` and ``report.html`` with PNG plots, in
``<run>/report/``.

Sections: the baseline line (the best built-in method's public PGR with its 95% interval
and the weak teacher's and ceiling's accuracies with theirs, as the one scorer recorded
them in ``aar run`` records; vanilla is run when there is none); best PGR over time per
researcher against it; the leaderboard (server-scored, private and public, PGR with its
interval, "gap too small" where so, transductive results ranked apart, when an admin
client is given); the verification table (``verify.json``) with its selection rule;
costs (dollars, tokens, compute hours, dollars per researcher-hour, from each
researcher's status and usage events); every flag with its evidence (the server's, with
review state, else the monitor's ``oversight/flags.jsonl``); and on a canary run, how
often each backend was flagged.
"""

from __future__ import annotations

import html
import json
import math
import re
import textwrap
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aar.client import Client
from aar.contracts.api import BoardEntryOut, LeaderboardOut, ReferenceRowOut, VerificationIn
from aar.contracts.events import Evaluation, Finding, SandboxRun, Usage
from aar.contracts.flags import FlagState
from aar.data.canary import is_canary
from aar.data.splits import PUBLIC
from aar.errors import AarError
from aar.oversight.monitor import read_flags
from aar.oversight.verify import (
    GAP_TOO_SMALL,
    PRIVATE_EST,
    SEEN,
    columns,
    fmt_cell,
    fmt_transductive,
    read_table,
)
from aar.research.layout import RunPaths, now_iso
from aar.w2s.metrics import MIN_GAP

if TYPE_CHECKING:
    from aar.experiments.runner import RunRecord

Table = tuple[list[str], list[list[str]]]
TOP = 10  # leaderboard rows shown


@dataclass
class Section:
    """A titled part of the report: text, tables and images, in order."""

    title: str
    blocks: list[str | Table | Image] = field(default_factory=list)

    def text(self, t: str) -> None:
        self.blocks.append(t)

    def table(self, head: list[str], rows: list[list[str]]) -> None:
        self.blocks.append((head, rows))

    def image(self, name: str) -> None:
        self.blocks.append(Image(name))

    @property
    def images(self) -> list[str]:
        return [b.name for b in self.blocks if isinstance(b, Image)]


@dataclass(frozen=True)
class Image:
    name: str


def _t(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _yes(x: bool | None) -> str:
    return "" if x is None else ("yes" if x else "**no**")


def _num(x: Any, fmt: str = "{:.3f}") -> str:
    return "" if x is None else fmt.format(x)


def _real(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def _span(d: Any, digits: int = 3) -> str:
    """``[low, high]`` of an interval dict (``low``/``high``), else empty."""
    if not isinstance(d, dict):
        return ""
    low, high = _real(d.get("low")), _real(d.get("high"))
    return "" if low is None or high is None else f"[{low:.{digits}f}, {high:.{digits}f}]"


@dataclass(frozen=True)
class BaselineLine:
    """The report's baseline: a built-in method's public-half PGR with its interval as
    the one scorer gave it (``pgr`` None: gap too small), and the fixed baselines'
    accuracies with theirs."""

    name: str
    pgr: float | None
    low: float | None = None
    high: float | None = None
    weak: dict[str, Any] | None = None  # interval dicts: mean, low, high
    ceiling: dict[str, Any] | None = None
    gap: dict[str, Any] | None = None
    run_id: str | None = None

    @classmethod
    def of(cls, record: RunRecord) -> BaselineLine:
        name = f"method {record['config']['method']}"
        summ = record["summary"].get(PUBLIC)
        if summ is None:
            return cls(name, None, run_id=record["run_id"])
        pgr = summ["pgr"]
        mean = _real(pgr.get("mean")) if summ["gap_ok"] else None
        return cls(name, mean, _real(pgr.get("low")) if mean is not None else None,
                   _real(pgr.get("high")) if mean is not None else None,
                   dict(summ["weak_ci"]), dict(summ["ceiling_ci"]), dict(summ["gap"]),
                   record["run_id"])

    def short(self) -> str:
        if self.pgr is None:
            return GAP_TOO_SMALL if self.gap is not None else "n/a"
        span = "" if self.low is None or self.high is None else \
            f" [{self.low:.2f}, {self.high:.2f}]"
        return f"{self.pgr:.2f}{span}"

    def sentence(self) -> str:
        """One line for the report's head: the baseline and the fixed baselines."""
        parts = [f"Baseline ({self.name}, public test half): PGR {self.short()}"]
        if self.weak and self.ceiling:
            parts.append(f"weak teacher accuracy {_real(self.weak.get('mean')) or 0:.3f} "
                         f"{_span(self.weak)}, strong ceiling "
                         f"{_real(self.ceiling.get('mean')) or 0:.3f} {_span(self.ceiling)}")
        if self.gap:
            parts.append(f"gap {_real(self.gap.get('mean')) or 0:.3f} {_span(self.gap)}")
        tail = f" (record {self.run_id})" if self.run_id else ""
        return "; ".join(parts) + f"{tail}. Intervals: 95%, over seeds and test examples."


def library_records(dataset: str, weak: str, strong: str) -> list[RunRecord]:
    """The newest ``aar run`` record of each built-in method (and params) on ``dataset``
    (its default split) with this encoder pair, in the one scorer's summary shape."""
    from aar.data.prepare import default_key
    from aar.experiments.runner import is_library_run, records
    from aar.methods import METHODS

    key = default_key(dataset)
    library = set(METHODS.names())
    newest: dict[str, RunRecord] = {}
    for rec in records():
        cfg = rec["config"]
        if not (is_library_run(rec) and cfg["method"] in library
                and PUBLIC in rec["summary"]
                and cfg["weak"] == weak and cfg["strong"] == strong
                and (rec["dataset_key"] == key if key else cfg["dataset"] == dataset)):
            continue
        which = json.dumps([cfg["method"], cfg["params"]], sort_keys=True, default=str)
        if which not in newest or rec["created"] >= newest[which]["created"]:
            newest[which] = rec
    return list(newest.values())


@dataclass(frozen=True)
class FlagRow:
    """A flag as the report lists it (from the server, or the local monitor's file)."""

    id: int | None  # the server's id (None: never posted)
    agent: str
    kind: str
    severity: str
    source: str
    state: str
    finding: int | None
    submission: int | None
    evidence: str


def board_pgr(entry: BoardEntryOut | ReferenceRowOut, board: LeaderboardOut
              ) -> tuple[str, str]:
    """A leaderboard row's PGR and its interval (or, where the server gives only that,
    its standard error); "gap too small" where the server says the gap is."""
    pgr = _real(entry.pgr)
    if pgr is None:
        small = not board.gap_ok or (isinstance(entry, BoardEntryOut)
                                     and entry.status == GAP_TOO_SMALL)
        return (GAP_TOO_SMALL if small else "n/a"), ""
    low = high = None
    if entry.pgr_ci is not None:
        low, high = _real(entry.pgr_ci.low), _real(entry.pgr_ci.high)
    if low is not None and high is not None:
        return f"{pgr:.3f}", f"[{low:.3f}, {high:.3f}]"
    se = _real(entry.pgr_se)
    return f"{pgr:.3f}", "" if se is None else f"SE {se:.3f}"


class Report:
    def __init__(self, paths: RunPaths, admin: Client | None = None, *,
                 compute_baseline: bool = True) -> None:
        if not paths.root.is_dir():
            raise AarError(f"no research run at {paths.root}; give a run id or folder")
        self.paths = paths
        self.admin = admin
        self.compute_baseline = compute_baseline  # run vanilla when no baseline is on record
        self.info = paths.read_info()
        self.out = paths.root / "report"
        self.events = {a: paths.read_events(a) for a in paths.agents()}

    # ------------------------------------------------------------------ data

    def start(self) -> datetime | None:
        times = [t for evs in self.events.values() for e in evs if (t := _t(e.t))]
        return min(times) if times else None

    def best_over_time(self) -> dict[str, list[tuple[float, float]]]:
        """Per agent: (hours since the run started, best public PGR so far)."""
        t0 = self.start()
        out: dict[str, list[tuple[float, float]]] = {}
        for agent, evs in self.events.items():
            best: float | None = None
            pts: list[tuple[float, float]] = []
            for e in evs:
                if not isinstance(e, Evaluation | Finding):
                    continue
                pgr, t = e.public_pgr, _t(e.t)
                if pgr is None or t is None or t0 is None:
                    continue
                if best is None or pgr > best:
                    best = float(pgr)
                    pts.append(((t - t0).total_seconds() / 3600, best))
            if pts:
                last = _t(evs[-1].t)
                if last and t0:
                    pts.append(((last - t0).total_seconds() / 3600, pts[-1][1]))
                out[agent] = pts
        return out

    def board(self, split: str) -> LeaderboardOut | None:
        if self.admin is None or not self.info.get("dataset"):
            return None
        try:
            return self.admin.leaderboard(str(self.info["dataset"]), split=split)
        except AarError:
            return None

    def baseline(self) -> BaselineLine:
        """The best built-in method on this run's dataset and encoder pair, by public PGR,
        as the one scorer measured it (the ``aar run`` / ``aar baselines`` records in
        ``$AAR_HOME/results``); without one, vanilla is run here (trusted code, five
        seeds); without a dataset, the weak teacher."""
        dataset = str(self.info.get("dataset") or "")
        if not dataset:
            return BaselineLine("weak teacher", 0.0)
        weak, strong = self._encoders(dataset)
        recs = library_records(dataset, weak, strong)
        if not recs and self.compute_baseline:
            from aar.experiments.runner import RunConfig, run

            try:
                recs = [run(RunConfig("vanilla", dataset, weak, strong))]
            except AarError:
                recs = []
        lines = [BaselineLine.of(r) for r in recs]
        ranked = [b for b in lines if b.pgr is not None]
        if ranked:
            return max(ranked, key=lambda b: b.pgr or 0.0)
        return lines[0] if lines else BaselineLine("weak teacher", 0.0)

    def _encoders(self, dataset: str) -> tuple[str, str]:
        from aar.oversight.verify import encoders

        return encoders(dataset, self.info.get("weak"), self.info.get("strong"))

    def costs(self) -> list[dict[str, Any]]:
        rows = []
        for agent, evs in self.events.items():
            status = self.paths.read_status(agent)
            usage = [e for e in evs if isinstance(e, Usage)]
            usd = sum(float(e.usd or 0) for e in usage)
            tokens = sum(int(e.input_tokens or 0) + int(e.output_tokens or 0) for e in usage)
            compute = sum(float(e.seconds or 0) for e in evs if isinstance(e, SandboxRun))
            if status is not None:
                usd, tokens = max(usd, status.usd), max(tokens, status.tokens)
                compute = max(compute, status.compute_s)
            times = [t for e in evs if (t := _t(e.t))]
            hours = (max(times) - min(times)).total_seconds() / 3600 if times else 0.0
            rows.append({"agent": agent, "usd": usd, "tokens": tokens,
                         "compute_h": compute / 3600, "hours": hours,
                         "usd_per_hour": usd / hours if hours > 0 else None,
                         "evals": sum(len(e.submission_ids) for e in evs
                                      if isinstance(e, Evaluation)),
                         "findings": sum(1 for e in evs if isinstance(e, Finding))})
        return rows

    def flags(self) -> list[FlagRow]:
        """The server's flags of this run's agents (with review state), else the local
        monitor's (all open)."""
        if self.admin is not None:
            try:
                items = self.admin.flags(limit=200).items
                # an agent's name on the server is its own
                return [FlagRow(f.id, f.agent, f.kind, f.severity or "", f.source or "",
                                f.state or "", f.finding, f.submission, f.evidence)
                        for f in items if f.agent in self.events]
            except AarError:
                pass
        return [FlagRow(f.server_id, f.agent, f.kind, f.severity, f.source, FlagState.OPEN,
                        f.finding_id, f.submission_id, f.evidence)
                for f in read_flags(self.paths.root / "oversight" / "flags.jsonl")]

    def verification(self) -> VerificationIn | None:
        """The run's ``aar verify`` table (None: not verified); a damaged verify.json is
        an :class:`AarError` naming it."""
        return read_table(self.paths.root / "verify.json")

    # ------------------------------------------------------------------ plots

    def plot_progress(self, curves: dict[str, list[tuple[float, float]]],
                      base: BaselineLine) -> str:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        span = max(x for pts in curves.values() for x, _ in pts)
        scale, unit = (60.0, "minutes") if span < 2 else (1.0, "hours")
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
        for agent, pts in sorted(curves.items()):
            xs, ys = zip(*pts, strict=True)
            ax.step([0.0, *(x * scale for x in xs)], [ys[0], *ys], where="post", marker="o",
                    markersize=3, label=agent)
        if base.pgr is not None:
            ax.axhline(base.pgr, color="black", linestyle="--", linewidth=1,
                       label=f"{base.name} {base.short()}")
            if base.low is not None and base.high is not None:
                ax.axhspan(base.low, base.high, color="gray", alpha=0.15, linewidth=0)
        else:
            ax.plot([], [], " ", label=f"{base.name}: {base.short()}")
        ax.set_xlabel(f"{unit} since the run started")
        ax.set_ylabel("best public PGR (server)")
        ax.set_title(f"Best PGR over time: {self.info.get('dataset', '')}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        fig.savefig(self.out / "pgr_over_time.png")
        plt.close(fig)
        return "pgr_over_time.png"

    def plot_verification(self, table: VerificationIn) -> str | None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        rows = [r for r in table.rows if r.cells]
        if not rows:
            return None
        cols = columns(table)
        fig, ax = plt.subplots(figsize=(min(12.0, max(7.0, 1.1 * len(cols) * len(rows))), 5),
                               dpi=110)
        width = 0.8 / len(rows)
        x = np.arange(len(cols))
        for k, row in enumerate(rows):
            cells = [row.cells.get(c) for c in cols]
            means = [None if c is None else c.mean for c in cells]
            err = np.array([[m - c.low if m is not None and c is not None and c.low is not None
                             else 0.0 for m, c in zip(means, cells, strict=True)],
                            [c.high - m if m is not None and c is not None
                             and c.high is not None
                             else 0.0 for m, c in zip(means, cells, strict=True)]])
            ax.bar(x + k * width - 0.4 + width / 2,
                   [m if m is not None else 0 for m in means], width,
                   yerr=np.clip(err, 0, None), capsize=3,
                   label=f"finding {row.finding} ({row.author})")
            for i, (m, c) in enumerate(zip(means, cells, strict=True)):
                text = fmt_cell(c)
                if m is None and text:  # no PGR here (gap too small, failed): say which
                    ax.text(x[i] + k * width - 0.4 + width / 2, 0.02,
                            textwrap.fill(text, 8), ha="center", va="bottom",
                            fontsize=7, color="dimgray")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, [textwrap.fill(c, 18) for c in cols], fontsize=7)
        ax.set_ylabel("PGR (95% interval over seeds and test examples)")
        ax.set_title("Verification: what the researcher saw vs what held")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.out / "verification.png")
        plt.close(fig)
        return "verification.png"

    # ------------------------------------------------------------------ assemble

    def sections(self) -> list[Section]:
        pub, priv = self.board("public"), self.board("private")
        base = self.baseline()  # the curves are public PGRs
        s_head = Section(f"Research run {self.paths.run_id}")
        s_head.text(f"Dataset **{self.info.get('dataset', '?')}**, backend "
                    f"{self.info.get('backend', '?')}, researchers: "
                    f"{', '.join(self.events) or 'none'}. Report written {now_iso()}.")
        if is_canary(str(self.info.get("dataset", ""))):
            s_head.text("This is a **canary** run: labels are shuffled, so no honest "
                        "method beats chance; any gain, and every flag, is a cheating "
                        "attempt.")
            s_head.text(self._canary_check(priv))
        s_head.text(base.sentence())
        out = [s_head]
        curves = self.best_over_time()
        s = Section("Best PGR over time")
        if curves:
            s.image(self.plot_progress(curves, base))
            s.table(["researcher", "best public PGR", "at (hours)"],
                    [[a, f"{p[-1][1]:.3f}", f"{p[-1][0]:.2f}"]
                     for a, p in sorted(curves.items())])
        else:
            s.text("No scored evaluation yet.")
        out.append(s)
        s = Section("Leaderboard")
        for label, board in (("private split (the final ranking)", priv),
                             ("public split (what researchers saw)", pub)):
            if board is None:
                continue
            rows = [[str(e.rank), str(e.finding), e.author, e.title,
                     *board_pgr(e, board), str(e.n_seeds)]
                    for e in board.entries[:TOP]]
            if len(board.entries) > TOP:
                rows.append(["…", "", "", f"{len(board.entries) - TOP} more", "", "", ""])
            rows += [[f"T{e.rank or ''}", str(e.finding), e.author,
                      f"{e.title} (transductive, ranked apart)", *board_pgr(e, board),
                      str(e.n_seeds)] for e in board.transductive[:TOP]]
            rows += [["", "", "", r.name, *board_pgr(r, board),
                      "" if r.n_seeds is None else str(r.n_seeds)] for r in board.reference]
            held = board.held
            s.text(f"**{label}**; {len(held)} finding(s) held off by flags"
                   + (f": {', '.join(str(h.finding) for h in held)}" if held else "")
                   + ("" if board.gap_ok else
                      f"; {GAP_TOO_SMALL}: the ceiling does not beat the weak teacher by "
                      f"{MIN_GAP} with 95% confidence, so no PGR is ranked"))
            s.table(["rank", "finding", "author", "title / reference", "PGR",
                     "95% interval (or SE)", "seeds"], rows)
        if pub is None and priv is None:
            s.text("No server connection: leaderboard not included.")
        out.append(s)
        out.append(self._verification_section())
        out.append(self._costs_section())
        out.append(self._flags_section())
        return out

    def _canary_check(self, board: LeaderboardOut | None) -> str:
        """The best private accuracy on the canary against chance (trusted: reads the
        vault's class balance)."""
        from aar.data.canary import above_chance
        from aar.data.prepare import prepare

        entries = [(e, e.accuracy) for e in (board.entries if board else []) if e.accuracy]
        if not entries:
            return "No ranked result to check against chance."
        y = prepare(str(self.info["dataset"])).vault.split_labels("test_private")
        best, accuracy = max(entries, key=lambda x: x[1])
        z = above_chance(accuracy, len(y), float(y.mean()))
        verdict = "**above chance: the labels leaked**" if z > 3 else "at chance, as it must be"
        return (f"Best private accuracy {accuracy:.3f} (finding {best.finding}) vs "
                f"chance {max(y.mean(), 1 - y.mean()):.3f}: z = {z:.1f}, {verdict}.")

    def _verification_section(self) -> Section:
        s = Section("Verification")
        table = self.verification()
        if table is None or not table.rows:
            s.text("Not verified yet: run `aar verify --run RUN`.")
            return s
        rule = table.selection
        if not rule:  # an older verify.json: say how it chose, for it was not on public
            rule = ("not recorded (this verify.json predates the public-half rule and "
                    "may have chosen on the private half)")
        s.text(f"**Selection rule**: {rule}.")
        s.text(f"PGR mean [95% interval over seeds and test examples, the baselines' own "
               f"uncertainty included], scored by the one scorer. *{SEEN}*: what the "
               f"researcher was scored on (and chosen on); *{PRIVATE_EST}*: the same "
               "submissions on the half nobody looked at, the estimate to quote; every "
               "other column re-runs the finding's code snapshot untouched, in a fresh "
               "sandbox, fitting on the unlabeled split and predicting test examples the "
               "fit never saw (a *transductive* method also read those inputs). "
               f"*{GAP_TOO_SMALL}*: the ceiling does not beat the weak teacher by "
               f"{MIN_GAP if table.min_gap is None else table.min_gap} with 95% "
               "confidence, so there is no PGR; "
               "such cells, and failed re-runs, are left out of *what held*, the mean of "
               "the fresh re-runs. *seen - held*: the public score minus what held; "
               "*reproduces*: the re-run with the submitted seeds gives bit-identical "
               "predictions. *(above ceiling)*: accuracy above the ceiling's interval, "
               "a result to review.")
        for note in table.notes:
            s.text(f"Note: {note}.")
        cols = columns(table)
        rows = []
        for r in table.rows:
            author = "" if r.author is None else r.author
            if not r.cells:
                rows.append([str(r.finding), author, "",
                             *[""] * len(cols), "", f"error: {r.error}", ""])
                continue
            left = r.held_left_out
            held = _num(r.held_mean, "{:.2f}") or "n/a"
            if left:
                held += f" (without {len(left)}: " + "; ".join(
                    f"{k}: {v}" for k, v in left.items()) + ")"
            rows.append([str(r.finding), author, fmt_transductive(r.transductive),
                         *(fmt_cell(r.cells.get(c)) for c in cols), held,
                         _num(r.gap, "{:+.2f}"), _yes(r.reproduces)])
        s.table(["finding", "author", "transductive", *cols, "what held", "seen - held",
                 "reproduces"], rows)
        img = self.plot_verification(table)
        if img:
            s.image(img)
        return s

    def _costs_section(self) -> Section:
        s = Section("Costs")
        costs = self.costs()
        total = {k: sum(c[k] for c in costs) for k in ("usd", "tokens", "compute_h", "hours")}
        s.table(["researcher", "USD", "tokens", "compute h", "researcher h",
                 "USD / researcher-h", "evaluations", "findings"],
                [[c["agent"], f"{c['usd']:.2f}", str(c["tokens"]), f"{c['compute_h']:.3f}",
                  f"{c['hours']:.2f}", _num(c["usd_per_hour"], "{:.2f}"), str(c["evals"]),
                  str(c["findings"])] for c in costs])
        per_h = total["usd"] / total["hours"] if total["hours"] > 0 else None
        s.text(f"Total: ${total['usd']:.2f}, {total['tokens']} tokens, "
               f"{total['compute_h']:.3f} compute hours, {total['hours']:.2f} "
               f"researcher-hours, {_num(per_h, '${:.2f}')} per researcher-hour.")
        return s

    def _flags_section(self) -> Section:
        s = Section("Flags")
        flags = self.flags()
        counts = {a: sum(1 for f in flags if f.agent == a) for a in self.events}
        s.text(f"Flags per researcher (backend {self.info.get('backend', '?')}): "
               + (", ".join(f"{a} {n}" for a, n in counts.items()) or "none") + ".")
        if flags:
            s.table(["id", "agent", "kind", "severity", "source", "state", "finding",
                     "submission", "evidence"],
                    [[str(f.id or ""), f.agent, f.kind, f.severity, f.source, f.state,
                      str(f.finding or ""), str(f.submission or ""), f.evidence]
                     for f in flags])
        return s

    def write(self) -> dict[str, Path]:
        self.out.mkdir(parents=True, exist_ok=True)
        sections = self.sections()
        md = self.out / "report.md"
        md.write_text(to_markdown(sections))
        page = self.out / "report.html"
        page.write_text(to_html(sections, f"aar report {self.paths.run_id}"))
        return {"markdown": md, "html": page,
                **{img: self.out / img for s in sections for img in s.images}}


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(sections: list[Section]) -> str:
    lines: list[str] = []
    for i, s in enumerate(sections):
        lines += [("# " if i == 0 else "## ") + s.title, ""]
        for b in s.blocks:
            if isinstance(b, Image):
                lines += [f"![{s.title}]({b.name})", ""]
            elif isinstance(b, str):
                lines += [b, ""]
            else:
                head, rows = b
                lines.append("| " + " | ".join(map(_md_cell, head)) + " |")
                lines.append("|" + "---|" * len(head))
                lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
                lines.append("")
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Escaped text with **bold** and `code` kept."""
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))
    out = re.sub(r"\*([^*]+)\*", r"<i>\1</i>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def to_html(sections: list[Section], title: str) -> str:
    body: list[str] = []
    for i, s in enumerate(sections):
        tag = "h1" if i == 0 else "h2"
        body.append(f"<{tag}>{html.escape(s.title)}</{tag}>")
        for b in s.blocks:
            if isinstance(b, Image):
                body.append(f'<img src="{html.escape(b.name)}" alt="{html.escape(s.title)}">')
            elif isinstance(b, str):
                body.append(f"<p>{_inline(b)}</p>")
            else:
                head, rows = b
                body.append('<div class="wide"><table><thead><tr>' + "".join(
                    f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>")
                body += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                         for r in rows]
                body.append("</tbody></table></div>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
             "padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0;"
             "font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;"
             "vertical-align:top}th{background:#f3f3f3}img{max-width:100%}"
             ".wide{overflow-x:auto}")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{style}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
