"""Pure pieces of the server: the Ladder, its guarantee, the probing detector, archive
checks, and the fast AUROC."""

from __future__ import annotations

import io
import itertools
import math
import zipfile
from typing import Any

import numpy as np
import pytest
from test_server_support import tar_bytes

from aar.server import ladder, probing
from aar.server.errors import ApiError
from aar.server.forum import inspect_archive
from aar.w2s.metrics import auroc

P = ladder.LadderParams(eta=0.01, noise=0.0, max_releases=5)


def test_ladder_releases_only_improvements_by_eta() -> None:
    s, rel = ladder.step(ladder.LadderState(), 0.7234, 0.81, 1, P, 0.0, 0.0)
    assert rel and s.level == 72 and s.accuracy(P.eta) == 0.72 and s.auroc == 0.81
    # Better, but by less than eta after flooring to the grid: the old answer stands.
    s2, rel = ladder.step(s, 0.7299, 0.9, 2, P, 0.0, 0.0)
    assert not rel and s2.level == 72 and s2.submission == 1 and s2.queries == 2
    # Worse: the old answer stands.
    s3, rel = ladder.step(s2, 0.6, 0.5, 3, P, 0.0, 0.0)
    assert not rel and s3.accuracy(P.eta) == 0.72
    # At least one grid step better: released, rounded down.
    s4, rel = ladder.step(s3, 0.7456, 0.8349, 4, P, 0.0, 0.0)
    assert rel and s4.accuracy(P.eta) == 0.74 and s4.submission == 4 and s4.auroc == 0.83
    assert s4.releases == 2 and s4.queries == 4


def test_ladder_release_cap_and_grid() -> None:
    s = ladder.LadderState()
    for k, acc in enumerate(np.linspace(0.5, 0.99, 30)):
        s, _ = ladder.step(s, float(acc), 0.5, k, P, 0.0, 0.0)
    assert s.releases == P.max_releases  # frozen after the cap
    assert ladder.grid_level(1.7, 0.01, 100) == 100 and ladder.grid_level(-0.2, 0.01, 100) == 0
    nan_auc, _ = ladder.step(ladder.LadderState(), 0.5, float("nan"), 1, P, 0.0, 0.0)
    assert nan_auc.auroc is None


def test_ladder_noise_enters_the_comparison() -> None:
    s, _ = ladder.step(ladder.LadderState(), 0.700, 0.8, 1, P, 0.0, 0.0)
    # Same accuracy, a large positive draw: released one step up; a negative draw: not.
    up, rel = ladder.step(s, 0.700, 0.8, 2, P, 0.012, 0.0)
    assert rel and up.level == 71
    _, rel = ladder.step(s, 0.709, 0.8, 3, P, -0.005, 0.0)
    assert not rel


def test_guarantee_numbers() -> None:
    p = ladder.LadderParams()
    bits = [ladder.transcript_bits(k, p) for k in (1, 10, 100, 300, 1000)]
    assert all(a < b for a, b in itertools.pairwise(bits))
    # Default settings: the numbers the module docstring states.
    assert ladder.transcript_bits(300, p) == pytest.approx(305, abs=1)
    assert ladder.leaderboard_error(300, 2500, p) == pytest.approx(0.24, abs=0.01)
    # Fewer releases, fewer bits; more labels, smaller error.
    assert ladder.transcript_bits(300, ladder.LadderParams(max_releases=5)) < bits[3]
    assert ladder.leaderboard_error(300, 10_000, p) < ladder.leaderboard_error(300, 2500, p)
    # One answer carries at most this much evidence about one label (Laplace mechanism).
    assert ladder.per_query_epsilon(2500, 1250, p) == pytest.approx(
        (1 / 2500 + 1 / 1249) / p.noise)
    g = ladder.guarantee(2500, 1250, 2500, 300, p)
    assert set(g) >= {"bits_revealed_at_most", "leaderboard_error", "per_query_epsilon"}
    assert ladder.holdout_error(100, 2500) == pytest.approx(
        math.sqrt(math.log(2 * 100 / 0.05) / 5000))


