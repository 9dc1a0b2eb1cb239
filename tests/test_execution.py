"""Executors: the local sandbox and a Ray cluster of two nodes on this machine (a head and a
worker, each a ``ray start`` of its own with a clean environment).

Ray tasks give the same predictions as local runs for the same seeds (experiments and the
``aar baselines`` sweep); a node receives only the content-addressed, label-free export and
features; ``aar research --executor ray`` survives SIGKILL of the worker node mid-task
(its tasks run again on the head) and of the researchers' host (``--resume``), and the
database and the event logs agree afterwards, record by record."""


from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_server_support import DATASET

import aar.methods
from aar.data.prepare import prepare
from aar.errors import AarError
from aar.execution import ExecutorConfig, Experiment
from aar.execution.bundle import Bundle, materialize
from aar.execution.local import LocalExecutor
from aar.execution.local_cluster import LocalRayCluster
from aar.research.layout import RunPaths
from aar.research.orchestrator import ResearchConfig, prepare_dataset, research

# Ray reads its authentication settings when it is first imported: this process (a
# driver) and the cluster's nodes share one token, set before that.
os.environ.setdefault("RAY_AUTH_MODE", "token")
TOKEN = os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
pytest.importorskip("ray")
pytestmark = pytest.mark.slow
WEAK, STRONG = "syn_weak", "syn_strong"
METHOD = Path(aar.methods.__file__).parent / "self_train.py"  # draws on ctx.rng


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    root = Path(tempfile.mkdtemp(prefix="aar-ray-", dir="/tmp"))  # short: Ray's sockets
    c = LocalRayCluster(root, token=TOKEN)
    try:
        c.start_head(cpus=1)
        c.add_node(cpus=2)
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def on_cluster(cluster: LocalRayCluster, monkeypatch: pytest.MonkeyPatch
               ) -> LocalRayCluster:
    for k, v in cluster.client_env().items():
        monkeypatch.setenv(k, v)
    return cluster


def test_a_bundle_is_content_addressed_and_checked(home: Path, tmp_path: Path) -> None:
    prepare_dataset(DATASET, WEAK, STRONG)
    ws = prepare(DATASET).workspace
    b = Bundle.of(ws, (WEAK, STRONG))
    assert b.digest == Bundle.of(ws, (STRONG, WEAK, WEAK)).digest  # order, repeats
    assert {n.split("/")[0] for n in b.names} == {"export", "features"}
    calls: list[int] = []

    def fetch() -> bytes:
        calls.append(1)
        return b.data

    where = materialize(b.digest, fetch, tmp_path)
    assert materialize(b.digest, fetch, tmp_path) == where and len(calls) == 1  # once
    got = sorted(p.relative_to(where).as_posix() for p in where.rglob("*") if p.is_file())
    assert got == sorted([*b.names, ".complete"])
    other = Bundle.of(ws, (WEAK,))
    with pytest.raises(AarError, match="damaged"):
        materialize(b.digest, lambda: other.data, tmp_path / "again")


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_ray_tasks_match_local_runs_and_a_node_gets_only_the_export(
        home: Path, on_cluster: LocalRayCluster, tmp_path: Path) -> None:
    from aar.data.splits import PRIVATE
    from aar.execution.ray_cluster import RayExecutor
    from aar.experiments.sweep import sweep
    from aar.oversight.verify import FRESH, Target, run_target

    prepare_dataset(DATASET, WEAK, STRONG)
    prep = prepare(DATASET)
    ws = prep.workspace
    exp = Experiment(METHOD, ws, WEAK, STRONG, (0, 1, 2, 3))
    work = tmp_path / "work"  # beside the AAR home, not above it
    work.mkdir()
    local = LocalExecutor().run(exp, work)
    with RayExecutor(on_cluster.address) as ex:
        remote = ex.run(exp, work)
        # `aar verify`'s re-run of a snapshot: the same cell from the cluster
        target = Target(FRESH, DATASET, WEAK, STRONG, halves=(PRIVATE,))
        cell_r, rows_r = run_target(METHOD, target, [7, 8], {}, work, 600.0, ex)
    cell_l, rows_l = run_target(METHOD, target, [7, 8], {}, work, 600.0)
    assert rows_r is not None and rows_l is not None and np.array_equal(rows_r, rows_l)
    assert cell_r == cell_l and cell_r.mean is not None
    assert np.array_equal(local.predictions, remote.predictions)  # bit for bit
    assert len(set(remote.nodes)) == 2  # spread over both nodes
    # What each node received: the bundle (the export's files and the two encoders'
    # feature files), unpacked once; an empty AAR home; no job left behind.
    bundle = Bundle.of(ws, (WEAK, STRONG))
    labels = json.loads((prep.vault.root / "labels.json").read_text())
    for node in on_cluster.nodes:
        got = node.dir / "bundles" / bundle.digest
        assert _files(got) == {*bundle.names, ".complete"}
        assert {f"export/{n}" for n in _files(ws.root)} == {
            n for n in bundle.names if n.startswith("export/")}
        assert not _files(node.dir / "home") and not _files(node.dir / "jobs")
        names = _files(node.dir)
        assert not [n for n in names if "vault" in n or n.endswith(".db")], names
        for jl in got.glob("export/*.jsonl"):
            for line in jl.read_text().splitlines():
                assert set(json.loads(line)) <= {"id", "text"}  # no label field
        assert "labels.json" not in {Path(n).name for n in names}
        assert len(labels) > 0 and not (got / "export" / "labels.json").exists()
    # The library sweep (`aar baselines`): the same rows from the cluster.
    methods = ["vanilla", "self_train"]
    here = sweep(DATASET, methods, (0, 1, 2), WEAK, STRONG, workers=1)
    there = sweep(DATASET, methods, (0, 1, 2), WEAK, STRONG,
                  executor=ExecutorConfig("ray", on_cluster.address))
    drop = ("seconds", "record")
    assert [{k: v for k, v in r.items() if k not in drop} for r in here] == \
        [{k: v for k, v in r.items() if k not in drop} for r in there]


