"""Storage autoscaling: a cluster's policy, and the size at which Hoard last said
it could grow no further (so that is said once).

Both nullable, so a process of the previous release, which does not know them,
keeps inserting clusters (expand; nothing to contract).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.add_column(sa.Column("storage_autoscale", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("autoscale_limit_gb", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.drop_column("autoscale_limit_gb")
        batch_op.drop_column("storage_autoscale")
