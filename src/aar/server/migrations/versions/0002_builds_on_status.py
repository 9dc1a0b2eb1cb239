"""Findings that build on other findings (``findings.builds_on``) and the researchers'
live status (``agent_status``, one row per agent, replaced by ``PUT /api/v1/status``).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("findings", sa.Column("builds_on", sa.JSON(), nullable=True))
    op.create_table(
        "agent_status",
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agents.id"), primary_key=True),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("direction", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("best_pgr", sa.Float(), nullable=True),
        sa.Column("evals", sa.Integer(), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.Column("usd", sa.Float(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("compute_s", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_agent_status_run_id", "agent_status", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_agent_status_run_id", "agent_status")
    op.drop_table("agent_status")
    op.drop_column("findings", "builds_on")  # SQLite >= 3.35 drops columns in place
