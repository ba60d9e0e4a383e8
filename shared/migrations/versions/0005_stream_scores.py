"""every stream's score on segment rows and at each event's peak

The served detector fuses zero-shot (semantic, predictive) and object-normality streams;
segment rows gain the object stream (``s_obj``) and each sub-stream's score (``streams``,
JSON: semantic, predictive, pred, mem, motion), events the same at their peak
(``peak_s_obj``, ``peak_streams``). Existing rows keep NULL (scored before these streams).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('segment_scores', schema=None) as batch_op:
        batch_op.add_column(sa.Column('s_obj', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('streams', sa.JSON(), nullable=True))
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('peak_s_obj', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('peak_streams', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('peak_streams')
        batch_op.drop_column('peak_s_obj')
    with op.batch_alter_table('segment_scores', schema=None) as batch_op:
        batch_op.drop_column('streams')
        batch_op.drop_column('s_obj')
