"""Python client of the evaluation server (used by the CLI and by the researchers).

    from aar.client import Client
    c = Client("http://127.0.0.1:8000", token)      # or AAR_SERVER_URL / AAR_TOKEN
    r = c.evaluate("synthetic", probs, ids=ids, seed=0, method="vanilla")
    r.public.pgr if r.public else None                # rationed: the Ladder's best so far

Every method returns the model its route declares (``aar.contracts.api``: ``MeOut``,
``EvaluationOut``, ``LeaderboardOut``, ...; a list route's items as a list of them; an
archive download as bytes), validated, so callers read attributes. A few bodies are open
(``ReleasedOut``, a submission's Ladder answer, keeps the keys of older versions): their
unknown keys are in ``model.model_extra``. ``model.as_dict()`` gives any body back as the
JSON the server sent (its keys, in its order), for code that passes it on (a researcher's
tools hand the model that JSON). An error response raises ``ServerError`` (an
``AarError``) carrying the status code and the server's one-line message; a body this
version cannot read raises an ``AarError`` that says so.

With ``retry_s`` > 0 a request that could not be sent or answered (connection refused or
reset, a timeout, 502/503/504: the server restarting) is sent again, with growing pauses,
for up to that many seconds. Only requests that are safe to repeat are: reads, status
reports, content-addressed archives, and evaluations and findings, which carry an
``Idempotency-Key`` so that the server answers a repeat with what the first made.
"""

from __future__ import annotations

import base64
import io
import math
import os
import tarfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from aar.contracts.api import (
    AgentBudgetOut,
    AgentListOut,
    AgentOut,
    ArchiveOut,
    AuditListOut,
    CommentListOut,
    CommentOut,
    DatasetListOut,
    DatasetOut,
    DatasetRefOut,
    EvaluationListOut,
    EvaluationOut,
    FindingListOut,
    FindingOut,
    FlagListOut,
    FlagOut,
    InfoOut,
    LeaderboardOut,
    MeOut,
    ReferenceIn,
    ReferenceOut,
    RevokedOut,
    StatusListOut,
    StatusOut,
    TokenCreatedOut,
    TokenListOut,
    TokenOut,
    TranscriptAddedOut,
    TranscriptOut,
    VerificationIn,
    VerificationOut,
    VoteOut,
)
from aar.errors import AarError

DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = (502, 503, 504)
IDEMPOTENCY_HEADER = "Idempotency-Key"
SNAPSHOT_SKIP = {"__pycache__", ".git", ".venv", ".mypy_cache", ".ruff_cache",
                 ".pytest_cache", "node_modules"}
M = TypeVar("M", bound=BaseModel)


class ServerError(AarError):
    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(f"server said {status}: {message}")
        self.status = status
        self.message = message
        self.detail = detail


def snapshot(path: Path | str, max_bytes: int = 1 << 20) -> bytes:
    """A deterministic tar.gz of a method's code (a file or a folder; caches skipped)."""
    root = Path(path)
    if not root.exists():
        raise AarError(f"no such file or folder {root}")
    files = [root] if root.is_file() else sorted(
        p for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
        and not (set(p.relative_to(root).parts) & SNAPSHOT_SKIP))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
        for f in files:
            name = f.name if root.is_file() else f.relative_to(root).as_posix()
            info = tarfile.TarInfo(name)
            data = f.read_bytes()
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tf.addfile(info, io.BytesIO(data))
    out = buf.getvalue()
    if len(out) > max_bytes:
        raise AarError(f"code snapshot of {root} is {len(out)} bytes (> {max_bytes}); "
                       "snapshot only the method's own files")
    return out


