"""verifications, safety backups and in-place restores (issue 5)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 11:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('verifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('vm_id', sa.Integer(), nullable=False),
    sa.Column('backup_point_id', sa.Integer(), nullable=True),
    sa.Column('revision', sa.String(length=64), nullable=False),
    sa.Column('requested_by', sa.String(length=254), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('phase', sa.String(length=32), nullable=False),
    sa.Column('bytes_done', sa.BigInteger(), nullable=False),
    sa.Column('bytes_total', sa.BigInteger(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['vm_id'], ['vms.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['backup_point_id'], ['backup_points.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_verifications_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_verifications_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_verifications_vm_id'), ['vm_id'], unique=False)

    with op.batch_alter_table('restores', schema=None) as batch_op:
        batch_op.add_column(sa.Column('safety_revision', sa.String(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('safety_point_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_restores_safety_point_id', 'backup_points', ['safety_point_id'], ['id'],
                                    ondelete='SET NULL')


def downgrade():
    with op.batch_alter_table('restores', schema=None) as batch_op:
        batch_op.drop_constraint('fk_restores_safety_point_id', type_='foreignkey')
        batch_op.drop_column('safety_point_id')
        batch_op.drop_column('safety_revision')

    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_verifications_vm_id'))
        batch_op.drop_index(batch_op.f('ix_verifications_state'))
        batch_op.drop_index(batch_op.f('ix_verifications_created_at'))

    op.drop_table('verifications')
