"""The audit log: every control-plane change, written in the transaction that makes it.

A route calls :func:`record` before the CRUD call that commits, so the entry and the change
commit together or not at all. Snapshots name whether a source URL is set, never the URL.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from services.api.security import Principal
from vigil.models import AuditEntry, Camera


def camera_snapshot(cam: Camera) -> dict[str, Any]:
    """What an audit entry keeps of a camera (never its source URL)."""
    return {"name": cam.name, "source_type": cam.source_type, "context": cam.context, "enabled": bool(cam.enabled),
            "has_source_uri": bool(cam.source_uri), "masks": list(cam.masks or []), "zones": list(cam.zones or []),
            "tuning": dict(cam.tuning or {})}


def record(session: Session, principal: Principal, action: str, target: str, *,
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> AuditEntry:
    entry = AuditEntry(actor=principal.name, actor_role=principal.role, user_id=principal.user_id, action=action,
                       target=target, before=before, after=after)
    session.add(entry)
    return entry
