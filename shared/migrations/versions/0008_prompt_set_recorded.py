"""segment scores and events record the prompt set that scored them

``prompt_set``: ``<name>@<content hash>`` of the set Score used (a set edited in SQL is named
``<context>/<name>``; its hash is the version row's ``content_hash``). Existing rows: null
(not recorded).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('segment_scores', 'events'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('prompt_set', sa.String(length=200), nullable=True))


def downgrade() -> None:
    for table in ('segment_scores', 'events'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('prompt_set')
