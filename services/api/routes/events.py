"""Events: query, CSV export, detail with presigned evidence URLs, review, feedback."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from itertools import chain, islice
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlmodel import select

from services.api import audit
from services.api.crud import events as crud
from services.api.crud.feedback import add_feedback, list_feedback
from services.api.deps import AnalystDep, EngineDep, SessionDep, StoreDep, ViewerDep
from services.api.render import render_page
from services.api.schemas import EventDetail, EventOut, EventPage, FeedbackIn, Problem, ReviewIn
from vigil.models import Delivery, DeliveryPublic, Event, FeedbackPublic, User, utcnow

log = logging.getLogger(__name__)

router = APIRouter(prefix="/events", tags=["events"])

EventId = Annotated[str, Path(min_length=1, max_length=200)]
_404 = {404: {"model": Problem, "description": "no such event (or not visible to you)"}}


@router.get("", response_model=EventPage, summary="query events", responses={400: {"model": Problem}})
def list_events(engine: EngineDep, principal: ViewerDep, params: Annotated[crud.EventPageParams, Query()]) -> Response:
    try:
        rows, cursor = crud.list_event_rows(engine, params=params, allowed_cameras=principal.cameras)
    except crud.CursorError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    # rendered directly (the hot path); the shape is EventPage, checked by the tests
    return Response(render_page(rows, cursor), media_type="application/json")


CSV_COLUMNS = [
    "id", "camera_id", "zone", "t_start", "t_end", "peak_score", "peak_s_sem", "peak_s_pred", "peak_s_obj", "severity", "status",
    "model_version", "prompt_set", "review_status", "resolution", "assignee", "top_descriptions",
]


def _csv_cell(v: object) -> str:
    s = "" if v is None else str(v)
    # spreadsheet formula injection: a cell starting with = + - @ would be evaluated
    return "'" + s if s[:1] in {"=", "+", "-", "@", "\t", "\r"} else s


def _csv_rows(rows: Iterator[Event]) -> Iterator[str]:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    n = 0
    for r in rows:
        out = EventOut.model_validate(r, from_attributes=True).model_dump(mode="json")
        out["top_descriptions"] = "; ".join(
            f"{d.get('text', '')} ({float(d.get('prob', 0)):.3f})" for d in r.top_descriptions if isinstance(d, dict)
        )
        w.writerow([_csv_cell(out.get(c)) for c in CSV_COLUMNS])
        n += 1
        if n % 500 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


@router.get(
    "/export.csv", summary="export matching events as CSV (streamed)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def export_events(engine: EngineDep, principal: ViewerDep, filters: Annotated[crud.EventFilter, Query()]) -> StreamingResponse:
    rows = crud.iter_events(engine, filters=filters, allowed_cameras=principal.cameras)
    # fetch the first batch now: a store error becomes an error response, not a cut stream
    first = list(islice(rows, 1))
    return StreamingResponse(
        _csv_rows(chain(first, rows)), media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="events.csv"'},
    )


@router.get("/{event_id}", response_model=EventDetail, responses=_404, summary="one event with evidence URLs")
def get_event(
    event_id: EventId, session: SessionDep, principal: ViewerDep, store: StoreDep, request: Request
) -> EventDetail:
    row = crud.get_event(session, event_id=event_id, allowed_cameras=principal.cameras)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such event")
    detail = EventDetail.model_validate(row, from_attributes=True)
    expires = request.app.state.presign_expires_s
    if store is not None and (row.clip_key or row.thumbnail_key):
        try:
            detail.clip_url = store.presigned_get(row.clip_key, expires_s=expires) if row.clip_key else None
            detail.thumbnail_url = (
                store.presigned_get(row.thumbnail_key, expires_s=expires) if row.thumbnail_key else None
            )
            detail.urls_expire_in_s = expires
        except Exception as exc:  # the event is still useful without its URLs
            log.warning("presigning evidence of event %s failed: %s", json.dumps(event_id), type(exc).__name__)
    detail.feedback = [FeedbackPublic.model_validate(f, from_attributes=True) for f in list_feedback(session, event_id=row.id)]
    return detail


@router.post(
    "/{event_id}/feedback", response_model=FeedbackPublic, status_code=status.HTTP_201_CREATED,
    responses=_404, summary="mark an event as a true or false positive",
)
def post_feedback(event_id: EventId, body: FeedbackIn, session: SessionDep, principal: AnalystDep) -> FeedbackPublic:
    row = crud.get_event(session, event_id=event_id, allowed_cameras=principal.cameras)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such event")
    fb = add_feedback(session, event=row, label=body.label, note=body.note, author=principal.name)
    return FeedbackPublic.model_validate(fb, from_attributes=True)


@router.patch(
    "/{event_id}/review", response_model=EventOut, responses={**_404, 422: {"model": Problem}},
    summary="acknowledge, assign or resolve an event (a true or false positive also becomes training feedback)",
)
def review_event(event_id: EventId, body: ReviewIn, session: SessionDep, principal: AnalystDep) -> EventOut:
    row = crud.get_event(session, event_id=event_id, allowed_cameras=principal.cameras)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such event")
    if (body.status == "resolved") != (body.resolution is not None):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail="a resolution (true_positive, false_positive or duplicate) goes with status resolved, "
                                   "and only with it")
    if body.assignee and session.exec(select(User).where(User.name == body.assignee)).first() is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"no user named {body.assignee!r}")
    fields = ("review_status", "resolution", "assignee", "reviewed_by", "review_note")
    before = {k: getattr(row, k) for k in fields}
    row.review_status, row.resolution = body.status, body.resolution
    if body.assignee is not None:
        row.assignee = body.assignee or None
    if body.note is not None:
        row.review_note = body.note or None
    row.reviewed_by, row.reviewed_at = principal.name, utcnow()
    audit.record(session, principal, "event.review", f"event:{row.id}", before=before,
                 after={k: getattr(row, k) for k in fields})
    session.add(row)
    if body.resolution in ("true_positive", "false_positive"):  # what retraining learns from
        add_feedback(session, event=row, label=body.resolution, note=body.note, author=principal.name)
    else:
        session.commit()
    session.refresh(row)
    return EventOut.model_validate(row, from_attributes=True)


@router.get("/{event_id}/feedback", response_model=list[FeedbackPublic], responses=_404, summary="feedback on an event")
def get_feedback(event_id: EventId, session: SessionDep, principal: ViewerDep) -> list[FeedbackPublic]:
    row = crud.get_event(session, event_id=event_id, allowed_cameras=principal.cameras)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such event")
    return [FeedbackPublic.model_validate(f, from_attributes=True) for f in list_feedback(session, event_id=row.id)]


@router.get("/{event_id}/deliveries", response_model=list[DeliveryPublic], responses=_404,
            summary="the event's notifications: per version and channel, their status")
def get_deliveries(event_id: EventId, session: SessionDep, principal: ViewerDep) -> list[DeliveryPublic]:
    row = crud.get_event(session, event_id=event_id, allowed_cameras=principal.cameras)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such event")
    rows = session.exec(select(Delivery).where(Delivery.event_id == row.id)
                        .order_by(Delivery.version, Delivery.channel)).all()
    return [DeliveryPublic.model_validate(d, from_attributes=True) for d in rows]
