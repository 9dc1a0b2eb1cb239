"""Every channel rationed, one scorer, and the board's semantics.

- The server scores through ``aar.w2s.scoring.Scorer``: the same numbers as a local
  ``Scorer.score`` on the same predictions, through the real HTTP API.
- One account per (run, universe of examples): the tokens of one run, the dataset, its
  canary and a re-drawn split of it share one budget and one Ladder.
- An attacker that uses every channel at once (many tokens of one run, the dataset, its
  canary, a re-drawn split, many result findings, the board) recovers no more public labels
  than the bound ``GET /info`` states.
- Leaderboard: a too-small gap ranks nothing; transductive results are ranked apart; a
  result above the ceiling's interval is flagged with its evidence and held.
"""

# Fixtures come from test_server_support (imported below); tests take them as arguments.

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_server_support import DATASET, Env, Template, live_server, make_app

from aar.client import Client, ServerError
from aar.w2s.metrics import Interval, pgr

API = "/api/v1"
RUN_BUDGET = 40
MAX_RELEASES = 5


@pytest.fixture
def tight(home: Path, template: Template) -> Iterator[Env]:
    """A server with a small account budget and release cap (a bound well below the
    number of public labels), which also accepts the synthetic canary."""
    app = make_app(run_budget=RUN_BUDGET, max_releases=MAX_RELEASES,
                   datasets=("canary:synthetic",))
    with TestClient(app) as client:
        yield Env(app, client, {"Authorization": f"Bearer {app.state.initial_admin_token}"},
                  template)
    app.state.db.dispose()


def _token(env: Env, name: str, run: str | None = None) -> dict[str, str]:
    body: dict[str, Any] = {"name": name, "budget_per_hour": 10_000, "budget_total": 10_000}
    if run is not None:
        body["run"] = run
    r = env.client.post(f"{API}/admin/tokens", json=body, headers=env.admin)
    assert r.status_code == 201, r.text
    assert r.json()["run"] == run
    return {"Authorization": f"Bearer {r.json()['token']}"}


# ----------------------------------------------------------------------------- one scorer


def test_server_scores_equal_the_scorer_through_http(home: Path, template: Template) -> None:
    from aar.data.prepare import prepare
    from aar.w2s.scoring import Scorer

    scorer = Scorer.of(prepare(DATASET), "syn_weak", "syn_strong")
    rng = np.random.default_rng(5)
    with live_server() as srv:
        admin = Client(srv.url, srv.admin_token)
        agent = Client(srv.url, admin.create_token("alice", run="r1").token)
        assert agent.info().account == "run:r1"
        for k, p in enumerate([template.preds[0], template.soft[0],
                               rng.random(len(template.ids))]):
            # The server keeps float32 predictions and scores what it keeps.
            probs = np.asarray(p, dtype=np.float32).astype(np.float64)
            local = scorer.score(probs)
            r = admin.evaluate(DATASET, probs.tolist(), seed=k)
            for split, s in local.items():
                got = getattr(r.scores, split)
                assert got.accuracy == s.accuracy
                assert got.auroc == s.auroc
                assert got.pgr == s.pgr  # exact baselines for admins
            # Ids in another order: aligned to the same numbers.
            order = rng.permutation(len(template.ids))
            r2 = admin.evaluate(DATASET, probs[order].tolist(),
                                ids=[template.ids[i] for i in order], seed=100 + k)
            assert r2.scores == r.scores
        # An agent's PGR is the released accuracy against the published baselines.
        a = agent.evaluate(DATASET, template.preds[0], seed=0, transductive=True)
        assert a.transductive and "scores" not in a.model_fields_set
        pub = agent.info(DATASET).published_baselines
        w, c = scorer.fixed["test_public"]
        assert pub.weak == round(round(w / 0.01) * 0.01, 10)
        assert pub.ceiling == round(round(c / 0.01) * 0.01, 10)
        acc = a.public.accuracy
        assert a.public.pgr == round(pgr(acc, pub.weak, pub.ceiling), 6)
        ci = a.public.pgr_ci
        assert ci.low < a.public.pgr < ci.high
        assert agent.evaluation(a.id).transductive is True
        admin.close()
        agent.close()


# ----------------------------------------------------------------------------- accounts


