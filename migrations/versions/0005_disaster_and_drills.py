"""disaster plans and fire drills (issue 5)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 11:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('disaster_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('scope_value', sa.String(length=200), nullable=False),
    sa.Column('scope_label', sa.String(length=300), nullable=False),
    sa.Column('point_in_time', sa.DateTime(), nullable=False),
    sa.Column('workers', sa.Integer(), nullable=False),
    sa.Column('bytes_per_second', sa.Float(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('started_by_id', sa.Integer(), nullable=True),
    sa.Column('started_by', sa.String(length=254), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['started_by_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('disaster_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_disaster_runs_created_at'), ['created_at'], unique=False)

    op.create_table('disaster_restores',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('restore_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['restore_id'], ['restores.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['disaster_runs.id'], ),
    sa.PrimaryKeyConstraint('run_id', 'restore_id'),
    sa.UniqueConstraint('restore_id')
    )

    op.create_table('fire_drills',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('vm_id', sa.Integer(), nullable=False),
    sa.Column('backup_point_id', sa.Integer(), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=254), nullable=False),
    sa.Column('result', sa.String(length=16), nullable=False),
    sa.Column('checks', sa.JSON(), nullable=False),
    sa.Column('bytes_per_second', sa.Float(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('scratch_path', sa.String(length=500), nullable=False),
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
    sa.ForeignKeyConstraint(['backup_point_id'], ['backup_points.id'], ),
    sa.ForeignKeyConstraint(['vm_id'], ['vms.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('fire_drills', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fire_drills_backup_point_id'), ['backup_point_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_fire_drills_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_fire_drills_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_fire_drills_vm_id'), ['vm_id'], unique=False)


def downgrade():
    with op.batch_alter_table('fire_drills', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fire_drills_vm_id'))
        batch_op.drop_index(batch_op.f('ix_fire_drills_state'))
        batch_op.drop_index(batch_op.f('ix_fire_drills_created_at'))
        batch_op.drop_index(batch_op.f('ix_fire_drills_backup_point_id'))
    op.drop_table('fire_drills')
    op.drop_table('disaster_restores')
    with op.batch_alter_table('disaster_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_disaster_runs_created_at'))
    op.drop_table('disaster_runs')
