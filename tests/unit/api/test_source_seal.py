"""Camera source URLs sealed at rest (vigil.source_seal): what SQL holds, who can open it."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session

from services.api.main import create_app
from services.ingest.desired import DesiredCameras
from vigil.config import Settings
from vigil.db import make_engine, migrate, session_scope
from vigil.models import Camera
from vigil.source_seal import SourceKeyError, SourceSeal

URL = "rtsp://admin:s3cr3tP4ss@10.1.2.3:554/stream1"
ADMIN = {"X-API-Key": "k" * 32}


def _settings(tmp_path, **kw) -> Settings:
    return Settings(state_dir=tmp_path, database={"url": f"sqlite:///{tmp_path / 'v.db'}"},
                    api={"admin_key": "k" * 32}, **kw)


def _raw(engine, cid: str) -> str:
    with engine.connect() as c:
        return c.execute(text("SELECT source_uri FROM cameras WHERE id = :i"), {"i": cid}).scalar_one()


def test_the_api_stores_the_url_sealed_and_ingest_opens_it(tmp_path):
    key = Fernet.generate_key().decode()
    s = _settings(tmp_path, environment="production", security={"source_key": key})
    migrate(s.database_url)
    engine = make_engine(s.database_url)
    with TestClient(create_app(s, engine=engine)) as api:
        assert api.post("/cameras", headers=ADMIN, json={"id": "gate", "source_type": "rtsp",
                                                          "source_uri": URL}).status_code == 201
    raw = _raw(engine, "gate")
    assert raw.startswith("fernet:") and "s3cr3t" not in raw and "10.1.2.3" not in raw
    (cam,) = DesiredCameras(engine, s).read()
    assert cam.source.url.get_secret_value() == URL
    assert not (tmp_path / "source.key").exists()  # a configured key: no key file


def test_production_without_a_key_refuses_to_store_a_url_and_says_what_to_set(tmp_path):
    s = _settings(tmp_path, environment="production")
    migrate(s.database_url)
    engine = make_engine(s.database_url)
    with TestClient(create_app(s, engine=engine)) as api:
        r = api.post("/cameras", headers=ADMIN, json={"id": "gate", "source_type": "rtsp", "source_uri": URL})
        assert r.status_code == 503 and "security.source_key" in r.text and "s3cr3t" not in r.text
        assert api.post("/cameras", headers=ADMIN, json={"id": "lobby", "source_type": "rtsp"}).status_code == 201
    with Session(engine) as db:
        assert db.get(Camera, "gate") is None


def test_another_key_cannot_open_it_and_ingest_reports_the_row_without_the_url(tmp_path, caplog):
    s = _settings(tmp_path, security={"source_key": Fernet.generate_key().decode()})
    migrate(s.database_url)
    engine = make_engine(s.database_url)
    with session_scope(engine) as db:
        db.add(Camera(id="gate", source_type="rtsp", source_uri=SourceSeal.from_settings(s).seal(URL)))
    other = _settings(tmp_path, security={"source_key": Fernet.generate_key().decode()})
    with pytest.raises(SourceKeyError, match="another key than security.source_key"):
        SourceSeal.from_settings(other).open(_raw(engine, "gate"))
    assert DesiredCameras(engine, other).read() == []
    msgs = [r.getMessage() for r in caplog.records if r.name == "services.ingest.desired"]
    assert msgs and "camera gate" in msgs[0] and "another key" in msgs[0] and "s3cr3t" not in " ".join(msgs)


def test_rows_stored_in_plain_text_are_sealed_at_the_api_start(tmp_path):
    s = _settings(tmp_path)  # development (the tests' environment): a key file in the state dir
    migrate(s.database_url)
    engine = make_engine(s.database_url)
    with session_scope(engine) as db:
        db.add(Camera(id="old", source_type="rtsp", source_uri=URL))
    create_app(s, engine=engine)
    raw = _raw(engine, "old")
    assert raw.startswith("fernet:") and "s3cr3t" not in raw
    assert oct((tmp_path / "source.key").stat().st_mode & 0o777) == "0o600"
    assert SourceSeal.from_settings(s).open(raw) == URL  # the same key file, read again


def test_a_malformed_key_is_named_without_its_value():
    with pytest.raises(SourceKeyError, match="security.source_key is not a Fernet key"):
        SourceSeal(b"not-a-key", where="security.source_key")
