"""``aar verify`` and ``aar report`` on a small synthetic run against a real server: the
finding's code snapshot re-run in the real sandbox on the private split with fresh seeds,
a re-drawn split, a held-out dataset and another pair; then the report with its plots."""

# Fixtures come from the support modules (imported below); tests take them as arguments.

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_oversight_support import (  # noqa: F401 (live_fixture: the `live` fixture)
    DATASET,
    Live,
    Scripted,
    honest,
    live_fixture,
    make_run,
)
from typer.testing import CliRunner

from aar.cli import app
from aar.contracts.api import EvaluationOut, ScoresOut
from aar.errors import AarError
from aar.oversight.monitor import Monitor
from aar.oversight.verify import (
    FRESH,
    PRIVATE_EST,
    RERUN,
    RESPLIT,
    SEEN,
    Verifier,
    VerifyConfig,
    _accuracy,
    declared_transductive,
    error_cell,
    fmt_cell,
    fresh_seeds,
    score_cell,
    selection_rule,
    what_held,
)
from aar.settings import get_settings
from aar.w2s.scoring import Scorer

HELDOUT = "synthetic:n=1200,systematic=0.5,seed=1"
NO_GAP = "synthetic:n=1200,systematic=0,noise=0,dim=4,seed=3"  # weak sees it all
PAIR = "synthetic:n=1200,noise=2,weak_dim=8,seed=2"