def check_records(run_id: str, *, exact: bool = True) -> dict[str, int]:
    """The run's events against the server's database, record by record: every
    acknowledged submission and finding is in the database once, with the seed, method,
    type and title the event says; with ``exact`` the database holds nothing else."""
    from sqlalchemy import create_engine, select

    from aar.server import db as m
    from aar.settings import get_settings

    engine = create_engine(get_settings().db_url)
    with engine.connect() as c:
        agent_of = {n: i for i, n in c.execute(select(m.Agent.id, m.Agent.name))}
        subs = {r.id: r for r in c.execute(select(
            m.Submission.id, m.Submission.agent_id, m.Submission.seed, m.Submission.method))}
        finds = {r.id: r for r in c.execute(select(
            m.Finding.id, m.Finding.agent_id, m.Finding.type, m.Finding.title))}
    engine.dispose()
    paths = RunPaths.of(run_id)
    counts = {"submissions": 0, "findings": 0, "extra": 0}
    for name in paths.agents():
        events = paths.read_events(name)
        acked: list[int] = []
        for e in events:
            if e.kind == "evaluation":
                for sid, seed in zip(e.submission_ids, e.seeds, strict=True):
                    row = subs[sid]
                    assert (row.agent_id, row.seed, row.method) == (
                        agent_of[name], seed, e.method), (sid, e)
                    acked.append(sid)
        assert len(acked) == len(set(acked)), "a submission acknowledged twice"
        mine = {i for i, r in subs.items() if r.agent_id == agent_of.get(name)}
        assert set(acked) <= mine
        extra = mine - set(acked)
        assert not extra if exact else len(extra) <= 5, extra  # a lost answer: one batch
        fids = [e.finding_id for e in events if e.kind == "finding"]
        assert len(fids) == len(set(fids)), "a finding posted twice"
        for e in (e for e in events if e.kind == "finding"):
            f = finds[e.finding_id]
            assert (f.agent_id, f.type, f.title) == (agent_of[name], e.type, e.title)
        f_mine = {i for i, r in finds.items() if r.agent_id == agent_of.get(name)}
        assert set(fids) <= f_mine and (len(f_mine - set(fids)) <= (0 if exact else 1))
        pop = paths.agent_dir(name) / "population.jsonl"
        for rec in (json.loads(x) for x in pop.read_text().splitlines() if x.strip()):
            if rec.get("finding"):
                assert rec["finding"] in fids and set(rec["submissions"]) <= set(acked)
        counts["submissions"] += len(acked)
        counts["findings"] += len(fids)
        counts["extra"] += len(extra)
    return counts


