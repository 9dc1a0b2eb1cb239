"""Verification of the winners: does a finding's score hold where its researcher never
looked?

``verify(paths, admin_client)`` takes the top findings of a run (by the server's private
score) and re-runs each one's code snapshot (``method.py``), untouched by the researcher,
in a fresh sandbox, scored by trusted code against the vault:

- ``public (seen)``: what the researcher saw (its submissions' public-half PGR, from the
  server);
- ``private (server)``: the same submissions on the private half;
- ``private (re-run, seen seeds)``: the snapshot re-run with the seeds it submitted:
  ``reproduces`` says whether it gives exactly the scores of the submissions (if not, the
  submitted predictions did not come from this code);
- ``private (fresh seeds)``: a re-run with seeds the researcher never used, private half;
- ``re-split``: a re-drawn labeled/unlabeled/test split of the same dataset;
- ``held-out <dataset>``: other datasets (default: the testbed's others among sentiment,
  math, code, tweets; for ``synthetic``, a synthetic variant with more systematic error);
- ``pair <weak>-><strong>``: another weak/strong model pair.

Each cell is a mean PGR over seeds with its 95% interval. ``gap`` is what the researcher
saw minus what held (the mean of the fresh re-runs). The table goes to ``verify.json`` in
the run directory.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aar.client import Client
from aar.data.canary import base_ref
from aar.data.splits import PRIVATE, PUBLIC
from aar.data.store import Workspace
from aar.errors import AarError
from aar.oversight.monitor import read_method
from aar.research.layout import RunPaths, now_iso
from aar.util import atomic_write_json
from aar.w2s.metrics import estimate

TESTBED = ("sentiment", "math", "code", "tweets")
SEEN = "public (seen)"  # the researcher's own submissions, public half: what it saw
SERVER_PRIVATE = "private (server)"  # the same submissions on the private half
RERUN = "private (re-run, seen seeds)"  # the snapshot re-run with the submitted seeds
FRESH = "private (fresh seeds)"
RESPLIT = "re-split"
SYNTHETIC = ("syn_weak", "syn_strong")


@dataclass(frozen=True)
class Target:
    """Where to re-run: a dataset reference, an encoder pair and a split seed."""

    label: str
    dataset: str
    weak: str
    strong: str
    split_seed: int = 0
    halves: tuple[str, ...] = (PUBLIC, PRIVATE)  # test halves whose PGR is averaged


@dataclass
class Cell:
    label: str
    mean: float | None
    ci95: float | None
    n: int
    per_seed: list[float] = field(default_factory=list)
    weak: float | None = None  # fixed weak-teacher accuracy of the target
    ceiling: float | None = None
    dataset: str = ""
    pair: str = ""
    error: str | None = None

    def __str__(self) -> str:
        if self.error:
            return "error"
        if self.mean is None:
            return "n/a"
        ci = "" if self.ci95 is None else f" ± {self.ci95:.2f}"
        return f"{self.mean:.2f}{ci}"


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def cell_of(label: str, values: list[float], **extra: Any) -> Cell:
    est = estimate(values)
    return Cell(label, _finite(est.mean), _finite(est.ci), est.n,
                [float(v) for v in values], **extra)


def encoders(dataset: str, weak: str, strong: str) -> tuple[str, str]:
    """The synthetic testbed has its own encoders; other datasets take the finding's."""
    return SYNTHETIC if base_ref(dataset).split(":")[0] == "synthetic" else (weak, strong)


def default_heldout(dataset: str) -> list[str]:
    name = base_ref(dataset).split(":")[0]
    if name == "synthetic":
        return ["synthetic:systematic=0.5,seed=1"]
    return [d for d in TESTBED if d != name]


def default_pairs(dataset: str, weak: str, strong: str) -> list[tuple[str, str, str]]:
    if base_ref(dataset).split(":")[0] == "synthetic":
        return [("synthetic:noise=2,weak_dim=8,seed=2", *SYNTHETIC)]
    return [(dataset, "l3", "minilm")] if (weak, strong) != ("l3", "minilm") else [
        (dataset, "minilm", "mpnet")]


def fresh_seeds(used: list[int], n: int, limit: int) -> list[int]:
    out = [s for s in range(limit) if s not in set(used)][:n]
    if len(out) < n:
        raise AarError(f"only {len(out)} weak-teacher seeds are left unused by the finding; "
                       "verify with fewer seeds")
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


