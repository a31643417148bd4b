"""issue 14: a disk missing from the feed confirmed removed, through the deletion mechanism (grace, undo)

Revision ID: 0014_issue14
Revises: 0013_issue13
Create Date: 2026-12-04 19:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0014_issue14'
down_revision = '0013_issue13'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('disks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deletion_requested_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('deletion_due_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('deletion_requested_by_id', sa.Integer(), nullable=True))
        batch_op.create_index('ix_disks_deletion_due_at', ['deletion_due_at'])


def downgrade():
    with op.batch_alter_table('disks', schema=None) as batch_op:
        batch_op.drop_index('ix_disks_deletion_due_at')
        batch_op.drop_column('deletion_requested_by_id')
        batch_op.drop_column('deletion_due_at')
        batch_op.drop_column('deletion_requested_at')
