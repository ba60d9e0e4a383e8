"""Liveness and readiness (open: a kubelet probe has no key; they say nothing but status)
and Prometheus metrics (authenticated)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text

from services.api.deps import EngineDep, StoreDep, ViewerDep

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class StackPart(BaseModel):
    state: str  # up | down | failed
    since: float  # unix time of the last change
    restarts: int
    last_error: str | None = None
    recovery_s: list[float] = []


class StackHealth(BaseModel):
    embedded: bool  # False: the platform runs on external services (a cluster); nothing to report here
    parts: dict[str, StackPart] = {}


class Readiness(BaseModel):
    status: str
    database: str
    object_store: str


@router.get("/health", response_model=Health, summary="liveness (no authentication)")
def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready", response_model=Readiness, summary="readiness: database and object store reachable (no authentication)",
    responses={503: {"model": Readiness, "description": "a dependency is unavailable"}},
)
def ready(engine: EngineDep, store: StoreDep) -> Response:
    # open to probes, so it names no error, host or version: the API's log has the cause
    db = "ok"
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # report, never raise: readiness must answer
        log.warning("readiness: database unavailable: %s", exc)
        db = "unavailable"
    if store is None:
        obj = "not configured"
    else:
        try:
            store.client.bucket_exists(store.bucket)
            obj = "ok"
        except Exception as exc:  # noqa: BLE001
            log.warning("readiness: object store unavailable: %s", exc)
            obj = "unavailable"
    ok = db == "ok" and obj in {"ok", "not configured"}
    body = Readiness(status="ready" if ok else "not ready", database=db, object_store=obj)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/metrics", summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(_: ViewerDep, request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/openapi.json", include_in_schema=False)
def openapi_document(_: ViewerDep, request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/stack", response_model=StackHealth, summary="the embedded stack's parts: up, down or failed, "
            "since when, how often restarted")
def stack_health(_: ViewerDep, request: Request) -> StackHealth:
    from infra.embedded import read_stack_file

    info = read_stack_file(request.app.state.settings.state_dir)
    if info is None:
        return StackHealth(embedded=False)
    parts = info.get("parts") or {name: {"state": "up", "since": info.get("started_at", 0.0), "restarts": 0}
                                  for name in (info.get("processes") or {})}
    return StackHealth(embedded=True, parts=parts)
