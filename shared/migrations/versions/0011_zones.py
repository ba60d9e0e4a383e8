"""camera zones, and the zone a segment row or an event belongs to

``cameras.zones``: regions scored on their own (``vigil.regions.Zone``: polygon, prompt set,
threshold, longest occupancy). ``segment_scores.zone`` / ``events.zone``: the zone a row
scores or an event happened in (null: the camera's whole view, as every existing row).
``camera_states.camera_id`` widens to 100: a zone's scoring state is keyed ``<camera>~<zone>``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.add_column(sa.Column('zones', sa.JSON(), nullable=False, server_default='[]'))
    for table in ('segment_scores', 'events'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('zone', sa.String(length=32), nullable=True))
    op.create_index('ix_events_camera_zone', 'events', ['camera_id', 'zone'])
    with op.batch_alter_table('camera_states', schema=None) as batch_op:  # <camera>~<zone> keys
        batch_op.alter_column('camera_id', existing_type=sa.String(length=64), type_=sa.String(length=100))


def downgrade() -> None:
    with op.batch_alter_table('camera_states', schema=None) as batch_op:
        batch_op.alter_column('camera_id', existing_type=sa.String(length=100), type_=sa.String(length=64))
    op.drop_index('ix_events_camera_zone', table_name='events')
    for table in ('events', 'segment_scores'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('zone')
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.drop_column('zones')
