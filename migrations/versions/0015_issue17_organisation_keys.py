"""issue 17: organisation keys (wrapped by the installation's master key) for encrypted repositories

Revision ID: 0015_issue17
Revises: 0014_issue14
Create Date: 2026-12-04 19:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0015_issue17'
down_revision = '0014_issue14'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'organisation_keys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organisation_id', sa.Integer(), nullable=False),
        sa.Column('key_id', sa.String(length=32), nullable=False),
        sa.Column('wrapped', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('exported_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key_id'),
    )
    op.create_index('ix_organisation_keys_organisation_id', 'organisation_keys', ['organisation_id'])


def downgrade():
    op.drop_index('ix_organisation_keys_organisation_id', table_name='organisation_keys')
    op.drop_table('organisation_keys')
