"""``math-pairs`` and ``code-pairs``: which of two solutions to the same problem is right?

The reference system's chat task is pairwise ("which response is better?"); these two
tasks put math and code in that format with real, mechanically checked labels. Each
example pairs one correct and one incorrect solution of the same problem (CHAMP model
solutions; HumanEval programs and their mutants, labelled by running the tests), in random
order: label 1 when the first is the correct one. At most ``PER_PROBLEM`` pairs are drawn
per problem, cycling through its right and wrong solutions so each is reused as little as
possible — and each distinct solution is encoded once however many pairs hold it. A
problem's pairs share a group, so a problem never straddles two splits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from aar.data import code_humaneval, math_champ
from aar.data.packages import ensure_package
from aar.data.pairs import pair_text
from aar.data.registry import Built, Example, SplitSizes, dataset, opaque_id

PER_PROBLEM = 8
SEED = 0


def make_pairs(examples: list[Example], name: str, split: Callable[[str], tuple[str, str]],
               per_problem: int = PER_PROBLEM, seed: int = SEED) -> list[Example]:
    """Right/wrong pairs within each group of ``examples``; ``split(text)`` gives a
    solution's (problem statement, solution)."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[Example]] = {}
    for ex in examples:
        groups.setdefault(ex.group or ex.id, []).append(ex)
    out: list[Example] = []
    for group in sorted(groups):
        right = [ex for ex in groups[group] if ex.label == 1]
        wrong = [ex for ex in groups[group] if ex.label == 0]
        if not right or not wrong:
            continue
        right = [right[i] for i in rng.permutation(len(right))]
        wrong = [wrong[i] for i in rng.permutation(len(wrong))]
        for k in range(min(per_problem, max(len(right), len(wrong)))):
            r, w = right[k % len(right)], wrong[k % len(wrong)]
            prompt, r_text = split(r.text)
            _, w_text = split(w.text)
            first_right = bool(rng.integers(2))
            a, b = (r_text, w_text) if first_right else (w_text, r_text)
            key = f"{r.id}|{w.id}" if first_right else f"{w.id}|{r.id}"
            out.append(Example(opaque_id(name, key), pair_text(prompt, a, b),
                               int(first_right), group=group))
    return sorted(out, key=lambda ex: ex.id)


def _math_split(text: str) -> tuple[str, str]:
    problem, sep, rest = text.partition("\n\nSolution: ")
    return (problem, rest) if sep else ("", text)


def _code_split(text: str) -> tuple[str, str]:
    return "", text  # the docstring inside each program states the problem


@dataset(
    "math-pairs",
    description="CHAMP math as pairs: which of two model solutions has the right final "
    "answer? (600 pairs of 1,120 solutions, 75 problems)",
    packages=(math_champ.PACKAGE,),
    sizes=SplitSizes(100, 300, 200),
    version="1",
    # last-token states of block 14: the best the layer bench found for math pairs
    encoders=("l3", "lm:qwen0.5b/14/last"),
)
def build_math(params: Mapping[str, str]) -> Built:
    solutions = math_champ.load_examples(ensure_package(math_champ.PACKAGE) / math_champ.DATA_FILE)
    return Built(make_pairs(solutions, "math-pairs", _math_split))


@dataset(
    "code-pairs",
    description="HumanEval as pairs: which of two programs passes the tests? "
    "(1,153 pairs of 1,946 programs: reference or passing mutants vs failing ones)",
    packages=(code_humaneval.PACKAGE,),
    sizes=SplitSizes(150, 600, 400),
    version="1",
    encoders=("l3", "qwen0.5b"),
)
def build_code(params: Mapping[str, str]) -> Built:
    programs = code_humaneval.load_examples(ensure_package(code_humaneval.PACKAGE))
    return Built(make_pairs(programs, "code-pairs", _code_split))
