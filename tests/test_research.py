"""Research runs on the synthetic testbed against a real server over HTTP and the real
sandbox: the tools (path confinement, events), the built-in researcher (findings from
every researcher, building on each other, a server-scored best above vanilla), budgets
that stop cleanly with a final note, and resuming a killed run."""


from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_server_support import DATASET

from aar.agents.tools import execute, tool_index
from aar.client import Client
from aar.contracts.api import BoardEntryOut, FindingOut
from aar.research import genome as G
from aar.research.builtin import peer_results, population
from aar.research.context import Researcher
from aar.research.layout import RunPaths
from aar.research.live import LiveServer
from aar.research.orchestrator import ResearchConfig, prepare_dataset, research
from aar.research.tools import build_tools, init_workspace

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def researcher(home: Path) -> Iterator[Researcher]:
    yield from _researcher()


def _researcher() -> Iterator[Researcher]:
    token = "aar_" + secrets.token_urlsafe(24)
    key = prepare_dataset(DATASET, "syn_weak", "syn_strong")
    with LiveServer(admin_token=token) as srv:
        with Client(srv.url, token) as admin:
            agent_token = admin.create_token("tester", budget_total=5).token
        paths = RunPaths.of("tools-run")
        r = Researcher(paths=paths, name="tester", direction="testing", dataset=DATASET,
                       workspace_key=key, weak="syn_weak", strong="syn_strong",
                       client=Client(srv.url, agent_token), max_evals=5)
        init_workspace(r)
        yield r
        r.client.close()


METHOD = '''
import numpy as np
from aar.methods import method


@method("plain")
def plain(ctx, *, l2: float | None = None):
    return ctx.train_strong(ctx.weak_hard["unlabeled"].astype(float), l2=l2)
'''

TRANSDUCTIVE = '''
import numpy as np
from aar.methods import method


@method("uses_test", transductive=True)
def uses_test(ctx, *, l2: float | None = None):
    x = np.concatenate([ctx.strong_features["unlabeled"], ctx.test.strong_features])
    y = np.concatenate([ctx.weak_hard["unlabeled"], ctx.weak_hard["test"]]).astype(float)
    return ctx.train_strong(y, ctx.rng.uniform(0.8, 1.2, len(y)), x=x, l2=l2)
'''


