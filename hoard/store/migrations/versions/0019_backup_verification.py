"""Backups that prove themselves: each backup's last verification (a restore
into a throwaway node and the engine's own checks) and the time it passed, the
verification running on it, and a cluster's last proof of a restorable backup.

Nullable, so a process of the previous release, which does not know them,
keeps inserting backups and clusters (expand; nothing to contract).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backups") as batch_op:
        batch_op.add_column(sa.Column("verified_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("verification", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("verifying_operation_id", sa.String(36), nullable=True))
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.add_column(sa.Column("last_verified_restorable_at", sa.DateTime(),
                                      nullable=True))
        batch_op.add_column(sa.Column("last_verified_restorable_seconds", sa.Float(),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.drop_column("last_verified_restorable_seconds")
        batch_op.drop_column("last_verified_restorable_at")
    with op.batch_alter_table("backups") as batch_op:
        batch_op.drop_column("verifying_operation_id")
        batch_op.drop_column("verification")
        batch_op.drop_column("verified_at")
