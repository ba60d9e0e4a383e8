"""Typed dependencies: the SQL session, the object store and the authenticated caller."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.api.crud.users import principal_for_key
from services.api.security import Principal, hash_key, same_secret
from vigil.objectstore import ObjectStore

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")
bearer_scheme = HTTPBearer(auto_error=False, description="the same API key as a bearer token")

_KEY_CACHE_TTL_S = 5.0  # a revoked key stops working within this many seconds


# Dependencies that do no I/O are ``async def`` so FastAPI runs them on the event loop
# instead of hopping to the thread pool for each one (a measurable cost per request).


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


async def get_db(request: Request) -> AsyncIterator[Session]:
    """A session per request. Creating one does no I/O (it connects on first use); closing
    may roll back on the server, so that part runs in the thread pool."""
    session = Session(request.app.state.engine)
    try:
        yield session
    finally:
        await run_in_threadpool(session.close)


async def get_store(request: Request) -> ObjectStore | None:
    return request.app.state.store


EngineDep = Annotated[Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_db)]
StoreDep = Annotated[ObjectStore | None, Depends(get_store)]

_UNAUTHORIZED = HTTPException(
    status_code=status.HTTP_401_UNAUTHORIZED,
    detail="missing or invalid API key (send X-API-Key or Authorization: Bearer)",
    headers={"WWW-Authenticate": "Bearer"},
)


def _lookup_key(engine: Engine, key: str) -> Principal | None:
    with Session(engine) as session:
        return principal_for_key(session, key=key)


async def get_principal(
    request: Request,
    api_key: Annotated[str | None, Security(api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
) -> Principal:
    key = api_key or (bearer.credentials if bearer else None)
    if not key or len(key) > 512:
        raise _UNAUTHORIZED
    admin_key = request.app.state.admin_key
    if admin_key and same_secret(key, admin_key):
        return Principal(name="bootstrap-admin", role="admin")
    cache: dict = request.app.state.key_cache
    now = time.monotonic()
    digest = hash_key(key)
    hit = cache.get(digest)
    if hit is not None and hit[1] > now:
        principal = hit[0]
    else:
        principal = await run_in_threadpool(_lookup_key, request.app.state.engine, key)
        if len(cache) > 10_000:
            cache.clear()
        cache[digest] = (principal, now + _KEY_CACHE_TTL_S)
    if principal is None:
        raise _UNAUTHORIZED
    return principal


def require(role: str):
    """A dependency that admits callers with at least ``role``."""

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.has_role(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"this action needs the {role} role")
        return principal

    return check


ViewerDep = Annotated[Principal, Depends(require("viewer"))]
AnalystDep = Annotated[Principal, Depends(require("analyst"))]
AdminDep = Annotated[Principal, Depends(require("admin"))]
