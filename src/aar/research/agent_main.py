"""One researcher process: ``python -m aar.research.agent_main RUN_DIR NAME --deadline T``.

Started by the orchestrator. Reads the run's ``run.json`` and its own token from
``secrets.json`` (this process is trusted: the token never enters a workspace or the
sandbox), then runs the built-in search or an LLM researcher with the research tools
until the deadline (a UNIX time), its budgets, or a SIGTERM from the orchestrator.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from aar.client import Client
from aar.contracts import transcript as tx
from aar.contracts.events import ResearcherState, StopReason
from aar.errors import AarError
from aar.execution import ExecutorConfig, make_executor
from aar.research.context import Researcher
from aar.research.directions import Direction
from aar.research.layout import AgentInfo, AgentStatus, RunInfo, RunPaths, now_iso
from aar.research.tools import METHOD_CONTRACT

SERVER_RETRY_S = 120.0  # a researcher waits this long for a restarting server
LOCAL_MAX_OUTPUT = 1024  # tokens a local model may write per reply
LOCAL_MAX_FAILURES = 8  # failed turns in a row (malformed calls, no call) that end a researcher
LOCAL_TOOL_CHARS = 4000  # a tool result's size for a small context window
LOCAL_FIRST = ('Begin your research with step 1: {"name": "run_method", "arguments": '
               '{"path": "template.py", "seeds": [0, 1]}}')
LOCAL_HINT = """

Make exactly one tool call per reply, written as a JSON object. Begin with these steps:
1. {"name": "run_method", "arguments": {"path": "template.py", "seeds": [0, 1]}}
2. {"name": "submit", "arguments": {"path": "template.py", "seeds": [0, 1, 2, 3, 4]}}
3. {"name": "share_finding", "arguments": {"type": "result", "title": "template",
   "submission_ids": [the ids that submit returned]}}
