"""The label-recovery attack that broke the reference server: flip one prediction at a
time around a base submission and read each label off the change in the score.

Against exact scores it recovers every public label it probes; against this server, within
its budget, it does no better than coin flips (a one-sided binomial test at p = 0.0005),
and the probing detector flags it.
"""

# Fixtures come from test_server_support (imported below); tests take them as arguments.

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from test_server_support import Env

API = "/api/v1"
BUDGET = 200


def attack(base: np.ndarray, budget: int, score: Callable[[np.ndarray], float],
           anchor: str = "base", seed: int = 0) -> dict[int, int]:
    """Label guesses for the first ``budget - 1`` test positions: flip one prediction of the
    base and compare the score with the base's (``anchor="base"``) or with the previous
    answer (``"previous"``, the better choice against a server that answers with a best
    so far); no change means a coin flip."""
    rng = np.random.default_rng(seed)
    last = score(base)
    guesses = {}
    for i in range(budget - 1):
        probe = base.copy()
        probe[i] = 1 - probe[i]
        r = score(probe)
        flipped_hard = int(probe[i] >= 0.5)
        if r > last:
            guesses[i] = flipped_hard  # the flip made it right
        elif r < last:
            guesses[i] = 1 - flipped_hard  # the flip made it wrong
        else:
            guesses[i] = int(rng.integers(0, 2))
        if anchor == "previous":
            last = r
    return guesses


def chance_bound(m: int, z: float = 3.29) -> float:
    """One-sided upper bound on correct coin-flip guesses out of ``m`` (p ~ 0.0005)."""
    return m / 2 + z * math.sqrt(m / 4)


def test_one_flip_attack_recovers_no_more_than_chance(env: Env) -> None:
    t = env.t
    ids = t.ids
    truth = np.array([t.labels[i] for i in ids])
    base = np.asarray(t.preds[0], dtype=np.float64)
    # Keep the probed predictions away from 0.5 so that a flip always flips the hard label.
    base = np.where(np.abs(base - 0.5) < 0.05, np.where(base >= 0.5, 0.6, 0.4), base)

    # 1. The attack works against an exact scorer (the reference system's behaviour).
    public = np.zeros(len(ids), bool)
    public[t.public_idx] = True

    def exact(p: np.ndarray) -> float:
        return float(np.mean((p[public] >= 0.5) == truth[public]))

    g = attack(base, BUDGET, exact)
    exact_correct = sum(g[i] == truth[i] for i in g)
    assert exact_correct > chance_bound(len(g))  # the test has the power to see a leak

    # 2. Against the server, within the budget, with either way of reading the answers.
    for anchor in ("base", "previous"):
        name = f"mallory-{anchor}"
        who = env.agent(name, budget_per_hour=BUDGET, budget_total=BUDGET)
        answers = []

        def served(p: np.ndarray, who: dict[str, str] = who,
                   answers: list[dict] = answers) -> float:
            r = env.evaluate(who, p)
            assert r.status_code == 201, r.text
            answers.append(r.json()["public"])
            return r.json()["public"]["accuracy"]

        g = attack(base, BUDGET, served, anchor)
        correct = sum(g[i] == truth[i] for i in g)
        print(f"exact scorer: {exact_correct}/{len(g)} correct; server ({anchor}): "
              f"{correct}/{len(g)}; chance bound {chance_bound(len(g)):.1f}")
        assert correct <= chance_bound(len(g)), (anchor, correct, len(g))
        assert sum(a["released"] for a in answers[1:]) <= 20  # the Ladder's release cap
        # The budget is spent: one more probe is refused.
        assert env.evaluate(who, base).status_code == 429
        # And the attacker is flagged for probing.
        flags = env.client.get(f"{API}/admin/flags", params={"agent": name, "limit": 200},
                               headers=env.admin).json()
        assert flags["total"] >= BUDGET - 2
        assert {f["kind"] for f in flags["items"]} == {"near_duplicate"}
