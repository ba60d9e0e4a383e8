"""event query indexes: (sort column, id) for keyset pagination; trigram index for text search

On PostgreSQL the text search over ``top_descriptions`` (``CAST(... AS TEXT) ILIKE '%q%'``)
gets a GIN trigram index when the ``pg_trgm`` extension can be installed (it is a trusted
extension from PostgreSQL 13: a database owner may create it). Where it cannot, the search
still works, as a scan.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
import logging

from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_start_id', ['t_start', 'id'], unique=False)
        batch_op.create_index('ix_events_peak_id', ['peak_score', 'id'], unique=False)
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        available = bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).first()
        if available is None:
            log.warning("pg_trgm is not available: event text search will scan")
            return
        try:
            with bind.begin_nested():
                bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        except sa.exc.DBAPIError as exc:
            log.warning("cannot create extension pg_trgm (%s): event text search will scan", type(exc).__name__)
            return
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_events_descriptions_trgm ON events "
            "USING gin ((CAST(top_descriptions AS TEXT)) gin_trgm_ops)"
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_events_descriptions_trgm")
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_peak_id')
        batch_op.drop_index('ix_events_start_id')
