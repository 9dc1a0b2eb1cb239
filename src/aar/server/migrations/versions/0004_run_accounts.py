"""One rationing account per (run, underlying examples): ``agents.run`` groups the tokens
of one research run; ``accounts`` holds the shared Ladder and query count of each (run,
universe of examples); ``submissions.transductive`` records that a method read test
inputs while fitting (ranked apart on the leaderboard). ``agent_status.tokens`` becomes
64-bit (a run's LLM token count passes 2**31; SQLite's integers are 64-bit already).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("run", sa.String(128), nullable=True))
    op.create_index("ix_agents_run", "agents", ["run"])
    op.add_column("submissions", sa.Column("transductive", sa.Boolean(), nullable=False,
                                           server_default=sa.false()))
    op.create_table(
        "accounts",
        sa.Column("account", sa.String(200), primary_key=True),
        sa.Column("universe", sa.String(64), primary_key=True),
        sa.Column("level", sa.Integer(), nullable=True),
        sa.Column("auroc", sa.Float(), nullable=True),
        sa.Column("submission_id", sa.Integer(), nullable=True),
        sa.Column("dataset_key", sa.String(128), nullable=True),
        sa.Column("releases", sa.Integer(), nullable=False),
        sa.Column("queries", sa.Integer(), nullable=False),
    )
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("agent_status", "tokens", type_=sa.BigInteger())


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("agent_status", "tokens", type_=sa.Integer())
    op.drop_table("accounts")
    op.drop_column("submissions", "transductive")
    op.drop_index("ix_agents_run", "agents")
    op.drop_column("agents", "run")
