"""The API's unit suite (events, security, resources) re-run against a real PostgreSQL server.

The test functions are the ones of ``tests/unit/api``; only the fixtures differ: one fresh
database per run (dropped afterwards), tables emptied before each test. PostgreSQL at
127.0.0.1:5432 (or ``VIGIL_TEST_PG_URL``); skipped with the reason when it is not reachable.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session, SQLModel

pytestmark = pytest.mark.integration

UNIT = Path(__file__).resolve().parents[1] / "unit" / "api"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_vigil_unit_api_{name}", UNIT / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


_conf = _load("conftest")
_store_pg = _load_pg = None
_pg = importlib.util.spec_from_file_location("_vigil_store_pg", Path(__file__).with_name("test_store_postgres.py"))
_store_pg = importlib.util.module_from_spec(_pg)
_pg.loader.exec_module(_store_pg)

# the reused tests (collected from this module's namespace)
for _name in ("test_api_events", "test_api_security", "test_api_resources"):
    _m = _load(_name)
    for _k, _v in vars(_m).items():
        if _k.startswith("test_") and callable(_v) or _k in {"keys"}:
            globals()[_k] = _v


@pytest.fixture(scope="module")
def pg_url():
    url, drop = _store_pg.fresh_pg_database("vigil_api")
    yield url
    drop()


@pytest.fixture(scope="module")
def _pg_engine(pg_url):
    from vigil.db import make_engine, migrate

    migrate(pg_url)
    eng = make_engine(pg_url)
    yield eng
    eng.dispose()


@pytest.fixture
def engine(_pg_engine):
    tables = [t.name for t in SQLModel.metadata.sorted_tables]
    with Session(_pg_engine) as s:
        s.exec(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        s.commit()
    return _pg_engine


@pytest.fixture
def settings(tmp_path, pg_url):
    from vigil.config import Settings

    return Settings(state_dir=tmp_path, database={"url": pg_url}, api={"admin_key": _conf.ADMIN_KEY})


@pytest.fixture
def store():
    return _conf.FakeStore()


@pytest.fixture
def app(settings, engine, store):
    from services.api.main import create_app

    return create_app(settings, engine=engine, store=store)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture
def admin():
    return {"X-API-Key": _conf.ADMIN_KEY}


@pytest.fixture
def make_event():
    return _conf._make_event


@pytest.fixture
def seed(engine):
    def _seed(events):
        with Session(engine, expire_on_commit=False) as s:
            s.add_all(events)
            s.commit()
        return events

    return _seed


def test_schemathesis_finds_no_server_error_on_postgres(app):
    """The bounded OpenAPI fuzz run of the unit tier, against PostgreSQL (which, unlike SQLite,
    refuses NUL characters and out-of-range values)."""
    pytest.importorskip("schemathesis", reason="pip install schemathesis to run the OpenAPI fuzz test")
    _load("test_api_schemathesis").fuzz(app, _conf.ADMIN_KEY, examples=15)
