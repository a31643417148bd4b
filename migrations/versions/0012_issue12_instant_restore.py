"""issue 12: instant restores into RBD: when the image became usable, and the secret of its HTTP source

Revision ID: 0012_issue12
Revises: 0011_issue14
Create Date: 2026-12-04 02:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0012_issue12'
down_revision = '0011_issue14'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('restores', schema=None) as batch_op:
        batch_op.add_column(sa.Column('usable_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('source_secret', sa.String(length=64), nullable=False, server_default=''))
        batch_op.create_index('ix_restores_source_secret', ['source_secret'])


def downgrade():
    with op.batch_alter_table('restores', schema=None) as batch_op:
        batch_op.drop_index('ix_restores_source_secret')
        batch_op.drop_column('source_secret')
        batch_op.drop_column('usable_at')
