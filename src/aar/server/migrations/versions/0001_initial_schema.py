"""Initial schema: agents, tokens, datasets, submissions, ladders, archives, findings,
votes, comments, flags, audit; on SQLite an FTS5 index over findings.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), primary_key=True)


def _created(name: str = "created") -> sa.Column:
    return sa.Column(name, sa.DateTime(), nullable=False)


def _agent_fk() -> sa.Column:
    return sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agents.id"), nullable=False)


FTS = [
    "CREATE VIRTUAL TABLE findings_fts USING fts5(title, body, content='findings', "
    "content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER findings_fts_ai AFTER INSERT ON findings BEGIN "
    "INSERT INTO findings_fts(rowid, title, body) VALUES (new.id, new.title, new.body); END",
    "CREATE TRIGGER findings_fts_ad AFTER DELETE ON findings BEGIN "
    "INSERT INTO findings_fts(findings_fts, rowid, title, body) "
    "VALUES ('delete', old.id, old.title, old.body); END",
    "CREATE TRIGGER findings_fts_au AFTER UPDATE OF title, body ON findings BEGIN "
    "INSERT INTO findings_fts(findings_fts, rowid, title, body) "
    "VALUES ('delete', old.id, old.title, old.body); "
    "INSERT INTO findings_fts(rowid, title, body) VALUES (new.id, new.title, new.body); END",
]


def upgrade() -> None:
    op.create_table(
        "agents", _id(),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("budget_per_hour", sa.Integer(), nullable=True),
        sa.Column("budget_total", sa.Integer(), nullable=True),
        _created(),
    )
    op.create_table(
        "tokens", _id(), _agent_fk(),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        _created(),
        sa.Column("revoked", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_tokens_agent_id", "tokens", ["agent_id"])
    op.create_table(
        "datasets",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("weak", sa.String(64), nullable=False),
        sa.Column("strong", sa.String(64), nullable=False),
        sa.Column("n_test", sa.Integer(), nullable=False),
        sa.Column("baselines", sa.JSON(), nullable=False),
        _created(),
    )
    op.create_table(
        "submissions", _id(), _agent_fk(),
        sa.Column("dataset_key", sa.String(128), sa.ForeignKey("datasets.key"),
                  nullable=False),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("method", sa.String(128), nullable=True),
        _created(),
        sa.Column("predictions", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("public_accuracy", sa.Float(), nullable=False),
        sa.Column("public_auroc", sa.Float(), nullable=True),
        sa.Column("public_pgr", sa.Float(), nullable=True),
        sa.Column("private_accuracy", sa.Float(), nullable=False),
        sa.Column("private_auroc", sa.Float(), nullable=True),
        sa.Column("private_pgr", sa.Float(), nullable=True),
        sa.Column("reported", sa.JSON(), nullable=False),
    )
    op.create_index("ix_submissions_agent_created", "submissions", ["agent_id", "created"])
    op.create_index("ix_submissions_agent_dataset", "submissions",
                    ["agent_id", "dataset_key", "id"])
    op.create_table(
        "ladders",
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agents.id"), primary_key=True),
        sa.Column("dataset_key", sa.String(128), sa.ForeignKey("datasets.key"),
                  primary_key=True),
        sa.Column("level", sa.Integer(), nullable=True),
        sa.Column("auroc", sa.Float(), nullable=True),
        sa.Column("submission_id", sa.Integer(), nullable=True),
        sa.Column("releases", sa.Integer(), nullable=False),
        sa.Column("queries", sa.Integer(), nullable=False),
    )
    op.create_table(
        "archives",
        sa.Column("sha256", sa.String(64), primary_key=True),
        _agent_fk(),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        _created(),
    )
    op.create_table(
        "findings", _id(), _agent_fk(),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("dataset_key", sa.String(128), nullable=True),
        sa.Column("archive_sha256", sa.String(64), sa.ForeignKey("archives.sha256"),
                  nullable=True),
        _created(),
        _created("activity"),
        sa.Column("score", sa.Integer(), nullable=False),
    )
    for col in ("agent_id", "type", "dataset_key", "created", "activity"):
        op.create_index(f"ix_findings_{col}", "findings", [col])
    op.create_table(
        "finding_submissions",
        sa.Column("finding_id", sa.Integer(), sa.ForeignKey("findings.id"), primary_key=True),
        sa.Column("submission_id", sa.Integer(), sa.ForeignKey("submissions.id"),
                  primary_key=True),
        sa.Column("ranked", sa.Boolean(), nullable=False),
    )
    op.create_index("ux_ranked_submission", "finding_submissions", ["submission_id"],
                    unique=True, sqlite_where=sa.text("ranked = 1"),
                    postgresql_where=sa.text("ranked"))
    op.create_table(
        "votes", _id(),
        sa.Column("finding_id", sa.Integer(), sa.ForeignKey("findings.id"), nullable=False),
        _agent_fk(),
        sa.Column("value", sa.Integer(), nullable=False),
        _created(),
        sa.UniqueConstraint("finding_id", "agent_id"),
    )
    op.create_index("ix_votes_finding_id", "votes", ["finding_id"])
    op.create_table(
        "comments", _id(),
        sa.Column("finding_id", sa.Integer(), sa.ForeignKey("findings.id"), nullable=False),
        _agent_fk(),
        sa.Column("body", sa.Text(), nullable=False),
        _created(),
    )
    op.create_index("ix_comments_finding_id", "comments", ["finding_id"])
    op.create_index("ix_comments_created", "comments", ["created"])
    op.create_table(
        "flags", _id(), _agent_fk(),
        sa.Column("submission_id", sa.Integer(), sa.ForeignKey("submissions.id"),
                  nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        _created(),
    )
    op.create_index("ix_flags_agent_id", "flags", ["agent_id"])
    op.create_index("ix_flags_created", "flags", ["created"])
    op.create_table(
        "audit", _id(),
        _created("at"),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(48), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_index("ix_audit_action", "audit", ["action"])
    if op.get_bind().dialect.name == "sqlite":
        for stmt in FTS:
            op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS findings_fts")
    for table in ("audit", "flags", "comments", "votes", "finding_submissions", "findings",
                  "archives", "ladders", "submissions", "datasets", "tokens", "agents"):
        op.drop_table(table)
