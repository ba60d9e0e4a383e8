"""Camera CRUD. Source URLs are write-only: responses say only whether one is set."""

from __future__ import annotations

from typing import Annotated

from datetime import datetime, timedelta

import cv2
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from sqlalchemy.exc import IntegrityError

from services.api import audit
from services.api.crud import cameras as crud
from services.api.crud.events import as_utc
from services.api.deps import AdminDep, AnalystDep, SessionDep, StoreDep, ViewerDep
from services.api.schemas import (
    CameraHealth, CameraOut, MasksIn, Problem, ScoreOut, ScoresPage, SourceHealthOut, ZonesIn,
)
from vigil.config import CameraTuning, Settings
from vigil.models import Camera, CameraCreate, CameraUpdate, SourceStatus, utcnow
from vigil.objectstore import ObjectMissing
from vigil.segments import SegmentDecodeError, decode_segment
from vigil.source_seal import SourceKeyError

router = APIRouter(prefix="/cameras", tags=["cameras"])

CameraId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
_404 = {404: {"model": Problem, "description": "no such camera (or not visible to you)"}}


def _out(cam: Camera) -> CameraOut:
    return CameraOut(
        id=cam.id, name=cam.name, source_type=cam.source_type, context=cam.context, enabled=cam.enabled,
        has_source_uri=bool(cam.source_uri), created_at=cam.created_at, from_config=bool(cam.from_config),
        masks=list(cam.masks or []), zones=list(cam.zones or []), tuning=dict(cam.tuning or {}),
    )


@router.get("", response_model=list[CameraOut], summary="cameras visible to the caller")
def list_cameras(session: SessionDep, principal: ViewerDep) -> list[CameraOut]:
    return [_out(c) for c in crud.list_cameras(session, allowed_cameras=principal.cameras)]


@router.get("/{camera_id}", response_model=CameraOut, responses=_404)
def get_camera(camera_id: CameraId, session: SessionDep, principal: ViewerDep) -> CameraOut:
    cam = crud.get_camera(session, camera_id=camera_id, allowed_cameras=principal.cameras)
    if cam is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such camera")
    return _out(cam)


@router.post(
    "", response_model=CameraOut, status_code=status.HTTP_201_CREATED,
    responses={409: {"model": Problem, "description": "a camera with this id exists"}},
)
def create_camera(body: CameraCreate, session: SessionDep, principal: AdminDep, request: Request) -> CameraOut:
    body = CameraCreate.model_validate(body.model_dump())  # enforce the model's own constraints
    body.source_uri = _sealed(request, body.source_uri)
    if session.get(Camera, body.id) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="a camera with this id exists")
    audit.record(session, principal, "camera.create", f"camera:{body.id}",
                 after=audit.camera_snapshot(Camera.model_validate(body, update={"created_at": utcnow()})))
    try:
        cam = crud.create_camera(session, camera_in=body)
    except IntegrityError:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail="a camera with this id exists") from None
    return _out(cam)


@router.patch("/{camera_id}", response_model=CameraOut, responses=_404)
def update_camera(camera_id: CameraId, body: CameraUpdate, session: SessionDep, principal: AdminDep,
                  request: Request) -> CameraOut:
    cam = crud.get_camera(session, camera_id=camera_id, allowed_cameras=principal.cameras)
    if cam is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such camera")
    changes = body.model_dump(exclude_unset=True)
    for required in ("source_type", "context", "enabled"):
        if required in changes and changes[required] is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{required} cannot be null")
    if "source_uri" in changes:
        changes["source_uri"] = _sealed(request, changes["source_uri"])
    return _out(_audited_update(session, principal, cam, "camera.update", changes))


def _sealed(request: Request, uri: str | None) -> str | None:
    """The source URL as SQL keeps it: sealed (vigil.source_seal); 503 when no key is set."""
    try:
        return request.app.state.source_seal.seal(uri)
    except SourceKeyError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None


def _audited_update(session, principal, cam: Camera, action: str, changes: dict) -> Camera:  # noqa: ANN001
    before = audit.camera_snapshot(cam)
    for k, v in changes.items():
        setattr(cam, k, v)
    after = audit.camera_snapshot(cam)
    if after != before:
        audit.record(session, principal, action, f"camera:{cam.id}", before=before, after=after)
    return crud.update_camera(session, camera=cam, changes={})


def _editable(session, principal, camera_id: str) -> Camera:  # noqa: ANN001
    cam = crud.get_camera(session, camera_id=camera_id, allowed_cameras=principal.cameras)
    if cam is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such camera")
    return cam


@router.put("/{camera_id}/masks", response_model=CameraOut, responses=_404,
            summary="replace the regions removed from the camera's detection (analysts, for their cameras)")
def put_masks(camera_id: CameraId, body: MasksIn, session: SessionDep, principal: AnalystDep) -> CameraOut:
    cam = _editable(session, principal, camera_id)
    masks = [m.model_dump() for m in body.masks]
    return _out(_audited_update(session, principal, cam, "camera.masks", {"masks": masks}))


@router.put("/{camera_id}/zones", response_model=CameraOut, responses=_404,
            summary="replace the camera's zones: regions scored on their own, with their own prompt set, threshold "
                    "and longest occupancy (analysts, for their cameras)")
def put_zones(camera_id: CameraId, body: ZonesIn, session: SessionDep, principal: AnalystDep) -> CameraOut:
    cam = _editable(session, principal, camera_id)
    names = [z.name for z in body.zones]
    if len(set(names)) != len(names):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[{
            "loc": ["body", "zones"], "msg": "zone names must be unique within a camera", "type": "value_error"}])
    zones = [z.model_dump() for z in body.zones]
    return _out(_audited_update(session, principal, cam, "camera.zones", {"zones": zones}))


