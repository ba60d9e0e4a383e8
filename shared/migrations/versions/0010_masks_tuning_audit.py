"""camera masks and threshold tuning in SQL; the audit log of control-plane changes

``cameras.masks``: polygons removed from detection (``vigil.regions.Mask``); ``cameras.tuning``:
the camera's own event thresholds over the configuration's. Existing rows: none of either.
``audit_log``: who changed which camera, zone, prompt set, threshold or model activation,
when, with the before and after.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.add_column(sa.Column('masks', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('tuning', sa.JSON(), nullable=False, server_default='{}'))
    op.create_table(
        'audit_log',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('actor_role', sa.String(length=16), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('target', sa.String(length=300), nullable=False),
        sa.Column('before', sa.JSON(), nullable=True),
        sa.Column('after', sa.JSON(), nullable=True),
    )
    op.create_index('ix_audit_log_at', 'audit_log', ['at'])
    op.create_index('ix_audit_log_target', 'audit_log', ['target'])


def downgrade() -> None:
    op.drop_index('ix_audit_log_target', table_name='audit_log')
    op.drop_index('ix_audit_log_at', table_name='audit_log')
    op.drop_table('audit_log')
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.drop_column('tuning')
        batch_op.drop_column('masks')