def test_run_shares_one_account_across_tokens_canary_and_redraws(tight: Env) -> None:
    from aar.data.prepare import prepare

    env = tight
    redraw = prepare(DATASET, seed=1).key
    alice, bob = _token(env, "alice", "r1"), _token(env, "bob", "r1")
    other = _token(env, "olga", "r2")
    c = env.client
    infos = {ds: c.get(f"{API}/info", params={"dataset": ds}, headers=alice).json()
             for ds in (DATASET, "canary:synthetic", redraw)}
    assert len({i["bound"]["universe"] for i in infos.values()}) == 1
    # Alice's first evaluation releases; Bob, in the same run, is told Alice's release.
    first = env.evaluate(alice, env.t.preds[0]).json()["public"]
    assert first["released"]
    told = env.evaluate(bob, env.t.soft[1]).json()
    assert not told["public"]["released"]
    assert told["public"]["accuracy"] == first["accuracy"]
    assert told["public"]["from_submission"] == first["from_submission"]
    assert told["account"]["name"] == "run:r1" and told["account"]["queries_used"] == 2
    # The canary and the re-drawn split spend the same budget.
    n_ids = {ds: c.get(f"{API}/datasets/{ds}", headers=alice).json()["ids"]
             for ds in ("canary:synthetic", redraw)}
    used = 2
    who = [alice, bob]
    while True:
        ds = ("canary:synthetic", redraw, DATASET)[used % 3]
        ids = env.t.ids if ds == DATASET else n_ids[ds]
        probs = np.random.default_rng(used).random(len(ids))
        r = env.evaluate(who[used % 2], probs, ids=ids, dataset=ds)
        if r.status_code == 429:
            assert "shared by the run's researchers" in r.json()["error"]
            break
        assert r.status_code == 201, r.text
        used += 1
    assert used == RUN_BUDGET
    me = c.get(f"{API}/me", headers=bob).json()
    assert me["run"] == "r1" and me["account"]["name"] == "run:r1"
    (spent,) = me["account"]["universes"]
    assert spent["universe"] == infos[DATASET]["bound"]["universe"]
    assert spent["queries_used"] == RUN_BUDGET and spent["releases"] >= 1
    # Every token of the run is now refused, on every dataset of the universe ...
    for h in (alice, bob):
        for ds in (DATASET, "canary:synthetic", redraw):
            ids = env.t.ids if ds == DATASET else n_ids[ds]
            assert env.evaluate(h, np.full(len(ids), 0.5), ids=ids,
                                dataset=ds).status_code == 429
    # ... and a token of another run has its own account.
    assert env.evaluate(other, env.t.preds[0]).status_code == 201
    bound = c.get(f"{API}/info", params={"dataset": DATASET}, headers=other).json()["bound"]
    assert bound["accounts"] == 2
    assert bound["bits_all_runs"] > bound["bits_per_run"]
    # An agent's run is set once.
    r = c.post(f"{API}/admin/tokens", json={"name": "alice", "run": "r2"}, headers=env.admin)
    assert r.status_code == 409 and "cannot change" in r.json()["error"]


# ----------------------------------------------------------------------------- the attack


