"""Fixtures: a migrated SQLite store, the app over it, a fake object store, seeded events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from services.api.main import create_app
from vigil.config import Settings
from vigil.db import make_engine, migrate
from vigil.models import Event

ADMIN_KEY = "test-admin-key-0123456789"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class FakeStore:
    """The slice of ObjectStore the API uses, in memory."""

    bucket = "vigil"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

        class _Client:
            def bucket_exists(_self, _b: str) -> bool:  # noqa: N805
                return True

        self.client = _Client()

    def put(self, key: str, data: bytes, content_type: str = "") -> None:
        self.objects[key] = data

    def get(self, key: str) -> bytes:
        from vigil.objectstore import ObjectMissing

        if key not in self.objects:
            raise ObjectMissing(key)
        return self.objects[key]

    def exists(self, key: str) -> bool:
        return key in self.objects

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def list(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def presigned_get(self, key: str, expires_s: int = 300) -> str:
        return f"http://s3.test/vigil/{key}?X-Amz-Expires={expires_s}&X-Amz-Signature=fake"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(state_dir=tmp_path, database={"url": f"sqlite:///{tmp_path / 'vigil.db'}"},
                    api={"admin_key": ADMIN_KEY})


@pytest.fixture
def engine(settings):
    migrate(settings.database_url)
    eng = make_engine(settings.database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def app(settings, engine, store):
    return create_app(settings, engine=engine, store=store)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture
def admin() -> dict[str, str]:
    return {"X-API-Key": ADMIN_KEY}


def _make_event(i: int, *, camera: str = "cam-a", score: float = 0.7, severity: str = "medium",
               status: str = "closed", text: str = "fighting between people", **kw) -> Event:
    t = T0 + timedelta(minutes=i)
    return Event(
        id=f"{camera}:{i:09d}", camera_id=camera, t_start=t, t_end=t + timedelta(seconds=8), first_seq=i,
        last_seq=i + 1, peak_score=score, severity=severity, status=status, model_version="m1",
        top_descriptions=[{"text": text, "prob": 0.6, "abnormal": True}], segment_ids=[f"{camera}:{i}"], **kw,
    )


@pytest.fixture
def make_event():
    return _make_event


@pytest.fixture
def seed(engine):
    def _seed(events: list[Event]) -> list[Event]:
        with Session(engine, expire_on_commit=False) as s:
            s.add_all(events)
            s.commit()
        return events

    return _seed
