"""issue 18: a session nonce per user, so signing out (or a new password) ends every session of the user

Revision ID: 0010_issue18
Revises: 0009
Create Date: 2026-12-03 09:00:00

"""
import secrets

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0010_issue18'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    # Sessions from before carry no nonce and end once: everyone signs in again. Every existing user gets a nonce
    # of its own (an empty one would make every later sign-in fail the session check).
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_nonce', sa.String(length=32), nullable=False, server_default=''))
    connection = op.get_bind()
    users = sa.table('users', sa.column('id', sa.Integer), sa.column('session_nonce', sa.String))
    for (user_id,) in connection.execute(sa.select(users.c.id)).all():
        connection.execute(users.update().where(users.c.id == user_id).values(session_nonce=secrets.token_hex(16)))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_nonce')
