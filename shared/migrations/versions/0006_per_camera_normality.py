"""per-camera normality: model versions of a kind (and a camera), and normal periods

A camera's object-normality version is a model version of kind ``normality`` that belongs
to one camera (``camera_id``); at most one is active per camera. The heads of the zero-shot
model stay kind ``heads`` (existing rows). ``normal_periods`` records the footage a camera's
normality is learnt from.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False, server_default='heads'))
        batch_op.add_column(sa.Column('camera_id', sa.String(length=64), nullable=True))
    op.create_index('ix_model_versions_camera', 'model_versions', ['camera_id', 'active'])
    op.create_table(
        'normal_periods',
        sa.Column('camera_id', sa.String(length=64), primary_key=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('target_s', sa.Float(), nullable=False),
        sa.Column('recorded_s', sa.Float(), nullable=False),
        sa.Column('fps', sa.Float(), nullable=True),
        sa.Column('clips', sa.JSON(), nullable=False),
        sa.Column('hours', sa.JSON(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('run_id', sa.String(length=200), nullable=True),
        sa.Column('model_version', sa.String(length=200), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('normal_periods')
    op.drop_index('ix_model_versions_camera', table_name='model_versions')
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_column('camera_id')
        batch_op.drop_column('kind')
