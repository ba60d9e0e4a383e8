"""The SQL store on a real PostgreSQL server: migrations up/down, types, indexes, queries.

Needs PostgreSQL at 127.0.0.1:5432 (trust auth; override with VIGIL_TEST_PG_URL, a URL of a
maintenance database such as postgresql://postgres@127.0.0.1:5432/postgres). Each run
creates a fresh database and drops it afterwards.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

pytestmark = pytest.mark.integration

ADMIN_URL = os.environ.get("VIGIL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def fresh_pg_database(prefix: str):
    """Create an empty database; return (url, drop). Skips with a clear message when the
    server or the driver is missing."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'psycopg[binary]')")
    try:
        conn = psycopg.connect(ADMIN_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True,
                               connect_timeout=3)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL} ({type(exc).__name__}: {str(exc).strip()[:200]}); "
                    "start it or set VIGIL_TEST_PG_URL")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]

    def drop() -> None:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()

    return f"{base}/{name}", drop


@pytest.fixture(scope="module")
def pg_url():
    url, drop = fresh_pg_database("vigil_store")
    yield url
    drop()


@pytest.fixture(scope="module")
def engine(pg_url):
    from vigil.db import make_engine, migrate

    migrate(pg_url)
    eng = make_engine(pg_url)
    yield eng
    eng.dispose()


def test_migrations_go_down_and_up_again(pg_url, engine):
    from vigil.db import migrate

    names = set(inspect(engine).get_table_names())
    assert {"events", "segment_scores", "cameras", "camera_states", "feedback", "prompt_sets", "model_versions",
            "training_runs", "users", "api_keys", "contexts", "alembic_version"} <= names
    idx = {i["name"] for i in inspect(engine).get_indexes("events")}
    assert {"ix_events_camera_start", "ix_events_start_id_peak", "ix_events_peak_id_start", "ix_events_status_start",
            "ix_events_severity_start"} <= idx
    from alembic import command
    from alembic.config import Config

    from vigil.db import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", pg_url)
    engine.dispose()
    command.downgrade(cfg, "0001")
    assert "feedback" not in inspect(engine).get_table_names()
    migrate(pg_url)
    engine.dispose()
    assert "feedback" in inspect(engine).get_table_names()


def test_event_rows_round_trip_with_aware_times_and_json(engine):
    from vigil.models import Event

    t = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
    with Session(engine) as s:
        s.add(Event(id="pg:1", camera_id="pg", t_start=t, t_end=t + timedelta(seconds=8), first_seq=1, last_seq=2,
                    peak_score=0.9, model_version="m", created_at=t, updated_at=t, peak_s_sem=0.8, peak_s_pred=0.4,
                    top_descriptions=[{"text": "fighting between people", "prob": 0.7, "abnormal": True}],
                    segment_ids=["pg:1", "pg:2"]))
        s.commit()
    with Session(engine) as s:
        row = s.get(Event, "pg:1")
        assert row.t_start == t and row.t_start.tzinfo is not None
        assert row.top_descriptions[0]["text"] == "fighting between people" and row.peak_s_pred == 0.4


def test_text_search_uses_the_trigram_index_when_available(engine):
    from services.api.crud.events import EventPageParams, list_events
    from vigil.models import Event

    t = datetime(2026, 11, 4, tzinfo=UTC)
    with Session(engine) as s:
        for i, txt in enumerate(["a car driving on the walkway", "riding a bicycle", "100% off_sale"]):
            s.add(Event(id=f"ts:{i}", camera_id="ts", t_start=t + timedelta(minutes=i), t_end=t, first_seq=i,
                        last_seq=i, peak_score=0.5, model_version="m", created_at=t, updated_at=t,
                        top_descriptions=[{"text": txt, "prob": 0.5, "abnormal": True}]))
        s.commit()
        found = lambda q: sorted(e.id for e in list_events(  # noqa: E731
            s, params=EventPageParams(q=q, camera=["ts"]), allowed_cameras=None)[0])
        assert found("BICYCLE") == ["ts:1"]
        assert found("100%") == ["ts:2"] and found("_s") == ["ts:2"]
        has_trgm = s.exec(text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).first() is not None
        idx = {i["name"] for i in inspect(engine).get_indexes("events")}
        assert has_trgm == ("ix_events_descriptions_trgm" in idx)


def test_prompt_versions_are_unique_per_context_and_name(engine):
    from vigil.models import PromptSetRow

    with Session(engine) as s:
        s.add(PromptSetRow(context="c", name="n", version=1, content_hash="h", created_by="t"))
        s.commit()
        s.add(PromptSetRow(context="c", name="n", version=1, content_hash="h2", created_by="t"))
        with pytest.raises(IntegrityError):
            s.commit()
        s.rollback()
        assert len(s.exec(select(PromptSetRow)).all()) == 1


def test_api_keys_hash_is_unique_and_user_must_exist(engine):
    from vigil.models import ApiKey, User

    with Session(engine) as s:
        u = User(name="pg-user", role="viewer")
        s.add(u)
        s.commit()
        s.add(ApiKey(user_id=u.id, key_hash="a" * 64, prefix="vgl_x"))
        s.commit()
        s.add(ApiKey(user_id=u.id, key_hash="a" * 64, prefix="vgl_y"))
        with pytest.raises(IntegrityError):
            s.commit()
        s.rollback()
        s.add(ApiKey(user_id=999999, key_hash="b" * 64, prefix="vgl_z"))
        with pytest.raises(IntegrityError):
            s.commit()


def test_api_connections_plan_with_actual_parameters(pg_url):
    """A generic plan (psycopg prepares after 5 runs) ignores the search pattern and the camera;
    the API's connections force custom plans."""
    from services.api.main import create_app
    from vigil.config import Settings
    from vigil.db import make_engine

    eng = make_engine(pg_url)
    create_app(Settings(database={"url": pg_url}), engine=eng)
    with eng.connect() as c:
        assert c.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
    eng.dispose()
