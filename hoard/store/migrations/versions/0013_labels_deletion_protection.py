"""Labels on clusters, and deletion protection.

Both columns have server defaults, so a process of the previous release, which
does not know them, keeps inserting clusters (expand; nothing to contract).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 05:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.add_column(sa.Column("labels", sa.JSON(), nullable=False,
                                      server_default="{}"))
        batch_op.add_column(sa.Column("deletion_protection", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.drop_column("deletion_protection")
        batch_op.drop_column("labels")