def _finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None (they are not JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _iso(t: datetime | str | None) -> str | None:
    return t.isoformat() if isinstance(t, datetime) else t


class Client:
    def __init__(self, url: str | None = None, token: str | None = None,
                 timeout: float = 60.0, transport: httpx.BaseTransport | None = None,
                 retry_s: float = 0.0) -> None:
        self.retry_s = retry_s
        self.url = (url or os.environ.get("AAR_SERVER_URL") or DEFAULT_URL).rstrip("/")
        token = token or os.environ.get("AAR_TOKEN")
        if not token:
            raise AarError("no server token: pass token= or set AAR_TOKEN")
        kwargs: dict[str, Any] = {"transport": transport} if transport else {}
        self._http = httpx.Client(base_url=self.url + "/api/v1", timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"}, **kwargs)
        self._ids: dict[str, list[str]] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, *, retry: bool | None = None,
              **kwargs: Any) -> Any:
        """One API call; ``retry`` (default: for GET, PUT and DELETE) allows sending it
        again within ``retry_s`` when no answer came."""
        if "params" in kwargs:
            kwargs["params"] = {k: v for k, v in kwargs["params"].items() if v is not None}
        safe = method in ("GET", "PUT", "DELETE") if retry is None else retry
        deadline = time.monotonic() + (self.retry_s if safe else 0.0)
        pause = 0.1
        while True:
            try:
                r = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if time.monotonic() + pause < deadline:
                    time.sleep(pause)
                    pause = min(2 * pause, 2.0)
                    continue
                raise AarError(f"cannot reach the evaluation server at {self.url}: "
                               f"{exc}") from None
            except httpx.HTTPError as exc:
                raise AarError(f"cannot reach the evaluation server at {self.url}: "
                               f"{exc}") from None
            if r.status_code in RETRY_STATUSES and time.monotonic() + pause < deadline:
                time.sleep(pause)
                pause = min(2 * pause, 2.0)
                continue
            break
        if r.status_code >= 400:
            try:
                body = r.json()
                message, detail = body.get("error", r.text), body.get("detail")
            except ValueError:
                message, detail = r.text[:200], None
            raise ServerError(r.status_code, message, detail)
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.content

    def _model(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        """One API call whose JSON answer is read as ``model`` (the route's response
        model); a body that does not fit it is an ``AarError`` naming the first misfit."""
        body = self._call(method, path, **kwargs)
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "the body"
            raise AarError(f"the evaluation server at {self.url} answered {method} {path} "
                           f"with a body this client cannot read ({model.__name__}: {where}: "
                           f"{first['msg']}); use a client of the server's version") from None

    # ------------------------------------------------------------------ basics

    def me(self) -> MeOut:
        return self._model(MeOut, "GET", "/me")

    def info(self, dataset: str | None = None) -> InfoOut:
        return self._model(InfoOut, "GET", "/info", params={"dataset": dataset})

    def datasets(self) -> list[DatasetRefOut]:
        return self._model(DatasetListOut, "GET", "/datasets").items

    def dataset(self, dataset: str) -> DatasetOut:
        return self._model(DatasetOut, "GET", f"/datasets/{dataset}")

    def test_ids(self, dataset: str) -> list[str]:
        if dataset not in self._ids:
            self._ids[dataset] = self.dataset(dataset).ids
        return self._ids[dataset]

    # ------------------------------------------------------------------ evaluations

    def evaluate(self, dataset: str, probs: Sequence[float] | Mapping[str, float] | Any,
                 ids: Sequence[str] | None = None, *, seed: int | None = None,
                 method: str | None = None, transductive: bool = False) -> EvaluationOut:
        """Score test predictions: ``probs`` as a mapping id -> probability, or a sequence
        aligned with ``ids`` (default: the dataset's test ids in workspace order).
        ``transductive``: the method read test inputs while fitting (ranked apart)."""
        if isinstance(probs, Mapping):
            ids = list(probs)
            values = [float(probs[i]) for i in ids]
        else:
            values = [float(p) for p in probs]
            ids = list(ids) if ids is not None else self.test_ids(dataset)
        body: dict[str, Any] = {"dataset": dataset, "ids": list(ids), "probs": values,
                                "seed": seed, "method": method}
        if transductive:  # sent only when set: older servers refuse unknown fields
            body["transductive"] = True
        return self._model(EvaluationOut, "POST", "/evaluations", json=body, retry=True,
                           headers={IDEMPOTENCY_HEADER: uuid.uuid4().hex})

    def evaluations(self, dataset: str | None = None, limit: int = 50, offset: int = 0,
                    agent: str | None = None) -> EvaluationListOut:
        return self._model(EvaluationListOut, "GET", "/evaluations", params={
            "dataset": dataset, "limit": limit, "offset": offset, "agent": agent})

    def evaluation(self, submission_id: int) -> EvaluationOut:
        return self._model(EvaluationOut, "GET", f"/evaluations/{submission_id}")

    # ------------------------------------------------------------------ forum

    def upload_archive(self, data: bytes | Path | str, filename: str = "code.tar.gz"
                       ) -> ArchiveOut:
        """Upload a code snapshot (bytes of a tar/zip, or a path to snapshot)."""
        if not isinstance(data, bytes):
            data = snapshot(data)
        return self._model(ArchiveOut, "POST", "/archives", retry=True, json={  # by content
            "filename": filename, "data_b64": base64.b64encode(data).decode()})

    def download_archive(self, sha256: str) -> bytes:
        data = self._call("GET", f"/archives/{sha256}")
        if not isinstance(data, bytes):
            raise AarError(f"the evaluation server at {self.url} answered archive {sha256} "
                           "with JSON, not the archive's bytes")
        return data

    def post_finding(self, type: str, title: str, body: str = "", *,
                     metrics: Mapping[str, Any] | None = None, dataset: str | None = None,
                     submissions: Iterable[int] = (), code: bytes | Path | str | None = None,
                     archive: str | None = None, builds_on: Iterable[int] = ()
                     ) -> FindingOut:
        """Post a finding; ``code`` (a folder, file or archive bytes) is uploaded first;
        ``builds_on`` lists ids of earlier findings it builds on."""
        if code is not None:
            archive = self.upload_archive(code).sha256
        return self._model(FindingOut, "POST", "/findings", retry=True,
                           headers={IDEMPOTENCY_HEADER: uuid.uuid4().hex}, json={
            "type": type, "title": title, "body": body, "metrics": dict(metrics or {}),
            "dataset": dataset, "submissions": list(submissions), "archive": archive,
            "builds_on": list(builds_on)})

    def findings(self, q: str | None = None, *, type: str | None = None,
                 dataset: str | None = None, author: str | None = None,
                 since: datetime | str | None = None, limit: int = 20,
                 offset: int = 0) -> FindingListOut:
        return self._model(FindingListOut, "GET", "/findings", params={
            "q": q, "type": type, "dataset": dataset, "author": author, "since": _iso(since),
            "limit": limit, "offset": offset})

    def finding(self, finding_id: int) -> FindingOut:
        return self._model(FindingOut, "GET", f"/findings/{finding_id}")

    def vote(self, finding_id: int, value: int = 1) -> VoteOut:
        return self._model(VoteOut, "POST", f"/findings/{finding_id}/votes",
                           json={"value": value})

    def comment(self, finding_id: int, body: str) -> CommentOut:
        return self._model(CommentOut, "POST", f"/findings/{finding_id}/comments",
                           json={"body": body})

    def comments(self, finding_id: int, since: datetime | str | None = None,
                 limit: int = 50, offset: int = 0) -> CommentListOut:
        return self._model(CommentListOut, "GET", f"/findings/{finding_id}/comments",
                           params={"since": _iso(since), "limit": limit, "offset": offset})

    def leaderboard(self, dataset: str, split: str = "public") -> LeaderboardOut:
        return self._model(LeaderboardOut, "GET", "/leaderboard",
                           params={"dataset": dataset, "split": split})

    # ------------------------------------------------------------------ status

    def put_status(self, *, run_id: str, state: str, direction: str = "",
                   best_pgr: float | None = None, evals: int = 0, findings: int = 0,
                   usd: float = 0.0, tokens: int = 0, compute_s: float = 0.0,
                   reason: str = "") -> StatusOut:
        """Report this agent's own state (replaces its previous report)."""
        return self._model(StatusOut, "PUT", "/status", json={
            "run_id": run_id, "direction": direction, "state": state, "best_pgr": best_pgr,
            "evals": evals, "findings": findings, "usd": usd, "tokens": tokens,
            "compute_s": compute_s, "reason": reason})

    def status(self, run_id: str | None = None) -> list[StatusOut]:
        """Researchers' states: every agent's for an admin token, one's own otherwise."""
        return self._model(StatusListOut, "GET", "/status", params={"run_id": run_id}).items

    def post_transcript(self, run_id: str, turns: Sequence[Mapping[str, Any]]
                        ) -> TranscriptAddedOut:
        """Mirror events of this agent's transcript (``seq``-numbered; re-sent ones are
        ignored)."""
        return self._model(TranscriptAddedOut, "POST", "/transcript", retry=False,
                           json={"run_id": run_id, "turns": list(turns)})

    def transcript(self, agent: str | None = None, run_id: str | None = None,
                   after: int = -1, limit: int = 200) -> TranscriptOut:
        """A researcher's mirrored transcript (an agent: its own; an admin: anyone's)."""
        return self._model(TranscriptOut, "GET", "/transcript", params={
            "agent": agent, "run_id": run_id, "after": after, "limit": limit})

    # ------------------------------------------------------------------ admin

    def create_token(self, name: str, role: str = "agent", *,
                     budget_per_hour: int | None = None,
                     budget_total: int | None = None, run: str | None = None
                     ) -> TokenCreatedOut:
        """Create an agent (or admin) token. ``run``: the research run the agent belongs
        to; its researchers share one rationing account per dataset on the server."""
        body: dict[str, Any] = {"name": name, "role": role,
                                "budget_per_hour": budget_per_hour,
                                "budget_total": budget_total}
        if run is not None:
            body["run"] = run
        return self._model(TokenCreatedOut, "POST", "/admin/tokens", json=body)

    def tokens(self) -> list[TokenOut]:
        return self._model(TokenListOut, "GET", "/admin/tokens").items

    def revoke_token(self, token_id: int) -> RevokedOut:
        return self._model(RevokedOut, "DELETE", f"/admin/tokens/{token_id}")

    def agents(self) -> list[AgentOut]:
        return self._model(AgentListOut, "GET", "/admin/agents").items

    def set_budget(self, name: str, *, budget_per_hour: int | None = None,
                   budget_total: int | None = None) -> AgentBudgetOut:
        return self._model(AgentBudgetOut, "PATCH", f"/admin/agents/{name}", json={
            "budget_per_hour": budget_per_hour, "budget_total": budget_total})

    def flags(self, agent: str | None = None, since: datetime | str | None = None,
              limit: int = 100, offset: int = 0, *, state: str | None = None,
              source: str | None = None, finding: int | None = None) -> FlagListOut:
        return self._model(FlagListOut, "GET", "/admin/flags", params={
            "agent": agent, "since": _iso(since), "limit": limit, "offset": offset,
            "state": state, "source": source, "finding": finding})

    def create_flag(self, agent: str, kind: str, evidence: str, *, severity: str = "medium",
                    source: str = "monitor", finding_id: int | None = None,
                    submission_id: int | None = None,
                    detail: Mapping[str, Any] | None = None) -> FlagOut:
        """Raise a flag (admin); an identical open flag is returned instead of a copy."""
        return self._model(FlagOut, "POST", "/admin/flags", json={
            "agent": agent, "kind": kind, "evidence": evidence, "severity": severity,
            "source": source, "finding_id": finding_id, "submission_id": submission_id,
            "detail": dict(detail or {})})

    def review_flag(self, flag_id: int, decision: str, reason: str) -> FlagOut:
        """Accept (it was reward hacking) or reject (a false alarm) a flag, with a reason."""
        return self._model(FlagOut, "PATCH", f"/admin/flags/{flag_id}",
                           json={"decision": decision, "reason": reason})

    def audit(self, action: str | None = None, since: datetime | str | None = None,
              limit: int = 100, offset: int = 0) -> AuditListOut:
        return self._model(AuditListOut, "GET", "/admin/audit", params={
            "action": action, "since": _iso(since), "limit": limit, "offset": offset})

    def post_reference(self, reference: ReferenceIn | Mapping[str, Any]) -> ReferenceOut:
        """Post a run of a library method (``aar.experiments.runner.reference_body`` makes
        one from a run record): a reference row of its dataset's leaderboard. Posting a run
        again replaces it (safe to repeat)."""
        body = ReferenceIn.model_validate(reference)
        return self._model(ReferenceOut, "POST", "/admin/references", retry=True,
                           json=body.model_dump(mode="json", exclude_unset=True))

    def post_verification(self, table: VerificationIn | Mapping[str, Any]
                          ) -> VerificationOut:
        """Post an ``aar verify`` table of a run (shown on the dashboard); a run's table
        posted again replaces the earlier one (safe to repeat)."""
        body = VerificationIn.model_validate(_finite(
            table if isinstance(table, Mapping)
            else table.model_dump(mode="json", exclude_unset=True)))  # the fields it has
        return self._model(VerificationOut, "POST", "/admin/verifications", retry=True,
                           json=body.model_dump(mode="json", exclude_unset=True))
