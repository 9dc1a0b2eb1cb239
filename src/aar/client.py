"""Python client of the evaluation server (used by the CLI and by the researchers).

    from aar.client import Client
    c = Client("http://127.0.0.1:8000", token)      # or AAR_SERVER_URL / AAR_TOKEN
    r = c.evaluate("synthetic", probs, ids=ids, seed=0, method="vanilla")
    r["public"]["pgr"]                                # rationed: the Ladder's best so far

Every method returns the server's JSON; an error response raises ``ServerError`` (an
``AarError``) carrying the status code and the server's one-line message.

With ``retry_s`` > 0 a request that could not be sent or answered (connection refused or
reset, a timeout, 502/503/504: the server restarting) is sent again, with growing pauses,
for up to that many seconds. Only requests that are safe to repeat are: reads, status
reports, content-addressed archives, and evaluations and findings, which carry an
``Idempotency-Key`` so that the server answers a repeat with what the first made.
"""

from __future__ import annotations

import base64
import io
import os
import tarfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from aar.errors import AarError

DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = (502, 503, 504)
IDEMPOTENCY_HEADER = "Idempotency-Key"
SNAPSHOT_SKIP = {"__pycache__", ".git", ".venv", ".mypy_cache", ".ruff_cache",
                 ".pytest_cache", "node_modules"}


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

    # ------------------------------------------------------------------ basics

    def me(self) -> dict[str, Any]:
        return self._call("GET", "/me")

    def info(self, dataset: str | None = None) -> dict[str, Any]:
        return self._call("GET", "/info", params={"dataset": dataset})

    def datasets(self) -> list[dict[str, Any]]:
        return self._call("GET", "/datasets")["items"]

    def dataset(self, dataset: str) -> dict[str, Any]:
        return self._call("GET", f"/datasets/{dataset}")

    def test_ids(self, dataset: str) -> list[str]:
        if dataset not in self._ids:
            self._ids[dataset] = self.dataset(dataset)["ids"]
        return self._ids[dataset]

    # ------------------------------------------------------------------ evaluations

    def evaluate(self, dataset: str, probs: Sequence[float] | Mapping[str, float] | Any,
                 ids: Sequence[str] | None = None, *, seed: int | None = None,
                 method: str | None = None, transductive: bool = False) -> dict[str, Any]:
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
        return self._call("POST", "/evaluations", json=body, retry=True,
                          headers={IDEMPOTENCY_HEADER: uuid.uuid4().hex})

    def evaluations(self, dataset: str | None = None, limit: int = 50, offset: int = 0,
                    agent: str | None = None) -> dict[str, Any]:
        return self._call("GET", "/evaluations", params={
            "dataset": dataset, "limit": limit, "offset": offset, "agent": agent})

    def evaluation(self, submission_id: int) -> dict[str, Any]:
        return self._call("GET", f"/evaluations/{submission_id}")

    # ------------------------------------------------------------------ forum

    def upload_archive(self, data: bytes | Path | str, filename: str = "code.tar.gz"
                       ) -> dict[str, Any]:
        """Upload a code snapshot (bytes of a tar/zip, or a path to snapshot)."""
        if not isinstance(data, bytes):
            data = snapshot(data)
        return self._call("POST", "/archives", retry=True, json={  # content-addressed
            "filename": filename, "data_b64": base64.b64encode(data).decode()})

    def download_archive(self, sha256: str) -> bytes:
        return self._call("GET", f"/archives/{sha256}")

    def post_finding(self, type: str, title: str, body: str = "", *,
                     metrics: Mapping[str, Any] | None = None, dataset: str | None = None,
                     submissions: Iterable[int] = (), code: bytes | Path | str | None = None,
                     archive: str | None = None, builds_on: Iterable[int] = ()
                     ) -> dict[str, Any]:
        """Post a finding; ``code`` (a folder, file or archive bytes) is uploaded first;
        ``builds_on`` lists ids of earlier findings it builds on."""
        if code is not None:
            archive = self.upload_archive(code)["sha256"]
        return self._call("POST", "/findings", retry=True,
                          headers={IDEMPOTENCY_HEADER: uuid.uuid4().hex}, json={
            "type": type, "title": title, "body": body, "metrics": dict(metrics or {}),
            "dataset": dataset, "submissions": list(submissions), "archive": archive,
            "builds_on": list(builds_on)})

    def findings(self, q: str | None = None, *, type: str | None = None,
                 dataset: str | None = None, author: str | None = None,
                 since: datetime | str | None = None, limit: int = 20,
                 offset: int = 0) -> dict[str, Any]:
        return self._call("GET", "/findings", params={
            "q": q, "type": type, "dataset": dataset, "author": author, "since": _iso(since),
            "limit": limit, "offset": offset})

    def finding(self, finding_id: int) -> dict[str, Any]:
        return self._call("GET", f"/findings/{finding_id}")

    def vote(self, finding_id: int, value: int = 1) -> dict[str, Any]:
        return self._call("POST", f"/findings/{finding_id}/votes", json={"value": value})

    def comment(self, finding_id: int, body: str) -> dict[str, Any]:
        return self._call("POST", f"/findings/{finding_id}/comments", json={"body": body})

    def comments(self, finding_id: int, since: datetime | str | None = None,
                 limit: int = 50, offset: int = 0) -> dict[str, Any]:
        return self._call("GET", f"/findings/{finding_id}/comments", params={
            "since": _iso(since), "limit": limit, "offset": offset})

    def leaderboard(self, dataset: str, split: str = "public") -> dict[str, Any]:
        return self._call("GET", "/leaderboard", params={"dataset": dataset, "split": split})

    # ------------------------------------------------------------------ status

    def put_status(self, *, run_id: str, state: str, direction: str = "",
                   best_pgr: float | None = None, evals: int = 0, findings: int = 0,
                   usd: float = 0.0, tokens: int = 0, compute_s: float = 0.0,
                   reason: str = "") -> dict[str, Any]:
        """Report this agent's own state (replaces its previous report)."""
        return self._call("PUT", "/status", json={
            "run_id": run_id, "direction": direction, "state": state, "best_pgr": best_pgr,
            "evals": evals, "findings": findings, "usd": usd, "tokens": tokens,
            "compute_s": compute_s, "reason": reason})

    def status(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Researchers' states: every agent's for an admin token, one's own otherwise."""
        return self._call("GET", "/status", params={"run_id": run_id})["items"]

    def post_transcript(self, run_id: str, turns: Sequence[Mapping[str, Any]]
                        ) -> dict[str, Any]:
        """Mirror events of this agent's transcript (``seq``-numbered; re-sent ones are
        ignored)."""
        return self._call("POST", "/transcript", retry=False,
                          json={"run_id": run_id, "turns": list(turns)})

    def transcript(self, agent: str | None = None, run_id: str | None = None,
                   after: int = -1, limit: int = 200) -> dict[str, Any]:
        """A researcher's mirrored transcript (an agent: its own; an admin: anyone's)."""
        return self._call("GET", "/transcript", params={
            "agent": agent, "run_id": run_id, "after": after, "limit": limit})

    # ------------------------------------------------------------------ admin

    def create_token(self, name: str, role: str = "agent", *,
                     budget_per_hour: int | None = None,
                     budget_total: int | None = None, run: str | None = None
                     ) -> dict[str, Any]:
        """Create an agent (or admin) token. ``run``: the research run the agent belongs
        to; its researchers share one rationing account per dataset on the server."""
        body: dict[str, Any] = {"name": name, "role": role,
                                "budget_per_hour": budget_per_hour,
                                "budget_total": budget_total}
        if run is not None:
            body["run"] = run
        return self._call("POST", "/admin/tokens", json=body)

    def tokens(self) -> list[dict[str, Any]]:
        return self._call("GET", "/admin/tokens")["items"]

    def revoke_token(self, token_id: int) -> dict[str, Any]:
        return self._call("DELETE", f"/admin/tokens/{token_id}")

    def agents(self) -> list[dict[str, Any]]:
        return self._call("GET", "/admin/agents")["items"]

    def set_budget(self, name: str, *, budget_per_hour: int | None = None,
                   budget_total: int | None = None) -> dict[str, Any]:
        return self._call("PATCH", f"/admin/agents/{name}", json={
            "budget_per_hour": budget_per_hour, "budget_total": budget_total})

    def flags(self, agent: str | None = None, since: datetime | str | None = None,
              limit: int = 100, offset: int = 0, *, state: str | None = None,
              source: str | None = None, finding: int | None = None) -> dict[str, Any]:
        return self._call("GET", "/admin/flags", params={
            "agent": agent, "since": _iso(since), "limit": limit, "offset": offset,
            "state": state, "source": source, "finding": finding})

    def create_flag(self, agent: str, kind: str, evidence: str, *, severity: str = "medium",
                    source: str = "monitor", finding_id: int | None = None,
                    submission_id: int | None = None,
                    detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Raise a flag (admin); an identical open flag is returned instead of a copy."""
        return self._call("POST", "/admin/flags", json={
            "agent": agent, "kind": kind, "evidence": evidence, "severity": severity,
            "source": source, "finding_id": finding_id, "submission_id": submission_id,
            "detail": dict(detail or {})})

    def review_flag(self, flag_id: int, decision: str, reason: str) -> dict[str, Any]:
        """Accept (it was reward hacking) or reject (a false alarm) a flag, with a reason."""
        return self._call("PATCH", f"/admin/flags/{flag_id}",
                          json={"decision": decision, "reason": reason})

    def audit(self, action: str | None = None, since: datetime | str | None = None,
              limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return self._call("GET", "/admin/audit", params={
            "action": action, "since": _iso(since), "limit": limit, "offset": offset})