@router.put("/{camera_id}/tuning", response_model=CameraOut, responses=_404,
            summary="the camera's own event thresholds over the configuration's (analysts, for their cameras)")
def put_tuning(camera_id: CameraId, body: CameraTuning, session: SessionDep, principal: AnalystDep,
               request: Request) -> CameraOut:
    cam = _editable(session, principal, camera_id)
    settings: Settings | None = request.app.state.settings
    if settings is not None:
        try:
            body.applied_to(settings.params_for(camera_id))
        except ValueError as exc:
            msgs = "; ".join(e.get("msg", "") for e in getattr(exc, "errors", lambda: [])()) or str(exc)
            # shaped like a validation error, as the schema's 422 says
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[{
                "loc": ["body"], "msg": f"this tuning does not fit camera {camera_id}'s configuration: {msgs}",
                "type": "value_error"}]) from None
    return _out(_audited_update(session, principal, cam, "camera.tuning", {"tuning": body.model_dump(exclude_none=True)}))


@router.delete("/{camera_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_404)
def delete_camera(camera_id: CameraId, session: SessionDep, principal: AdminDep) -> Response:
    cam = crud.get_camera(session, camera_id=camera_id, allowed_cameras=principal.cameras)
    if cam is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such camera")
    audit.record(session, principal, "camera.delete", f"camera:{cam.id}", before=audit.camera_snapshot(cam))
    crud.delete_camera(session, camera=cam)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _visible(principal, camera_id: str) -> None:  # noqa: ANN001
    # cameras may come from the configuration without a row: only the caller's limit applies
    if not principal.may_see(camera_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such camera")


def _utc_param(v: datetime | None) -> datetime | None:
    try:
        return as_utc(v) if v is not None else None
    except OverflowError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="time out of range") from None


@router.get("/{camera_id}/scores", response_model=ScoresPage, responses=_404,
            summary="segment scores of a camera (oldest first) and its event threshold")
def camera_scores(
    camera_id: CameraId, session: SessionDep, principal: ViewerDep, request: Request,
    since: Annotated[datetime | None, Query(description="segments starting at or after")] = None,
    until: Annotated[datetime | None, Query(description="segments starting before")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> ScoresPage:
    _visible(principal, camera_id)
    rows = crud.list_scores(session, camera_id=camera_id, since=_utc_param(since), until=_utc_param(until),
                            limit=limit)
    settings = request.app.state.settings
    threshold = settings.params_for(camera_id).threshold if settings is not None else None
    return ScoresPage(items=[ScoreOut.model_validate(r, from_attributes=True) for r in rows], threshold=threshold)


def _source_out(row: SourceStatus | None, settings: Settings | None) -> SourceHealthOut | None:
    if row is None:
        return None
    every = settings.ingest.reconcile_every_s if settings is not None else 5.0
    reporting = row.state != "stopped" and utcnow() - as_utc(row.reported_at) <= timedelta(seconds=3 * every)
    return SourceHealthOut.model_validate({**row.model_dump(), "reporting": reporting,
                                           "connected": row.connected and reporting})


@router.get("/{camera_id}/health", response_model=CameraHealth, responses=_404,
            summary="is the camera being scored: from its scoring state and newest segment")
def camera_health(camera_id: CameraId, session: SessionDep, principal: ViewerDep, request: Request) -> CameraHealth:
    _visible(principal, camera_id)
    if session.get(Camera, camera_id) is None:  # deleted (or never added): its health goes with it
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such camera")
    state, last = crud.camera_state(session, camera_id=camera_id)
    stall = request.app.state.stall_after_s
    seen = [as_utc(t) for t in (state.updated_at if state else None, last.scored_at if last else None) if t]
    if not seen:
        verdict = "unknown"
    else:
        verdict = "running" if utcnow() - max(seen) <= timedelta(seconds=stall) else "stalled"
    version, period = crud.camera_models(session, camera_id=camera_id)
    return CameraHealth(
        source=_source_out(crud.source_status(session, camera_id=camera_id), request.app.state.settings),
        camera_id=camera_id, state=verdict, last_segment_at=last.t_end if last else None,
        last_seq=state.last_seq if state else (last.seq if last else None),
        scored_at=state.updated_at if state else None, stall_after_s=stall,
        scored_by=f"own normality {version.id}" if version else "zero-shot defaults",
        normality_version=version.id if version else None, last_model_version=last.model_version if last else None,
        normal_period=None if period is None else {
            "status": period.status, "recorded_s": round(period.recorded_s, 1), "target_s": period.target_s,
            "clips": len(period.clips), "hours": period.hours, "run_id": period.run_id, "error": period.error},
    )


@router.get("/{camera_id}/snapshot", responses={**_404, 200: {"content": {"image/jpeg": {}}}},
            response_class=Response, summary="a recent frame of the camera (its newest stored segment), to draw masks on")
def camera_snapshot(camera_id: CameraId, session: SessionDep, principal: ViewerDep, store: StoreDep) -> Response:
    _visible(principal, camera_id)
    if session.get(Camera, camera_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such camera")
    if store is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="no object store configured")
    for row in crud.newest_segments(session, camera_id=camera_id, limit=5):  # retention may have taken the newest
        try:
            seg = decode_segment(store.get(row.object_key))
        except (ObjectMissing, SegmentDecodeError):
            continue
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(seg.frames[len(seg.frames) // 2], cv2.COLOR_RGB2BGR))
        if ok:
            return Response(jpeg.tobytes(), media_type="image/jpeg", headers={"Cache-Control": "no-store"})
    raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no stored segment of this camera yet: once it streams, "
                        "a frame appears here")
