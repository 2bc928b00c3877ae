"""Many workers on one store: worker leases, shard owners, and each cluster's shard.

Expand only: new tables and a new column with a value for every row, so a
previous release keeps running beside this one during an upgrade.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 09:00:00
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None
SHARDS = 64


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=128), primary_key=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("taken_by", sa.String(length=128), nullable=True),
    )
    op.create_table(
        "shard_owners",
        sa.Column("shard", sa.Integer(), primary_key=True),
        sa.Column("worker_id", sa.String(length=128), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
    )
    op.bulk_insert(sa.table("shard_owners", sa.column("shard", sa.Integer()),
                            sa.column("worker_id", sa.String()), sa.column("epoch", sa.Integer())),
                   [{"shard": n, "worker_id": None, "epoch": 0} for n in range(SHARDS)])
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.add_column(sa.Column("shard", sa.Integer(), nullable=False, server_default="0"))
    bind = op.get_bind()
    clusters = sa.table("clusters", sa.column("id", sa.String()), sa.column("shard", sa.Integer()))
    for (cluster_id,) in bind.execute(sa.select(clusters.c.id)).fetchall():
        shard = int.from_bytes(hashlib.sha256(cluster_id.encode()).digest()[:4], "big") % SHARDS
        bind.execute(clusters.update().where(clusters.c.id == cluster_id).values(shard=shard))
    op.create_index("ix_clusters_shard", "clusters", ["shard", "id"])
    op.create_index("ix_operations_status", "operations", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_operations_status", table_name="operations")
    op.drop_index("ix_clusters_shard", table_name="clusters")
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.drop_column("shard")
    op.drop_table("shard_owners")
    op.drop_table("workers")
