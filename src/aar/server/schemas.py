"""Request bodies of the API (pydantic); unknown fields are rejected. ``Strict``, their
base, and the bodies the admin routes take from higher layers are in ``aar.contracts.api``."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, JsonValue

from aar.contracts.api import Strict
from aar.contracts.events import ResearcherState

FINDING_TYPES = ("result", "hypothesis", "insight", "negative", "error")
FindingType = Literal["result", "hypothesis", "insight", "negative", "error"]
SHA256 = r"^[0-9a-f]{64}$"


class EvaluationIn(Strict):
    """Probabilities for every id of a dataset's test split (the workspace's ``test``)."""

    _unchecked: ClassVar[frozenset[str]] = frozenset({"ids", "probs"})  # never stored

    dataset: str = Field(min_length=1, max_length=200,
                         description="dataset key, or its name when unambiguous")
    ids: list[str] = Field(description="every test id, once, in any order")
    probs: list[float] = Field(description="P(label = 1) for each id, in [0, 1]")
    split: str = Field("test", max_length=32, description="only 'test' is scored")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="the run's seed")
    method: str | None = Field(None, max_length=128, description="a label for the method")
    transductive: bool = Field(False, description="the method read test inputs while "
                                                  "fitting: ranked apart on the leaderboard")


class TokenIn(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    role: Literal["agent", "admin"] = "agent"
    budget_per_hour: int | None = Field(None, ge=0, le=10**9)
    budget_total: int | None = Field(None, ge=0, le=10**9)
    run: str | None = Field(None, min_length=1, max_length=128,
                            pattern=r"^[A-Za-z0-9_.:\-]+$",
                            description="the research run this agent belongs to: its "
                                        "researchers share one rationing account per "
                                        "dataset (set once)")


class ArchiveIn(Strict):
    filename: str = Field("code.tar.gz", min_length=1, max_length=200)
    data_b64: str = Field(description="the archive (tar, tar.gz, or zip), base64-encoded")


class FindingIn(Strict):
    type: FindingType
    title: str = Field(min_length=1, max_length=200)
    body: str = Field("", max_length=100_000, description="markdown")
    metrics: dict[str, JsonValue] = Field(
        default_factory=dict, max_length=50,
        description="what the author claims (numbers, or JSON such as the method's name and "
                    "parameters); shown as claims, never ranked")
    dataset: str | None = Field(None, max_length=200)
    submissions: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
        default_factory=list, max_length=200, description="ids of your submissions")
    archive: str | None = Field(None, pattern=SHA256, description="sha256 of an uploaded "
                                                                   "code snapshot")
    builds_on: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
        default_factory=list, max_length=50,
        description="ids of earlier findings this one builds on")


class VoteIn(Strict):
    value: Literal[-1, 0, 1] = Field(description="+1, -1, or 0 to withdraw")


class CommentIn(Strict):
    body: str = Field(min_length=1, max_length=20_000)


TurnKind = Literal["user", "assistant", "tool_result", "compaction", "error", "end"]
MAX_TURNS = 20_000  # events of one researcher's run that the server keeps


class TurnIn(Strict):
    """One transcript event as a researcher mirrors it: who spoke, the text (a tool result
    or a final note cut to size), the calls an assistant turn made, and its cost."""

    seq: int = Field(ge=0, le=10**9)
    kind: TurnKind
    text: str = Field("", max_length=8000)
    tool: str = Field("", max_length=64)
    calls: list[Annotated[str, Field(max_length=2000)]] = Field(default_factory=list,
                                                                max_length=16)
    ok: bool | None = None
    input_tokens: int = Field(0, ge=0, le=10**9)
    output_tokens: int = Field(0, ge=0, le=10**9)
    usd: float = Field(0.0, ge=0.0, le=1e6)
    seconds: float = Field(0.0, ge=0.0, le=1e7)


class TranscriptIn(Strict):
    run_id: str = Field(min_length=1, max_length=128)
    turns: list[TurnIn] = Field(min_length=1, max_length=200)




class StatusIn(Strict):
    """A researcher's own state, reported by itself (or its orchestrator) with its token."""

    run_id: str = Field(min_length=1, max_length=128)
    direction: str = Field("", max_length=200)
    state: ResearcherState
    best_pgr: float | None = Field(None, ge=-100.0, le=100.0)
    evals: int = Field(0, ge=0, le=10**9)
    findings: int = Field(0, ge=0, le=10**9)
    usd: float = Field(0.0, ge=0.0, le=1e9)
    tokens: int = Field(0, ge=0, le=10**15)
    compute_s: float = Field(0.0, ge=0.0, le=1e12)
    reason: str = Field("", max_length=2000)
