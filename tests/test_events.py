"""The events of a research run as typed models (``aar.contracts.events``): every kind
round-trips, real lines of every kind parse unchanged, older and newer files are read
without a crash, a torn last line is skipped and a writer refuses an ill-typed event."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from aar.contracts.events import (
    KINDS,
    Evaluation,
    FileWrite,
    Finding,
    SandboxRun,
    Stop,
    ToolCall,
    UnknownEvent,
    UnknownEventWarning,
    event_line,
    new_event,
    parse_event,
    read_events,
)
from aar.research.layout import RunPaths

FIXTURE = Path(__file__).parent / "fixtures" / "events_real.jsonl"
T = "2026-12-03T06:00:00+00:00"

# One event of each kind with every field its writers give (the payload after t/agent/kind)
SAMPLES: dict[str, dict[str, Any]] = {
    "start": {"direction": "Smoothing", "backend": "anthropic", "resumed": False,
              "families": ["knn"]},
    "stop": {"reason": "done", "final_note": "note", "usd": 0.5, "tokens": 1200,
             "usd_per_hour": 1.5, "stats": {"calls": 3}},
    "budget_stop": {"reason": "usd"},
    "tool_call": {"tool": "read_file", "args": {"path": "README.md"}, "ok": False,
                  "result": "no such file"},
    "usage": {"input_tokens": 100, "output_tokens": 20, "usd": 0.001, "seconds": 1.5},
    "llm_stats": {"checks": {"ok": 3}, "by_tool": {"submit": 1}, "calls": 3, "malformed": 0,
                  "malformed_rate": 0.0, "text_calls": 0, "no_tool_call": 1, "nudges": 0,
                  "compactions": 0, "llm_seconds": 4.2, "output_tokens_per_s": None},
    "file_write": {"path": "ideas/m.py", "bytes": 42},
    "sandbox_run": {"file": "ideas/m.py", "seeds": [0, 1], "params": {"k": 5}, "ok": True,
                    "diagnostics": {"agreement_with_weak": 0.8}, "error": None,
                    "seconds": 2.5, "executor": "local", "nodes": None, "mode": "bwrap"},
    "evaluation": {"submission_ids": [1, 2, 3, 4, 5], "method": "m", "file": "ideas/m.py",
                   "seeds": [0, 1, 2, 3, 4], "params": {}, "public_pgr": 0.31,
                   "released": True, "ladder_best_pgr": 0.31, "diagnostics": {},
                   "transductive": False},
    "finding": {"finding_id": 7, "title": "kNN smoothing", "type": "result",
                "builds_on": [3], "public_pgr": None, "file": "ideas/m.py"},
    "forum_read": {"results_seen": 2, "new_findings": 1},
}


def test_the_samples_cover_every_kind() -> None:
    assert set(SAMPLES) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_kind_round_trips(kind: str) -> None:
    ev = new_event(kind, t=T, agent="ana", **SAMPLES[kind])
    assert isinstance(ev, KINDS[kind]) and ev.kind == kind and ev.agent == "ana"
    line = event_line(ev)
    assert json.loads(line) == {"t": T, "agent": "ana", "kind": kind, **SAMPLES[kind]}
    back = parse_event(line)
    assert back == ev and type(back) is type(ev)
    assert back.payload() == SAMPLES[kind]


def test_real_lines_of_every_kind_parse_unchanged() -> None:
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownEventWarning)
        events = [parse_event(line) for line in lines]
    assert {e.kind for e in events} == set(KINDS)
    for line, ev in zip(lines, events, strict=True):
        assert type(ev) is KINDS[ev.kind]
        assert event_line(ev) == line  # same keys, order and bytes as written
    ev = next(e for e in events if isinstance(e, Evaluation))
    assert ev.submission_ids == [221, 222, 223, 224, 225] and ev.seeds == [0, 1, 2, 3, 4]
    assert read_events(FIXTURE) == events


def test_an_event_keeps_the_fields_as_written() -> None:
    ev = new_event("stop", t=T, agent="ana", reason="done", final_note="")
    assert isinstance(ev, Stop) and ev.final_note == "" and ev.usd is None
    assert ev.as_dict() == {"t": T, "agent": "ana", "kind": "stop", "reason": "done",
                            "final_note": ""}  # usd was not written
    with pytest.raises(TypeError):
        ev["kind"]  # type: ignore[index]  # events are read by attribute


def test_an_unknown_kind_parses_to_the_generic_model_and_says_so() -> None:
    obj = {"t": T, "agent": "ana", "kind": "gpu_run", "device": "h200", "seconds": 3}
    with pytest.warns(UnknownEventWarning, match="gpu_run"):
        ev = parse_event(obj)
    assert isinstance(ev, UnknownEvent) and ev.kind == "gpu_run"
    assert ev.payload() == {"device": "h200", "seconds": 3} and event_line(ev) == json.dumps(obj)


def test_a_known_kind_that_does_not_fit_its_model_is_kept_generic() -> None:
    with pytest.warns(UnknownEventWarning, match="evaluation"):
        ev = parse_event({"t": T, "agent": "ana", "kind": "evaluation",
                          "submission_ids": "1,2"})
    assert isinstance(ev, UnknownEvent) and ev.payload() == {"submission_ids": "1,2"}


def test_fields_a_newer_version_adds_are_kept() -> None:
    obj = {"t": T, "agent": "ana", "kind": "file_write", "path": "a.py", "sha256": "ab"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownEventWarning)
        ev = parse_event(obj)
    assert isinstance(ev, FileWrite) and ev.path == "a.py" and ev.as_dict() == obj


def test_what_is_not_an_event_is_refused() -> None:
    for bad in ("[1, 2]", '"text"', '{"kind": "stop"}', '{"t": "x", "agent": "a"'):
        with pytest.raises(ValueError):
            parse_event(bad)


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = [event_line(new_event("start", t=T, agent="ana", direction="d")),
            event_line(new_event("budget_stop", t=T, agent="ana", reason="usd"))]
    torn = '{"t": "2026-12-03T06:00:01+00:00", "agent": "ana", "kind": "st'
    path.write_text("\n".join([*good, torn]), encoding="utf-8")
    events = read_events(path)
    assert [e.kind for e in events] == ["start", "budget_stop"]
    assert read_events(tmp_path / "none.jsonl") == []


@pytest.mark.parametrize(("kind", "data", "why"), [
    ("evaluation", {"submission_ids": ["1"]}, "ill-typed"),
    ("sandbox_run", {"file": "m.py", "ok": "yes"}, "ill-typed"),
    ("stop", {"reason": "done"}, "final_note"),  # a required field missing
    ("finding", {**SAMPLES["finding"], "kind_of": "x"}, "no field 'kind_of'"),
    ("tool", {"tool": "x"}, "no event kind"),
])
def test_a_writer_refuses_an_ill_typed_event(tmp_path: Path, kind: str, data: dict[str, Any],
                                             why: str) -> None:
    paths = RunPaths(tmp_path / "run")
    with pytest.raises(ValueError, match=why):
        paths.append_event("ana", kind, **data)
    assert not paths.events("ana").exists()  # nothing written


def test_the_writer_keeps_the_keys_and_bytes_it_was_given(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path / "run")
    data: dict[str, Any] = {"tool": "submit", "args": {"path": "m.py", "seeds": [0, 1]},
                            "ok": True, "result": "done"}
    ev = paths.append_event("ana", "tool_call", **data)
    assert isinstance(ev, ToolCall) and ev.args == {"path": "m.py", "seeds": [0, 1]}
    line = paths.events("ana").read_text(encoding="utf-8")
    assert line == json.dumps({"t": ev.t, "agent": "ana", "kind": "tool_call", **data}) + "\n"
    paths.append_event("ana", "usage", input_tokens=5, output_tokens=1, usd=0, seconds=1)
    assert paths.events("ana").read_text().splitlines()[1].endswith('"usd": 0, "seconds": 1}')
    assert [type(e) for e in paths.read_events("ana")] == [ToolCall, KINDS["usage"]]


def test_the_orchestrator_hands_its_observers_models(tmp_path: Path) -> None:
    from aar.research.orchestrator import Orchestrator, final_note

    paths = RunPaths(tmp_path / "run")
    paths.append_event("ana", "start", direction="d")
    paths.append_event("ana", "finding", **SAMPLES["finding"])
    info: Any = {"dataset": "syn", "weak": "w", "strong": "s", "backend": "builtin",
                 "agents": [{"name": "ana", "direction": "d", "title": "D", "families": [],
                             "text": ""}]}
    seen: list[Any] = []
    orch = Orchestrator(paths, info, {"agents": {}}, server_url="http://127.0.0.1:9",
                        observers=[lambda _p, ev: seen.append(ev)], live_view=False)
    orch._pump_events(orch.procs["ana"])
    assert [type(e) for e in seen] == [KINDS["start"], Finding]
    orch._ensure_stop_event("ana", "killed")  # no stop after the start: one is written
    stop = paths.read_events("ana")[-1]
    assert isinstance(stop, Stop) and stop.reason == "killed"
    assert f"- ana: {stop.final_note}" in final_note(paths, info)
    with open(paths.events("ana"), "a", encoding="utf-8") as fh:
        fh.write('{"t": "x", "agent": "ana", "kind": "sto')  # a crash mid-write
    orch._pump_events(orch.procs["ana"])  # the torn line is not consumed
    assert [type(e) for e in seen] == [KINDS["start"], Finding, Stop]


def test_a_run_python_sandbox_run_parses() -> None:
    ev = parse_event({"t": T, "agent": "a", "kind": "sandbox_run", "file": "<code>",
                      "seeds": [], "ok": True, "diagnostics": None, "seconds": 0.1,
                      "mode": "subprocess"})
    assert isinstance(ev, SandboxRun) and ev.seeds == [] and ev.mode == "subprocess"
