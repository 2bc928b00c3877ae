"""Storage alarms that clear some way under their threshold: each node's
standing alarm, kept between observer passes.

Nullable, so a process of the previous release, which does not know it, keeps
inserting nodes; a process of this one reads None as the recorded use's own
threshold (expand; nothing to contract).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch_op:
        batch_op.add_column(sa.Column("storage_alarm", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch_op:
        batch_op.drop_column("storage_alarm")
