"""Archived logs record their latest commit and the time up to which the logs
shipped so far hold every commit (the restorable window's end).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 08:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("archived_logs") as batch_op:
        batch_op.add_column(sa.Column("last_commit_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("complete_until", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("archived_logs") as batch_op:
        batch_op.drop_column("complete_until")
        batch_op.drop_column("last_commit_at")
