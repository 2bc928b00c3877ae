"""Each node's storage use, as the observer last saw it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 09:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch_op:
        batch_op.add_column(sa.Column("storage_used_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("storage_total_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch_op:
        batch_op.drop_column("storage_total_bytes")
        batch_op.drop_column("storage_used_bytes")
