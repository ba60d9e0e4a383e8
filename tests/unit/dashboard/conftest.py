"""Dashboard page tests: Streamlit's AppTest runs each page against the real API app
(FastAPI on a migrated SQLite file, in-memory object store) through an httpx TestClient."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from streamlit.testing.v1 import AppTest
from sqlmodel import Session

from services.api.main import create_app
from services.dashboard.client import ApiClient
from tests.unit.dashboard.dash_helpers import ADMIN_KEY, FakeStore
from vigil.config import Settings
from vigil.db import make_engine, migrate
from vigil.models import Camera


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
