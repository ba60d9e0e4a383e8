"""Time in UTC, in one place: every timestamp Vigil stores, sends or compares is aware UTC.

SQLite hands back naive datetimes (stored as UTC), PostgreSQL aware ones; :func:`as_utc`
makes both the same.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["as_utc", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Aware datetimes converted to UTC; naive ones taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
