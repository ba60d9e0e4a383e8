"""cameras seeded from the YAML settings are marked

The configuration's cameras are inserted into ``cameras`` at start (idempotently: a row that
exists is left as it is, edits included); ``from_config`` tells the dashboard which rows came
from configuration. Existing rows: false.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.add_column(sa.Column('from_config', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.drop_column('from_config')
