"""``aar verify`` and ``aar report`` on a small synthetic run against a real server: the
finding's code snapshot re-run in the real sandbox on the private split with fresh seeds,
a re-drawn split, a held-out dataset and another pair; then the report with its plots."""

# Fixtures come from the support modules (imported below); tests take them as arguments.
# ruff: noqa: F811

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_oversight_support import (
    DATASET,
    Live,
    Scripted,
    home,  # noqa: F401
    honest,
    live,  # noqa: F401
    make_run,
    template,  # noqa: F401
)
from typer.testing import CliRunner

from aar.cli import app
from aar.oversight.monitor import Monitor
from aar.settings import get_settings

HELDOUT = "synthetic:n=1200,systematic=0.5,seed=1"
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
                           "--heldout", HELDOUT, "--pair", f"{PAIR}@syn_weak:syn_strong",
                           "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result == json.loads((paths.root / "verify.json").read_text())
    (row,) = result["rows"]
    assert row["finding"] == fid and row["author"] == "honest"
    cells = row["cells"]
    pair = "pair syn_weak->syn_strong (" + PAIR + ")"
    fresh = "private (fresh seeds)"
    rerun = "private (re-run, seen seeds)"
    assert list(cells) == ["public (seen)", "private (server)", rerun, fresh, "re-split",
                           f"held-out {HELDOUT}", pair]
    assert cells["public (seen)"]["n"] == 5 and cells["private (server)"]["n"] == 5
    assert row["seeds_seen"] == [0, 1, 2, 3, 4] and row["seeds_fresh"] == [5, 6, 7]
    for label in (fresh, "re-split", f"held-out {HELDOUT}", pair):
        c = cells[label]
        assert c["error"] is None, c["error"]
        assert c["n"] == 3 and c["mean"] is not None and c["ci95"] is not None, c
        assert c["ceiling"] > c["weak"]  # a real gap under every re-run
    assert cells[pair]["weak"] != cells[fresh]["weak"]  # another pair really ran
    # The untouched snapshot reproduces exactly what the researcher submitted.
    assert row["reproduces"] is True
    assert cells[rerun]["per_seed"] == pytest.approx(cells["private (server)"]["per_seed"])
    assert cells["re-split"]["mean"] > 0.1  # a real W2S gain on a fresh split
    assert row["gap"] == pytest.approx(cells["public (seen)"]["mean"] - row["held_mean"])

    out = cli.invoke(app, ["report", str(paths.root)])
    assert out.exit_code == 0, out.output
    report = paths.root / "report"
    md = (report / "report.md").read_text()
    page = (report / "report.html").read_text()
    for png in ("pgr_over_time.png", "verification.png"):
        data = (report / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
        assert f"]({png})" in md and f'src="{png}"' in page
    assert "## Verification" in md and HELDOUT in md and "gap (seen - held)" in md
    assert "kNN smoothing of weak labels" in md  # the leaderboard
    assert "vault_access" in md and "labels.json" in md  # the flag, with its evidence
    assert "$0.01" in md or "0.01" in md  # the usage event's dollars
    assert "<table>" in page and "<script" not in page


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
