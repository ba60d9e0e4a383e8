"""leases: one holder at a time for a job every replica could run

``leases``: (name, holder, expires_at). A replica runs the job while it holds the lease and
renews it; another takes it over only once it has expired (the holder died). The evidence
maintainer is the first: each closed event's clip is built by one replica, not by all.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'leases',
        sa.Column('name', sa.String(length=100), primary_key=True),
        sa.Column('holder', sa.String(length=200), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('leases')