def run_target(method_file: Path, target: Target, seeds: list[int], params: dict[str, Any],
               workdir: Path, timeout_s: float) -> Cell:
    """Re-run a method on a target in a fresh sandbox job and score it (trusted code)."""
    from aar.data.prepare import prepare
    from aar.sandbox.worker import run_method_sandboxed
    from aar.w2s import baselines
    from aar.w2s.scoring import score_test

    extra: dict[str, Any] = {"dataset": target.dataset,
                             "pair": f"{target.weak}->{target.strong}"}
    try:
        prep = prepare(target.dataset, seed=target.split_seed)
        if target.split_seed != 0:
            base = prepare(target.dataset).workspace
            for encoder in (target.weak, target.strong):
                reuse_features(base, prep.workspace, encoder)
        weak = baselines.weak_teacher(prep, target.weak)
        ceil = baselines.ceiling(prep, target.strong)
        job = Path(tempfile.mkdtemp(prefix="verify-", dir=workdir))
        try:
            preds = run_method_sandboxed(method_file, prep.workspace, target.weak,
                                         target.strong, seeds, params, workdir=job,
                                         timeout_s=timeout_s)
        finally:
            shutil.rmtree(job, ignore_errors=True)
        values = []
        for row in preds:
            scores = score_test(prep, row, weak, ceil)
            values.append(float(np.mean([scores[h].pgr for h in target.halves])))
        b_weak = float(np.mean([weak.fixed(h) for h in target.halves]))
        b_ceil = float(np.mean([ceil.fixed(h) for h in target.halves]))
        return cell_of(target.label, values, weak=b_weak, ceiling=b_ceil, **extra)
    except AarError as exc:
        return Cell(target.label, None, None, 0, error=str(exc).splitlines()[0], **extra)


@dataclass(frozen=True)
class VerifyConfig:
    top: int = 3
    seeds: int = 5
    heldout: tuple[str, ...] | None = None  # None: default_heldout(dataset)
    pairs: tuple[tuple[str, str, str], ...] | None = None  # (dataset, weak, strong)
    resplit_seed: int = 1
    timeout_s: float = 1800.0


