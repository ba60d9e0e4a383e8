"""Cameras. ``source_uri`` is written here and read only by ingest; never returned."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, select

from vigil.models import (
    MODEL_KIND_NORMALITY, Camera, CameraCreate, CameraState, ModelVersion, NormalPeriod, SegmentScore, SourceStatus,
    utcnow,
)


def list_cameras(session: Session, *, allowed_cameras: frozenset[str] | None) -> Sequence[Camera]:
    stmt = select(Camera).order_by(Camera.id)
    if allowed_cameras is not None:
        stmt = stmt.where(Camera.id.in_(sorted(allowed_cameras)))
    return session.exec(stmt).all()


def get_camera(session: Session, *, camera_id: str, allowed_cameras: frozenset[str] | None) -> Camera | None:
    if allowed_cameras is not None and camera_id not in allowed_cameras:
        return None
    return session.get(Camera, camera_id)


def create_camera(session: Session, *, camera_in: CameraCreate) -> Camera:
    cam = Camera.model_validate(camera_in, update={"created_at": utcnow()})
    session.add(cam)
    session.commit()
    session.refresh(cam)
    return cam


def update_camera(session: Session, *, camera: Camera, changes: dict) -> Camera:
    for k, v in changes.items():
        setattr(camera, k, v)
    session.add(camera)
    session.commit()
    session.refresh(camera)
    return camera


def delete_camera(session: Session, *, camera: Camera) -> None:
    status = session.get(SourceStatus, camera.id)
    if status is not None:  # its health goes with it (ingest stops the camera at its next tick)
        session.delete(status)
    session.delete(camera)
    session.commit()


def list_scores(
    session: Session, *, camera_id: str, since: datetime | None, until: datetime | None, limit: int
) -> list[SegmentScore]:
    """Segment scores of a camera, oldest first: the first ``limit`` after ``since``, or the
    latest ``limit`` when no ``since`` is given."""
    stmt = select(SegmentScore).where(SegmentScore.camera_id == camera_id, SegmentScore.zone.is_(None))
    if since is not None:
        stmt = stmt.where(SegmentScore.t_start >= since)
    if until is not None:
        stmt = stmt.where(SegmentScore.t_start < until)
    if since is not None:
        return list(session.exec(stmt.order_by(SegmentScore.t_start, SegmentScore.seq).limit(limit)))
    rows = list(session.exec(stmt.order_by(SegmentScore.t_start.desc(), SegmentScore.seq.desc()).limit(limit)))
    return rows[::-1]


def camera_state(session: Session, *, camera_id: str) -> tuple[CameraState | None, SegmentScore | None]:
    """The scoring state row of a camera and its newest segment score (either may be None)."""
    state = session.get(CameraState, camera_id)
    last = session.exec(
        select(SegmentScore).where(SegmentScore.camera_id == camera_id, SegmentScore.zone.is_(None))
        .order_by(SegmentScore.t_start.desc()).limit(1)
    ).first()
    return state, last


def newest_segments(session: Session, *, camera_id: str, limit: int) -> list[SegmentScore]:
    return list(session.exec(select(SegmentScore)
                             .where(SegmentScore.camera_id == camera_id, SegmentScore.zone.is_(None))
                             .order_by(SegmentScore.t_start.desc()).limit(limit)))


def source_status(session: Session, *, camera_id: str) -> SourceStatus | None:
    """How ingest last reported the camera's source (None: no ingest runs it)."""
    return session.get(SourceStatus, camera_id)


def camera_models(session: Session, *, camera_id: str) -> tuple[ModelVersion | None, NormalPeriod | None]:
    """The camera's active object-normality version and its normal period (either may be None)."""
    version = session.exec(
        select(ModelVersion).where(ModelVersion.kind == MODEL_KIND_NORMALITY, ModelVersion.camera_id == camera_id,
                                   ModelVersion.active == True)  # noqa: E712
        .order_by(ModelVersion.activated_at.desc()).limit(1)
    ).first()
    return version, session.get(NormalPeriod, camera_id)
