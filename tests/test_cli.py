"""The CLI as a user runs it: real subprocesses, real output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SYN = "synthetic:n=1500,seed=5"


def aar(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aar", *args], capture_output=True, text=True,
                          env=os.environ.copy(), cwd=cwd, timeout=300)


def test_run_json_reports_pgr_with_ci() -> None:
    p = aar("run", "vanilla", "--dataset", SYN, "--seeds", "3", "--json")
    assert p.returncode == 0, p.stderr
    rec = json.loads(p.stdout)
    s = rec["summary"]["test_public"]
    assert s["weak"] < s["ceiling"]
    assert s["pgr"]["n"] == 3 and s["pgr"]["ci95"] >= 0
    assert Path(rec["path"]).is_file()
    p = aar("rerun", rec["path"])
    assert p.returncode == 0, p.stderr
    assert "bit-identical" in p.stdout


def test_user_errors_are_one_line_without_traceback() -> None:
    cases = [
        (("run", "nope", "--dataset", SYN), "unknown method"),
        (("run", "vanilla", "--dataset", "sentimnt"), "did you mean 'sentiment'"),
        (("run", "vanilla", "--dataset", SYN, "--weak", "l4"), "unknown encoder"),
        (("run", "vanilla", "--dataset", SYN, "-p", "l2"), "NAME=VALUE"),
        (("run", "vanilla", "--dataset", "jsonl:/no/such/file.jsonl"), "/no/such/file.jsonl"),
        (("rerun", "/no/such/record.json"), "no result record"),
    ]
    for args, expected in cases:
        p = aar(*args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert expected in p.stderr, (args, p.stderr)
        assert "Traceback" not in p.stderr
        assert len(p.stderr.strip().splitlines()) <= 3, p.stderr


def test_scaffold_a_method_and_run_it(tmp_path: Path) -> None:
    p = aar("methods", "new", "my_filter", "--dir", str(tmp_path))
    assert p.returncode == 0, p.stderr
    path = tmp_path / "my_filter.py"
    assert path.is_file()
    p = aar("run", str(path), "--dataset", SYN, "--seeds", "2", "-p", "threshold=0.2", "--json")
    assert p.returncode == 0, p.stderr
    rec = json.loads(p.stdout)
    assert rec["config"]["method"] == "my_filter"
    assert rec["config"]["params"]["threshold"] == 0.2
    assert rec["config"]["library"] is False  # a file: never a reference row on the server
    p = aar("methods", "new", "my_filter", "--dir", str(tmp_path))
    assert p.returncode == 2 and "exists already" in p.stderr


def test_baselines_table_is_the_same_in_parallel(tmp_path: Path) -> None:
    assert aar("methods", "new", "mine", "--dir", str(tmp_path)).returncode == 0
    args = ("baselines", "--dataset", SYN, "--seeds", "2", "-m", "vanilla,confident",
            "-m", str(tmp_path / "mine.py"), "--json")
    serial, parallel = aar(*args, "--workers", "1"), aar(*args, "--workers", "3")
    assert serial.returncode == 0 and parallel.returncode == 0, serial.stderr + parallel.stderr
    a, b = json.loads(serial.stdout), json.loads(parallel.stdout)
    assert [r["method"] for r in a] == [r["method"] for r in b]
    assert {r["method"] for r in a} == {"vanilla", "confident", "mine"}
    assert [r["pgr"] for r in a] == [r["pgr"] for r in b]  # same numbers, bit for bit
    p = aar("baselines", "--dataset", SYN, "-m", "nope")
    assert p.returncode != 0 and "unknown method" in p.stderr
