"""issue 13: one message system: the notices become notifications (portal rows without a user), table dropped

Every ``notices`` row is carried over, nothing dropped: its kind is mapped to the notification vocabulary and
the key it packed into the kind goes to ``dedup_key`` (``deletion:backup:12`` -> ``deletion.scheduled`` with
``backup:12``; ``rpo_missed:7`` -> ``rpo.missed`` with ``vm:7``; ``tier_change`` -> ``tier.changed`` with
``org:N``; ``deletion_blocked`` -> ``deletion.blocked``); a kind this migration does not know is kept as it is.
The message becomes the body (and, cut to one line, the subject); created, expiry and dismissal stay.
The downgrade maps them back.

Revision ID: 0013_issue13
Revises: 0012_issue12
Create Date: 2026-12-04 19:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0013_issue13'
down_revision = '0012_issue12'
branch_labels = None
depends_on = None

NOTICES = sa.table(
    'notices', sa.column('id', sa.Integer()), sa.column('organisation_id', sa.Integer()),
    sa.column('kind', sa.String()), sa.column('message', sa.Text()), sa.column('created_at', sa.DateTime()),
    sa.column('expires_at', sa.DateTime()), sa.column('dismissed_at', sa.DateTime()))
NOTIFICATIONS = sa.table(
    'notifications', sa.column('id', sa.Integer()), sa.column('organisation_id', sa.Integer()),
    sa.column('user_id', sa.Integer()), sa.column('channel', sa.String()), sa.column('kind', sa.String()),
    sa.column('vm_id', sa.Integer()), sa.column('vm_name', sa.String()), sa.column('dedup_key', sa.String()),
    sa.column('subject', sa.String()), sa.column('body', sa.Text()), sa.column('details', sa.JSON()),
    sa.column('state', sa.String()), sa.column('why', sa.Text()), sa.column('attempts', sa.Integer()),
    sa.column('digest', sa.Boolean()), sa.column('created_at', sa.DateTime()), sa.column('sent_at', sa.DateTime()),
    sa.column('expires_at', sa.DateTime()), sa.column('dismissed_at', sa.DateTime()))


def new_kind(kind, organisation_id):
    """(kind, dedup_key, vm_id) of a notification for an old notice's kind."""
    if kind.startswith('deletion:'):
        return 'deletion.scheduled', kind.removeprefix('deletion:'), None
    if kind.startswith('rpo_missed:') and kind.split(':', 1)[1].isdigit():
        vm_id = int(kind.split(':', 1)[1])
        return 'rpo.missed', f'vm:{vm_id}', vm_id
    if kind == 'tier_change':
        return 'tier.changed', f'org:{organisation_id}' if organisation_id is not None else '', None
    if kind == 'deletion_blocked':
        return 'deletion.blocked', '', None
    return kind, '', None


def old_kind(kind, key):
    if kind == 'deletion.scheduled':
        return f'deletion:{key}'[:32]
    if kind == 'rpo.missed':
        return f'rpo_missed:{key.removeprefix("vm:")}'[:32]
    return {'tier.changed': 'tier_change', 'deletion.blocked': 'deletion_blocked'}.get(kind, kind)[:32]


def upgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('dismissed_at', sa.DateTime(), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(sa.select(NOTICES).order_by(NOTICES.c.id)).mappings().all()
    vm_names = dict(connection.execute(sa.text('SELECT id, name FROM vms')).all()) if rows else {}
    for row in rows:
        kind, key, vm_id = new_kind(row['kind'], row['organisation_id'])
        connection.execute(NOTIFICATIONS.insert().values(
            organisation_id=row['organisation_id'], user_id=None, channel='portal', kind=kind, vm_id=vm_id,
            vm_name=vm_names.get(vm_id, '') if vm_id is not None else '', dedup_key=key,
            subject=' '.join(row['message'].split())[:300], body=row['message'], details={}, state='sent',
            why='', attempts=0, digest=False, created_at=row['created_at'], sent_at=row['created_at'],
            expires_at=row['expires_at'], dismissed_at=row['dismissed_at']))
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.drop_index('ix_notices_organisation_id')
        batch_op.drop_index('ix_notices_created_at')
    op.drop_table('notices')


def downgrade():
    op.create_table(
        'notices',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organisation_id', sa.Integer(), nullable=True),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=True),
        sa.Column('dismissed_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.create_index('ix_notices_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_notices_organisation_id', ['organisation_id'], unique=False)
    connection = op.get_bind()
    is_notice = (NOTIFICATIONS.c.channel == 'portal') & NOTIFICATIONS.c.user_id.is_(None)
    rows = connection.execute(sa.select(NOTIFICATIONS).where(is_notice).order_by(NOTIFICATIONS.c.id)).mappings().all()
    for row in rows:
        connection.execute(NOTICES.insert().values(
            organisation_id=row['organisation_id'], kind=old_kind(row['kind'], row['dedup_key']),
            message=row['body'], created_at=row['created_at'], expires_at=row['expires_at'],
            dismissed_at=row['dismissed_at']))
    connection.execute(NOTIFICATIONS.delete().where(is_notice))
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_column('dismissed_at')
        batch_op.drop_column('expires_at')
