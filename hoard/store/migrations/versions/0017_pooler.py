"""A PostgreSQL cluster's optional connection pooler: its settings and address.

Nullable, so a process of the previous release, which does not know them, keeps
inserting clusters (expand; nothing to contract).

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-04 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.add_column(sa.Column("pooler", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("pooler_host", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clusters") as batch_op:
        batch_op.drop_column("pooler_host")
        batch_op.drop_column("pooler")
