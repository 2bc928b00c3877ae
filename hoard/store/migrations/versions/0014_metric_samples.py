"""Per-node metric samples, kept for a bounded window (raw, then downsampled).

A new table only: a process of the previous release never reads or writes it
(expand; nothing to contract).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 08:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_samples",
        sa.Column("node_id", sa.String(36), sa.ForeignKey("nodes.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("resolution", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(), primary_key=True),
        sa.Column("values", sa.JSON(), nullable=False),
    )
    op.create_index("ix_metric_samples_age", "metric_samples", ["resolution", "at"])


def downgrade() -> None:
    op.drop_index("ix_metric_samples_age", table_name="metric_samples")
    op.drop_table("metric_samples")
