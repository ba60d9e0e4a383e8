"""Users and API keys (admin), and ``/me`` for any caller."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from sqlalchemy.exc import IntegrityError

from services.api.crud import users as crud
from services.api.deps import AdminDep, SessionDep, ViewerDep
from services.api.schemas import KeyCreate, KeyCreated, Me, Problem, UserCreate, UserUpdate
from vigil.models import ApiKeyPublic, UserBase, UserPublic, utcnow

router = APIRouter(tags=["users"])

UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]
_404 = {404: {"model": Problem, "description": "no such user"}}


@router.get("/me", response_model=Me, summary="who the key belongs to")
def me(principal: ViewerDep) -> Me:
    cams = sorted(principal.cameras) if principal.cameras is not None else None
    return Me(name=principal.name, role=principal.role, cameras=cams)


@router.get("/users", response_model=list[UserPublic])
def list_users(session: SessionDep, _: AdminDep) -> list[UserPublic]:
    return [UserPublic.model_validate(u, from_attributes=True) for u in crud.list_users(session)]


@router.post("/users", response_model=UserPublic, status_code=201, responses={409: {"model": Problem}})
def create_user(body: UserCreate, session: SessionDep, _: AdminDep) -> UserPublic:
    if crud.get_user_by_name(session, name=body.name) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="a user with this name exists")
    try:
        user = crud.create_user(session, user_in=UserBase(**body.model_dump()))
    except IntegrityError:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail="a user with this name exists") from None
    return UserPublic.model_validate(user, from_attributes=True)


@router.patch("/users/{user_id}", response_model=UserPublic, responses=_404)
def update_user(user_id: UserId, body: UserUpdate, session: SessionDep, _: AdminDep) -> UserPublic:
    user = crud.get_user(session, user_id=user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such user")
    changes = body.model_dump(exclude_unset=True)
    if "role" in changes and changes["role"] is None or "disabled" in changes and changes["disabled"] is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="role and disabled cannot be null")
    return UserPublic.model_validate(crud.update_user(session, user=user, changes=changes), from_attributes=True)


@router.post("/users/{user_id}/keys", response_model=KeyCreated, status_code=201, responses=_404,
             summary="issue a key (shown once)")
def create_key(user_id: UserId, body: KeyCreate, session: SessionDep, _: AdminDep) -> KeyCreated:
    user = crud.get_user(session, user_id=user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such user")
    expires = utcnow() + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    row, key = crud.create_key(session, user=user, expires_at=expires)
    return KeyCreated(id=row.id, user_id=user.id, prefix=row.prefix, key=key, expires_at=row.expires_at)


@router.get("/users/{user_id}/keys", response_model=list[ApiKeyPublic], responses=_404)
def list_keys(user_id: UserId, session: SessionDep, _: AdminDep) -> list[ApiKeyPublic]:
    if crud.get_user(session, user_id=user_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such user")
    return [ApiKeyPublic.model_validate(k, from_attributes=True) for k in crud.list_keys(session, user_id=user_id)]


@router.delete("/keys/{key_id}", response_model=ApiKeyPublic, responses={404: {"model": Problem}},
               summary="revoke a key (effective within seconds)")
def revoke_key(key_id: Annotated[int, Path(ge=1, le=2**31 - 1)], session: SessionDep, _: AdminDep) -> ApiKeyPublic:
    row = crud.revoke_key(session, key_id=key_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such key")
    return ApiKeyPublic.model_validate(row, from_attributes=True)