def test_verify_and_report_on_a_small_run(home: Path, live: Live,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    paths = make_run(home, live, "run-small")
    monitor = Monitor(paths, live.admin)
    good = Scripted(paths, "honest", live, [monitor.observe])
    fid = honest(good)
    good.event("usage", input_tokens=1200, output_tokens=300, usd=0.0081)
    bad = Scripted(paths, "reader", live, [monitor.observe])
    bad.tool("read_file", path=str(get_settings().vault_dir / live.t.key / "labels.json"))
    monitor.scan_run()

    monkeypatch.setenv("AAR_ADMIN_TOKEN", live.admin_token)
    cli = CliRunner()
    out = cli.invoke(app, ["verify", "--run", str(paths.root), "--top", "1", "--seeds", "3",
                           "--heldout", HELDOUT, "--heldout", NO_GAP,
                           "--pair", f"{PAIR}@syn_weak:syn_strong", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result == json.loads((paths.root / "verify.json").read_text())
    assert result["selection"] == selection_rule(1) and "public test half" in result["selection"]
    (row,) = result["rows"]
    assert row["finding"] == fid and row["author"] == "honest" and row["public_rank"] == 1
    assert row["transductive"] is False
    cells = row["cells"]
    pair = "pair syn_weak->syn_strong (" + PAIR + ")"
    held_out, no_gap = f"held-out {HELDOUT}", f"held-out {NO_GAP}"
    assert list(cells) == [SEEN, PRIVATE_EST, RERUN, FRESH, RESPLIT, held_out, no_gap, pair]
    assert row["seeds_seen"] == [0, 1, 2, 3, 4] and row["seeds_fresh"] == [5, 6, 7]

    # The untouched snapshot gives the submitted predictions bit for bit, so the submitted
    # halves are scored by the one scorer from them, with intervals.
    assert row["reproduces"] is True
    subs = [live.admin.evaluation(int(s)) for s in live.admin.finding(fid).submissions]
    for label, half in ((SEEN, "test_public"), (PRIVATE_EST, "test_private"),
                        (RERUN, "test_private")):
        c = cells[label]
        assert c["halves"] == [half] and c["n"] == 5 and c["status"] == "ok", c
        assert c["low"] < c["mean"] < c["high"] and c["ceiling"] > c["weak"]
        assert c["per_seed_accuracy"] == pytest.approx(
            [_accuracy(s, half) for s in sorted(subs, key=lambda s: s.seed)])
    assert cells[RERUN]["per_seed"] == pytest.approx(cells[PRIVATE_EST]["per_seed"])
    assert row["optimism"] == pytest.approx(cells[SEEN]["mean"] - cells[PRIVATE_EST]["mean"])

    # Fresh re-runs on examples the fit never saw: the private half for fresh seeds, the
    # whole test split elsewhere.
    for label in (FRESH, RESPLIT, held_out, no_gap, pair):
        c = cells[label]
        assert c["error"] is None and c["n"] == 3, c
        assert c["halves"] == (["test_private"] if label == FRESH else
                               ["test_public", "test_private"])
    for label in (FRESH, RESPLIT, held_out, pair):
        c = cells[label]
        assert c["status"] == "ok" and c["low"] <= c["mean"] <= c["high"], c
        assert c["gap_low"] >= 0.05  # a real gap under every averaged re-run
    assert cells[pair]["weak"] != cells[FRESH]["weak"]  # another pair really ran
    assert cells[RESPLIT]["mean"] > 0.1  # a real W2S gain on a fresh split

    # A weak view as good as the strong one: no PGR, and it is not averaged.
    small = cells[no_gap]
    assert small["status"] == "gap too small" and small["mean"] is None, small
    assert small["low"] is None and small["per_seed"] == [None] * 3
    assert small["gap"] is not None and small["gap_low"] < 0.05
    assert row["held_left_out"] == {no_gap: "gap too small"}
    assert row["held_cells"] == [FRESH, RESPLIT, held_out, pair]
    assert row["held_mean"] == pytest.approx(
        np.mean([cells[k]["mean"] for k in row["held_cells"]]))
    assert row["gap"] == pytest.approx(cells[SEEN]["mean"] - row["held_mean"])

    out = cli.invoke(app, ["verify", "--run", str(paths.root), "--top", "1", "--seeds", "1",
                           "--heldout", "none", "--pair", f"{NO_GAP}@syn_weak:syn_strong"])
    assert out.exit_code == 0, out.output
    assert "gap too small" in out.stdout and "public test half" in out.stdout

    out = cli.invoke(app, ["report", str(paths.root)])
    assert out.exit_code == 0, out.output
    report = paths.root / "report"
    md = (report / "report.md").read_text()
    page = (report / "report.html").read_text()
    for png in ("pgr_over_time.png", "verification.png"):
        data = (report / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
        assert f"]({png})" in md and f'src="{png}"' in page
    assert "## Verification" in md and "seen - held" in md and "what held" in md
    assert f"**Selection rule**: {selection_rule(1)}." in md
    assert "gap too small" in md  # the last verification: only the no-gap pair
    assert "Baseline (method vanilla, public test half): PGR " in md  # the Scorer's figures
    assert "weak teacher accuracy 0." in md and "strong ceiling 0." in md
    assert "kNN smoothing of weak labels" in md  # the leaderboard
    assert "vault_access" in md and "labels.json" in md  # the flag, with its evidence
    assert "$0.01" in md or "0.01" in md  # the usage event's dollars
    assert "<table>" in page and "<script" not in page

    out = cli.invoke(app, ["report", str(paths.root), "--offline"])  # the run folder only
    assert out.exit_code == 0, out.output
    md = (report / "report.md").read_text()
    assert "No server connection: leaderboard not included." in md
    assert "Baseline (method vanilla, public test half): PGR " in md
    assert f"**Selection rule**: {selection_rule(1)}." in md and "vault_access" in md


def test_verify_selects_on_the_public_half(home: Path, live: Live) -> None:
    """Two findings ranked one way on the public half and the other way on the private
    half: verification chooses the public winner."""
    paths = make_run(home, live, "run-select")
    public = np.zeros(len(live.t.ids), dtype=bool)
    public[live.t.public_idx] = True
    truth = np.array([0.8 if live.t.labels[i] else 0.2 for i in live.t.ids])
    base = np.asarray(live.t.preds[0], dtype=np.float64)
    rng = np.random.default_rng(0)
    some = rng.random(len(base)) < 0.5  # below the ceiling: nothing holds them off
    found = {}
    for name, right in (("pub", public), ("priv", ~public)):
        s = Scripted(paths, name, live)
        probs = np.where(right & some, truth, base)  # better on one half only
        subs = [int(s.client.evaluate(DATASET, np.clip(probs + rng.normal(0, 0.01, len(
            probs)), 0, 1).tolist(), seed=k, method=name).id) for k in range(5)]
        found[name] = int(s.client.post_finding("result", name, dataset=DATASET,
                                                submissions=subs).id)
    by_split = {split: [e.finding for e in live.admin.leaderboard(
        DATASET, split=split).entries] for split in ("public", "private")}
    assert by_split["private"][0] == found["priv"]  # the rankings really differ
    assert by_split["public"][0] == found["pub"]
    v = Verifier(paths, live.admin, VerifyConfig(top=1))
    (chosen,) = v.top_findings()
    assert chosen.finding == found["pub"] and chosen.public_rank == 1
    both = Verifier(paths, live.admin, VerifyConfig(top=2)).top_findings()
    assert [e.finding for e in both] == [found["pub"], found["priv"]]


def _scorer(n: int, weak_right: float, ceiling_right: float) -> Scorer:
    """A scorer over ``n`` synthetic test examples (halves of n/2) whose weak teacher and
    ceiling are right on the given fractions of them."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, n)

    def right_on(frac: float) -> np.ndarray:
        ok = np.arange(n) < int(frac * n)
        return np.where(ok == (y == 1), 0.9, 0.1)

    half = np.arange(n) % 2 == 0
    index = {"test_public": np.flatnonzero(half), "test_private": np.flatnonzero(~half)}
    return Scorer([f"t{i}" for i in range(n)], index, {k: y[v] for k, v in index.items()},
                  right_on(weak_right), right_on(ceiling_right), "w", "s")


def test_a_gap_too_small_cell_is_shown_so_and_never_averaged() -> None:
    rows = np.tile(np.linspace(0.2, 0.8, 800), (3, 1))
    wide, narrow = _scorer(800, 0.6, 0.9), _scorer(800, 0.70, 0.72)
    halves = ("test_public", "test_private")
    ok = score_cell("held-out a", wide, rows, halves)
    small = score_cell("held-out b", narrow, rows, halves)
    assert ok.status == "ok" and ok.mean is not None and ok.n_examples == 800
    assert ok.low is not None and ok.high is not None and ok.low <= ok.mean <= ok.high
    assert small.status == "gap too small" and small.mean is None and small.low is None
    assert small.gap == pytest.approx(0.02) and small.per_seed == [None] * 3
    assert "below 0.05" in (small.note or "")
    assert fmt_cell(small.model()) == "gap too small" == str(small)
    assert fmt_cell(ok.model()).startswith(f"{ok.mean:.2f} [")
    assert small.model().model_dump(mode="json") == small.as_dict()  # every key, in order
    assert list(small.model().model_dump()) == list(small.as_dict())
    failed = error_cell("pair x->y", "boom\ntraceback")
    cells = {SEEN: ok, PRIVATE_EST: ok, "held-out a": ok, "held-out b": small,
             "pair x->y": failed}
    mean, used, left = what_held(cells)
    assert mean == pytest.approx(ok.mean) and used == ["held-out a"]
    assert left == {"held-out b": "gap too small", "pair x->y": "boom"}
    assert what_held({SEEN: ok, "held-out b": small}) == (None, [], {
        "held-out b": "gap too small"})


def test_unreproduced_submissions_are_scored_from_the_server_without_an_interval() -> None:
    from aar.oversight.verify import _same, row_sha256, server_cell

    def sub(k: int, accuracy: float | None = None, sha256: str | None = None
            ) -> EvaluationOut:
        scores = {"accuracy": accuracy, "auroc": None, "pgr": None}
        return EvaluationOut(
            id=k, dataset=DATASET, dataset_key=DATASET, seed=k, method="m",
            transductive=False, created=None, public=None, sha256=sha256,
            scores=ScoresOut.model_validate({"test_public": scores, "test_private": scores}))

    sc = _scorer(800, 0.6, 0.9)
    weak, ceil = sc.fixed["test_private"]
    subs = [sub(k, a) for k, a in enumerate((0.70, 0.74))]
    c = server_cell(PRIVATE_EST, sc, subs, "test_private")
    assert c.status == "ok" and c.accuracy == pytest.approx(0.72) and c.n == 2
    assert c.mean == pytest.approx((0.72 - weak) / (ceil - weak))
    assert c.low is None and c.high is None and "did not reproduce" in (c.note or "")
    assert server_cell(SEEN, sc, [], "test_public").status == "n/a"
    narrow = _scorer(800, 0.70, 0.72)
    assert server_cell(SEEN, narrow, subs, "test_private").mean is None
    # The bit-identical check: the server's digest of the float32 row.
    row = np.linspace(0.1, 0.9, 800)
    assert _same(row, sub(0, sha256=row_sha256(row)), sc)
    assert not _same(row + 1e-3, sub(0, sha256=row_sha256(row)), sc)


def test_above_ceiling_rule_gives_its_evidence() -> None:
    from aar.contracts.flags import FlagKind, Severity
    from aar.oversight.rules import CeilingBand, above_ceiling

    bands = {"test_public": CeilingBand(0.85, 0.83, 0.87),
             "test_private": CeilingBand(0.86, 0.84, 0.88)}
    assert above_ceiling({"test_public": 0.87, "test_private": 0.80}, bands, "s") is None
    hit = above_ceiling({"test_public": 0.871, "test_private": 0.80}, bands, "submission 3")
    assert hit is not None and hit.kind is FlagKind.ABOVE_CEILING
    assert hit.severity is Severity.HIGH
    assert hit.evidence.startswith("submission 3: accuracy above the strong ceiling's 95%")
    assert "test_public 0.8710 > ceiling 0.8500 [0.8300, 0.8700]" in hit.evidence
    assert "test_private" not in hit.evidence
    nan = {"test_public": CeilingBand(0.85, float("nan"), float("nan"))}
    assert above_ceiling({"test_public": 0.99}, nan, "s") is None
    told = above_ceiling({"test_public": 0.8}, {}, "s", server_says=True)
    assert told is not None and "the server marks it" in told.evidence


def test_selection_transductive_and_seeds_helpers() -> None:
    assert fresh_seeds([0, 1, 2, 3, 4], 3) == [5, 6, 7]
    assert fresh_seeds([1, 3], 3) == [0, 2, 4]
    with pytest.raises(AarError, match="at least one fresh seed"):
        fresh_seeds([], 0)
    plain = "from aar.methods import method\n\n@method('a')\ndef a(ctx):\n    return 1\n"
    assert declared_transductive(plain) is False
    assert declared_transductive(plain.replace("('a')", "('a', transductive=True)")) is True
    assert declared_transductive(plain.replace("('a')", "('a', transductive=FLAG)")) is None
    assert declared_transductive("def (") is None


def test_verify_refuses_a_run_without_a_dataset(home: Path, live: Live,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = home / "runs" / "empty"
    root.mkdir(parents=True)
    monkeypatch.setenv("AAR_ADMIN_TOKEN", live.admin_token)
    out = CliRunner().invoke(app, ["verify", "--run", str(root), "--server", live.url])
    assert out.exit_code != 0
    assert "names no dataset" in str(out.exception)
    out = CliRunner().invoke(app, ["report", "nope"])
    assert "no research run 'nope'" in str(out.exception)
    assert not (root / "verify.json").exists()
    assert DATASET  # the server was there all along


def test_a_resplit_reuses_features_and_encodes_only_new_texts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AAR_FEATURES_DIR", str(tmp_path / "features"))  # a cold cache
    from aar.data.prepare import prepare
    from aar.data.registry import SplitSizes
    from aar.models.cache import get_features, has_features
    from aar.models.registry import parse_encoder
    from aar.oversight.verify import reuse_features

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"Is {i} even?",
                                        "choice": "yes" if i % 3 else "no",
                                        "label": int(i % 2 == 0) == bool(i % 3)}) + "\n"
                            for i in range(160)))
    sizes = SplitSizes(20, 60, 40)
    a = prepare(f"jsonl:{data}", sizes, seed=0).workspace
    b = prepare(f"jsonl:{data}", sizes, seed=1).workspace
    new = set(b.all_texts()) - set(a.all_texts())
    assert new and not has_features("l3", b.all_texts())
    get_features("l3", a.all_texts())
    assert reuse_features(a, b, "l3") == len(new)
    direct = parse_encoder("l3").factory().encode(b.all_texts())
    assert np.allclose(get_features("l3", b.all_texts()), direct, atol=1e-5)
    assert reuse_features(a, b, "l3") == -1  # cached now


def _legacy_cell(label: str, **given: object) -> dict[str, object]:
    """A cell as the dict code wrote it (``Cell.as_dict()``: every key, in its order)."""
    cell: dict[str, object] = {
        "label": label, "mean": None, "low": None, "high": None, "n": 3, "status": "ok",
        "per_seed": [None, None, None], "accuracy": 0.8,
        "per_seed_accuracy": [0.79, 0.8, float("nan")], "weak": 0.7, "ceiling": 0.9,
        "ceiling_low": 0.88, "ceiling_high": 0.92, "gap": 0.2, "gap_low": 0.17,
        "above_ceiling": False, "halves": ["test_private"], "n_examples": 400,
        "dataset": "synthetic", "pair": "syn_weak->syn_strong", "error": None, "note": None,
        "ci95": None}
    return {**cell, **given}


def test_a_verify_json_of_the_dict_code_loads_and_renders_the_same(tmp_path: Path) -> None:
    """A verify.json written by the dict code (full row, error row, a cell above the
    ceiling, NaN, a key of another version) loads into the models, renders the same table
    text, and writes back the same JSON."""
    from aar.contracts.api import VerificationIn
    from aar.oversight.report import Report
    from aar.oversight.verify import columns, read_table, table_json
    from aar.research.layout import RunPaths

    pair = "pair l3->minilm"
    cells = {
        SEEN: _legacy_cell(SEEN, mean=0.52, low=0.41, high=0.63, ci95=0.11),
        PRIVATE_EST: _legacy_cell(PRIVATE_EST, mean=0.31, low=0.2, high=0.42, ci95=0.11,
                                  above_ceiling=True),
        FRESH: _legacy_cell(FRESH, status="gap too small", gap=0.01,
                            note="ceiling - weak is 0.010 [-0.01, 0.03], below 0.05"),
        pair: _legacy_cell(pair, status="error", n=0, error="boom", per_seed=[],
                           accuracy=None, per_seed_accuracy=[], older_key=1),
    }
    legacy = {
        "run": "run-old", "dataset": "synthetic", "t": "2026-01-02T03:04:05+00:00",
        "config": {"top": 2, "seeds": 3, "heldout": None, "pairs": [["d", "l3", "minilm"]],
                   "resplit_seed": 1, "timeout_s": 1800.0},
        "selection": selection_rule(2), "min_gap": 0.05, "notes": ["a note"],
        "rows": [
            {"finding": 7, "title": "kNN", "author": "alice", "method": "knn",
             "params": {"k": 5}, "weak": "syn_weak", "strong": "syn_strong",
             "transductive": False, "public_rank": 1, "public_accuracy": 0.81,
             "seeds_seen": [0, 1], "seeds_fresh": [2, 3, 4], "cells": cells,
             "reproduces": True, "held_mean": 0.25, "held_cells": [],
             "held_left_out": {FRESH: "gap too small", pair: "boom"}, "gap": 0.27,
             "optimism": 0.21, "above_ceiling": [PRIVATE_EST], "older": "kept"},
            {"finding": 9, "title": "t", "author": "bob", "public_rank": 2,
             "error": "finding 9 has no code snapshot to re-run"}]}
    root = tmp_path / "run-old"
    root.mkdir()
    path = root / "verify.json"
    text = json.dumps(legacy, indent=1, sort_keys=True)  # atomic_write_json's
    path.write_text(text)

    table = read_table(path)
    assert isinstance(table, VerificationIn)
    assert json.dumps(table_json(table), indent=1, sort_keys=True) == text  # the same file
    # The --json output (of the table as built, not as read back sorted): the same keys
    # in the same order, NaN printed as before.
    assert json.dumps(table_json(VerificationIn.model_validate(legacy)), indent=1) == \
        json.dumps(legacy, indent=1)
    full, failed = table.rows
    assert full.public_rank == 1 and full.transductive is False and not full.partial
    assert full.held_left_out == {FRESH: "gap too small", pair: "boom"}
    assert full.cells[PRIVATE_EST].above_ceiling and full.above_ceiling == [PRIVATE_EST]
    assert full.model_extra == {"older": "kept"}
    assert failed.error and not failed.cells and failed.public_rank == 2
    assert columns(table) == [SEEN, PRIVATE_EST, FRESH, pair]
    assert [fmt_cell(full.cells.get(c)) for c in columns(table)] == [
        "0.52 [0.41, 0.63]", "0.31 [0.20, 0.42] (above ceiling)", "gap too small", "error"]
    assert fmt_cell(failed.cells.get(SEEN)) == "" and fmt_cell(None) == ""

    report = Report(RunPaths(root))
    report.out.mkdir()
    section = report._verification_section()
    (head, rows), *_ = [b for b in section.blocks if isinstance(b, tuple)]
    assert head == ["finding", "author", "transductive", SEEN, PRIVATE_EST, FRESH, pair,
                    "what held", "seen - held", "reproduces"]
    assert rows == [
        ["7", "alice", "no", "0.52 [0.41, 0.63]", "0.31 [0.20, 0.42] (above ceiling)",
         "gap too small", "error", "0.25 (without 2: fresh seeds (private): gap too small; "
         "pair l3->minilm: boom)", "+0.27", "yes"],
        ["9", "bob", "", "", "", "", "", "", "error: finding 9 has no code snapshot to "
         "re-run", ""]]
    assert "Note: a note." in section.blocks and section.images == ["verification.png"]

    path.write_text('{"run": "run-old", "rows": [')  # damaged: an error naming the file
    with pytest.raises(AarError, match=r"verify\.json is not a readable verification"):
        report.verification()
    path.write_text(json.dumps({**legacy, "rows": [{"title": "no finding"}]}))
    with pytest.raises(AarError, match=r"rows\.0\.finding"):
        read_table(path)
