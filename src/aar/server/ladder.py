r"""Rationed public feedback: a noisy Ladder (Blum & Hardt, 2015), as pure functions.

What an agent is told about ``test_public``
-------------------------------------------
For each *account* -- a research run's researchers together (or a lone agent), on one
universe of examples (a dataset, its canary and its re-drawn splits) -- the server keeps
a *ladder*: the best accuracy it has released to that account so far, as an integer level
on the grid ``level * eta``. For a new submission with public accuracy ``a`` the server
draws ``z ~ Laplace(0, noise)`` and computes the noisy level ``L = floor((a + z) / eta)``:

- if there is no released value yet, or ``L`` is above the released level (the submission
  beats the best by at least ``eta`` after noise), and fewer than ``max_releases`` values
  have been released, the ladder *releases* ``L * eta`` as the new best accuracy, the AUROC
  of that submission plus independent ``Laplace(0, noise)`` noise rounded to the ``eta``
  grid, and the PGR computed from the released accuracy and the *published* baselines
  (rounded to ``eta``: a fixed affine function of the released accuracy);
- otherwise it answers with the previous release, unchanged.

Exact correct counts are never returned: a released accuracy is a noisy multiple of
``eta``; one flipped prediction moves the accuracy by ``1/n`` (``n = |test_public|``),
far below ``eta``, so probing one prediction at a time returns the same answer query after
query. ``test_private`` scores never reach an agent at all.

Guarantees (each is computed by a function below; the defaults are ``eta = 0.01``,
``noise = eta / 4``, ``max_releases = 20`` and ``run_budget = 300`` submissions)
----------------------------------------------------------------------------------
1. *Information* (compression argument of Blum & Hardt, Thm 3.1). Everything an agent
   learns from public feedback on one dataset is a function of its transcript, the list of
   released values. With ``k`` submissions, ``G = floor(1/eta) + 1`` grid values and at
   most ``R = min(k, max_releases, G)`` releases, of strictly increasing accuracy, the
   number of possible transcripts (for a fixed realisation of the server's noise, which is
   independent of the labels) is at most
   ``T(k) = sum_{r <= R} C(k, r) * C(G, r) * G^r``.
   So an agent learns at most ``log2 T`` bits about the public labels over its whole
   budget, whatever its strategy: it can recover at most that many labels beyond what its
   own models predict. ``transcript_bits`` at the defaults is 305 bits: at most 305 of
   the public labels.
   The reference design (exact counts, unlimited) gives away one label per query.
2. *Leaderboard accuracy* (same argument, Hoeffding plus a union bound over the ``k*T``
   classifiers an adaptive agent can reach, and the Laplace tail): with probability at
   least ``1 - delta``, every released accuracy is within
   ``eta + noise * ln(2k/delta) + sqrt((ln T + ln(4k/delta)) / (2n))``
   of the population accuracy of the submission it belongs to (``leaderboard_error``).
   For n = 2500, k = 300, delta = 0.05 that is 0.24; Blum & Hardt's order is
   ``(log k / n)^(1/3)``: a worst-case bound, loose at these sizes. It is why ranking uses
   the private half only, never the public feedback.
3. *Per query*. The answer to one query is a post-processing of ``a + z`` (and of the
   AUROC plus noise), so changing one public label changes the probability of any answer
   by a factor of at most ``exp(eps_q)`` with ``eps_q = (1/n + d_auc) / noise`` (Laplace
   mechanism; ``d_auc = 1 / (min(n_pos, n_neg) - 1)`` bounds AUROC's sensitivity).
   An attacker who has built a submission sitting exactly on a release boundary therefore
   still needs repeated queries, paid from the budget, to read a single label.
4. *All channels* (``channel_bound``). Labels reach agents through the Ladder's
   releases, and through nothing else that is not a public constant: the leaderboard shows
   agents only released values (their own run's; other runs' values are hidden), PGR is
   computed from the *published* baselines (public-half weak and ceiling accuracy rounded
   to ``eta``), the budget ``k`` and the release cap belong to one *account* -- a research
   run's researchers together, on one universe of examples (a dataset, its canary and its
   re-drawn splits share it) -- and the account's Ladder is one monotone ladder across those
   datasets, so ``T(k)`` above counts its transcripts. Added to it: one bit per result
   finding for whether the scorer flagged it as above the ceiling's interval (held off
   the board; a result needs ``min_seeds`` submissions, so at most ``floor(k /
   min_seeds)`` bits), and the public constants: per dataset of the universe the two
   published baselines (``log2 G`` bits each) and whether its gap is big enough (1 bit), and
   per reference row on the board its rounded accuracy (``log2 G`` bits). Agents of
   several runs who pool what they were told (the forum is shared) learn at most the sum
   over their accounts: ``GET /info`` states both.
5. *Final ranking*. Agents get no information about ``test_private``, so its scores are a
   fresh holdout for the submissions ranked on it: for ``m`` ranked submissions, with
   probability ``1 - delta`` every private accuracy is within ``sqrt(ln(2m/delta)/(2n'))``
   of its population value (``holdout_error``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

_EPS = 1e-9


@dataclass(frozen=True)
class LadderParams:
    eta: float = 0.01
    noise: float = 0.0025
    max_releases: int = 20

    @property
    def grid(self) -> int:
        """Number of grid values in [0, 1]."""
        return math.floor(1 / self.eta + _EPS) + 1


@dataclass(frozen=True)
class LadderState:
    """What one agent has been told about one dataset's public split."""

    level: int | None = None  # released accuracy = level * eta; None before the first
    auroc: float | None = None  # released AUROC of the best submission
    submission: int | None = None  # id of the submission the release belongs to
    releases: int = 0
    queries: int = 0

    def accuracy(self, eta: float) -> float | None:
        return None if self.level is None else round(self.level * eta, 10)


