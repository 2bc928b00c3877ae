"""backups

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 13:23:25.694238
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('archived_logs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('cluster_id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('object_key', sa.String(length=512), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('archived_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('archived_logs', schema=None) as batch_op:
        batch_op.create_index('uq_archived_logs_name', ['cluster_id', 'name'], unique=True)

    op.create_table('backups',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.String(length=36), nullable=False),
    sa.Column('cluster_id', sa.String(length=36), nullable=False),
    sa.Column('cluster_name', sa.String(length=63), nullable=False),
    sa.Column('engine', sa.String(length=32), nullable=False),
    sa.Column('version', sa.String(length=16), nullable=False),
    sa.Column('storage_gb', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('object_key', sa.String(length=512), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.Column('admin_user', sa.String(length=63), nullable=False),
    sa.Column('admin_password', sa.Text(), nullable=False),
    sa.Column('service_password', sa.Text(), nullable=False),
    sa.Column('keep_last', sa.Integer(), nullable=True),
    sa.Column('keep_days', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('backups', schema=None) as batch_op:
        batch_op.create_index('ix_backups_cluster', ['cluster_id', 'id'], unique=False)
        batch_op.create_index('ix_backups_project', ['project_id', 'id'], unique=False)

    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('backup_schedule', sa.JSON(), nullable=True))

    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('backup_key', sa.Text(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_column('backup_key')

    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.drop_column('backup_schedule')

    with op.batch_alter_table('backups', schema=None) as batch_op:
        batch_op.drop_index('ix_backups_project')
        batch_op.drop_index('ix_backups_cluster')

    op.drop_table('backups')
    with op.batch_alter_table('archived_logs', schema=None) as batch_op:
        batch_op.drop_index('uq_archived_logs_name')

    op.drop_table('archived_logs')
