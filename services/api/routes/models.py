"""Model versions (list, register, activate) and training runs (list)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from services.api import audit
from services.api.crud import models as crud
from services.api.deps import AdminDep, SessionDep, ViewerDep
from services.api.schemas import Problem
from vigil.models import ModelVersionCreate, ModelVersionPublic, TrainingRunPublic, active_peers

router = APIRouter(tags=["models"])

VersionId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,199}$")]


def _pub(row) -> ModelVersionPublic:  # noqa: ANN001
    return ModelVersionPublic.model_validate(row, from_attributes=True)


@router.get("/models", response_model=list[ModelVersionPublic], summary="model versions, newest first")
def list_models(session: SessionDep, _: ViewerDep) -> list[ModelVersionPublic]:
    return [_pub(r) for r in crud.list_model_versions(session)]


@router.get("/models/{version_id}", response_model=ModelVersionPublic, responses={404: {"model": Problem}})
def get_model(version_id: VersionId, session: SessionDep, _: ViewerDep) -> ModelVersionPublic:
    row = crud.get_model_version(session, version_id=version_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such model version")
    return _pub(row)


@router.post("/models", response_model=ModelVersionPublic, status_code=201, responses={409: {"model": Problem}},
             summary="register a model version (inactive)")
def create_model(body: ModelVersionCreate, session: SessionDep, _: AdminDep) -> ModelVersionPublic:
    body = ModelVersionCreate.model_validate(body.model_dump())
    if crud.get_model_version(session, version_id=body.id) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="this model version exists")
    return _pub(crud.create_model_version(session, version_in=body))


@router.post("/models/{version_id}/activate", response_model=ModelVersionPublic, responses={404: {"model": Problem}},
             summary="make this the one active model version")
def activate_model(version_id: VersionId, session: SessionDep, principal: AdminDep) -> ModelVersionPublic:
    row = crud.get_model_version(session, version_id=version_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such model version")
    peers = [p.id for p in session.exec(active_peers(row)).all()]
    what = f"model:{row.kind}" + (f":{row.camera_id}" if row.camera_id else "")
    audit.record(session, principal, "model.activate", what, before={"active": peers}, after={"active": [row.id]})
    return _pub(crud.activate_model_version(session, version=row))


@router.get("/training-runs", response_model=list[TrainingRunPublic], summary="training runs, newest first")
def list_training_runs(
    session: SessionDep, _: ViewerDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[TrainingRunPublic]:
    return [TrainingRunPublic.model_validate(r, from_attributes=True) for r in crud.list_training_runs(session, limit=limit)]
