"""Flag review: every flag gets a severity, evidence, an optional finding, its source
(probing | monitor | judge) and a review state (open | accepted | rejected) with the
reviewer, the reason and the time.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("flags", sa.Column("severity", sa.String(16), nullable=False,
                                     server_default="medium"))
    op.add_column("flags", sa.Column("evidence", sa.Text(), nullable=False,
                                     server_default=""))
    op.add_column("flags", sa.Column("finding_id", sa.Integer(), nullable=True))
    op.add_column("flags", sa.Column("source", sa.String(16), nullable=False,
                                     server_default="probing"))
    op.add_column("flags", sa.Column("state", sa.String(16), nullable=False,
                                     server_default="open"))
    op.add_column("flags", sa.Column("reviewer", sa.String(64), nullable=True))
    op.add_column("flags", sa.Column("reason", sa.Text(), nullable=True))
    op.add_column("flags", sa.Column("reviewed_at", sa.DateTime(), nullable=True))
    op.create_index("ix_flags_finding_id", "flags", ["finding_id"])
    op.create_index("ix_flags_submission_id", "flags", ["submission_id"])
    op.create_index("ix_flags_state", "flags", ["state"])


def downgrade() -> None:
    for name in ("ix_flags_state", "ix_flags_submission_id", "ix_flags_finding_id"):
        op.drop_index(name, "flags")
    for col in ("reviewed_at", "reason", "reviewer", "state", "source", "finding_id",
                "evidence", "severity"):
        op.drop_column("flags", col)  # SQLite >= 3.35 drops columns in place
