"""What gave up: segment messages the scoring path dead-lettered and notifications that could
not be delivered; admins list them and send them round again (every request audited).

A segment replay is asked for here and carried out by the outbox relay (it holds the producer):
the original payload goes back to its topic, and a record that fails again is dead-lettered
anew, at its new offset. A notification retry resets its attempts; ``vigil notify`` sends it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from sqlmodel import select

from services.api import audit
from services.api.deps import AdminDep, SessionDep
from vigil.models import DeadLetterPublic, DeadLetterRow, Delivery, DeliveryPublic, utcnow

router = APIRouter(tags=["dead letters"])


@router.get("/dead-letters", response_model=list[DeadLetterPublic], summary="segment messages given up, newest first")
def list_dead_letters(
    session: SessionDep, _: AdminDep,
    state: Annotated[Literal["all", "pending", "replayed"], Query(
        description="pending: not yet replayed (or its replay not yet carried out)")] = "all",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[DeadLetterPublic]:
    q = select(DeadLetterRow)
    if state == "pending":
        q = q.where(DeadLetterRow.replayed_at.is_(None))
    elif state == "replayed":
        q = q.where(DeadLetterRow.replayed_at.is_not(None))
    rows = session.exec(q.order_by(DeadLetterRow.id.desc()).limit(limit)).all()
    return [DeadLetterPublic.model_validate(r, from_attributes=True) for r in rows]


@router.post("/dead-letters/{dl_id}/replay", response_model=DeadLetterPublic, status_code=status.HTTP_202_ACCEPTED,
             summary="send a dead letter's payload back to its topic (the relay carries it out)")
def replay_dead_letter(dl_id: Annotated[int, Path(ge=1)], session: SessionDep, principal: AdminDep) -> DeadLetterPublic:
    row = session.get(DeadLetterRow, dl_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no dead letter {dl_id}")
    if row.replay_requested_at is not None and row.replayed_at is None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"dead letter {dl_id}: a replay is already on its way")
    before = {"replay_requested_at": row.replay_requested_at and row.replay_requested_at.isoformat()}
    row.replay_requested_at, row.replay_requested_by, row.replayed_at = utcnow(), principal.name, None
    session.add(row)
    audit.record(session, principal, "dead_letter.replay", f"dead_letter:{dl_id}", before=before,
                 after={"source_topic": row.source_topic, "key": row.key, "reason": row.reason})
    session.commit()
    session.refresh(row)
    return DeadLetterPublic.model_validate(row, from_attributes=True)


@router.get("/deliveries", response_model=list[DeliveryPublic], summary="notifications by status, newest first")
def list_deliveries(
    session: SessionDep, _: AdminDep,
    status_: Annotated[Literal["pending", "delivered", "suppressed", "dead_letter"] | None,
                       Query(alias="status")] = None,
    channel: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[DeliveryPublic]:
    q = select(Delivery)
    if status_:
        q = q.where(Delivery.status == status_)
    if channel:
        q = q.where(Delivery.channel == channel)
    rows = session.exec(q.order_by(Delivery.id.desc()).limit(limit)).all()
    return [DeliveryPublic.model_validate(r, from_attributes=True) for r in rows]


@router.post("/deliveries/{delivery_id}/retry", response_model=DeliveryPublic, status_code=status.HTTP_202_ACCEPTED,
             summary="try a dead-lettered notification again, with a fresh budget")
def retry_delivery(delivery_id: Annotated[int, Path(ge=1)], session: SessionDep, principal: AdminDep) -> DeliveryPublic:
    row = session.get(Delivery, delivery_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no delivery {delivery_id}")
    if row.status != "dead_letter":
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"delivery {delivery_id} is {row.status}; only a "
                            "dead_letter is retried")
    audit.record(session, principal, "delivery.retry", f"delivery:{delivery_id}",
                 before={"status": row.status, "attempts": row.attempts}, after={"status": "pending", "attempts": 0})
    row.status, row.attempts, row.next_attempt_at = "pending", 0, None
    session.add(row)
    session.commit()
    session.refresh(row)
    return DeliveryPublic.model_validate(row, from_attributes=True)
