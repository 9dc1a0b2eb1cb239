"""Storage: SQLAlchemy 2 models, the engine (SQLite in WAL mode, or PostgreSQL) and
Alembic migrations run programmatically at start.

A *submission* is the test predictions of one seed of one method, scored once by the
server; a *finding* of type ``result`` links at least five submissions of distinct seeds,
which is what the leaderboard ranks.
"""

from __future__ import annotations

try:
    import fcntl
except ImportError:  # not POSIX: a thread lock only, SQLite's busy timeout between processes
    fcntl = None  # type: ignore[assignment]
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    false,
    insert,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from aar.errors import AarError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def utcnow() -> datetime:
    """Naive UTC (SQLite keeps no time zone; every stored time is UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # "agent" | "admin"
    budget_per_hour: Mapped[int | None] = mapped_column(Integer, nullable=True)
    budget_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # The research run the agent belongs to (migration 0004): its researchers share one
    # rationing account per dataset universe. None: the agent is an account of its own.
    run: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)


def account_of(name: str, run: str | None) -> str:
    """The rationing account of an agent: its run's, else its own."""
    return f"run:{run}" if run else f"agent:{name}"


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown to admins to tell tokens apart
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    revoked: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class DatasetRow(Base):
    """The fixed baselines a dataset was scored against, recorded at first use."""

    __tablename__ = "datasets"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    weak: Mapped[str] = mapped_column(String(64))
    strong: Mapped[str] = mapped_column(String(64))
    n_test: Mapped[int] = mapped_column(Integer)
    baselines: Mapped[dict[str, Any]] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Submission(Base):
    __tablename__ = "submissions"
    __table_args__ = (Index("ix_submissions_agent_created", "agent_id", "created"),
                      Index("ix_submissions_agent_dataset", "agent_id", "dataset_key", "id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    dataset_key: Mapped[str] = mapped_column(ForeignKey("datasets.key"))
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    method: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    predictions: Mapped[bytes] = mapped_column(LargeBinary)  # float32, workspace test order
    sha256: Mapped[str] = mapped_column(String(64))
    public_accuracy: Mapped[float] = mapped_column(Float)
    public_auroc: Mapped[float | None] = mapped_column(Float, nullable=True)
    public_pgr: Mapped[float | None] = mapped_column(Float, nullable=True)
    private_accuracy: Mapped[float] = mapped_column(Float)
    private_auroc: Mapped[float | None] = mapped_column(Float, nullable=True)
    private_pgr: Mapped[float | None] = mapped_column(Float, nullable=True)
    # What the agent was told (the Ladder's answer), kept so that it can be shown again.
    reported: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The method read test inputs while fitting (migration 0004): ranked apart.
    transductive: Mapped[bool] = mapped_column(Boolean, server_default=false(),
                                               default=False)


class AccountRow(Base):
    """The rationing account of one run (or lone agent) on one universe of examples: the
    Ladder its researchers share and the queries they spent (migration 0004)."""

    __tablename__ = "accounts"
    account: Mapped[str] = mapped_column(String(200), primary_key=True)
    universe: Mapped[str] = mapped_column(String(64), primary_key=True)
    level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    auroc: Mapped[float | None] = mapped_column(Float, nullable=True)
    submission_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dataset_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    releases: Mapped[int] = mapped_column(Integer, default=0)
    queries: Mapped[int] = mapped_column(Integer, default=0)


class LadderRow(Base):
    """Per-agent Ladders of schema 0001 (before accounts); no longer written."""

    __tablename__ = "ladders"
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), primary_key=True)
    dataset_key: Mapped[str] = mapped_column(ForeignKey("datasets.key"), primary_key=True)
    level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    auroc: Mapped[float | None] = mapped_column(Float, nullable=True)
    submission_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    releases: Mapped[int] = mapped_column(Integer, default=0)
    queries: Mapped[int] = mapped_column(Integer, default=0)


class RequestKey(Base):
    """An agent's ``Idempotency-Key`` and what its request made (migration 0005): a
    retried evaluation or finding is answered with that, never done twice. Written in the
    same transaction as the row it names."""

    __tablename__ = "request_keys"
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "evaluation" | "finding"
    target_id: Mapped[int] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Archive(Base):
    """A method's code snapshot: a content-addressed tar.gz or zip."""

    __tablename__ = "archives"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    filename: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(8))  # "tar" | "zip"
    size: Mapped[int] = mapped_column(Integer)
    members: Mapped[list[Any]] = mapped_column(JSON)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Finding(Base):
    __tablename__ = "findings"
    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    type: Mapped[str] = mapped_column(String(16), index=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)  # claimed by the agent, never ranked
    dataset_key: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    archive_sha256: Mapped[str | None] = mapped_column(
        ForeignKey("archives.sha256"), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    activity: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    score: Mapped[int] = mapped_column(Integer, default=0)  # sum of votes
    # Ids of earlier findings this one builds on (checked to exist when posted).
    builds_on: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)


