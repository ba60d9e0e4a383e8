"""notification deliveries and dead letters in SQL

``deliveries``: one row per (event id, version, channel) that ``vigil notify`` routed, with
its status (pending / delivered / suppressed / dead_letter), attempts and latency.
``dead_letters``: the segment messages the scoring worker gave up on, for listing and replay.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'deliveries',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('event_id', sa.String(length=200), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('camera_id', sa.String(length=100), nullable=False),
        sa.Column('channel', sa.String(length=100), nullable=False),
        sa.Column('rule', sa.String(length=100), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('message', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('latency_s', sa.Float(), nullable=True),
    )
    op.create_index('ix_deliveries_event_id', 'deliveries', ['event_id'])
    op.create_index('ux_deliveries_event_version_channel', 'deliveries', ['event_id', 'version', 'channel'], unique=True)
    op.create_index('ix_deliveries_status_due', 'deliveries', ['status', 'next_attempt_at'])
    op.create_table(
        'dead_letters',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('source_topic', sa.String(length=200), nullable=False),
        sa.Column('partition', sa.Integer(), nullable=True),
        sa.Column('offset', sa.Integer(), nullable=True),
        sa.Column('key', sa.String(length=200), nullable=True),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=True),
        sa.Column('payload_b64', sa.Text(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('replay_requested_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('replay_requested_by', sa.String(length=200), nullable=True),
        sa.Column('replayed_at', sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index('ux_dead_letters_where', 'dead_letters', ['source_topic', 'partition', 'offset'], unique=True)


def downgrade() -> None:
    op.drop_index('ux_dead_letters_where', table_name='dead_letters')
    op.drop_table('dead_letters')
    op.drop_index('ix_deliveries_status_due', table_name='deliveries')
    op.drop_index('ux_deliveries_event_version_channel', table_name='deliveries')
    op.drop_index('ix_deliveries_event_id', table_name='deliveries')
    op.drop_table('deliveries')
