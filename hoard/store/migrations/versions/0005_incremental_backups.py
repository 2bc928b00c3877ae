"""Incremental backups name the backup they build on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 14:25:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backups") as batch_op:
        batch_op.add_column(sa.Column("parent_id", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("backups") as batch_op:
        batch_op.drop_column("parent_id")
