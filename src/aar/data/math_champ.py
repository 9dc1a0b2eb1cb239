"""``math``: is a language model's solution to a competition math problem correct?

Source: the CHAMP dataset (Mao et al., 2024, "CHAMP: A Competition-level Dataset for
Fine-Grained Analyses of LLMs' Mathematical Reasoning Capabilities"), shipped in the
``champ-dataset`` wheel as ``champ_dataset/dataset_files/v0.json``. It holds 270 problems,
each with a reference answer, and 72 conversations per problem: four models (GPT-3.5,
GPT-4, GPT-4 Turbo, PaLM 2 Medium) times 18 prompting styles. Every conversation ends with
the model's worked solution, the request "Now, summarize the answer above in one sentence",
and the model's one-sentence final answer.

We keep the problems whose reference answer is an integer (79 of 270, 5,610 finished
solutions); only there can correctness be checked mechanically. Different prompts often
got the very same reply, so 4,063 distinct texts remain, 36% of them correct. One example
is one solution: the text is the problem, the model's solution (its middle cut when the
text would pass ``MAX_CHARS``) and its final sentence; the label says whether the final
answer equals the reference. All solutions of one problem share a group, so a problem
never straddles two splits.

How the final answer is read (``final_integer``), on the one-sentence summary:

1. Normalise: drop LaTeX math delimiters and ``\\text{}``/``\\mathbf{}`` wrappers, mark
   ``\\boxed{X}``, turn ``−`` into ``-`` and drop thousands separators (``21,978``).
2. If a boxed value exists, the last one is the answer.
3. Else walk the verbs (``is``, ``are``, ``was``, ``be``, ``equals``, ``gives``, ``:``)
   from left to right. After each, skip filler (``equal to``, ``exactly``, ``a total
   of``…), cut the clause at ``, which``/``, achieved``/`` when ``/`` for ``/``.``…, and
   take the last ``=``-piece of it (``is 6!/(3!)^2 = 120`` gives 120). The first verb
   whose clause starts with a number or a formula decides: a lone integer is the answer
   (a following word is fine: "There are 56 possible results"); a formula (``2√6``,
   ``-1/2``, ``x^5``, ``2 + 4s``) or a list (``5625 and 9376``) is not an integer answer,
   hence wrong. A clause of ordinary words ("is divided by", "are the same") is skipped.
   Number words (``zero`` … ``twenty``) and ``no``/``none`` (as 0) count as integers.
4. Else the same reading after the last ``=`` of the sentence (``a_1964 = (-1)^1963 = -1``).
5. Else the last integer of the sentence that does not occur in the problem statement;
   failing that, no answer (labelled incorrect).

Checked by hand on random samples of both labels; the known misreadings are rare and
mostly give "incorrect" to a hedged answer ("at least 50 questions" for 50).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aar.data.jsonl import dedupe
from aar.data.packages import ensure_package
from aar.data.registry import Built, Example, SplitSizes, dataset, opaque_id
from aar.errors import AarError

NAME = "math"
PACKAGE = "champ-dataset"
DATA_FILE = Path("champ_dataset") / "dataset_files" / "v0.json"
MAX_CHARS = 2000
HEAD_CHARS = 300  # of a long solution, keep this much of the start and the rest from the end
ELLIPSIS = " […] "

_INT_ANSWER = re.compile(r"-?\d+")
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate([
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen", "twenty",
    ])
} | {"no": 0, "none": 0}
_VERB = re.compile(
    r"\b(?:is|are|was|were|be|equals|equal to|gives|yields|amounts to|comes to)\b|:"
)
_FILLER = re.compile(
    r"^(?:(?:equal to|equals|exactly|precisely|simply|just|therefore|thus|then|also|"
    r"given by|found to be|a total of|only|indeed|still|the answer)\s+)+",
    re.IGNORECASE,
)
# Where the clause that states the answer ends: "is 0, achieved when x = y", "is 2 for all x".
_CLAUSE_END = re.compile(
    r",\s*(?:which|achieved|attained|obtained|occurring|and|when|where|with|since|because|"
    r"as|so|i\.e\.|e\.g\.|this|that)\b|;|\.(?:\s|$)|\s(?:when|for|which|if|since|because|"
    r"as|at|with|where|provided|given)\s|\s\("
)
# An integer that is a whole answer: optional sign, digits, and then nothing that would
# continue a formula (fraction, power, product, decimal part, root, factorial, variable)
# or list a second answer ("5625 and 9376").
_LEADING_INT = re.compile(
    r"^([+-]?\d+)(?!\d)(?![.,]\d|\s*[/^*×·√!%]|[A-Za-z(_]|\s*[+-]\s*\w|\s*\\\w"
    r"|\s*(?:and|or)\s+[+-]?\d)"
)
_FORMULA = re.compile(r"^(?:[+-]?\s*[\d(√∞\\]|[A-Za-z](?:$|\s*$|[_^({]|\s*[+*/^-]))")
_WORD = re.compile(r"^([A-Za-z]+)\b")


def _normalise(sentence: str) -> str:
    s = sentence.replace("−", "-").replace("–", "-").replace("\u2009", " ")
    s = re.sub(r"\\boxed\{([^{}]*)\}", r"⟦\1⟧", s)
    s = re.sub(r"\\(?:text|mathrm|mathbf|textbf)\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\[()\[\]]|\$+", "", s)
    s = re.sub(r"\*\*", "", s)  # markdown bold
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)  # thousands separators
    s = re.sub(r"\\[,;! ]", " ", s)
    return re.sub(r"\s+", " ", s).strip()


def _read_value(span: str) -> tuple[bool, int | None]:
    """(decided, answer) for the text that follows an answer marker.

    decided is False when the span starts with ordinary words ("is divided by", "are the
    same"): that marker does not state the answer. A decided None is a non-integer answer.
    """
    span = _FILLER.sub("", span.strip())
    cut = _CLAUSE_END.search(span)
    clause = (span[: cut.start()] if cut else span).strip()
    if not clause:
        return False, None
    clause = clause.split("=")[-1].strip() if "=" in clause else clause  # "6!/3! = 120"
    clause = clause.strip("⟦⟧ ").rstrip(".")
    m = _LEADING_INT.match(clause)
    if m:
        return True, int(m.group(1))
    w = _WORD.match(clause)
    if w and w.group(1).lower() in _NUMBER_WORDS:
        return True, _NUMBER_WORDS[w.group(1).lower()]
    if _FORMULA.match(clause):
        return True, None
    return False, None


def final_integer(summary: str, problem: str = "") -> int | None:
    """The integer a one-sentence final answer states, or None (see the module docstring)."""
    s = _normalise(summary)
    boxed = re.findall(r"⟦([^⟧]*)⟧", s)
    if boxed:
        return _read_value(boxed[-1])[1]
    for m in _VERB.finditer(s):
        decided, value = _read_value(s[m.end():])
        if decided:
            return value
    eq = s.rfind("=")
    if eq >= 0:
        decided, value = _read_value(s[eq + 1:])
        if decided:
            return value
    in_problem = set(_INT_ANSWER.findall(_normalise(problem)))
    fresh = [x for x in _INT_ANSWER.findall(s) if x not in in_problem]
    return int(fresh[-1]) if fresh else None


def _clip(problem: str, solution: str, final: str) -> str:
    """Problem + solution + final sentence within MAX_CHARS, cutting the solution's middle."""
    head = f"Problem: {problem}\n\nSolution: "
    tail = f"\n\nFinal answer: {final}"
    room = MAX_CHARS - len(head) - len(tail)
    if len(solution) > room:
        keep_end = max(room - HEAD_CHARS - len(ELLIPSIS), 200)
        start = solution[: max(room - keep_end - len(ELLIPSIS), 0)].rstrip()
        solution = start + ELLIPSIS + solution[-keep_end:].lstrip()
    return head + solution + tail


def _solution_and_summary(messages: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(worked solution, one-sentence summary) of a finished conversation, else None."""
    if len(messages) < 3:
        return None
    summary, request, solution = messages[-1], messages[-2], messages[-3]
    if not (str(summary.get("role", "")).startswith("Model.") and request.get("role") == "User"
            and str(solution.get("role", "")).startswith("Model.")):
        return None
    if summary.get("error") or solution.get("error"):
        return None  # the model ran out of context: no complete answer
    s_text, f_text = (solution.get("text") or "").strip(), (summary.get("text") or "").strip()
    return (s_text, f_text) if s_text and f_text else None


def load_examples(path: Path) -> list[Example]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        problems: dict[str, dict[str, Any]] = data["problems"]
    except (OSError, ValueError, KeyError) as e:
        raise AarError(
            f"{path}: cannot read the CHAMP problems ({e}); delete the unpacked "
            "champ-dataset folder and run `aar setup` again"
        ) from None
    rows: list[Example] = []
    for pid in sorted(problems):
        p = problems[pid]
        answer = str(p.get("_answer") or p.get("_raw_answer", "").replace("@@", "")).strip()
        if not _INT_ANSWER.fullmatch(answer):
            continue
        problem = str(p.get("_text") or p.get("_raw_text", "").replace("@@", "")).strip()
        for conv in sorted(p.get("conversations") or {}):
            parts = _solution_and_summary(p["conversations"][conv].get("messages") or [])
            if parts is None:
                continue
            solution, summary = parts
            label = int(final_integer(summary, problem) == int(answer))
            rows.append(Example(opaque_id(NAME, f"{pid}|{conv}"),
                                _clip(problem, solution, summary), label, group=pid))
    # Sorted by id: the order of conversations (model, prompt style) says nothing then.
    return sorted(dedupe(rows), key=lambda ex: ex.id)


@dataset(
    NAME,
    description="CHAMP competition math: is a model's final answer right? "
    "(79 integer-answer problems, ~4.1k solutions by GPT-3.5/4/4T and PaLM 2)",
    packages=(PACKAGE,),
    sizes=SplitSizes(500, 2000, 1500),
    version="1",
)
def build(params: Mapping[str, str]) -> Built:
    return Built(load_examples(ensure_package(PACKAGE) / DATA_FILE))