4. {"name": "run_method", "arguments": {"path": "template.py", "seeds": [0, 1],
   "params": {"threshold": 0.2}}}
   (params are the method's keyword hyperparameters: try other values, submit the best)
5. {"name": "read_file", "arguments": {"path": "template.py"}}
Then improve it: write_file ideas/v1.py with the whole of template.py and one change from
your direction (and a new @method name), run_method it, submit it, share_finding it; then
ideas/v2.py, and so on. Never repeat a call: take the next step."""


def make_researcher(paths: RunPaths, info: RunInfo, name: str, token: str,
                    server_url: str) -> Researcher:
    return Researcher(paths=paths, name=name, direction=_agent(info, name)["title"],
                      dataset=info.get("dataset_key") or info["workspace_key"],
                      workspace_key=info["workspace_key"],
                      weak=info["weak"], strong=info["strong"],
                      client=Client(server_url, token, retry_s=SERVER_RETRY_S),
                      max_evals=info.get("max_evals"),
                      cpu_slots=int(info.get("cpu_slots") or 0),
                      executor=make_executor(ExecutorConfig.from_dict(info.get("executor"))))


def _agent(info: RunInfo, name: str) -> AgentInfo:
    for a in info["agents"]:
        if a["name"] == name:
            return a
    raise AarError(f"no researcher {name!r} in this run")


def system_prompt(r: Researcher, direction: Direction) -> str:
    return f"""You are {r.name}, an automated alignment researcher working on weak-to-strong
supervision. A weak teacher (encoder {r.weak}) labelled the unlabeled texts of dataset
{r.dataset}; your job is to train the strong student (encoder {r.strong}) so that it beats
its teacher: a high PGR (performance gap recovered) on the test set, scored only by the
evaluation server (with intervals; "gap too small" when the weak-to-ceiling gap cannot
support a PGR).

Your starting direction: {direction.title}
{direction.text}

The method contract:
{METHOD_CONTRACT}

How to work: write a method module under ideas/ (see template.py and README.md), check it
with run_method (label-free diagnostics, free), submit it (>= 5 seeds; spends your
evaluation budget), then share_finding type "result" with the submission ids and the file,
so the server ranks it. Public scores are rationed by a Ladder shared by your run's
researchers: an answer reveals a new value only when a submission beats the run's best.
Read the forum (catch_up, read_forum) and build on other
researchers' findings (builds_on). Post negative results and insights too. Keep notes.
You cannot see any label; never try to. Stop when your budget is spent; end with a short
final note of what you learned."""


def run_llm(r: Researcher, direction: Direction, info: RunInfo, deadline: float
            ) -> str:
    from aar.agents.backends import make_backend
    from aar.agents.budget import Budget
    from aar.agents.llm import LLMResearcher
    from aar.research.tools import build_tools, init_workspace

    init_workspace(r)
    local = info["backend"] == "local"
    if local:  # llama.cpp: calls written as text; on our own server, grammar-constrained
        own = not info.get("base_url")
        backend = make_backend("openai", info.get("model"),
                               base_url=info.get("base_url") or info.get("llm_url"),
                               max_retries=2, max_tokens=LOCAL_MAX_OUTPUT,
                               text_tool_calls=True, constrained_calls=own)
    else:
        backend = make_backend(info["backend"], info.get("model"),
                               base_url=info.get("base_url"),
                               max_retries=int(info.get("max_retries", 6)))
    budget = Budget(max_seconds=max(deadline - time.time(), 1.0),
                    max_usd=info.get("budget_usd"), max_tokens=info.get("max_tokens"),
                    max_evals=info.get("max_evals"))  # server evaluations, as the server counts
    usage_seen = {"usd": 0.0}

    def on_event(ev: tx.Entry) -> None:
        if isinstance(ev, tx.Assistant):
            r.event("usage", input_tokens=ev.usage.input_tokens,
                    output_tokens=ev.usage.output_tokens, usd=ev.usd, seconds=ev.call_s)
            usage_seen["usd"] = budget.usage().usd
        elif isinstance(ev, tx.Compaction | tx.End):
            r.event("llm_stats", **llm.stats())
        _write_status(r, direction, ResearcherState.RUNNING, usd=budget.usage().usd,
                      tokens=budget.usage().total_tokens, llm_s=llm_s())

    def llm_s() -> float:  # a local model's calls are this machine's compute
        return budget.usage().llm_seconds if local else 0.0

    llm = LLMResearcher(backend, info.get("model"), build_tools(r), budget,
                        r.paths.transcript(r.name),
                        system_prompt(r, direction) + (LOCAL_HINT if local else ""),
                        on_event=on_event,
                        nudge=local, call_hints=local,
                        max_failures=LOCAL_MAX_FAILURES if local else None,
                        context_tokens=info.get("context") if local else None,
                        reserve_tokens=LOCAL_MAX_OUTPUT,
                        max_tool_output_chars=LOCAL_TOOL_CHARS if local else 50_000,
                        final_note_tokens=LOCAL_MAX_OUTPUT if local else 2048)
    r.event("start", direction=direction.title, backend=info["backend"])
    _write_status(r, direction, ResearcherState.RUNNING)
    try:
        out = llm.run(LOCAL_FIRST if local else
                      "Begin your research. Start by reading README.md and the forum.")
    except KeyboardInterrupt:  # stopped from outside: keep the counts
        r.event("llm_stats", **llm.stats())
        raise
    u = out.usage
    r.event("stop", reason=out.reason, final_note=out.final_note, usd=u.usd,
            tokens=u.total_tokens, usd_per_hour=u.usd_per_hour, stats=out.stats)
    _write_status(r, direction, ResearcherState.FAILED if out.reason == StopReason.ERROR
                  else ResearcherState.STOPPED,
                  reason=out.reason, usd=u.usd, tokens=u.total_tokens, llm_s=llm_s())
    return out.final_note


def _write_status(r: Researcher, direction: Direction, state: ResearcherState,
                  reason: str = "",
                  usd: float | None = None, tokens: int | None = None,
                  llm_s: float = 0.0) -> None:
    old = r.paths.read_status(r.name)
    r.paths.write_status(AgentStatus(
        name=r.name, direction=direction.title, state=state, best_pgr=r.best_pgr,
        evals=r.evals_used, findings=r.findings_posted,
        usd=usd if usd is not None else (old.usd if old else 0.0),
        tokens=tokens if tokens is not None else (old.tokens if old else 0),
        compute_s=round(r.compute_s + llm_s, 1), last_activity=now_iso(), reason=reason))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aar.research.agent_main")
    p.add_argument("run_dir")
    p.add_argument("name")
    p.add_argument("--deadline", type=float, required=True, help="UNIX time to stop by")
    args = p.parse_args(argv)
    paths = RunPaths(Path(args.run_dir))
    info = paths.read_info()
    token = paths.read_secrets()["agents"][args.name]
    a = _agent(info, args.name)
    direction = Direction(a["direction"], a["title"], tuple(a.get("families") or ()),
                          a.get("text", ""))
    r = make_researcher(paths, info, args.name, token, info["server_url"])
    try:
        return _research(r, direction, info, args)
    finally:
        if r.executor is not None:
            r.executor.close()


def _research(r: Researcher, direction: Direction, info: RunInfo,
              args: argparse.Namespace) -> int:
    try:
        if info["backend"] == "builtin":
            from aar.research.builtin import BuiltinResearcher

            note = BuiltinResearcher(r, direction, seed=int(info.get("seed", 0)),
                                     deadline=args.deadline).run()
        else:
            signal.signal(signal.SIGTERM, _interrupt)
            note = run_llm(r, direction, info, args.deadline)
    except AarError as exc:
        r.event("stop", reason=StopReason.ERROR, final_note=f"{args.name} failed: {exc}")
        _write_status(r, direction, ResearcherState.FAILED, reason=str(exc)[:500])
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        r.event("stop", reason=StopReason.ORCHESTRATOR,
                final_note=f"{args.name} was stopped by the orchestrator.")
        _write_status(r, direction, ResearcherState.STOPPED, reason=StopReason.ORCHESTRATOR)
        return 0
    print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
