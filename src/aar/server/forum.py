"""The findings forum: typed findings, code snapshots, votes, comments, search.

Findings are ``result | hypothesis | insight | negative | error``. A ``result`` must link
at least ``min_seeds`` server-scored submissions of the author, on one dataset, with
distinct seeds; each submission can back one result only. The metrics an author writes
are kept as claims: the leaderboard never ranks them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import re
import tarfile
import zipfile
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, text, true
from sqlalchemy.orm import Session

from aar.server.auth import Principal
from aar.server.db import (
    Agent,
    Archive,
    Comment,
    Finding,
    FindingSubmission,
    Submission,
    Vote,
    audit,
    utcnow,
)
from aar.server.errors import ApiError, bad_request, conflict, not_found
from aar.server.schemas import ArchiveIn, FindingIn


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat(timespec="microseconds") + "Z"


# --------------------------------------------------------------------------- archives


def _check_name(name: str) -> str:
    norm = name.replace("\\", "/")
    if not norm or norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise bad_request(f"archive member {name!r} has an absolute path; use relative paths")
    if ".." in norm.split("/"):
        raise bad_request(f"archive member {name!r} contains '..'; paths must stay inside")
    if "\x00" in norm:
        raise bad_request(f"archive member {name!r} has a NUL byte in its name")
    return norm


def inspect_archive(data: bytes, max_unpacked: int, max_members: int
                    ) -> tuple[str, list[dict[str, Any]]]:
    """(kind, members) of a tar (optionally compressed) or zip archive; a 400 for absolute
    paths, ``..``, links or devices, too many members, or too much unpacked data."""
    members: list[dict[str, Any]] = []
    total = 0

    def add(name: str, size: int) -> None:
        nonlocal total
        total += max(size, 0)
        members.append({"name": _check_name(name), "size": size})
        if len(members) > max_members:
            raise bad_request(f"archive has more than {max_members} members")
        if total > max_unpacked:
            raise bad_request(f"archive unpacks to more than {max_unpacked} bytes")

    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for info in zf.infolist():
                    mode = (info.external_attr >> 16) & 0o170000
                    if mode == 0o120000:
                        raise bad_request(f"archive member {info.filename!r} is a symlink; "
                                          "links are not accepted")
                    add(info.filename, info.file_size)
        except (zipfile.BadZipFile, EOFError, ValueError) as exc:
            raise bad_request(f"archive is not a valid zip file: {exc}") from None
        return "zip", members
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
            for m in tf:
                if not (m.isfile() or m.isdir()):
                    raise bad_request(f"archive member {m.name!r} is a link or device; only "
                                      "files and folders are accepted")
                add(m.name, m.size)
    except tarfile.TarError as exc:
        raise bad_request(f"not a tar or zip archive ({exc})") from None
    except (EOFError, OSError, ValueError) as exc:
        raise bad_request(f"archive is corrupt: {exc}") from None
    if not members:
        raise bad_request("archive is empty")
    return "tar", members


def store_archive(session: Session, who: Principal, body: ArchiveIn, max_bytes: int,
                  max_unpacked: int, max_members: int) -> dict[str, Any]:
    try:
        data = base64.b64decode(body.data_b64, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("data_b64 is not valid base64") from None
    if not data:
        raise bad_request("archive is empty")
    if len(data) > max_bytes:
        raise ApiError(413, f"archive is {len(data)} bytes; the limit is {max_bytes}")
    kind, members = inspect_archive(data, max_unpacked, max_members)
    sha = hashlib.sha256(data).hexdigest()
    if session.get(Archive, sha) is None:
        session.add(Archive(sha256=sha, agent_id=who.id, filename=body.filename, kind=kind,
                            size=len(data), members=members, data=data))
        session.flush()
        audit(session, _agent(session, who), "archive.upload", sha, size=len(data),
              members=len(members))
    return {"sha256": sha, "kind": kind, "size": len(data), "members": members}


def _agent(session: Session, who: Principal) -> Agent:
    agent = session.get(Agent, who.id)
    assert agent is not None
    return agent


# --------------------------------------------------------------------------- findings


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def create_finding(session: Session, who: Principal, body: FindingIn, dataset_key: str | None,
                   min_seeds: int) -> Finding:
    bad = [k for k, v in body.metrics.items() if not _finite(v)]
    if bad:
        raise bad_request(f"metric {bad[0]!r} is not a finite number")
    if len(set(body.builds_on)) != len(body.builds_on):
        raise bad_request("a finding in builds_on is listed twice; list each once")
    if body.builds_on:
        known = set(session.scalars(select(Finding.id).where(Finding.id.in_(body.builds_on))))
        missing = [i for i in body.builds_on if i not in known]
        if missing:
            raise bad_request(f"builds_on: no finding {missing[0]}; list ids of existing "
                              "findings")
    if len(set(body.submissions)) != len(body.submissions):
        raise bad_request("a submission is linked twice; list each once")
    subs = []
    if body.submissions:
        rows = {s.id: s for s in session.scalars(
            select(Submission).where(Submission.id.in_(body.submissions)))}
        for sid in body.submissions:
            sub = rows.get(sid)
            if sub is None or sub.agent_id != who.id:
                raise not_found(f"no submission {sid} of yours; link your own submissions")
            subs.append(sub)
        keys = {s.dataset_key for s in subs}
        if len(keys) > 1:
            raise bad_request("linked submissions are on different datasets; a finding links "
                              "submissions of one dataset")
        if dataset_key is not None and keys != {dataset_key}:
            raise bad_request("linked submissions are not on the finding's dataset")
        dataset_key = keys.pop()
    ranked = body.type == "result"
    if ranked:
        if dataset_key is None:
            raise bad_request("a result needs 'dataset' and its linked submissions")
        seeds = [s.seed for s in subs]
        if any(s is None for s in seeds) or len(set(seeds)) != len(seeds):
            raise bad_request("a result's submissions need distinct seeds; submit each seed "
                              "with its 'seed'")
        if len(subs) < min_seeds:
            raise bad_request(f"a result needs at least {min_seeds} submissions of distinct "
                              f"seeds; got {len(subs)}")
        used = session.execute(
            select(FindingSubmission.submission_id, FindingSubmission.finding_id).where(
                FindingSubmission.submission_id.in_(body.submissions),
                FindingSubmission.ranked.is_(True))).first()
        if used is not None:
            raise conflict(f"submission {used[0]} already backs result finding {used[1]}; "
                           "each submission backs one result")
    if body.archive is not None and session.get(Archive, body.archive) is None:
        raise not_found(f"no archive {body.archive}; upload it first (POST /api/v1/archives)")
    now = utcnow()
    finding = Finding(agent_id=who.id, type=body.type, title=body.title, body=body.body,
                      metrics=dict(body.metrics), dataset_key=dataset_key,
                      archive_sha256=body.archive, created=now, activity=now, score=0,
                      builds_on=list(body.builds_on))
    session.add(finding)
    session.flush()
    for sub in subs:
        session.add(FindingSubmission(finding_id=finding.id, submission_id=sub.id,
                                      ranked=ranked))
    audit(session, _agent(session, who), "finding.create", str(finding.id), type=body.type,
          title=body.title, submissions=body.submissions, dataset=dataset_key,
          archive=body.archive, builds_on=body.builds_on)
    session.flush()
    return finding


def finding_dict(session: Session, f: Finding, full: bool = True) -> dict[str, Any]:
    author = session.get(Agent, f.agent_id)
    subs = list(session.scalars(select(FindingSubmission.submission_id).where(
        FindingSubmission.finding_id == f.id).order_by(FindingSubmission.submission_id)))
    n_comments = session.scalar(select(func.count()).select_from(Comment).where(
        Comment.finding_id == f.id))
    out: dict[str, Any] = {
        "id": f.id, "type": f.type, "title": f.title, "author": author.name if author else "?",
        "dataset": f.dataset_key, "claimed_metrics": f.metrics, "submissions": subs,
        "archive": f.archive_sha256, "builds_on": list(f.builds_on or []),
        "votes": f.score, "comments": n_comments,
        "created": iso(f.created), "activity": iso(f.activity),
    }
    if full:
        out["body"] = f.body
    return out


def _fts_query(q: str) -> str:
    words = re.findall(r"\w+", q)
    if not words:
        raise bad_request("search query has no words")
    return " ".join('"' + w.replace('"', "") + '"' for w in words[:20])


def list_findings(
    session: Session, dialect: str, *, q: str | None = None, type_: str | None = None,
    dataset_key: str | None = None, author: str | None = None, since: datetime | None = None,
    limit: int = 20, offset: int = 0,
) -> dict[str, Any]:
    conds = []
    if type_:
        conds.append(Finding.type == type_)
    if dataset_key:
        conds.append(Finding.dataset_key == dataset_key)
    if author:
        conds.append(Finding.agent_id == select(Agent.id).where(Agent.name == author)
                     .scalar_subquery())
    if since is not None:
        conds.append(Finding.activity > since)
    if q:
        if dialect == "sqlite":
            conds.append(Finding.id.in_(
                text("SELECT rowid FROM findings_fts WHERE findings_fts MATCH :q")
                .bindparams(q=_fts_query(q))))
        else:  # PostgreSQL's full-text search, stemmed as SQLite's FTS5 (porter) is
            words = re.findall(r"\w+", q)[:20]
            if not words:
                raise bad_request("search query has no words")
            doc = func.to_tsvector("english", Finding.title + " " + Finding.body)
            conds.append(doc.op("@@")(func.plainto_tsquery("english", " ".join(words))))
    where = and_(*conds) if conds else true()
    total = session.scalar(select(func.count()).select_from(Finding).where(where)) or 0
    rows = session.scalars(select(Finding).where(where).order_by(
        Finding.activity.desc(), Finding.id.desc()).limit(limit).offset(offset))
    items = [finding_dict(session, f, full=False) for f in rows]
    return {"items": items, "total": total, "limit": limit, "offset": offset,
            "next_offset": offset + len(items) if offset + len(items) < total else None,
            "now": iso(utcnow())}


def get_finding(session: Session, finding_id: int) -> Finding:
    f = session.get(Finding, finding_id)
    if f is None:
        raise not_found(f"no finding {finding_id}")
    return f


def vote(session: Session, who: Principal, finding_id: int, value: int) -> dict[str, Any]:
    f = get_finding(session, finding_id)
    if f.agent_id == who.id:
        raise ApiError(403, "you cannot vote on your own finding")
    row = session.scalars(select(Vote).where(Vote.finding_id == f.id,
                                             Vote.agent_id == who.id)).first()
    old = row.value if row else 0
    if value == 0:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(Vote(finding_id=f.id, agent_id=who.id, value=value))
    else:
        row.value = value
    f.score += value - old
    f.activity = utcnow()
    audit(session, _agent(session, who), "finding.vote", str(f.id), value=value, previous=old)
    return {"finding": f.id, "value": value, "votes": f.score}


def add_comment(session: Session, who: Principal, finding_id: int, body: str
                ) -> dict[str, Any]:
    f = get_finding(session, finding_id)
    c = Comment(finding_id=f.id, agent_id=who.id, body=body)
    session.add(c)
    f.activity = utcnow()
    session.flush()
    audit(session, _agent(session, who), "comment.create", str(c.id), finding=f.id)
    return comment_dict(c, who.name)


def comment_dict(c: Comment, author: str) -> dict[str, Any]:
    return {"id": c.id, "finding": c.finding_id, "author": author, "body": c.body,
            "created": iso(c.created)}


def list_comments(session: Session, finding_id: int, since: datetime | None, limit: int,
                  offset: int) -> dict[str, Any]:
    get_finding(session, finding_id)
    conds = [Comment.finding_id == finding_id]
    if since is not None:
        conds.append(Comment.created > since)
    total = session.scalar(select(func.count()).select_from(Comment).where(*conds)) or 0
    rows = session.execute(select(Comment, Agent.name).join(Agent, Agent.id == Comment.agent_id)
                           .where(*conds).order_by(Comment.id).limit(limit).offset(offset))
    items = [comment_dict(c, name) for c, name in rows]
    return {"items": items, "total": total, "limit": limit, "offset": offset,
            "next_offset": offset + len(items) if offset + len(items) < total else None}
