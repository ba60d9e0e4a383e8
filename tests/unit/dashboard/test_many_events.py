"""With 100,000 events the pages fetch one page at a time (keyset cursors), never the whole table."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.dashboard.dash_helpers import page_test

N = 100_000


def _id(i: int) -> str:
    return f"cam-{'ab'[i % 2]}:{i:09d}"


@pytest.fixture
def many_events(engine, cameras):
    """100,000 events written straight into the SQLite file (one executemany)."""
    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    top = json.dumps([{"text": "a fight", "prob": 0.6, "abnormal": True}])

    def ts(sec: int) -> str:
        return (t0 + timedelta(seconds=sec)).strftime("%Y-%m-%d %H:%M:%S.000000")

    rows = [(_id(i), _id(i)[:5], ts(30 * i), ts(30 * i + 8), i, i, 0.5 + (i % 50) / 100, "medium",
             "open" if i % 1000 == 0 else "closed", "m1", top, "[]", ts(0), ts(0)) for i in range(N)]
    con = sqlite3.connect(engine.url.database)
    with con:
        con.executemany(
            "INSERT INTO events (id, camera_id, t_start, t_end, first_seq, last_seq, peak_score, severity, status, "
            "model_version, top_descriptions, segment_ids, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.close()
    return N


def test_events_page_stays_paginated(admin, many_events, http, monkeypatch):
    calls: list[str] = []
    original = http.request

    def counting(method, url, *a, **kw):  # noqa: ANN001, ANN002, ANN003
        calls.append(f"{method} {url}")
        return original(method, url, *a, **kw)

    monkeypatch.setattr(http, "request", counting)
    t = time.monotonic()
    at = page_test("events", admin).run()
    first = time.monotonic() - t
    assert not at.exception, at.exception
    df = at.dataframe[0].value
    assert len(df) == 25 and df["id"].iloc[0] == _id(N - 1)
    list_calls = [c for c in calls if c.startswith("GET /events") and c.count("/") == 1]
    assert len(list_calls) == 1  # one page, not the table
    t = time.monotonic()
    next(b for b in at.button if b.label == "Next").click()
    at.run()
    second = time.monotonic() - t
    assert at.dataframe[0].value["id"].iloc[0] == _id(N - 26)
    assert first < 15 and second < 10, (first, second)

    # Live: open events come from one bounded query too
    t = time.monotonic()
    at = page_test("live", admin).run()
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric}["Open events"] == "100"
    assert time.monotonic() - t < 15
