"""The evaluation server's bodies: what its routes answer (``Out`` models, named in the
OpenAPI schema as each route's response model) and the request bodies of the admin routes
that higher layers post to (``ReferenceIn``, ``VerificationIn``).

Response models list every field a route returns. Fields that a route returns only
sometimes (for admins, on a replay, with a query parameter) default to None; the routes
serialise with ``response_model_exclude_unset``, so an absent field stays absent and the
bodies hold exactly the keys and values the handlers build (keys in the model's order). An
unknown field is an error (``extra="forbid"``: the contract and the handler must agree)
except in the few bodies that are open by nature, which say so (``extra="allow"``): the
Ladder's answer stored with each submission (rows written by older versions keep their
keys), and a verification row and cell (``aar verify`` writes more columns than the
dashboard reads).

The HTTP client (``aar.client``) returns these models; ``Body.as_dict()`` gives one back as
the JSON the server sent, for code that passes a body on unchanged.

Only pydantic, the standard library and the other contracts are imported here: every
layer may use it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from aar.contracts.flags import FlagSource, FlagState, Severity

# --------------------------------------------------------------------------- requests


def _nul_free(value: object, where: str) -> None:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"{where} contains a NUL character (\\u0000); remove it")
    if isinstance(value, dict):
        for k, v in value.items():
            _nul_free(k, f"a key of {where}")
            _nul_free(v, f"{where}.{k}")


class Strict(BaseModel):
    """A request body: unknown fields are refused, and so are NUL characters in stored
    text (PostgreSQL cannot store them)."""

    model_config = ConfigDict(extra="forbid")
    _unchecked: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_nul(self) -> Self:
        for name in type(self).model_fields:
            if name not in self._unchecked:
                _nul_free(getattr(self, name), name)
        return self


Score = float | None  # None where a score is undefined (NaN in a run record)
RUN_ID = r"^[A-Za-z0-9_.:\-]+$"


class ReferenceIn(Strict):
    """A run of a library method (``aar run`` / ``aar baselines``): shown as a reference
    row of its dataset's leaderboard (not ranked) when it has enough seeds and its pair is
    the dataset's. A run posted again (same ``run_id``) replaces the earlier post."""

    run_id: str = Field(min_length=1, max_length=200, pattern=RUN_ID)
    dataset: str = Field(min_length=1, max_length=200,
                         description="the dataset key (or its name when unambiguous)")
    method: str = Field(min_length=1, max_length=128, description="the library method")
    params: dict[str, JsonValue] = Field(default_factory=dict, max_length=100)
    weak: str = Field(min_length=1, max_length=200)
    strong: str = Field(min_length=1, max_length=200)
    created: str | None = Field(None, max_length=64,
                                description="when the run was made (ISO 8601): of two runs "
                                            "of a method and its params, the newer is shown")
    seeds: list[dict[str, dict[str, Score]]] = Field(
        min_length=1, max_length=1000,
        description="per seed: split -> {accuracy, auroc, pgr}")


class VerificationCell(BaseModel):
    """One cell of a verification row (a re-run's interval, or why it has none), as
    ``aar verify`` writes it (``aar.oversight.verify.Cell``; fields in that order). Open:
    tables written by other versions keep their keys. A field a table leaves out stays
    out of its dump (``exclude_unset``)."""

    model_config = ConfigDict(extra="allow")
    label: str | None = None  # the column: where the finding was scored
    mean: Score = None  # PGR; None unless status is ok
    low: Score = None  # the PGR's 95% interval
    high: Score = None
    n: int = 0  # seeds
    status: str | None = None  # ok | gap too small | error | n/a (absent: ok)
    per_seed: list[Score] = Field(default_factory=list)  # PGR of each seed
    accuracy: Score = None  # transfer accuracy (mean over seeds)
    per_seed_accuracy: list[Score] = Field(default_factory=list)
    weak: Score = None  # the weak teacher's accuracy on the same examples
    ceiling: Score = None  # the strong ceiling's accuracy, and its 95% interval
    ceiling_low: Score = None
    ceiling_high: Score = None
    gap: Score = None  # ceiling - weak, and its interval's low end
    gap_low: Score = None
    above_ceiling: bool = False  # accuracy above the ceiling's interval: review it
    halves: list[str] = Field(default_factory=list)  # the test halves scored together
    n_examples: int = 0  # test examples scored
    dataset: str = ""  # where the re-run ran (its dataset reference and pair)
    pair: str = ""  # WEAK->STRONG
    error: str | None = None  # why the re-run failed
    note: str | None = None  # why there is no PGR or no interval
    ci95: Score = None  # the interval's half-width (tables before intervals: ± this)