def test_tools_confine_paths_and_log_events(researcher: Researcher, tmp_path: Path) -> None:
    r = researcher
    tools = tool_index(build_tools(r))

    def call(name: str, **args: Any) -> Any:
        return execute(tools[name], name, args)

    assert not call("write_file", path="ideas/plain.py", content=METHOD).is_error
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (r.workspace / "escape").symlink_to(tmp_path)
    for bad in ("../events.jsonl", str(outside), "escape/outside.txt", "ideas/../../x.py",
                "~/x"):
        res = call("read_file", path=bad)
        assert res.is_error, bad
        assert "workspace" in res.content
        assert call("write_file", path=bad, content="x").is_error
    assert outside.read_text() == "secret"
    # a .py file that is not Python is refused before it is written, saying where
    res = call("write_file", path="ideas/xml.py", content='<methods>\n  <m l2=0.1 />')
    assert res.is_error and "line 1" in res.content and "nothing was written" in res.content
    assert not (r.workspace / "ideas" / "xml.py").exists()
    assert call("write_file", path="ideas/plain.py", content="x = (").is_error
    assert (r.workspace / "ideas" / "plain.py").read_text() == METHOD  # the old file stays
    assert not call("write_file", path="ideas/notes.txt", content="<not python/>").is_error
    listing = call("list_files").content
    assert "ideas/plain.py" in listing and "README.md" in listing
    res = call("run_method", path="ideas/plain.py", seeds=[0, 1])
    assert not res.is_error, res.content
    out = json.loads(res.content)
    assert out["seeds"] == [0, 1] and out["transductive"] is False
    assert '{"name": "submit", "arguments": {"path": "ideas/plain.py"' in out["next"]
    tuned = json.loads(call("run_method", path="ideas/plain.py", seeds=[0],
                            params={"l2": 2.0}).content)
    assert '"params": {"l2": 2.0}' in tuned["next"]  # the call to submit what was run
    diag = out["diagnostics"]
    assert 0.6 < diag["agreement_with_weak"] <= 1.0
    assert 0 < diag["positive_rate"] < 1
    starter = call("run_method", path="template.py", seeds=[7])  # the workspace's starter
    assert not starter.is_error and json.loads(starter.content)["transductive"] is False, \
        starter.content
    bad = call("run_method", path="ideas/plain.py", seeds=[0, 10_000])
    assert bad.is_error and "out of range" in bad.content  # refused before the sandbox
    res = call("run_python", code="import os\nprint(sorted(os.listdir(os.environ['AAR_EXPORT'])))")
    assert not res.is_error and "test.jsonl" in json.loads(res.content)["stdout"]
    sub = call("submit", path="ideas/plain.py")
    assert not sub.is_error and sub.evals == 5, sub.content
    ids = json.loads(sub.content)["submission_ids"]
    assert len(ids) == 5
    f = call("share_finding", type="result", title="plain weak labels", path="ideas/plain.py",
             submission_ids=ids, seeds=[0, 1, 2, 3, 4])
    assert not f.is_error, f.content
    fid = json.loads(f.content)["id"]
    # The snapshot holds method.py; the metrics say how to re-run it.
    full = json.loads(call("read_finding", id=fid, with_code=True).content)
    assert "def plain" in full["code"]
    assert full["claimed_metrics"]["submission_ids"] == ids
    assert full["claimed_metrics"]["weak"] == "syn_weak"
    # The same code, params and seeds again: refused, nothing spent.
    again = call("submit", path="ideas/plain.py", seeds=[4, 3, 2, 1, 0])
    assert again.is_error and "already submitted" in again.content and r.evals_used == 5
    # The evaluation budget of 5 is spent: the next submit is refused before running.
    refused = call("submit", path="ideas/plain.py", seeds=[5, 6, 7, 8, 9])
    assert refused.is_error and "budget" in refused.content
    board = json.loads(call("leaderboard").content)
    shown = board["entries"] + board["transductive"] + board["held"]  # held: flagged
    assert [e["title"] for e in shown if e["finding"] == fid] == ["plain weak labels"]
    assert not board["transductive"]  # plain.py never declared test inputs
    call("notes", append="plain works")
    assert "plain works" in (r.workspace / "notes.md").read_text()
    events = r.paths.read_events("tester")
    calls = [e for e in events if e.kind == "tool_call"]
    assert len(calls) >= 18
    assert any(e.tool == "read_file" and not e.ok for e in calls)
    assert {e.kind for e in events} >= {"tool_call", "file_write", "sandbox_run",
                                           "evaluation", "finding"}


def _findings(url: str, token: str) -> list[FindingOut]:
    with Client(url, token) as c:
        return c.findings(limit=200).items


def test_the_call_schema_admits_only_well_formed_research_calls(researcher: Researcher
                                                                  ) -> None:
    """What a grammar-constrained local model can write: one call of a real tool with that
    tool's arguments; the schema compiles to a llama.cpp grammar without falling back."""
    import jsonschema

    from aar.agents.backends.textcalls import call_schema

    schema = call_schema(build_tools(researcher))
    ok = [{"name": "run_method", "arguments": {"path": "template.py", "seeds": [0, 1],
                                               "params": {"l2": 1.0, "hard": True}}},
          {"name": "catch_up", "arguments": {}},
          {"name": "share_finding", "arguments": {"type": "insight", "title": "t"}}]
    bad = [{"name": "run_methods", "arguments": {"path": "template.py"}},  # no such tool
           {"name": "run_method", "arguments": {"seeds": [0]}},  # path missing
           {"name": "run_method", "arguments": {"path": "t.py", "params": {"seeds": [0, 1]}}},
           {"name": "read_file", "arguments": {"path": "a.py", "content": "x"}},
           {"name": "share_finding", "arguments": {"type": "idea", "title": "t"}},
           {"name": "read_file"}]
    for call in ok:
        jsonschema.validate(call, schema)
    for call in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(call, schema)
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    gbnf = llama_grammar.json_schema_to_gbnf(json.dumps(schema))  # raises where unsupported
    assert all(f'\\"{t.name}\\"' in gbnf for t in build_tools(researcher)), gbnf[:400]


