"""Analyst feedback on events."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, select

from vigil.models import Event, Feedback


def add_feedback(session: Session, *, event: Event, label: str, note: str | None, author: str) -> Feedback:
    row = Feedback(event_id=event.id, camera_id=event.camera_id, label=label, note=note, author=author)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def list_feedback(session: Session, *, event_id: str) -> Sequence[Feedback]:
    return session.exec(select(Feedback).where(Feedback.event_id == event_id).order_by(Feedback.id)).all()
