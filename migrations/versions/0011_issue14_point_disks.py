"""issue 14: every disk of a VM in one backup point

A disk absent from a feed is marked (``disks.missing_since``), never dropped; a backup of a VM with a marked
disk fails rather than back up fewer disks. The catalog records each point's disks (``backup_points.disks``:
a JSON list of {name, size}); points made before hold NULL until the next catalog refresh fills them.
A restore may name one disk of its point (``restores.disk``; empty: every disk).

Revision ID: 0011_issue14
Revises: 0010_issue18
Create Date: 2026-12-05 10:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0011_issue14'
down_revision = '0010_issue18'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('disks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('missing_since', sa.DateTime(), nullable=True))
    with op.batch_alter_table('backup_points', schema=None) as batch_op:
        batch_op.add_column(sa.Column('disks', sa.JSON(), nullable=True))
    with op.batch_alter_table('restores', schema=None) as batch_op:
        batch_op.add_column(sa.Column('disk', sa.String(length=128), nullable=False, server_default=''))


def downgrade():
    with op.batch_alter_table('restores', schema=None) as batch_op:
        batch_op.drop_column('disk')
    with op.batch_alter_table('backup_points', schema=None) as batch_op:
        batch_op.drop_column('disks')
    with op.batch_alter_table('disks', schema=None) as batch_op:
        batch_op.drop_column('missing_since')