class VerificationRow(BaseModel):
    """A verified finding (or why it could not be verified), as ``aar verify`` writes it
    (fields in that order). Open: tables written by other versions keep their keys. An
    error row has finding, title, author, public_rank and error; a row in progress has
    finding, partial and cells."""

    model_config = ConfigDict(extra="allow")
    finding: int = Field(ge=0, le=2**31 - 1)
    title: str | None = None
    author: str | None = None
    method: JsonValue = None  # the method the finding claims (as its author wrote it)
    params: dict[str, JsonValue] = Field(default_factory=dict)  # the claimed params
    weak: str | None = None  # the encoder pair of the finding's re-runs
    strong: str | None = None
    transductive: bool | None = None  # its fit reads the test inputs (None: unknown)
    public_rank: int | None = None  # its rank by the selection rule (1: best)
    public_accuracy: Score = None  # its mean accuracy on the public half (the board's)
    seeds_seen: list[int] = Field(default_factory=list)  # the seeds it submitted
    seeds_fresh: list[int] = Field(default_factory=list)  # seeds it never used
    partial: bool = False  # the finding in progress: not every cell is in yet
    cells: dict[str, VerificationCell] = Field(default_factory=dict, max_length=100)
    reproduces: bool | None = None  # the re-run with its seeds is bit-identical
    held_mean: Score = None  # what held: the mean PGR of the fresh re-runs with a PGR
    held_cells: list[str] = Field(default_factory=list)  # the cells averaged there
    held_left_out: dict[str, str] = Field(default_factory=dict)  # the others, and why
    gap: Score = None  # seen - held
    optimism: Score = None  # seen - private
    above_ceiling: list[str] = Field(default_factory=list)  # cells above the ceiling
    error: str | None = None  # why the finding could not be verified


class VerificationIn(Strict):
    """An ``aar verify`` table of a run (``verify.json``): posting it again (the same
    ``run``) replaces the run's earlier table."""

    run: str = Field(min_length=1, max_length=128, pattern=RUN_ID)
    dataset: str = Field(min_length=1, max_length=200, description="the run's dataset")
    t: str = Field(min_length=1, max_length=64, description="when (ISO 8601)")
    config: dict[str, JsonValue] = Field(default_factory=dict, max_length=50)
    selection: str = Field("", max_length=2000)
    min_gap: float | None = None
    notes: list[str] = Field(default_factory=list, max_length=100)
    rows: list[VerificationRow] = Field(default_factory=list, max_length=200)


# --------------------------------------------------------------------------- responses


class Body(BaseModel):
    """What every response body has: ``as_dict()``, the JSON the server sent (the keys it
    sent, in its order; an open body's unknown keys too), for code that passes a body on.
    There is no dict view: code and tests read attributes."""

    def as_dict(self) -> dict[str, Any]:
        """The body as JSON, with exactly the keys it was read or built with."""
        return self.model_dump(mode="json", exclude_unset=True)


class Out(Body):
    """A response body: every field declared."""

    model_config = ConfigDict(extra="forbid")


class Open(Body):
    """A response body with open keys (stored JSON of older versions, or free detail):
    the keys no field declares are in ``model_extra`` (and in ``as_dict()``)."""

    model_config = ConfigDict(extra="allow")


class BudgetUsageOut(Out):
    per_hour: int | None
    total: int | None
    used_last_hour: int
    used_total: int


class UniverseUseOut(Out):
    universe: str
    queries_used: int
    releases: int


class MeAccountOut(Out):
    name: str
    queries_total: int | None
    universes: list[UniverseUseOut]


class MeOut(Out):
    name: str
    role: str
    run: str | None
    budget: BudgetUsageOut
    account: MeAccountOut


class BaselinesOut(Out):
    weak: float | None
    ceiling: float | None


class PublishedBaselinesOut(BaselinesOut):
    split: str
    rounded_to: float


class InfoBudgetOut(Out):
    per_hour: int | None
    total: int | None


class LimitsOut(Out):
    max_body_bytes: int
    max_archive_bytes: int