class Verifier:
    def __init__(self, paths: RunPaths, admin: Client, config: VerifyConfig | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.paths = paths
        self.admin = admin
        self.cfg = config or VerifyConfig()
        self.progress = progress or (lambda _msg: None)
        self._rows: list[dict[str, Any]] = []
        self.info: dict[str, Any] = (json.loads(paths.info.read_text())
                                     if paths.info.exists() else {})

    def dataset(self) -> str:
        ds = self.info.get("dataset")
        if not ds:
            raise AarError(f"{self.paths.info} names no dataset; is {self.paths.root} a "
                           "research run?")
        return str(ds)

    def top_findings(self) -> list[dict[str, Any]]:
        """The run's result findings with the best private score (admin leaderboard)."""
        names = self.info.get("server_names") or {}
        authors = {str(names.get(a, a)) for a in self.paths.agents()}
        board = self.admin.leaderboard(self.dataset(), split="private")
        entries = [e for e in board["entries"] if not authors or e["author"] in authors]
        return entries[: self.cfg.top]

    def verify_finding(self, entry: dict[str, Any]) -> dict[str, Any]:
        fid = int(entry["finding"])
        finding = self.admin.finding(fid)
        metrics = finding.get("claimed_metrics") or {}
        dataset = self.dataset()
        weak, strong = encoders(dataset, str(metrics.get("weak") or "l3"),
                                str(metrics.get("strong") or "mpnet"))
        claimed = metrics.get("params")
        params: dict[str, Any] = dict(claimed) if isinstance(claimed, dict) else {}
        if not finding.get("archive"):
            raise AarError(f"finding {fid} has no code snapshot to re-run")
        code = read_method(self.admin.download_archive(finding["archive"]))
        if code is None:
            raise AarError(f"finding {fid}'s code snapshot holds no method.py")
        out_dir = self.paths.root / "verify" / f"finding-{fid}"
        out_dir.mkdir(parents=True, exist_ok=True)
        method_file = out_dir / "method.py"
        method_file.write_text(code)
        subs = [self.admin.evaluation(int(s)) for s in finding.get("submissions") or []]
        used = [int(s["seed"]) for s in subs if s.get("seed") is not None]
        cells: dict[str, Cell] = {
            SEEN: cell_of(SEEN, [s["scores"][PUBLIC]["pgr"] for s in subs
                                                if s["scores"][PUBLIC]["pgr"] is not None]),
            SERVER_PRIVATE: cell_of(SERVER_PRIVATE, [
                s["scores"][PRIVATE]["pgr"] for s in subs
                if s["scores"][PRIVATE]["pgr"] is not None]),
        }
        from aar.w2s.baselines import N_SEEDS

        seeds = fresh_seeds(used, self.cfg.seeds, N_SEEDS)
        targets = [Target(FRESH, dataset, weak, strong, halves=(PRIVATE,)),
                   Target(RESPLIT, dataset, weak, strong, split_seed=self.cfg.resplit_seed)]
        for ref in self.cfg.heldout if self.cfg.heldout is not None else default_heldout(
                dataset):
            w, s = encoders(ref, weak, strong)
            targets.append(Target(f"held-out {ref}", ref, w, s))
        pairs = self.cfg.pairs if self.cfg.pairs is not None else default_pairs(
            dataset, weak, strong)
        for ref, w, s in pairs:
            where = "" if ref == dataset else f" ({ref})"
            targets.append(Target(f"pair {w}->{s}{where}", ref, w, s))
        reproduces = None
        if used:  # the same seeds again: does this code give what was submitted?
            self.progress(f"finding {fid}: {RERUN}")
            again = run_target(method_file, Target(RERUN, dataset, weak, strong,
                                                   halves=(PRIVATE,)), sorted(used), params,
                               out_dir, self.cfg.timeout_s)
            cells[RERUN] = again
            by_seed = {int(s["seed"]): s["scores"][PRIVATE]["pgr"] for s in subs
                       if s.get("seed") is not None}
            submitted = [by_seed[k] for k in sorted(used)]
            reproduces = again.error is None and len(again.per_seed) == len(submitted) and all(
                a is not None and abs(a - b) < 1e-9
                for a, b in zip(submitted, again.per_seed, strict=True))
        for t in targets:
            self.progress(f"finding {fid}: {t.label}")
            cells[t.label] = run_target(method_file, t, seeds, params, out_dir,
                                        self.cfg.timeout_s)
            self._save({"finding": fid, "partial": True,
                        "cells": {k: asdict(c) for k, c in cells.items()}})
        held = [c.mean for k, c in cells.items()
                if k not in (SEEN, SERVER_PRIVATE, RERUN) and c.mean is not None]
        seen = cells[SEEN].mean
        return {
            "finding": fid, "title": finding.get("title"), "author": finding.get("author"),
            "method": metrics.get("method"), "params": params, "weak": weak,
            "strong": strong, "seeds_seen": used, "seeds_fresh": seeds,
            "cells": {k: asdict(c) for k, c in cells.items()},
            "reproduces": reproduces,
            "held_mean": float(np.mean(held)) if held else None,
            "gap": None if seen is None or not held else float(seen - np.mean(held)),
        }

    def run(self) -> dict[str, Any]:
        self._rows = []
        for entry in self.top_findings():
            try:
                row = self.verify_finding(entry)
            except AarError as exc:
                row = {"finding": entry["finding"], "title": entry.get("title"),
                       "author": entry.get("author"), "error": str(exc)}
            self._rows.append(row)
        return self._save()

    def _save(self, partial: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write verify.json: the rows so far (and the finding in progress, marked
        ``partial``), so that a long verification keeps what it measured."""
        rows = [*self._rows, *([partial] if partial else [])]
        result = {"run": self.paths.run_id, "dataset": self.dataset(), "t": now_iso(),
                  "config": asdict(self.cfg), "rows": rows}
        atomic_write_json(self.paths.root / "verify.json", result)
        return result


def columns(result: dict[str, Any]) -> list[str]:
    """Cell labels in table order: what was seen, the private half, then the re-runs from
    the nearest to the farthest from the researcher's setting."""
    fixed = [SEEN, SERVER_PRIVATE, RERUN, FRESH, RESPLIT]

    def rank(label: str) -> tuple[int, str]:
        if label in fixed:
            return fixed.index(label), ""
        return (len(fixed) if label.startswith("held-out") else len(fixed) + 1), label

    labels = {label for row in result.get("rows", []) for label in row.get("cells", {})}
    return sorted(labels, key=rank)


def fmt_cell(cell: dict[str, Any] | None) -> str:
    if not cell:
        return ""
    if cell.get("error"):
        return "error"
    if cell.get("mean") is None:
        return "n/a"
    ci = cell.get("ci95")
    return f"{cell['mean']:.2f}" + ("" if ci is None else f" ± {ci:.2f}")
