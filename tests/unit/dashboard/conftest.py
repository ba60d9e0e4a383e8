"""Dashboard page tests: Streamlit's AppTest runs each page against the real API app
(FastAPI on a migrated SQLite file, in-memory object store) through an httpx TestClient."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx

import pytest
from fastapi.testclient import TestClient
from streamlit.testing.v1 import AppTest
from sqlmodel import Session, select

from services.api.main import create_app
from services.dashboard.client import ApiClient
from tests.unit.dashboard.dash_helpers import ADMIN_KEY, FakeStore
from vigil.config import Settings
from vigil.db import make_engine, migrate
from vigil.models import Camera, SegmentScore


def _clear_caches() -> None:
    """Clear st.cache_data the way a running app would: inside an AppTest script (outside a
    runtime, st.cache_data.clear() clears another storage than the one AppTest runs use)."""

    def script() -> None:
        import streamlit as st

        st.cache_data.clear()

    AppTest.from_function(script).run()


@pytest.fixture(autouse=True)
def _fresh_caches():
    _clear_caches()
    yield


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'vigil.db'}"
    migrate(url)
    eng = make_engine(url)
    yield eng
    eng.dispose()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def http(tmp_path, engine, store):
    settings = Settings(state_dir=tmp_path, database={"url": f"sqlite:///{tmp_path / 'vigil.db'}"},
                        api={"admin_key": ADMIN_KEY})
    with TestClient(create_app(settings, engine=engine, store=store)) as c:
        yield c


@pytest.fixture
def admin(http) -> ApiClient:
    return ApiClient("http://testserver", ADMIN_KEY, http=http)


@pytest.fixture
def user_client(http, admin):
    """An ApiClient for a new user of the given role (a real key issued by the API)."""

    def make(role: str, cameras: list[str] | None = None) -> ApiClient:
        hdr = {"X-API-Key": ADMIN_KEY}
        u = http.post("/users", json={"name": f"{role}-user", "role": role, "cameras": cameras}, headers=hdr)
        assert u.status_code == 201, u.text
        k = http.post(f"/users/{u.json()['id']}/keys", json={}, headers=hdr)
        assert k.status_code == 201, k.text
        return ApiClient("http://testserver", k.json()["key"], http=http)

    return make


@pytest.fixture
def seed(engine):
    def _seed(*rows) -> None:
        with Session(engine, expire_on_commit=False) as s:
            s.add_all(rows)
            s.commit()

    return _seed


@pytest.fixture
def cameras(seed):
    seed(Camera(id="cam-a", name="Gate A", source_type="synthetic", context="campus", enabled=True),
         Camera(id="cam-b", name="Platform", source_type="rtsp", context="subway", enabled=True,
                source_uri="rtsp://user:secret@10.0.0.5/stream"),
         Camera(id="cam-c", name=None, source_type="file", context="campus", enabled=False))


def _has_route(app, path: str) -> bool:  # noqa: ANN001
    return path in app.openapi().get("paths", {})


@pytest.fixture
def without_route(http, monkeypatch):
    """Answer as an API without a route would (404 "Not Found"): how the dashboard behaves
    against an API version that lacks an endpoint."""
    gone: list[re.Pattern] = []
    original = http.request

    def request(method, url, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if any(p.fullmatch(str(url).split("?")[0]) for p in gone):
            return httpx.Response(404, json={"detail": "Not Found"})
        return original(method, url, *args, **kwargs)

    monkeypatch.setattr(http, "request", request)

    def drop(path: str) -> None:
        gone.append(re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path))))

    return drop


@pytest.fixture
def scores_endpoint(http, engine):
    """``GET /cameras/{id}/scores``: the API's own where it has it, else an emulation of the
    contract the dashboard asked for (``{"items": [segment scores, oldest first], "threshold"}``)."""
    path = "/cameras/{camera_id}/scores"
    if _has_route(http.app, path):
        return "api"

    def camera_scores(camera_id: str, since: datetime | None = None, until: datetime | None = None, limit: int = 500):
        with Session(engine) as s:
            q = select(SegmentScore).where(SegmentScore.camera_id == camera_id)
            if since is not None:
                q = q.where(SegmentScore.t_start >= since.astimezone(UTC).replace(tzinfo=None))
            if until is not None:
                q = q.where(SegmentScore.t_start < until.astimezone(UTC).replace(tzinfo=None))
            rows = s.exec(q.order_by(SegmentScore.t_start).limit(limit)).all()
            items = [{"t_start": r.t_start.isoformat(), "t_end": r.t_end.isoformat(), "score": r.score, "s_sem": r.s_sem, "s_pred": r.s_pred,
                      "gate": r.gate, "segment_id": r.segment_id} for r in rows]
        return {"items": items, "threshold": 0.5}

    http.app.add_api_route(path, camera_scores, methods=["GET"])
    http.app.openapi_schema = None
    return "emulated"
