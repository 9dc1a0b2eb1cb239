"""Transcripts: ``transcript_turns`` holds the events that researchers mirror to the server
(``POST /api/v1/transcript``) for the dashboard's researcher page.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transcript_turns",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.UniqueConstraint("agent_id", "run_id", "seq"),
    )
    op.create_index("ix_transcript_turns_agent_id", "transcript_turns", ["agent_id"])


def downgrade() -> None:
    op.drop_index("ix_transcript_turns_agent_id", "transcript_turns")
    op.drop_table("transcript_turns")