def test_auroc_equals_rank_definition() -> None:
    """The one AUROC (sort and search) equals the rank-sum definition, ties counted half."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(3)
    for _ in range(20):
        s = rng.random(301).round(2)  # many ties
        y = rng.integers(0, 2, 301).astype(bool)
        ranks = rankdata(s)
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        ref = (ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        assert auroc(s, y) == pytest.approx(ref, abs=1e-12)
    assert math.isnan(auroc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_channel_bound_adds_every_channel() -> None:
    p = ladder.LadderParams(eta=0.01, noise=0.0025, max_releases=5)
    one = ladder.channel_bound(p, 40, 5, datasets=1, reference_rows=0, accounts=1)
    assert one["ladder_bits"] == round(ladder.transcript_bits(40, p), 1)
    assert one["result_flag_bits"] == 8  # 40 evaluations, 5 seeds a result
    # Each dataset of the universe publishes two rounded baselines and its gap bit.
    two = ladder.channel_bound(p, 40, 5, datasets=2, reference_rows=3, accounts=1)
    assert two["public_constant_bits"] == pytest.approx(
        2 * (2 * math.log2(101) + 1) + 3 * math.log2(101), abs=0.1)
    # Runs that pool what they were told: their accounts add up.
    three = ladder.channel_bound(p, 40, 5, datasets=1, reference_rows=0, accounts=3)
    assert three["bits_all_runs"] == pytest.approx(
        3 * (one["ladder_bits"] + 8) + one["public_constant_bits"], abs=0.2)
    assert one["bits_per_run"] < three["bits_all_runs"]


def test_probing_detector() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(2000).astype(np.float32)
    other = rng.random(2000).astype(np.float32)
    assert probing.inspect(other, [(1, base)]) == []
    kinds = {f.kind for f in probing.inspect(base.copy(), [(1, base)])}
    assert kinds == {"duplicate"}
    one = base.copy()
    one[5] = 1 - one[5]
    (flag,) = probing.inspect(one, [(1, other), (2, base)])
    assert flag.kind == "near_duplicate" and flag.detail["of"] == 2
    assert flag.detail["changed"] == 1
    # A few hard flips hidden under tiny noise everywhere else.
    sneaky = (base + rng.uniform(-5e-4, 5e-4, 2000)).clip(0, 1).astype(np.float32)
    sneaky[:3] = np.where(base[:3] >= 0.5, 0.1, 0.9)
    assert [f.kind for f in probing.inspect(sneaky, [(2, base)])] == ["near_duplicate"]
    hard = (base >= 0.5).astype(np.float32)
    hard2 = hard.copy()
    hard2[:40] = 1 - hard2[:40]
    kinds = {f.kind for f in probing.inspect(hard2, [(3, hard)])}
    assert kinds == {"hard_labels", "hard_label_tuning"}
    assert [f.kind for f in probing.inspect(np.full(10, 0.5, np.float32), [])] == ["constant"]


@pytest.mark.parametrize("name, why", [
    ("/etc/passwd", "absolute"), ("../../escape.py", "'..'"), ("a/../../b", "'..'"),
    ("C:/windows.py", "absolute"), ("..\\evil.py", "'..'"),
])
def test_archive_rejects_unsafe_paths(name: str, why: str) -> None:
    with pytest.raises(ApiError) as e:
        inspect_archive(tar_bytes({"ok.py": b"x", name: b"y"}), 1 << 20, 100)
    assert e.value.status == 400 and why in e.value.message
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok.py", "x")
        zf.writestr(zipfile.ZipInfo(name), "y")
    with pytest.raises(ApiError) as e:
        inspect_archive(buf.getvalue(), 1 << 20, 100)
    assert e.value.status == 400


def test_archive_rejects_links_bombs_and_junk() -> None:
    with pytest.raises(ApiError, match="link"):
        inspect_archive(tar_bytes({"a.py": b"x"}, symlink="evil"), 1 << 20, 100)
    with pytest.raises(ApiError, match="unpacks to more than"):
        inspect_archive(tar_bytes({"big.bin": b"\0" * 5000}), 4096, 100)
    with pytest.raises(ApiError, match="more than 2 members"):
        inspect_archive(tar_bytes({f"f{i}.py": b"x" for i in range(3)}), 1 << 20, 2)
    with pytest.raises(ApiError, match="not a tar or zip"):
        inspect_archive(b"hello, this is not an archive" * 30, 1 << 20, 100)
    kind, members = inspect_archive(tar_bytes({"pkg/m.py": b"print(1)"}), 1 << 20, 100)
    assert kind == "tar" and members == [{"name": "pkg/m.py", "size": 8}]


def test_a_bare_name_means_the_default_split_when_redrawn_splits_exist() -> None:
    from aar.data.prepare import prepare as prep_dataset
    from aar.server.evaluation import Catalog

    default = prep_dataset("synthetic")
    redrawn = prep_dataset("synthetic", seed=1)
    assert default.key != redrawn.key
    assert Catalog()._resolve("synthetic").key == default.key
    assert Catalog()._resolve(redrawn.key).key == redrawn.key


def test_reference_rows_are_library_methods_by_the_records_own_word() -> None:
    """A library method's run is told from a method file's by the record (the server
    imports no method registry, and reads no record: the orchestrator posts the body
    ``reference_body`` makes); records from before the ``library`` field go by ref."""
    from aar.experiments.runner import reference_body

    def record(**config: object) -> Any:
        return {"kind": "aar.run", "run_id": "r-1", "dataset_key": "synt-1",
                "created": "2026-12-01T00:00:00+00:00",
                "config": {"weak": "w", "strong": "s", "params": {}, **config},
                "seeds": [{"scores": {"test_public": {"accuracy": 0.7, "pgr": float("nan")}}}]}

    def summary(**config: object) -> object:
        return reference_body(record(**config))

    assert summary(method="vanilla", method_ref="vanilla", library=True) is not None
    assert summary(method="vanilla", method_ref="vanilla", library=False) is None
    assert summary(method="mine", method_ref="ideas/mine.py", library=False) is None
    assert summary(method="vanilla", method_ref="vanilla") is not None  # an older record
    assert summary(method="mine", method_ref="ideas/mine.py:mine") is None
    ref = reference_body(record(method="vanilla", method_ref="vanilla", params={"l2": 1.0}))
    assert ref is not None and ref.dataset == "synt-1" and ref.params == {"l2": 1.0}
    assert ref.seeds == [{"test_public": {"accuracy": 0.7, "pgr": None}}]  # NaN: no JSON
