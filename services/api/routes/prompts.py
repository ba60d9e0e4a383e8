"""Prompt sets per context, versioned: PUT makes a new version, DELETE a tombstone version."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status
from sqlalchemy.exc import IntegrityError

from sqlmodel import select

from services.api import audit
from services.api.crud import prompts as crud
from services.api.deps import AnalystDep, SessionDep, ViewerDep
from services.api.schemas import Problem, PromptSetIn
from vigil.model.prompts import PromptSet
from vigil.models import Camera, PromptSetPublic, PromptSetRow

router = APIRouter(prefix="/contexts/{context}/prompt-sets", tags=["prompt sets"])

ContextName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
SetName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
_404 = {404: {"model": Problem, "description": "no such prompt set"}}


def _pub(row: PromptSetRow) -> PromptSetPublic:
    return PromptSetPublic.model_validate(row, from_attributes=True)


def _content(row: PromptSetRow) -> dict:
    return {"version": row.version, "normal": list(row.normal), "abnormal": list(row.abnormal),
            "scene": list(row.scene), "template": row.template, "content_hash": row.content_hash}


def _may_edit(session, principal, context: str) -> None:  # noqa: ANN001
    """An analyst limited to some cameras edits only the prompt sets of those cameras' contexts."""
    if principal.cameras is None:
        return
    mine = {c.context for c in session.exec(select(Camera).where(Camera.id.in_(sorted(principal.cameras))))}
    if context not in mine:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail=f"you may edit prompt sets only for the contexts of your cameras "
                                   f"({', '.join(sorted(mine)) or 'none'}); context {context!r} is not one of them")


def _live(session, context: str, name: str) -> PromptSetRow:  # noqa: ANN001
    row = crud.latest_version(session, context=context, name=name)
    if row is None or row.deleted:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such prompt set")
    return row


@router.get("", response_model=list[PromptSetPublic], summary="newest version of every set of a context")
def list_sets(context: ContextName, session: SessionDep, _: ViewerDep) -> list[PromptSetPublic]:
    return [_pub(r) for r in crud.list_latest(session, context=context)]


@router.get("/{name}", response_model=PromptSetPublic, responses=_404, summary="newest version of a set")
def get_set(context: ContextName, name: SetName, session: SessionDep, _: ViewerDep) -> PromptSetPublic:
    return _pub(_live(session, context, name))


@router.get("/{name}/versions", response_model=list[PromptSetPublic], responses=_404, summary="every version")
def list_versions(context: ContextName, name: SetName, session: SessionDep, _: ViewerDep) -> list[PromptSetPublic]:
    rows = crud.list_versions(session, context=context, name=name)
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such prompt set")
    return [_pub(r) for r in rows]


@router.get("/{name}/versions/{version}", response_model=PromptSetPublic, responses=_404)
def get_version(
    context: ContextName, name: SetName, version: Annotated[int, Path(ge=1, le=2**31 - 1)], session: SessionDep,
    _: ViewerDep,
) -> PromptSetPublic:
    row = crud.get_version(session, context=context, name=name, version=version)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such version")
    return _pub(row)


@router.put(
    "/{name}", response_model=PromptSetPublic,
    responses={201: {"model": PromptSetPublic, "description": "a new version was created"},
               403: {"model": Problem, "description": "an analyst limited to cameras of other contexts"},
               409: {"model": Problem, "description": "a concurrent edit won; retry"},
               422: {"model": Problem}},
    summary="create or edit a set: a change makes a new version; an identical body changes nothing",
)
def put_set(
    context: ContextName, name: SetName, body: PromptSetIn, session: SessionDep, principal: AnalystDep,
    response: Response,
) -> PromptSetPublic:
    _may_edit(session, principal, context)
    try:
        ps = PromptSet(name=name, context=context, **body.model_dump())
    except ValueError as exc:
        msgs = "; ".join(e.get("msg", "") for e in getattr(exc, "errors", lambda: [])()) or "invalid prompt set"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=msgs) from None
    last = crud.latest_version(session, context=context, name=name)
    if last is not None and not last.deleted and last.content_hash == ps.version:
        response.status_code = status.HTTP_200_OK
        return _pub(last)
    audit.record(session, principal, "prompt_set.save", f"prompt_set:{context}/{name}",
                 before=_content(last) if last is not None and not last.deleted else None,
                 after={**body.model_dump(), "content_hash": ps.version})
    try:
        row = crud.add_version(
            session, context=context, name=name, normal=ps.normal, abnormal=ps.abnormal, scene=ps.scene,
            template=ps.template, content_hash=ps.version, author=principal.name,
        )
    except IntegrityError:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail="a concurrent edit created this version; retry") from None
    response.status_code = status.HTTP_201_CREATED
    return _pub(row)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=_404,
               summary="delete a set (a tombstone version; history is kept)")
def delete_set(context: ContextName, name: SetName, session: SessionDep, principal: AnalystDep) -> Response:
    _may_edit(session, principal, context)
    last = _live(session, context, name)
    audit.record(session, principal, "prompt_set.delete", f"prompt_set:{context}/{name}", before=_content(last))
    try:
        crud.add_version(
            session, context=context, name=name, normal=last.normal, abnormal=last.abnormal, scene=last.scene,
            template=last.template, content_hash=last.content_hash, author=principal.name, deleted=True,
        )
    except IntegrityError:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail="a concurrent edit; retry") from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
