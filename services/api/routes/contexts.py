"""Contexts: sites or camera groups; each has its own prompt sets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from services.api.crud import prompts as crud
from services.api.deps import AdminDep, SessionDep, ViewerDep
from services.api.schemas import Problem
from vigil.models import ContextCreate, ContextPublic

router = APIRouter(prefix="/contexts", tags=["contexts"])

ContextName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]


@router.get("", response_model=list[ContextPublic])
def list_contexts(session: SessionDep, _: ViewerDep) -> list[ContextPublic]:
    return [ContextPublic.model_validate(c, from_attributes=True) for c in crud.list_contexts(session)]


@router.get("/{context}", response_model=ContextPublic, responses={404: {"model": Problem}})
def get_context(context: ContextName, session: SessionDep, _: ViewerDep) -> ContextPublic:
    row = crud.get_context(session, name=context)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such context")
    return ContextPublic.model_validate(row, from_attributes=True)


@router.post("", response_model=ContextPublic, status_code=201, responses={409: {"model": Problem}})
def create_context(body: ContextCreate, session: SessionDep, _: AdminDep) -> ContextPublic:
    body = ContextCreate.model_validate(body.model_dump())
    if crud.get_context(session, name=body.name) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="a context with this name exists")
    return ContextPublic.model_validate(crud.create_context(session, context_in=body), from_attributes=True)
