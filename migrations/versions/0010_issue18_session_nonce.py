"""issue 18: a session nonce per user, so signing out (or a new password) ends every session of the user

Revision ID: 0010_issue18
Revises: 0009
Create Date: 2026-12-03 09:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0010_issue18'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    # Existing rows get '' and their sessions (which carry no nonce) end once: everyone signs in again.
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_nonce', sa.String(length=32), nullable=False, server_default=''))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_nonce')
