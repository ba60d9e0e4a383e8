"""the event outbox: lifecycle messages written with the change, published by the relay

``event_outbox``: one row per event change (new / update / end) with the event's ``version``,
written in the transaction of the segment that made it; the relay publishes it and sets
``sent_at`` after the broker's acknowledgement. ``events.version``: the event's changes so far
(existing rows: 0, their messages were sent directly).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='0'))
    op.create_table(
        'event_outbox',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('event_id', sa.String(length=200), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('last_error', sa.Text(), nullable=True),
    )
    op.create_index('ix_event_outbox_unsent', 'event_outbox', ['sent_at', 'id'])
    op.create_index('ux_event_outbox_event_version', 'event_outbox', ['event_id', 'version'], unique=True)


def downgrade() -> None:
    op.drop_index('ux_event_outbox_event_version', table_name='event_outbox')
    op.drop_index('ix_event_outbox_unsent', table_name='event_outbox')
    op.drop_table('event_outbox')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('version')
