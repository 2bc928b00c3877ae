"""Addresses of their own for clusters and endpoints; the provider a cluster
runs on.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 17:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "addresses",
        sa.Column("address", sa.String(45), primary_key=True),
        sa.Column("cluster_id", sa.String(36),
                  sa.ForeignKey("clusters.id", ondelete="CASCADE"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
    )
    op.create_index("ix_addresses_cluster_id", "addresses", ["cluster_id"])
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.add_column(sa.Column("ro_host", sa.String(255), nullable=True))
        batch_op.add_column(sa.Column("provider", sa.String(32), nullable=False,
                                      server_default="local"))


def downgrade() -> None:
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.drop_column("provider")
        batch_op.drop_column("ro_host")
    op.drop_index("ix_addresses_cluster_id", "addresses")
    op.drop_table("addresses")