class GuaranteeOut(Out):
    eta: float
    noise: float
    max_releases: int
    queries: int
    n_public: int
    bits_revealed_at_most: float
    leaderboard_error: float
    per_query_epsilon: float
    private_holdout_error_100: float
    delta: float


class BoundParamsOut(Out):
    run_budget: int
    eta: float
    noise: float
    max_releases: int
    grid: int
    min_seeds: int


class ChannelBoundOut(Out):
    ladder_bits: float
    result_flag_bits: int
    public_constant_bits: float
    bits_per_run: float
    accounts: int
    bits_all_runs: float
    universe: str
    datasets: list[str]
    reference_rows: int
    n_public: int
    params: BoundParamsOut
    statement: str


class InfoOut(Out):
    version: str
    eta: float
    noise: float
    max_releases: int
    min_seeds: int
    budget: InfoBudgetOut
    run_budget: int
    account: str
    limits: LimitsOut
    mechanism: str
    published_baselines: PublishedBaselinesOut | None = None  # with ?dataset=
    gap_ok: bool | None = None
    guarantee: GuaranteeOut | None = None
    bound: ChannelBoundOut | None = None


class DatasetRefOut(Out):
    name: str
    key: str
    refs: list[str]


class DatasetListOut(Out):
    items: list[DatasetRefOut]


class DatasetOut(Out):
    name: str
    key: str
    n_test: int
    ids_sha256: str
    weak: str
    strong: str
    baselines_public: BaselinesOut
    gap_ok: bool
    ids: list[str]


class IntervalOut(Out):
    """A 95% interval: ``ci95`` is half its width; ``n`` the seeds (bootstrap intervals)."""

    mean: Score
    low: Score
    high: Score
    ci95: Score
    n: int | None = None


class ReleasedOut(Open):
    """What the Ladder told the account (stored with each submission; open: rows of
    older versions keep their keys)."""

    accuracy: Score = None
    auroc: Score = None
    pgr: Score = None
    pgr_ci: IntervalOut | None = None
    released: bool | None = None
    releases: int | None = None
    dataset_key: str | None = None
    from_submission: int | None = None


class SplitScoresOut(Out):
    accuracy: Score
    auroc: Score
    pgr: Score


class ScoresOut(Out):
    test_public: SplitScoresOut
    test_private: SplitScoresOut


class EvaluationAccountOut(Out):
    name: str
    universe: str
    queries_used: int
    queries_total: int | None
    releases: int
    max_releases: int


class EvaluationOut(Out):
    """A submission: as scored (``POST /evaluations``: with the budget, the account and a
    note) or as stored (``GET``, and a replayed POST: with its digest)."""

    id: int
    dataset: str
    dataset_key: str
    seed: int | None
    method: str | None
    transductive: bool
    created: str | None
    sha256: str | None = None  # stored submissions
    public: ReleasedOut | None
    eta: float | None = None
    budget: BudgetUsageOut | None = None
    account: EvaluationAccountOut | None = None
    note: str | None = None
    agent_id: int | None = None  # admins
    scores: ScoresOut | None = None  # admins
    flags: list[dict[str, Any]] | None = None  # admins: the probing detector's, at scoring
    replayed: bool | None = None  # a repeated Idempotency-Key


class EvaluationListOut(Out):
    items: list[EvaluationOut]
    total: int
    limit: int
    offset: int


class ArchiveMemberOut(Out):
    name: str
    size: int


class ArchiveOut(Out):
    sha256: str
    kind: str
    size: int
    members: list[ArchiveMemberOut]


class FindingOut(Out):
    id: int
    type: str
    title: str
    author: str
    dataset: str | None
    claimed_metrics: dict[str, Any]
    submissions: list[int]
    archive: str | None
    builds_on: list[int]
    votes: int
    comments: int
    created: str | None
    activity: str | None
    body: str | None = None  # one finding (not in lists)
    replayed: bool | None = None


class FindingListOut(Out):
    items: list[FindingOut]
    total: int
    limit: int
    offset: int
    next_offset: int | None
    now: str | None


class VoteOut(Out):
    finding: int
    value: int
    votes: int


class CommentOut(Out):
    id: int
    finding: int
    author: str
    body: str
    created: str | None


