"""Indexes for the keyset cluster list and for loading a page's nodes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 13:20:00
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_clusters_project_id", "clusters", ["project_id", "id"])
    op.create_index("ix_nodes_cluster", "nodes", ["cluster_id"])


def downgrade() -> None:
    op.drop_index("ix_nodes_cluster", table_name="nodes")
    op.drop_index("ix_clusters_project_id", table_name="clusters")