def _research_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "aar", "research", "-d", DATASET, *args]


def _sandbox_nodes(run_id: str) -> list[tuple[str, list[str]]]:
    paths = RunPaths.of(run_id)
    return [(e.t, e.nodes or []) for n in paths.agents()
            for e in paths.read_events(n) if e.kind == "sandbox_run" and e.ok]


def test_killed_researcher_host_resumes_on_the_cluster(
        home: Path, on_cluster: LocalRayCluster) -> None:
    env = {**os.environ, **on_cluster.client_env()}
    proc = subprocess.Popen(
        _research_cmd("--agents", "1", "--minutes", "2", "--max-evals", "15",
                      "--executor", "ray", "--address", on_cluster.address),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    runs = Path(env["AAR_HOME"]) / "runs"
    deadline = time.time() + 120
    pop: Path | None = None
    while time.time() < deadline and proc.poll() is None:
        found = list(runs.glob("*/agents/*/population.jsonl"))
        if found and any(json.loads(x).get("finding") for x in found[0].read_text()
                         .splitlines()):
            pop = found[0]
            break
        time.sleep(0.2)
    assert pop is not None, proc.stdout.read().decode()[-3000:] if proc.stdout else ""
    os.killpg(proc.pid, signal.SIGKILL)  # the orchestrator, its server, its researcher
    os.kill(int((pop.parent / "pid").read_text()), signal.SIGKILL)
    proc.wait()
    run_id = pop.parent.parent.parent.name
    before = check_records(run_id, exact=False)
    info = research(ResearchConfig(minutes=1.0, live_view=False), resume=run_id)
    assert info["executor"]["kind"] == "ray" and info["resumed"]
    after = check_records(run_id, exact=False)
    assert after["submissions"] > before["submissions"] and after["extra"] == before["extra"]
    name = pop.parent.name
    starts = [e for e in RunPaths.of(run_id).read_events(name) if e.kind == "start"]
    assert len(starts) == 2 and starts[1].resumed is True
    assert all(nodes for _, nodes in _sandbox_nodes(run_id))  # every run went to Ray


def test_research_on_two_nodes_survives_losing_the_worker_node(
        home: Path, on_cluster: LocalRayCluster) -> None:
    """Done when: a short `aar research --executor ray` across head + worker; the worker
    node is SIGKILLed while it runs a task; every acknowledged result is there once."""
    worker = on_cluster.nodes[-1]
    env = {**os.environ, **on_cluster.client_env()}
    proc = subprocess.Popen(
        _research_cmd("--agents", "2", "--minutes", "3", "--max-evals", "15",
                      "--executor", "ray", "--address", on_cluster.address),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    jobs = worker.dir / "jobs"
    deadline = time.time() + 150
    killed_at: float | None = None
    while time.time() < deadline and proc.poll() is None:
        runs = list((Path(env["AAR_HOME"]) / "runs").glob("*"))
        both = bool(runs) and len({x for _, ns in _sandbox_nodes(runs[0].name)
                                   for x in ns}) == 2  # each node finished a task
        if both and jobs.is_dir() and any(jobs.iterdir()):  # and one is in flight there
            assert on_cluster.kill_node(worker) > 0
            killed_at = time.time()
            break
        time.sleep(0.05)
    assert killed_at is not None, "no task reached the worker node"
    out, _ = proc.communicate(timeout=300)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    run_id = next((Path(env["AAR_HOME"]) / "runs").iterdir()).name
    counts = check_records(run_id, exact=True)
    assert counts["submissions"] == 30 and counts["findings"] >= 6  # 2 x 15 evaluations
    paths = RunPaths.of(run_id)
    failed = [e for n in paths.agents() for e in paths.read_events(n)
              if e.kind == "sandbox_run" and not e.ok]
    assert not failed, failed  # the lost node's task ran again elsewhere
    nodes = {x for _, ns in _sandbox_nodes(run_id) for x in ns}
    assert len(nodes) == 2  # both nodes worked before the worker died
    info: dict[str, Any] = json.loads(paths.info.read_text())
    assert info["executor"]["kind"] == "ray"
    for n in paths.agents():
        stop = [e for e in paths.read_events(n) if e.kind == "stop"][-1]
        assert stop.reason == "budget:evals", stop
