"""Replicated clusters: durability, stable endpoints, and where each node is.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 16:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.add_column(sa.Column("durability", sa.String(length=16), nullable=False,
                                      server_default="async"))
        batch_op.add_column(sa.Column("endpoint_host", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("rw_port", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("ro_port", sa.Integer(), nullable=True))
    with op.batch_alter_table("nodes") as batch_op:
        batch_op.add_column(sa.Column("zone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("ports", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("lag_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch_op:
        batch_op.drop_column("lag_bytes")
        batch_op.drop_column("ports")
        batch_op.drop_column("zone")
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.drop_column("ro_port")
        batch_op.drop_column("rw_port")
        batch_op.drop_column("endpoint_host")
        batch_op.drop_column("durability")