class FindingSubmission(Base):
    __tablename__ = "finding_submissions"
    finding_id: Mapped[int] = mapped_column(ForeignKey("findings.id"), primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    # Set for the submissions of a ranked result: each may back one ranked result only.
    ranked: Mapped[bool] = mapped_column(Boolean, default=False)


Index("ux_ranked_submission", FindingSubmission.submission_id, unique=True,
      sqlite_where=text("ranked = 1"), postgresql_where=text("ranked"))


class Vote(Base):
    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("finding_id", "agent_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("findings.id"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    value: Mapped[int] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Comment(Base):
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(primary_key=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("findings.id"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    body: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class Flag(Base):
    __tablename__ = "flags"
    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    submission_id: Mapped[int | None] = mapped_column(ForeignKey("submissions.id"), nullable=True,
                                                      index=True)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    # Review (migration 0003): an open or accepted flag holds its finding off the
    # leaderboard; accepted means "yes, this was reward hacking".
    # Server-side defaults only: the probing detector's compiled insert leaves them out.
    severity: Mapped[str] = mapped_column(String(16), server_default="medium")
    evidence: Mapped[str] = mapped_column(Text, server_default="")
    finding_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    source: Mapped[str] = mapped_column(String(16),
                                        server_default="probing")  # probing|monitor|judge
    state: Mapped[str] = mapped_column(String(16), server_default="open",
                                       index=True)  # open | accepted | rejected
    reviewer: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class AgentStatusRow(Base):
    """A researcher's latest state, as it reported it (``PUT /api/v1/status``)."""

    __tablename__ = "agent_status"
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(128), index=True)
    direction: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    best_pgr: Mapped[float | None] = mapped_column(Float, nullable=True)
    evals: Mapped[int] = mapped_column(Integer, default=0)
    findings: Mapped[int] = mapped_column(Integer, default=0)
    usd: Mapped[float] = mapped_column(Float, default=0.0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)  # 64-bit: migration 0004
    compute_s: Mapped[float] = mapped_column(Float, default=0.0)
    reason: Mapped[str] = mapped_column(Text, default="")
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class TranscriptTurn(Base):
    """One event of a researcher's transcript, mirrored by the researcher itself
    (``POST /api/v1/transcript``, migration 0006) so the dashboard can show it; the
    transcript file in the run folder stays the record. ``seq`` numbers the events of a
    run; a re-sent one is ignored."""

    __tablename__ = "transcript_turns"
    __table_args__ = (UniqueConstraint("agent_id", "run_id", "seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    run_id: Mapped[str] = mapped_column(String(128))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class ReferenceRun(Base):
    """A run of a library method, posted by an admin (``POST /api/v1/admin/references``,
    migration 0007): a reference row of its dataset's leaderboard. The server reads no
    result files; whoever ran the method posts it (the research orchestrator does at a
    run's start)."""

    __tablename__ = "reference_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(200), unique=True)
    dataset_key: Mapped[str] = mapped_column(String(200), index=True)
    method: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    weak: Mapped[str] = mapped_column(String(200))
    strong: Mapped[str] = mapped_column(String(200))
    created: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seeds: Mapped[list[Any]] = mapped_column(JSON)  # per seed: split -> scores
    posted: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class VerificationRow(Base):
    """An ``aar verify`` table of a run, posted by an admin (``POST
    /api/v1/admin/verifications``, migration 0007); a run's newer table replaces its
    older one. The dashboard shows a dataset's newest."""

    __tablename__ = "verifications"
    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[str] = mapped_column(String(128), unique=True)
    dataset: Mapped[str] = mapped_column(String(200), index=True)
    t: Mapped[str] = mapped_column(String(64))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # the table as posted
    posted: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class AuditEntry(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(48), index=True)
    target: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class Actor(Protocol):
    """Who did something the audit trail records: an agent row or an authenticated
    principal (None: the server itself, written ``system``)."""

    @property
    def id(self) -> int: ...

    @property
    def name(self) -> str: ...


def audit_row(actor: Actor | None, action: str, target: str, at: datetime | None = None,
              **detail: Any) -> dict[str, Any]:
    """The values of one audit entry: the one place that says what an entry holds."""
    return {"at": at or utcnow(), "actor_id": actor.id if actor else None,
            "actor": actor.name if actor else "system", "action": action, "target": target,
            "detail": detail}


def audit(session: Session | Connection, actor: Actor | None, action: str, target: str,
          **detail: Any) -> None:
    """Append an entry to the audit trail, in the caller's transaction."""
    session.execute(insert(AuditEntry), audit_row(actor, action, target, **detail))


# --------------------------------------------------------------------------- engine


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    if url.startswith(prefix) and url[len(prefix):] not in ("", ":memory:"):
        return Path(url[len(prefix):])
    return None


def hide_password(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def make_engine(url: str) -> Engine:
    """An engine; for SQLite: WAL, a busy timeout, foreign keys, and write transactions
    that take the write lock up front (``BEGIN IMMEDIATE``), so that concurrent writers
    queue instead of failing on a stale snapshot."""
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               pool_size=20, max_overflow=20)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            immediate = conn.get_execution_options().get("write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    try:
        return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=20)
    except ModuleNotFoundError as exc:
        raise AarError(f"no database driver for {url.split(':', 1)[0]} ({exc.name}); for "
                       "PostgreSQL: pip install 'psycopg[binary]' and use a "
                       "postgresql+psycopg://user:password@host/db URL") from None
    except ArgumentError as exc:
        raise AarError(f"bad database URL: {exc}") from None


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class DriverSQL:
    """A Core statement compiled once for a dialect and run on the DB-API cursor of a
    SQLAlchemy connection: the evaluation hot path skips SQLAlchemy's per-call execution
    machinery (several times the cost of SQLite's own work). Values must be what the
    driver takes: JSON as text, times through ``Database.time``."""

    def __init__(self, stmt: Any, dialect: Any, returning_id: bool = False) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        self.defaults = dict(compiled.params)
        self.positional = bool(compiled.positional)
        self.names = list(compiled.positiontup or [])
        self.returning = returning_id and dialect.name != "sqlite"
        if self.returning and " RETURNING " not in self.sql.upper():
            self.sql += " RETURNING id"

    def _args(self, values: dict[str, Any]) -> Any:
        merged = {**self.defaults, **values}
        return tuple(merged[n] for n in self.names) if self.positional else merged

    def run(self, conn: Connection, **values: Any) -> Any:
        """Execute; returns the cursor (for fetching, or ``lastrowid``)."""
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cur.execute(self.sql, self._args(values))
        return cur

    def insert_id(self, conn: Connection, **values: Any) -> int:
        cur = self.run(conn, **values)
        return int(cur.fetchone()[0] if self.returning else cur.lastrowid)


class WriteLock:
    """Serialises SQLite writers: a thread lock for this process and ``flock`` on a file
    beside the database for the other processes (server workers, the CLI). Both wake a
    waiter as soon as the lock is free, where SQLite's own busy handler sleeps and polls."""

    def __init__(self, db_path: Path) -> None:
        self._thread = threading.Lock()
        self._path = db_path.with_name(db_path.name + ".write-lock")
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._thread.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Database:
    """Engine plus two session factories: ``read()`` and ``write()`` (one transaction
    each, committed on success)."""

    _lock = threading.Lock()  # one migration at a time within a process

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        with self._lock:
            try:
                upgrade(self.engine)
            except (OperationalError, InterfaceError) as exc:
                self.engine.dispose()
                reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
                raise AarError(f"cannot open the database {hide_password(url)}: "
                               f"{reason}") from None
        path = _sqlite_path(url)
        self._write_lock = WriteLock(path) if path is not None and fcntl else (
            threading.Lock() if self.dialect == "sqlite" else None)
        self.token_cache: dict[str, tuple[float, Any]] = {}  # token hash -> (expiry, who)
        self._write_engine = self.engine.execution_options(write=True)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self._write_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def compile(self, stmt: Any, returning_id: bool = False) -> DriverSQL:
        return DriverSQL(stmt, self.engine.dialect, returning_id)

    def time(self, t: datetime) -> Any:
        """A time as the driver stores it (SQLAlchemy's SQLite text format)."""
        return t.strftime("%Y-%m-%d %H:%M:%S.%f") if self.dialect == "sqlite" else t

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        if self._write_lock is None:
            with self._write() as session, session.begin():
                yield session
            return
        with self._write_lock, self._write() as session, session.begin():
            yield session

    @contextmanager
    def read_conn(self) -> Iterator[Connection]:
        """A Core connection for the hot path (no ORM)."""
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write_conn(self) -> Iterator[Connection]:
        """A Core connection in one write transaction, committed on success. On SQLite,
        writers of this process queue on a lock first: SQLite's busy handler sleeps in
        growing steps, which would add tens of milliseconds under contention."""
        if self._write_lock is None:
            with self._write_engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self._write_engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        if isinstance(self._write_lock, WriteLock):
            self._write_lock.close()
        self.engine.dispose()