def _flip(p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    q = p.copy()
    q[idx] = 1 - q[idx]
    return q


def _blocks(soft: np.ndarray, n: int, seed: int = 0) -> list[np.ndarray]:
    """The attacker's probes: 20 of the 300 examples its own model is least sure of."""
    unsure = np.argsort(np.abs(soft - 0.5))[:300]
    rng = np.random.default_rng(seed)
    return [rng.choice(unsure, 20, replace=False) for _ in range(n)]


def _exact_hill_climb(t: Template, public: np.ndarray, truth: np.ndarray) -> int:
    """The same block-flip climb against an exact public accuracy (the reference design):
    labels it recovers beyond its start, with the attack's budget."""
    guess = np.where(t.soft[0] >= 0.5, 0.8, 0.2)
    start = guess.copy()

    def acc(p: np.ndarray) -> float:
        return float(np.mean((p[public] >= 0.5) == truth[public]))

    best = acc(guess)
    for block in _blocks(t.soft[0], RUN_BUDGET):
        cand = _flip(guess, block)
        if (a := acc(cand)) > best:
            best, guess = a, cand
    return int((((guess >= 0.5) == truth) & public).sum()
               - (((start >= 0.5) == truth) & public).sum())


def test_all_channels_attack_stays_within_the_stated_bound(tight: Env) -> None:
    """Three tokens of one run hill-climb the labels by block flips, on the dataset, its
    canary and a re-drawn split (the ids they share carry the same labels), post a result
    finding for every five of their submissions and read the board after each; then
    guess every label. Each channel answers from the one account; the guesses beat the
    attacker's own model by no more than the bits ``GET /info`` states."""
    from aar.data.prepare import prepare

    env, t, c = tight, tight.t, tight.client
    redraw = prepare(DATASET, seed=1).key
    tokens = [_token(env, f"mallory{k}", "evil") for k in range(3)]
    honest = _token(env, "honest", "good")  # another run's result: values hidden
    subs = [env.evaluate(honest, p, seed=s).json()["id"] for s, p in enumerate(t.preds)]
    assert c.post(f"{API}/findings", json={"type": "result", "title": "honest vanilla",
                                           "dataset": DATASET, "submissions": subs},
                  headers=honest).status_code == 201

    datasets = {DATASET: t.ids}
    for ds in ("canary:synthetic", redraw):
        datasets[ds] = c.get(f"{API}/datasets/{ds}", headers=tokens[0]).json()["ids"]
    truth = np.array([t.labels[i] for i in t.ids])
    pos = {i: k for k, i in enumerate(t.ids)}
    # The attacker's own model: the weak teacher's hard labels, at 0.8 / 0.2.
    guess = np.where(t.soft[0] >= 0.5, 0.8, 0.2)
    start = guess.copy()
    blocks = _blocks(t.soft[0], RUN_BUDGET + 15)
    best = -1.0
    released: set[float] = set()
    mine: dict[tuple[int, str], list[int]] = {}
    accepted = refused = 0
    seen_board: list[dict[str, Any]] = []
    for q in range(RUN_BUDGET + 15):  # past the budget: the rest must be refused
        k = q % 3
        ds = (DATASET, DATASET, "canary:synthetic", redraw)[q % 4]
        cand = _flip(guess, blocks[q])
        ids = datasets[ds]
        # Translate to the dataset's ids: shared ids carry the guess, others 0.5.
        probs = np.array([cand[pos[i]] if i in pos else 0.5 for i in ids])
        r = env.evaluate(tokens[k], probs, ids=ids, seed=q, dataset=ds)
        if r.status_code == 429:
            refused += 1
            continue
        assert r.status_code == 201, r.text
        accepted += 1
        ans = r.json()["public"]
        if ans["released"]:
            released.add(ans["accuracy"])
            if ans["accuracy"] > best:
                best = ans["accuracy"]
                if ds == DATASET:  # an improvement on the dataset: keep the flips
                    guess = cand
        batch = mine.setdefault((k, ds), [])
        batch.append(r.json()["id"])
        if len(batch) == 5:  # a result finding: the above-ceiling flag is a channel
            f = c.post(f"{API}/findings", json={"type": "result", "title": f"probe {q}",
                                                "dataset": ds, "submissions": batch},
                       headers=tokens[k])
            assert f.status_code == 201, f.text
            mine[(k, ds)] = []
            board = c.get(f"{API}/leaderboard", params={"dataset": DATASET},
                          headers=tokens[k]).json()
            seen_board.append(board)
    assert accepted == RUN_BUDGET and refused == 15

    # The board never showed a value the Ladder had not released to this run, and showed
    # nothing of the other run's result.
    for board in seen_board:
        for e in board["entries"] + board["transductive"]:
            if e["author"] == "honest":
                assert e["accuracy"] is e["pgr"] is e["auroc"] is None
            elif e["accuracy"] is not None:
                assert e["accuracy"] in released
        assert all(h["author"] != "honest" for h in board["held"])

    info = c.get(f"{API}/info", params={"dataset": DATASET}, headers=tokens[0]).json()
    for board in seen_board:  # the board's baselines are the published, rounded ones
        assert board["baselines"] == {k: info["published_baselines"][k]
                                      for k in ("weak", "ceiling")}
    bound = info["bound"]
    assert bound["params"]["run_budget"] == RUN_BUDGET
    assert bound["params"]["max_releases"] == MAX_RELEASES
    assert sorted(bound["datasets"]) == sorted(
        c.get(f"{API}/datasets/{d}", headers=tokens[0]).json()["key"] for d in datasets)
    public = np.zeros(len(t.ids), bool)
    public[t.public_idx] = True
    hard = guess >= 0.5
    recovered = int(((hard == truth) & public).sum()) - int(
        (((start >= 0.5) == truth) & public).sum())
    n_public = int(public.sum())
    exact = _exact_hill_climb(t, public, truth)
    print(f"all-channels attack: {accepted} evaluations accepted, {refused} refused, "
          f"{len(released)} releases; labels recovered beyond the attacker's own model: "
          f"{recovered} of {n_public} public (against exact scores, the same climb: "
          f"{exact}); stated bound {bound['bits_per_run']} bits "
          f"(ladder {bound['ladder_bits']}, result flags {bound['result_flag_bits']}, "
          f"constants {bound['public_constant_bits']})")
    assert bound["bits_per_run"] < n_public / 2  # the bound says something here
    assert recovered <= bound["bits_per_run"]
    assert exact > max(recovered, 0)  # the climb does read labels off exact scores
    assert len(released) <= MAX_RELEASES


# ----------------------------------------------------------------------------- the board


def test_transductive_results_are_ranked_apart(env: Env) -> None:
    alice, bob = env.agent("alice"), env.agent("bob")
    for who, name, trans in ((alice, "inductive", False), (bob, "transductive", True)):
        subs = []
        for seed, p in enumerate(env.t.preds):
            r = env.client.post(f"{API}/evaluations", headers=who, json={
                "dataset": DATASET, "ids": env.t.ids, "probs": [float(x) for x in p],
                "seed": seed, "transductive": trans and seed == 3})
            assert r.status_code == 201, r.text
            subs.append(r.json()["id"])
        assert env.client.post(f"{API}/findings", headers=who, json={
            "type": "result", "title": name, "dataset": DATASET,
            "submissions": subs}).status_code == 201
    for headers in (env.admin, bob):
        board = env.client.get(f"{API}/leaderboard", params={"dataset": DATASET},
                               headers=headers).json()
        assert [e["title"] for e in board["transductive"]] == ["transductive"]
        assert [e["title"] for e in board["entries"]] == ["inductive"]
        assert board["transductive"][0]["transductive"] is True
    admin = env.client.get(f"{API}/leaderboard", params={"dataset": DATASET},
                           headers=env.admin).json()
    assert admin["entries"][0]["rank"] == 1 and admin["transductive"][0]["rank"] == 1


def test_gap_too_small_ranks_nothing(env: Env) -> None:
    alice = env.agent("alice")
    subs = [env.evaluate(alice, p, seed=s).json()["id"] for s, p in enumerate(env.t.preds)]
    assert env.client.post(f"{API}/findings", headers=alice, json={
        "type": "result", "title": "r", "dataset": DATASET,
        "submissions": subs}).status_code == 201
    ds = env.app.state.catalog.get(DATASET)
    assert ds.gap_ok("test_public")
    before = env.client.get(f"{API}/leaderboard", params={"dataset": DATASET},
                            headers=env.admin).json()
    assert before["entries"][0]["rank"] == 1
    # A gap whose interval reaches below the minimum (the point estimate above it).
    ds.gap = {s: Interval(0.07, 0.04, 0.10, 1) for s in ds.gap}
    for headers in (env.admin, alice):
        board = env.client.get(f"{API}/leaderboard", params={"dataset": DATASET},
                               headers=headers).json()
        assert not board["gap_ok"] and "gap too small" in board["status"]
        (e,) = board["entries"]
        assert e["rank"] is None and e["pgr"] is None and e["status"] == "gap too small"
        assert all(r["pgr"] is None for r in board["reference"]
                   if r["name"].startswith("method "))
    answer = env.evaluate(alice, env.t.soft[2]).json()["public"]
    assert answer["pgr"] is None and answer["pgr_ci"] is None


def test_result_above_the_ceiling_is_flagged_with_evidence(env: Env) -> None:
    """A result that knows the labels (here: it was given them) beats the strong ceiling's
    interval: flagged for review with the numbers, held off the board."""
    truth = np.array([env.t.labels[i] for i in env.t.ids], dtype=np.float64)
    cheat = env.agent("cheat")
    rng = np.random.default_rng(1)
    subs = [env.evaluate(cheat, np.clip(0.8 * truth + 0.1 + rng.normal(0, 0.01, len(truth)),
                                        0, 1), seed=s).json()["id"] for s in range(5)]
    f = env.client.post(f"{API}/findings", headers=cheat, json={
        "type": "result", "title": "too good", "dataset": DATASET, "submissions": subs})
    assert f.status_code == 201
    fid = f.json()["id"]
    flags = env.client.get(f"{API}/admin/flags", params={"finding": fid, "source": "scorer"},
                           headers=env.admin).json()["items"]
    (flag,) = flags
    assert flag["kind"] == "above_ceiling" and flag["state"] == "open"
    assert "above the strong ceiling's interval" in flag["evidence"]
    acc = flag["detail"]["test_public"]["accuracy"]
    ceil = flag["detail"]["test_public"]["ceiling"]
    assert acc["mean"] > ceil["high"] and math.isfinite(ceil["high"])
    board = env.client.get(f"{API}/leaderboard", params={"dataset": DATASET},
                           headers=cheat).json()
    assert board["entries"] == [] and [h["finding"] for h in board["held"]] == [fid]
    # An honest result is not flagged.
    alice = env.agent("alice")
    subs = [env.evaluate(alice, p, seed=s).json()["id"] for s, p in enumerate(env.t.preds)]
    f2 = env.client.post(f"{API}/findings", headers=alice, json={
        "type": "result", "title": "honest", "dataset": DATASET, "submissions": subs})
    assert env.client.get(f"{API}/admin/flags", params={"finding": f2.json()["id"]},
                          headers=env.admin).json()["total"] == 0


def test_client_sends_run_and_transductive_only_when_set(home: Path,
                                                         template: Template) -> None:
    with live_server() as srv:
        admin = Client(srv.url, srv.admin_token)
        tok = admin.create_token("solo")
        assert tok.run is None
        solo = Client(srv.url, tok.token)
        assert solo.info().account == "agent:solo"
        r = solo.evaluate(DATASET, template.preds[0])
        assert r.transductive is False
        with pytest.raises(ServerError) as exc:
            admin.create_token("bad", run="a b")
        assert exc.value.status == 422
        admin.close()
        solo.close()


def test_a_runs_researchers_evaluate_concurrently(home: Path, template: Template) -> None:
    """Researchers of one run starting at once share one account row: every evaluation
    is counted once, none fails."""
    from concurrent.futures import ThreadPoolExecutor

    with live_server() as srv:
        admin = Client(srv.url, srv.admin_token)
        agents = [Client(srv.url, admin.create_token(f"r{k}", run="crowd").token)
                  for k in range(4)]

        def distinct(k: int, j: int) -> list[float]:  # exact repeats are not counted
            p = [float(x) for x in template.soft[(k + j) % 5]]
            p[0] = 0.25 + 0.01 * (5 * k + j)
            return p

        def work(k: int) -> list[int]:
            return [agents[k].evaluate(DATASET, distinct(k, j), seed=j)
                    .account.queries_used for j in range(5)]

        with ThreadPoolExecutor(4) as pool:
            used = sorted(q for qs in pool.map(work, range(4)) for q in qs)
        assert used == list(range(1, 21))  # each evaluation saw its own count
        for c in (admin, *agents):
            c.close()


def test_probing_split_across_a_runs_tokens_is_flagged(env: Env) -> None:
    """One flipped prediction at a time, alternating between two tokens of one run: each
    probe is compared with the run's earlier submissions, not only its own token's."""
    a, b = _token(env, "pa", "probe-run"), _token(env, "pb", "probe-run")
    base = np.asarray(env.t.preds[0])
    sids = []
    for k in range(4):
        probe = base.copy()
        probe[k] = 1 - probe[k]
        r = env.evaluate((a, b)[k % 2], probe)
        assert r.status_code == 201
        sids.append(r.json()["id"])
    flags = env.client.get(f"{API}/admin/flags", params={"source": "probing"},
                           headers=env.admin).json()["items"]
    near = {f["submission"]: f["detail"]["of"] for f in flags if f["kind"] == "near_duplicate"}
    assert set(near) == set(sids[1:])  # every probe after the first, on either token
    assert all(near[s] == p for p, s in itertools.pairwise(sids))


def test_a_deterministic_methods_repeated_seeds_cost_one_query_and_rank(tight: Env) -> None:
    """Five seeds of a deterministic method are one prediction vector five times: the
    repeats are answered from the account's Ladder (no new noise, no query counted), raise
    no flag, and the result is ranked."""
    who = _token(tight, "steady", "steady-run")
    same = [float(x) for x in tight.t.preds[0]]
    answers, subs = [], []
    for seed in range(5):
        r = tight.client.post(f"{API}/evaluations", headers=who, json={
            "dataset": DATASET, "ids": tight.t.ids, "probs": same, "seed": seed})
        assert r.status_code == 201, r.text
        answers.append(r.json())
        subs.append(r.json()["id"])
    assert [a["account"]["queries_used"] for a in answers] == [1] * 5
    assert all(a["public"] == answers[0]["public"] | {"released": a["public"]["released"]}
               for a in answers)
    assert [a["public"]["released"] for a in answers][1:] == [False] * 4
    flags = tight.client.get(f"{API}/admin/flags", headers=tight.admin).json()["items"]
    assert not [f for f in flags if f["submission"] in subs]
    assert tight.client.post(f"{API}/findings", headers=who, json={
        "type": "result", "title": "steady", "dataset": DATASET,
        "submissions": subs}).status_code == 201
    board = tight.client.get(f"{API}/leaderboard", params={"dataset": DATASET},
                             headers=tight.admin).json()
    assert [e["title"] for e in board["entries"]] == ["steady"]
