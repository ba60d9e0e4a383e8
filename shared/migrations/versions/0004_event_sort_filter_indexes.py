"""event sort indexes carry the other sort column; finer statistics on PostgreSQL

``(t_start, id)`` → ``(t_start, id, peak_score)`` and ``(peak_score, id)`` →
``(peak_score, id, t_start)``: a query that sorts by one and filters by the other
(min_score with newest first, a time window sorted by score) checks the filter in the
index instead of fetching a heap row for every skipped entry. Measured on 1,000,000
events: min_score 0.9 newest first 334 ms → 1.3 ms; a day sorted by score 54 ms → 0.7 ms.
On PostgreSQL the planner also gets a finer histogram of both columns.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_start_id')
        batch_op.drop_index('ix_events_peak_id')
        batch_op.create_index('ix_events_start_id_peak', ['t_start', 'id', 'peak_score'], unique=False)
        batch_op.create_index('ix_events_peak_id_start', ['peak_score', 'id', 't_start'], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE events ALTER COLUMN peak_score SET STATISTICS 1000")
        op.execute("ALTER TABLE events ALTER COLUMN t_start SET STATISTICS 1000")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE events ALTER COLUMN peak_score SET STATISTICS -1")
        op.execute("ALTER TABLE events ALTER COLUMN t_start SET STATISTICS -1")
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_peak_id_start')
        batch_op.drop_index('ix_events_start_id_peak')
        batch_op.create_index('ix_events_start_id', ['t_start', 'id'], unique=False)
        batch_op.create_index('ix_events_peak_id', ['peak_score', 'id'], unique=False)
