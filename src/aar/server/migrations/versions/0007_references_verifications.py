"""Reference runs and verification tables, posted through the admin API instead of read
from files that higher layers write: ``reference_runs`` (``POST /api/v1/admin/references``:
runs of library methods, the leaderboard's reference rows) and ``verifications`` (``POST
/api/v1/admin/verifications``: ``aar verify`` tables, shown on the dashboard).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reference_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(200), nullable=False, unique=True),
        sa.Column("dataset_key", sa.String(200), nullable=False),
        sa.Column("method", sa.String(128), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("weak", sa.String(200), nullable=False),
        sa.Column("strong", sa.String(200), nullable=False),
        sa.Column("created", sa.String(64), nullable=True),
        sa.Column("seeds", sa.JSON(), nullable=False),
        sa.Column("posted", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_reference_runs_dataset_key", "reference_runs", ["dataset_key"])
    op.create_table(
        "verifications",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run", sa.String(128), nullable=False, unique=True),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("t", sa.String(64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("posted", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_verifications_dataset", "verifications", ["dataset"])
    op.create_index("ix_verifications_posted", "verifications", ["posted"])


def downgrade() -> None:
    op.drop_index("ix_verifications_posted", "verifications")
    op.drop_index("ix_verifications_dataset", "verifications")
    op.drop_table("verifications")
    op.drop_index("ix_reference_runs_dataset_key", "reference_runs")
    op.drop_table("reference_runs")
