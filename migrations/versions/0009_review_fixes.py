"""review fixes: a fire drill outlives its purged backup point

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 12:10:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('fire_drills', schema=None) as batch_op:
        batch_op.alter_column('backup_point_id', existing_type=sa.Integer(), nullable=True)


def downgrade():
    op.execute('DELETE FROM fire_drills WHERE backup_point_id IS NULL')
    with op.batch_alter_table('fire_drills', schema=None) as batch_op:
        batch_op.alter_column('backup_point_id', existing_type=sa.Integer(), nullable=False)