def test_builtin_researchers_build_on_each_other(home: Path, tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    # Directions whose candidates draw on ctx.rng (cross-fitting): their seeds differ, so
    # no result is held as duplicate submissions and each can be built on once released.
    directions = tmp_path / "directions"
    directions.mkdir()
    (directions / "01_reweight.md").write_text("# Reweighting\nfamilies: reweight\n\nWeigh.")
    (directions / "02_channel.md").write_text("# Channel\nfamilies: product, channel\n\nEM.")
    # Three submissions each (the evaluation budget), whatever the machine's load.
    cfg = ResearchConfig(dataset=DATASET, agents=2, minutes=4.0, live_view=False,
                         max_evals=15, directions=str(directions))
    info = research(cfg, observers=[lambda _p, ev: seen.append(ev)], run_id="two")
    s = info["summary"]
    names = [a["name"] for a in info["agents"]]
    assert info["sandbox"]["isolated"] is (info["sandbox"]["mode"] != "subprocess")
    assert set(s["authors_with_results"]) == set(names)
    assert s["best"]["public_pgr"] > s["best_reference"]["pgr"]  # server-scored, vs vanilla
    assert s["best_reference"]["name"] == "method vanilla"
    paths = RunPaths.of("two")
    secrets_file = paths.secrets
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    assert not any(secrets_file.parent.joinpath("agents", n, "workspace", "secrets.json")
                   .exists() for n in names)
    # The forum, read back through a fresh server on the same database.
    admin = json.loads(secrets_file.read_text())["admin_token"]
    with LiveServer(admin_token=admin) as srv:
        items = _findings(srv.url, admin)
        by_id = {f.id: f for f in items}
        assert {f.author for f in items} == set(names)
        cross = [f for f in items if any(by_id[b].author != f.author
                                          for b in f.builds_on if b in by_id)]
        assert cross, "no finding builds on another researcher's"
        assert {f.type for f in items} & {"negative", "insight"}
        with Client(srv.url, admin) as c:
            status = {x.agent: x for x in c.status(run_id="two")}
    assert set(status) == set(names)
    assert all(x.state == "stopped" and x.evals == 15 for x in status.values())
    for n in names:
        stops = [e for e in paths.read_events(n) if e.kind == "stop"]
        assert stops and stops[-1].final_note and stops[-1].reason.startswith("budget")
        ideas = sorted((paths.workspace(n) / "ideas").glob("*.py"))
        assert ideas and "@method(" in ideas[0].read_text()
    assert any(e.kind == "evaluation" for e in seen) and any(e.kind == "stop"
                                                               for e in seen)
    assert "Best server-scored result" in (paths.root / "final_note.md").read_text()
    # An idea is a real module: `aar run` executes it on the host.
    best_file = next(iter(sorted((paths.workspace(names[0]) / "ideas").glob("*.py"))))
    out = subprocess.run([sys.executable, "-m", "aar", "run", str(best_file), "-d",
                          DATASET, "--seeds", "1"], capture_output=True, text=True,
                         env=os.environ.copy(), timeout=120)
    assert out.returncode == 0 and "PGR" in out.stdout, out.stderr


def test_builtin_researcher_builds_only_on_its_own_runs_peers() -> None:
    def entry(fid: int, author: str, genome: dict[str, Any] | None = G.BASE,
              pgr: float | None = 0.5) -> BoardEntryOut:
        return BoardEntryOut(
            kind="result", finding=fid, title="t", author=author, seeds=[0, 1, 2, 3, 4],
            n_seeds=5, transductive=False, votes=0, archive=None, created=None,
            accuracy=None, auroc=None, pgr=pgr, pgr_se=None, rank=None,
            claimed={"genome": genome} if genome is not None else {})

    entries = [entry(1, "me-run2"), entry(2, "peer-run2"), entry(3, "old-run1"),
               entry(4, "peer-run2", None), entry(5, "peer-run2", pgr=None)]
    got = peer_results(entries, "me-run2", {"me-run2", "peer-run2"})
    assert list(got) == [2] and got[2].author == "peer-run2"


def test_evaluation_budget_stops_cleanly_with_a_final_note(home: Path) -> None:
    # The evaluation budget ends it, not the clock: the minutes are far more than it needs.
    cfg = ResearchConfig(dataset=DATASET, agents=1, minutes=10.0, live_view=False,
                         max_evals=5)
    info = research(cfg, run_id="tight")
    name = info["agents"][0]["name"]
    paths = RunPaths.of("tight")
    stop = [e for e in paths.read_events(name) if e.kind == "stop"][-1]
    assert stop.reason == "budget:evals"
    assert "1 candidates tried, 1 submitted" in stop.final_note
    assert "5 evaluations" in stop.final_note
    # The run's first submission is always a release of its (shared) Ladder.
    pop = population(paths.agent_dir(name) / "population.jsonl")
    assert len(pop) == 1 and pop[0].finding and pop[0].released is True
    st = paths.read_status(name)
    assert st is not None and st.state == "stopped" and st.evals == 5
    assert "Final note" in (paths.workspace(name) / "notes.md").read_text()


def test_resume_after_kill_loses_nothing(home: Path) -> None:
    env = os.environ.copy()
    # Event-driven: killed once its first result is scored, resumed until its evaluation
    # budget (two submissions) ends it. The minutes only bound a run that hangs.
    proc = subprocess.Popen(
        [sys.executable, "-m", "aar", "research", "-d", DATASET, "--agents", "1",
         "--minutes", "10", "--max-evals", "10"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True)
    runs = Path(env["AAR_HOME"]) / "runs"
    deadline = time.time() + 400
    pop: Path | None = None
    while time.time() < deadline:
        found = list(runs.glob("*/agents/*/population.jsonl"))
        if found and sum(1 for x in found[0].read_text().splitlines()
                         if json.loads(x).get("finding")) >= 1:
            pop = found[0]
            break
        time.sleep(0.5)
    assert pop is not None, "no scored candidate within 400 s"
    agent_dir = pop.parent
    os.killpg(proc.pid, signal.SIGKILL)  # the orchestrator and its server die at once
    pid = int((agent_dir / "pid").read_text())
    os.kill(pid, signal.SIGKILL)  # and so does the researcher
    proc.wait()
    before = [json.loads(x) for x in pop.read_text().splitlines()]
    run_id = agent_dir.parent.parent.name
    info = research(ResearchConfig(minutes=10.0, live_view=False), resume=run_id)
    after = [json.loads(x) for x in pop.read_text().splitlines()]
    assert after[:len(before)] == before  # acknowledged work kept, continued after it
    assert len({a["key"] for a in after}) == len(after)  # no candidate tried twice
    assert len(after) > len(before)
    events = RunPaths.of(run_id).read_events(agent_dir.name)
    starts = [e for e in events if e.kind == "start"]
    assert len(starts) == 2 and starts[1].resumed is True
    stops = [e for e in events if e.kind == "stop"]
    assert stops and stops[-1].reason == "budget:evals"  # its budget spans the restart
    # Ranked, or held for review (the seeds of a deterministic method are duplicates)
    assert info["resumed"] and info["summary"]["results"] + info["summary"]["held"] >= 1


def test_a_transductive_method_is_declared_to_the_server_and_ranked_apart(
        researcher: Researcher) -> None:
    r = researcher
    tools = tool_index(build_tools(r))

    def call(name: str, **args: Any) -> Any:
        return execute(tools[name], name, args)

    assert not call("write_file", path="ideas/uses_test.py", content=TRANSDUCTIVE).is_error
    ran = call("run_method", path="ideas/uses_test.py", seeds=[4, 5000])
    assert not ran.is_error and json.loads(ran.content)["transductive"] is True, ran.content
    sub = call("submit", path="ideas/uses_test.py", seeds=[0, 1, 2, 3, 9999])
    assert not sub.is_error, sub.content
    out = json.loads(sub.content)
    assert out["transductive"] is True and out["released"] is True  # the run's first
    f = call("share_finding", type="result", title="uses test inputs",
             path="ideas/uses_test.py", submission_ids=out["submission_ids"],
             seeds=[0, 1, 2, 3, 9999])
    assert not f.is_error, f.content
    board = json.loads(call("leaderboard").content)
    assert [e["title"] for e in board["transductive"]] == ["uses test inputs"]
    assert board["entries"] == [] and board["transductive"][0]["pgr"] is not None
    ev = [e for e in r.paths.read_events("tester") if e.kind == "evaluation"]
    assert ev[-1].transductive is True and ev[-1].seeds == [0, 1, 2, 3, 9999]


def test_run_files_are_read_through_their_types(tmp_path: Path) -> None:
    """run.json, secrets.json, status.json and run records are validated when read: a
    damaged one is an error naming the file and the field, not a KeyError later."""
    from aar.errors import AarError
    from aar.experiments.runner import read_record, records
    from aar.research.layout import AgentStatus
    from aar.settings import get_settings

    paths = RunPaths(tmp_path / "run")
    assert paths.read_info() == {}  # a run that has no run.json yet
    paths.root.mkdir()
    paths.info.write_text(json.dumps({"run_id": "r", "agents": [{"name": "a"}]}))
    with pytest.raises(AarError, match=r"run\.json is not valid run info: agents\.0\.direction"):
        paths.read_info()
    paths.info.write_text(json.dumps({"run_id": "r", "minutes": 2.5, "agents": []}))
    assert paths.read_info() == {"run_id": "r", "minutes": 2.5, "agents": []}
    with pytest.raises(AarError, match=r"no secrets\.json"):
        paths.read_secrets()
    paths.secrets.write_text(json.dumps({"admin_token": "t", "agents": {"a": 3}}))
    with pytest.raises(AarError, match=r"secrets\.json is not valid run secrets: agents\.a"):
        paths.read_secrets()
    paths.write_status(AgentStatus("a", "d", evals=4))
    status = paths.read_status("a")
    assert status is not None and status.evals == 4
    paths.status("a").write_text(json.dumps({"name": "a", "direction": "d", "evals": "x"}))
    with pytest.raises(AarError, match=r"status\.json is not valid researcher status"):
        paths.read_status("a")
    results = get_settings().results_dir
    results.mkdir(parents=True, exist_ok=True)
    (results / "broken.json").write_text('{"kind": "aar.run"}')
    with pytest.raises(AarError, match="is not an aar run record"):
        read_record(results / "broken.json")
    assert list(records()) == []  # a file that is not a record is skipped


def test_builtin_researcher_stops_when_every_candidate_fails_to_run(
        researcher: Researcher, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken sandbox fails every candidate: the search stops with an error after
    MAX_FAILED_IN_A_ROW of them instead of writing candidates until its deadline."""
    from aar.errors import AarError
    from aar.research.builtin import MAX_FAILED_IN_A_ROW, BuiltinResearcher
    from aar.research.directions import Direction

    def broken(*args: object, **kw: object) -> None:
        raise AarError("worker exited with status 1")

    monkeypatch.setattr(researcher, "run_method", broken)
    search = BuiltinResearcher(researcher, Direction("d", "testing", (), ""))
    note = search.run(max_steps=100)
    assert len(search.population) == MAX_FAILED_IN_A_ROW
    stop = [e for e in researcher.paths.read_events(researcher.name) if e.kind == "stop"][-1]
    assert stop.reason.startswith("error: 10 candidates in a row failed to run")
    assert "worker exited with status 1" in stop.reason and "stopped" in note
    status = researcher.paths.read_status(researcher.name)
    assert status is not None and status.state == "failed"
