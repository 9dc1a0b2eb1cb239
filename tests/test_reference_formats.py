"""The reference sandbox's jsonl files import unchanged; the chat-preference hub sets convert
to balanced, grouped, label-free-id preference pairs (offline, on hand-written fixtures)."""

from __future__ import annotations

import gzip
import json
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from aar.data import jsonl
from aar.data.preference_hub import HUB_SETS, Pair, pairs_to_examples
from aar.data.registry import DATASETS, Example, SplitSizes, opaque_id, parse_dataset
from aar.data.splits import make_splits
from aar.errors import AarError

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = FIXTURES / "reference"
HUB = FIXTURES / "hub"
ID_SHAPE = re.compile(r"^[a-z0-9]{1,4}-[0-9a-f]{12}$")
GROUP_SHAPE = re.compile(r"^[a-z0-9]{1,4}-p[0-9a-f]{12}$")


def _write(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def _split(text: str) -> tuple[str, str, str]:
    prompt, rest = text.split("\nResponse A: ", 1)
    first, second = rest.split("\nResponse B: ", 1)
    return prompt, first, second


def _winner(ex: Example) -> str:
    _, first, second = _split(ex.text)
    return first if ex.label == 1 else second


# ------------------------------------------------------------------ reference jsonl files


def test_reference_chat_file_imports_unchanged() -> None:
    spec, params = parse_dataset(f"jsonl:{REFERENCE / 'chat.jsonl'}")
    examples = spec.build(params).examples
    assert [ex.label for ex in examples] == [1, 0, 1, 0]  # "A", "B", "A", "B"
    assert examples[1].text == ("Suggest a name for a grey cat.\nResponse A: Dog.\n"
                                "Response B: Ash, Smokey or Pebble.")
    # No ids in the reference's files: records are named by their line.
    assert [ex.id for ex in examples] == [opaque_id("jsonl", f"line:{n}") for n in range(1, 5)]


def test_reference_math_and_code_files_import_unchanged() -> None:
    math = jsonl.read_jsonl(REFERENCE / "math.jsonl")
    assert [(ex.text.splitlines()[-1], ex.label) for ex in math] == [
        ("7 * 8 = 56. The answer is 56.", 1), ("7 * 8 = 54. The answer is 54.", 0),
        ("Subtract 3 from both sides: x = 7.", 1), ("Add 3 to both sides: x = 13.", 0)]
    # consistency_id keeps the candidate answers to one question in one split
    assert math[0].group == math[1].group == "0" and math[2].group == math[3].group == "1"
    code = jsonl.read_jsonl(REFERENCE / "code.jsonl")
    assert [ex.label for ex in code] == [1, 0, 0]
    assert code[0].text.startswith("Write a function add(a, b)") and code[0].text.endswith(
        "return a + b")
    assert code[0].group is None


def test_reference_labeled_data_folder_imports_unchanged(tmp_path: Path) -> None:
    folder = tmp_path / "labeled_data" / "chat"
    folder.mkdir(parents=True)
    lines = (REFERENCE / "chat.jsonl").read_text().splitlines()
    (folder / "train_label.jsonl").write_text("\n".join(lines[:2]) + "\n")
    (folder / "test.jsonl").write_text("\n".join(lines[2:]) + "\n")
    (folder / "notes.txt").write_text("not data")
    examples = DATASETS.get("jsonl").build({"arg": str(folder)}).examples
    # name order: test.jsonl, then train_label.jsonl; ids name file and line
    assert [ex.label for ex in examples] == [1, 0, 1, 0]
    assert examples[0].id == opaque_id("jsonl", "test.jsonl:1")
    assert examples[2].id == opaque_id("jsonl", "train_label.jsonl:1")
    with pytest.raises(AarError, match=r"no \.jsonl files"):
        jsonl.read_jsonl(tmp_path)


def test_preference_labels_in_every_reference_spelling(tmp_path: Path) -> None:
    base = {"prompt": "p", "first": "x", "second": "y"}
    spellings = ["A", "b", "first", "Second", 0, 1, "0", "1"]
    path = _write(tmp_path / "p.jsonl",
                  [{**base, "first": f"x{i}", "label": v} for i, v in enumerate(spellings)])
    # 1 = the first response is preferred; the reference's integers index the preferred one
    assert [ex.label for ex in jsonl.read_jsonl(path)] == [1, 0, 1, 0, 1, 0, 1, 0]


@pytest.mark.parametrize(("lines", "line", "message"), [
    ([{"prompt": "p", "first": "a", "second": "b"}], 1, "no label"),
    ([{"prompt": "p", "first": "a", "second": "b", "label": "A"},
      {"prompt": "q", "first": "a", "second": "b", "label": -1}], 2, "labeled_data/"),
    ([{"question": "q", "choice": "c", "label": True},
      {"question": "q", "choice": "d", "label": None}], 2, "no label"),
    ([{"question": "q", "choice": "c", "label": True},
      {"id": "x", "question": "q", "choice": "d", "label": False}], 2, "'id' on some records"),
    ([{"question": "q", "choice": "c", "label": True, "consistency_id": [1]}], 1,
     "'consistency_id' must be"),
    ([{"prompt": "p", "first": "a", "second": "b", "label": 2}], 1, 'must be "A" or "B"'),
    ([{"prompt": "p", "first": "a", "second": ["b"], "label": "A"}], 1, "must be a string"),
])
def test_malformed_reference_records_name_file_and_line(
    tmp_path: Path, lines: list[object], line: int, message: str
) -> None:
    path = _write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(AarError) as err:
        jsonl.read_jsonl(path)
    assert str(err.value).startswith(f"{path}:{line}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_hf_reference_columns_drop_unlabelled_rows_and_keep_groups() -> None:
    from aar.data import hf

    cols: dict[str, list[Any]] = {
        "question": ["q", "q", "r"], "choice": ["a", "b", "c"], "label": [True, -1, False],
        "consistency_id": [3, 3, 4]}
    examples = hf.examples_from_columns(cols, "x#test")
    assert [(ex.text, ex.label, ex.group) for ex in examples] == [
        ("q\na", 1, "3"), ("r\nc", 0, "4")]


# ------------------------------------------------------------------------ hub converters


def _local(name: str) -> list[Example]:
    spec, params = parse_dataset(f"{name}:{HUB / name}")
    return spec.build(params).examples


def _assert_balanced_grouped_opaque(name: str, examples: list[Example]) -> None:
    n, positives = len(examples), sum(ex.label for ex in examples)
    assert abs(2 * positives - n) <= 1, (positives, n)
    by_prompt: dict[str, set[str | None]] = {}
    for ex in examples:
        by_prompt.setdefault(_split(ex.text)[0], set()).add(ex.group)
    assert all(len(groups) == 1 for groups in by_prompt.values())
    assert len({g for gs in by_prompt.values() for g in gs}) == len(by_prompt)
    assert len({ex.id for ex in examples}) == n
    for ex in examples:
        assert ID_SHAPE.match(ex.id) and ex.group and GROUP_SHAPE.match(ex.group)


def test_helpsteer2_pairs_by_helpfulness_drop_ties_and_ignore_other_files() -> None:
    examples = _local("helpsteer2")
    winners: dict[str, set[str]] = {_split(ex.text)[0]: set() for ex in examples}
    for ex in examples:
        winners[_split(ex.text)[0]].add(_winner(ex))
    assert winners == {
        "How do I boil an egg?": {
            "Put it in boiling water for about nine minutes, then cool it in cold water."},
        "Summarise: The cat sat on the mat.": {"A cat sat on a mat."},
        "What is the capital of Japan?": {"Tokyo."},
        "Translate 'hello' to French.": {"Bonjour."},
        # three answers: Joyful > Okay, Cheerful > Okay, Joyful = Cheerful (a tie: dropped)
        "Give me a synonym for happy.": {"Joyful.", "Cheerful."},
    }
    assert len(examples) == 6  # "Name a prime number." is a tie; preference.jsonl ignored
    _assert_balanced_grouped_opaque("helpsteer2", examples)


def test_helpsteer3_sign_of_overall_preference() -> None:
    examples = _local("helpsteer3")
    by_prompt = {_split(ex.text)[0]: _winner(ex) for ex in examples}
    assert by_prompt == {
        "What is 2+2?": "4.",
        "User: Hi\nAssistant: Hello! How can I help?\nUser: Tell me a joke.":
            "Why did the scarecrow win an award? He was outstanding in his field.",
        "Write a haiku about rain.":
            "Soft rain on the roof / the garden drinks in silence / puddles hold the sky",
        "Is the earth flat?": "No, it is roughly a sphere.",
    }  # "Pick a colour." has overall_preference 0: dropped
    _assert_balanced_grouped_opaque("helpsteer3", examples)


def test_rewardbench2_pairs_each_rejected_with_a_chosen() -> None:
    examples = _local("rewardbench2")
    pairs = {(_split(ex.text)[0][:12], _winner(ex), _loser(ex)) for ex in examples}
    assert pairs == {
        ("What is the ", "100 degrees Celsius.", "90 degrees."),
        ("What is the ", "100 degrees Celsius.", "212 degrees Celsius."),
        ("What is the ", "100 degrees Celsius.", "50 degrees."),
        ("Name a prima", "Red.", "Green."),
        ("Name a prima", "Blue.", "Purple."),
        ("What is the ", "Paris.", "Lyon."),  # chosen == rejected "Paris.": a tie, dropped
    }
    assert len(examples) == 6
    _assert_balanced_grouped_opaque("rewardbench2", examples)


def _loser(ex: Example) -> str:
    _, first, second = _split(ex.text)
    return second if ex.label == 1 else first


def test_rmbench_pairs_same_style_responses() -> None:
    examples = _local("rmbench")
    assert len(examples) == 6
    assert {(_winner(ex), _loser(ex)) for ex in examples} >= {
        ("366.", "365."), ("A leap year has **366** days.", "A leap year has **365** days."),
        ("8", "6")}
    _assert_balanced_grouped_opaque("rmbench", examples)


def test_hub_sets_are_registered_with_optional_local_argument() -> None:
    for name in ("helpsteer2", "helpsteer3", "rewardbench2", "rmbench"):
        spec = DATASETS.get(name)
        assert spec.optional_arg and not spec.takes_arg and "hub" in spec.description


def test_pairs_balanced_and_groups_never_straddle_splits() -> None:
    pairs = [Pair(f"prompt {i // 5}", f"good {i}", f"bad {i}", f"k{i}") for i in range(400)]
    pairs.append(Pair("tie", "same", "same", "t"))
    examples = pairs_to_examples(pairs, "helpsteer2")
    assert len(examples) == 400 and sum(ex.label for ex in examples) == 200
    assert pairs_to_examples(pairs, "helpsteer2") == examples  # the fixed seed
    splits = make_splits(examples, SplitSizes(80, 200, 120), seed=3)
    where = {i: s for s, ids in splits.ids.items() for i in ids}
    groups: dict[str | None, set[str]] = {}
    for ex in examples:
        groups.setdefault(ex.group, set()).add(where[ex.id])
    assert len(groups) == 80 and all(len(s) == 1 for s in groups.values())
    # ids are the same whichever response is shown first: they cannot encode the label
    flipped = pairs_to_examples(pairs, "helpsteer2", seed=4)
    assert {ex.id for ex in flipped} == {ex.id for ex in examples}
    assert [ex.label for ex in flipped] != [ex.label for ex in examples]


def test_gzipped_files_and_single_files_read_offline(tmp_path: Path) -> None:
    raw = (HUB / "helpsteer2" / "train.jsonl").read_bytes()
    (tmp_path / "train.jsonl.gz").write_bytes(gzip.compress(raw))
    from_gz = HUB_SETS["helpsteer2"].examples(str(tmp_path / "train.jsonl.gz"))
    from_plain = HUB_SETS["helpsteer2"].examples(str(HUB / "helpsteer2" / "train.jsonl"))
    assert len(from_gz) == 3 and from_gz == from_plain


GOOD_ROWS: dict[str, dict[str, Any]] = {
    "helpsteer2": {"prompt": "p", "response": "r", "helpfulness": 3},
    "helpsteer3": {"context": [{"role": "user", "content": "p"}], "response1": "a",
                   "response2": "b", "overall_preference": -1},
    "rewardbench2": {"prompt": "p", "chosen": ["a"], "rejected": ["b"]},
    "rmbench": {"prompt": "p", "chosen": ["a"], "rejected": ["b"]},
}


@pytest.mark.parametrize(("name", "row", "message"), [
    ("helpsteer2", {"prompt": "p", "response": "r", "helpfulness": "high"},
     "'helpfulness' must be a number"),
    ("helpsteer2", {"prompt": "p", "helpfulness": 3}, "'response' must be a non-empty string"),
    ("helpsteer3", {"context": 5, "response1": "a", "response2": "b", "overall_preference": 1},
     "'context' must be a list"),
    ("helpsteer3", {"context": [{"role": "user"}], "response1": "a", "response2": "b",
                    "overall_preference": 1}, "context[0] must be"),
    ("rewardbench2", {"prompt": "p", "chosen": "a", "rejected": ["b"]},
     "'chosen' must be a non-empty list"),
    ("rmbench", {"prompt": "p", "chosen": ["a", "b"], "rejected": ["c"]}, "must be as long"),
    ("rmbench", "[1, 2]", "expected a JSON object"),
    ("rmbench", "{oops", "not valid JSON"),
])
def test_malformed_hub_rows_name_file_and_line(
    tmp_path: Path, name: str, row: object, message: str
) -> None:
    path = _write(tmp_path / "data.jsonl", [GOOD_ROWS[name], "", row])
    with pytest.raises(AarError) as err:
        HUB_SETS[name].examples(str(path))
    assert str(err.value).startswith(f"{path}:3: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_local_copy_and_no_pairs(tmp_path: Path) -> None:
    with pytest.raises(AarError, match="no such file or folder"):
        HUB_SETS["rmbench"].examples(str(tmp_path / "nope"))
    tie = _write(tmp_path / "t.jsonl", [{"context": "hi", "response1": "a", "response2": "b",
                                         "overall_preference": 0}])
    with pytest.raises(AarError, match="no preference pairs"):
        HUB_SETS["helpsteer3"].examples(str(tie))


# ------------------------------------------------------------------ the hub, without network


@pytest.mark.parametrize("name", sorted(HUB_SETS))
def test_hub_without_datasets_library_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` -> ImportError
    spec, params = parse_dataset(name)
    with pytest.raises(AarError) as err:
        spec.build(params)
    assert "pip install datasets" in str(err.value) and f"{name}:PATH" in str(err.value)
    assert "\n" not in str(err.value)


def _fake_datasets(load: Any) -> types.ModuleType:
    module = types.ModuleType("datasets")
    module.load_dataset = load  # type: ignore[attr-defined]
    return module


def test_unreachable_hub_gives_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> object:
        raise ConnectionError("Couldn't reach the hub\nlong traceback text")

    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets(offline))
    with pytest.raises(AarError) as err:
        HUB_SETS["helpsteer3"].examples("")
    message = str(err.value)
    assert "could not load nvidia/HelpSteer3" in message and "Couldn't reach" in message
    assert "helpsteer3:PATH" in message and "\n" not in message


def test_hub_rows_from_the_library_convert(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []
    rows = [json.loads(line) for line in
            (HUB / "rewardbench2" / "test.jsonl").read_text().splitlines()]

    def load(*args: object, **kwargs: object) -> dict[str, list[dict[str, Any]]]:
        calls.append(args)
        return {"test": rows}

    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets(load))
    examples = HUB_SETS["rewardbench2"].examples("")
    assert calls == [("allenai/reward-bench-2", None)]
    assert {ex.text for ex in examples} == {ex.text for ex in _local("rewardbench2")}
    bad = [{**rows[0], "chosen": None}]
    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets(lambda *a: {"test": bad}))
    with pytest.raises(AarError, match=r"^allenai/reward-bench-2#test, row 0: 'chosen'"):
        HUB_SETS["rewardbench2"].examples("")


def test_local_folder_without_json_files_needs_the_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "test-00000.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(AarError, match="pip install datasets"):
        HUB_SETS["rewardbench2"].examples(str(tmp_path))
