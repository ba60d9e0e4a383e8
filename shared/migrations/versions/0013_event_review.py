"""the review workflow of events

``events.review_status`` (new -> acknowledged -> resolved), ``resolution`` (true_positive |
false_positive | duplicate), ``assignee``, ``reviewed_by``, ``reviewed_at``, ``review_note``.
Existing rows: new, unassigned.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

COLUMNS = ('review_status', 'resolution', 'assignee', 'reviewed_by', 'reviewed_at', 'review_note')


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('review_status', sa.String(length=16), nullable=False, server_default='new'))
        batch_op.add_column(sa.Column('resolution', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('assignee', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('reviewed_by', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('review_note', sa.String(length=2000), nullable=True))
    op.create_index('ix_events_review_start', 'events', ['review_status', 't_start'])


def downgrade() -> None:
    op.drop_index('ix_events_review_start', table_name='events')
    with op.batch_alter_table('events', schema=None) as batch_op:
        for c in reversed(COLUMNS):
            batch_op.drop_column(c)