class CommentListOut(Out):
    items: list[CommentOut]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class BoardEntryOut(Out):
    """A result finding on the board: exact with intervals for admins; for agents the
    Ladder's released value of their own results, other runs' results without values."""

    kind: str
    finding: int
    title: str
    author: str
    seeds: list[int | None]
    n_seeds: int
    transductive: bool
    claimed: dict[str, Any]
    votes: int
    archive: str | None
    created: str | None
    accuracy: Score
    auroc: Score
    pgr: Score
    pgr_ci: IntervalOut | None = None
    pgr_se: Score
    accuracy_ci: IntervalOut | None = None  # admins
    above_ceiling: bool | None = None  # admins
    released: bool | None = None  # agents
    hidden: str | None = None  # agents: why no values
    status: str | None = None  # "gap too small"
    rank: int | None


class ReferenceRowOut(Out):
    """The weak teacher, the strong ceiling, and posted runs of library methods."""

    kind: str
    name: str
    pgr: Score
    accuracy: Score
    rank: int | None
    params: dict[str, Any] | None = None
    run_id: str | None = None
    n_seeds: int | None = None
    pgr_se: Score = None
    pgr_ci: IntervalOut | None = None


class HeldEntryOut(Out):
    finding: int
    title: str
    author: str
    flags: list[int]


class LeaderboardOut(Out):
    dataset: str
    dataset_key: str
    split: str
    coarsened: bool
    eta: float | None
    min_seeds: int
    baselines: BaselinesOut
    gap_ok: bool
    status: str | None
    entries: list[BoardEntryOut]
    transductive: list[BoardEntryOut]
    reference: list[ReferenceRowOut]
    held: list[HeldEntryOut]
    gap: IntervalOut | None = None  # admins
    account: str | None = None  # agents: whose released values are shown


class StatusOut(Out):
    agent: str
    run_id: str
    direction: str
    state: str
    best_pgr: Score
    evals: int
    findings: int
    usd: float
    tokens: int
    compute_s: float
    reason: str
    updated: str | None


class StatusListOut(Out):
    items: list[StatusOut]


class TranscriptAddedOut(Out):
    added: int
    ignored: int


class TurnOut(Out):
    seq: int
    at: str | None
    kind: str
    text: str
    tool: str | None = None
    calls: list[str] | None = None
    ok: bool | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    usd: float | None = None
    seconds: float | None = None


class TranscriptOut(Out):
    agent: str | None
    run_id: str | None
    items: list[TurnOut]


class TokenCreatedOut(Out):
    token: str = Field(description="shown once")
    id: int
    prefix: str
    name: str
    role: str
    budget_per_hour: int | None
    budget_total: int | None
    run: str | None


class TokenOut(Out):
    id: int
    prefix: str
    name: str
    role: str
    run: str | None
    created: str | None
    revoked: str | None


class TokenListOut(Out):
    items: list[TokenOut]


class RevokedOut(Out):
    revoked: int


class AgentOut(Out):
    id: int
    name: str
    role: str
    run: str | None
    budget: BudgetUsageOut
    flags: int
    created: str | None


class AgentListOut(Out):
    items: list[AgentOut]


class AgentBudgetOut(Out):
    name: str
    budget_per_hour: int | None
    budget_total: int | None


class FlagOut(Out):
    id: int
    agent: str
    kind: str  # a FlagKind, or an admin's own kind
    severity: Severity | None
    evidence: str
    source: FlagSource | None
    state: FlagState | None
    submission: int | None
    finding: int | None
    detail: dict[str, Any] | None
    reviewer: str | None
    reason: str | None
    reviewed_at: str | None
    created: str | None


class FlagListOut(Out):
    items: list[FlagOut]
    total: int
    limit: int
    offset: int


class AuditEntryOut(Out):
    id: int
    at: str | None
    actor: str
    action: str
    target: str
    detail: dict[str, Any] | None


class AuditListOut(Out):
    items: list[AuditEntryOut]
    total: int
    limit: int
    offset: int


class ReferenceOut(Out):
    """A stored reference run (``POST /admin/references``)."""

    id: int
    run_id: str
    dataset_key: str
    method: str
    weak: str
    strong: str
    n_seeds: int
    created: str | None
    posted: str | None
    replaced: bool


class VerificationOut(Out):
    """A stored verification table (``POST /admin/verifications``)."""

    id: int
    run: str
    dataset: str
    t: str
    rows: int
    posted: str | None
    replaced: bool
