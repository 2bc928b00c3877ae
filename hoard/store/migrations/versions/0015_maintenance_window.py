"""A cluster's maintenance window.

Nullable, so a process of the previous release, which does not know it, keeps
inserting clusters (expand; nothing to contract).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 08:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.add_column(sa.Column("maintenance_window", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.drop_column("maintenance_window")
