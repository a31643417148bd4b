"""notifications, preferences, webhooks (issue 7)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 11:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'webhooks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organisation_id', sa.Integer(), nullable=False),
        sa.Column('url', sa.String(length=500), nullable=False),
        sa.Column('secret', sa.String(length=128), nullable=False),
        sa.Column('events', sa.JSON(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('description', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id']),
        sa.ForeignKeyConstraint(['created_by_id'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_webhooks_organisation_id', 'webhooks', ['organisation_id'])
    op.create_table(
        'notifications',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organisation_id', sa.Integer(), nullable=True),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('webhook_id', sa.Integer(), nullable=True),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('kind', sa.String(length=48), nullable=False),
        sa.Column('vm_id', sa.Integer(), nullable=True),
        sa.Column('vm_name', sa.String(length=200), nullable=False),
        sa.Column('dedup_key', sa.String(length=120), nullable=False),
        sa.Column('subject', sa.String(length=300), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('details', sa.JSON(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('why', sa.Text(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('digest', sa.Boolean(), nullable=False),
        sa.Column('digest_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('sent_at', sa.DateTime(), nullable=True),
        sa.Column('read_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id']),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.ForeignKeyConstraint(['webhook_id'], ['webhooks.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_notifications_organisation_id', 'notifications', ['organisation_id'])
    op.create_index('ix_notifications_webhook_id', 'notifications', ['webhook_id'])
    op.create_index('ix_notifications_state', 'notifications', ['state'])
    op.create_index('ix_notifications_digest_id', 'notifications', ['digest_id'])
    op.create_index('ix_notifications_created_at', 'notifications', ['created_at'])
    op.create_index('ix_notifications_dedup', 'notifications', ['kind', 'dedup_key', 'channel', 'created_at'])
    op.create_index('ix_notifications_inbox', 'notifications', ['user_id', 'channel', 'read_at'])
    op.create_table(
        'notification_preferences',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=48), nullable=False),
        sa.Column('email', sa.String(length=16), nullable=False),
        sa.Column('portal', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('user_id', 'kind'),
    )


def downgrade():
    op.drop_table('notification_preferences')
    op.drop_index('ix_notifications_inbox', table_name='notifications')
    op.drop_index('ix_notifications_dedup', table_name='notifications')
    op.drop_index('ix_notifications_created_at', table_name='notifications')
    op.drop_index('ix_notifications_digest_id', table_name='notifications')
    op.drop_index('ix_notifications_state', table_name='notifications')
    op.drop_index('ix_notifications_webhook_id', table_name='notifications')
    op.drop_index('ix_notifications_organisation_id', table_name='notifications')
    op.drop_table('notifications')
    op.drop_index('ix_webhooks_organisation_id', table_name='webhooks')
    op.drop_table('webhooks')