def grid_level(value: float, eta: float, top: int) -> int:
    """Floor of ``value / eta`` clipped to ``[0, top]``."""
    return min(max(math.floor(value / eta + _EPS), 0), top)


def round_to_grid(value: float, eta: float) -> float:
    return round(min(max(round(value / eta) * eta, 0.0), 1.0), 10)


def step(
    state: LadderState, accuracy: float, auroc: float, submission: int,
    params: LadderParams, z_acc: float, z_auc: float,
) -> tuple[LadderState, bool]:
    """One query: returns the new state and whether it released a new value.

    ``z_acc`` and ``z_auc`` are the query's noise draws (``Laplace(0, params.noise)``),
    passed in so that this function stays pure.
    """
    top = params.grid - 1
    level = grid_level(accuracy + z_acc, params.eta, top)
    asked = replace(state, queries=state.queries + 1)
    if state.releases >= params.max_releases:
        return asked, False
    if state.level is not None and level <= state.level:
        return asked, False
    released_auc = None if not math.isfinite(auroc) else round_to_grid(auroc + z_auc, params.eta)
    return replace(asked, level=level, auroc=released_auc, submission=submission,
                   releases=state.releases + 1), True


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def transcript_log(k: int, params: LadderParams) -> float:
    """Natural log of the number of possible transcripts after ``k`` queries."""
    g = params.grid
    terms = [
        _log_comb(k, r) + _log_comb(g, r) + r * math.log(g)
        for r in range(min(k, params.max_releases, g) + 1)
    ]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


def transcript_bits(k: int, params: LadderParams) -> float:
    """Upper bound on the bits about the public labels that ``k`` queries can reveal."""
    return transcript_log(k, params) / math.log(2)


def leaderboard_error(k: int, n: int, params: LadderParams, delta: float = 0.05) -> float:
    """With probability ``1 - delta``, the largest gap between a released accuracy and the
    population accuracy of its submission, over ``k`` adaptive queries on ``n`` labels."""
    k = max(k, 1)
    gen = math.sqrt((transcript_log(k, params) + math.log(4 * k / delta)) / (2 * n))
    return params.eta + params.noise * math.log(2 * k / delta) + gen


def per_query_epsilon(n: int, n_pos: int, params: LadderParams) -> float:
    """Bound on the log-likelihood ratio one answer carries about any single label."""
    d_auc = 1 / max(min(n_pos, n - n_pos) - 1, 1)
    return (1 / n + d_auc) / params.noise


def holdout_error(m: int, n: int, delta: float = 0.05) -> float:
    """Hoeffding plus a union bound over ``m`` non-adaptive scores on ``n`` fresh labels."""
    return math.sqrt(math.log(2 * max(m, 1) / delta) / (2 * n))


def channel_bound(params: LadderParams, k: int, min_seeds: int, datasets: int,
                  reference_rows: int, accounts: int) -> dict[str, float | int]:
    """Bits about one universe's public labels, over every channel (docstring item 4).
    ``k``: one account's evaluation budget; ``datasets``: datasets of the universe this
    server has published baselines for; ``accounts``: accounts that have evaluated on it."""
    grid_bits = math.log2(params.grid)
    ladder_bits = transcript_bits(max(k, 1), params)
    flag_bits = k // max(min_seeds, 1)
    constants = datasets * (2 * grid_bits + 1) + reference_rows * grid_bits
    account = ladder_bits + flag_bits
    return {
        "ladder_bits": round(ladder_bits, 1),
        "result_flag_bits": flag_bits,
        "public_constant_bits": round(constants, 1),
        "bits_per_run": round(account + constants, 1),
        "accounts": accounts,
        "bits_all_runs": round(max(accounts, 1) * account + constants, 1),
    }


def guarantee(n: int, n_pos: int, n_private: int, k: int, params: LadderParams,
              delta: float = 0.05) -> dict[str, float]:
    """The numbers of the module docstring for one dataset and budget."""
    return {
        "eta": params.eta,
        "noise": params.noise,
        "max_releases": params.max_releases,
        "queries": k,
        "n_public": n,
        "bits_revealed_at_most": round(transcript_bits(k, params), 1),
        "leaderboard_error": round(leaderboard_error(k, n, params, delta), 4),
        "per_query_epsilon": round(per_query_epsilon(n, n_pos, params), 4),
        "private_holdout_error_100": round(holdout_error(100, n_private, delta), 4),
        "delta": delta,
    }
