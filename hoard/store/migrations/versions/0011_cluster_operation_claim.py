"""A cluster's running operation, claimed by compare-and-set; schedules and
running parameters that were stored as JSON null become SQL NULL.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 17:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.add_column(sa.Column("operation_id", sa.String(36), nullable=True))
    # A cluster with an operation still running keeps it claimed (the newest one).
    op.execute(
        "UPDATE clusters SET operation_id = (SELECT o.id FROM operations o "
        "WHERE o.cluster_id = clusters.id AND o.status = 'running' "
        "ORDER BY o.created_at DESC LIMIT 1)")
    # JSON null read back as None but counted as "set": the scheduler tripped on it.
    for column in ("backup_schedule", "running_parameters"):
        op.execute(f"UPDATE clusters SET {column} = NULL WHERE CAST({column} AS TEXT) = 'null'")


def downgrade() -> None:
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.drop_column("operation_id")
