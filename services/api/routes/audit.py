"""The audit log of control-plane changes (admins only): who changed what, when, before and after."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import select

from services.api.crud.events import as_utc
from services.api.deps import AdminDep, SessionDep
from vigil.models import AuditEntry, AuditEntryPublic

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=list[AuditEntryPublic], summary="control-plane changes, newest first")
def list_audit(
    session: SessionDep, _: AdminDep,
    target: Annotated[str | None, Query(max_length=300, description="e.g. camera:cam-01 or a prefix: camera:")] = None,
    action: Annotated[str | None, Query(max_length=64, description="e.g. camera.masks")] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[datetime | None, Query(description="entries at or after")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AuditEntryPublic]:
    q = select(AuditEntry)
    if target:
        q = q.where(AuditEntry.target.startswith(target, autoescape=True))
    if action:
        q = q.where(AuditEntry.action == action)
    if actor:
        q = q.where(AuditEntry.actor == actor)
    if since is not None:
        q = q.where(AuditEntry.at >= as_utc(since))
    rows = session.exec(q.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)).all()
    return [AuditEntryPublic.model_validate(r, from_attributes=True) for r in rows]
