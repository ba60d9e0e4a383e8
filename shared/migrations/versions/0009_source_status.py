"""camera sources' health as ingest reports it

``source_status``: one row per camera an ingest process runs, upserted every reconcile tick
(connected, measured fps, counters, last frame and segment, reconnects, last error without the
source URL); the row leaves when the camera stops.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'source_status',
        sa.Column('camera_id', sa.String(length=64), primary_key=True),
        sa.Column('ingest_id', sa.String(length=200), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('connected', sa.Boolean(), nullable=False),
        sa.Column('fps', sa.Float(), nullable=True),
        sa.Column('frames', sa.Integer(), nullable=False),
        sa.Column('segments', sa.Integer(), nullable=False),
        sa.Column('dropped', sa.Integer(), nullable=False),
        sa.Column('reconnects', sa.Integer(), nullable=False),
        sa.Column('last_frame_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_segment_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('source_status')
