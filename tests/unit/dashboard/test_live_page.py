"""Live: camera cards with status, sparkline and open events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.unit.dashboard.dash_helpers import make_event, page_test, segment_scores


def _recent(i: int, **kw):
    ev = make_event(i, **kw)
    t = datetime.now(UTC) - timedelta(hours=2) + timedelta(minutes=5 * i)
    ev.t_start, ev.t_end = t, t + timedelta(seconds=8)
    return ev


def test_cards_status_sparkline_open_events(admin, cameras, seed):
    seed(*[_recent(i, score=0.5 + i / 20) for i in range(6)], _recent(7, status="open", score=0.93, severity="high"),
         _recent(8, camera="cam-b", status="open"), _recent(9, camera="cam-b", status="open"))
    at = page_test("live", admin).run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Cameras": "3", "Enabled": "2", "Open events": "3"}
    text = " ".join(m.value for m in at.markdown)
    assert "Gate A" in text and "Platform" in text and "disabled" in text
    assert "**1 open event**" in text and "**2 open events**" in text
    charts = {c.key: c for c in at.get("plotly_chart")}
    assert set(charts) == {"spark-cam-a", "spark-cam-b"}  # the disabled cam-c has no events
    ys = json.loads(charts["spark-cam-a"].proto.spec)["data"][0]["y"]
    assert ys[0] == 0.5 and ys[-1] == 0.93
    labels = [b.label for b in at.button]
    assert any(lbl.endswith("0.93 · high") for lbl in labels)


def test_open_event_button_selects_it(admin, cameras, seed):
    seed(_recent(3, status="open"))
    at = page_test("live", admin).run()
    next(b for b in at.button if "0.70" in b.label).click()
    at.run()
    assert at.session_state["vigil_event_id"] == "cam-a:000000003"


def test_no_cameras(admin):
    at = page_test("live", admin).run()
    assert not at.exception
    assert "No cameras yet" in at.info[0].value


def test_sparkline_from_recent_segment_scores(admin, cameras, seed):
    now = datetime.now(UTC)
    seed(*segment_scores("cam-a", now - timedelta(minutes=2), 20, peak_at=15))
    at = page_test("live", admin).run()
    assert not at.exception, at.exception
    charts = {c.key: c for c in at.get("plotly_chart")}
    ys = json.loads(charts["spark-cam-a"].proto.spec)["data"][0]["y"]
    assert len(ys) == 20 and max(ys) == 0.8
    assert any(c.value.startswith("segment scores, 10 min: last 0.20, max 0.80") for c in at.caption)
    assert "spark-cam-b" not in charts  # no scores and no events


def test_not_scored_lately_falls_back_to_event_peaks(admin, cameras, seed):
    seed(_recent(1, score=0.6), _recent(2, score=0.9))
    at = page_test("live", admin).run()
    assert not at.exception, at.exception
    assert any(c.value.startswith("event peaks, 24 h: last 0.90, max 0.90") for c in at.caption)
    assert ":gray[● no segments yet]" in " ".join(m.value for m in at.markdown)


def test_a_stack_part_down_shows_above_the_cameras(admin, cameras, tmp_path, http):
    import time as _time

    at = page_test("live", admin).run()
    assert not at.warning and not at.error  # no embedded stack in this state dir: nothing to say
    (tmp_path / "stack.json").write_text(json.dumps({"processes": {"kafka": 1, "s3": 2}, "parts": {
        "kafka": {"state": "down", "since": _time.time() - 30, "restarts": 2, "last_error": "ECONNREFUSED",
                  "recovery_s": [1.5, 2.0]},
        "s3": {"state": "up", "since": _time.time() - 600, "restarts": 1, "last_error": None, "recovery_s": [3.1]}}}))
    assert http.get("/stack", headers={"X-API-Key": admin._key}).json()["parts"]["kafka"]["restarts"] == 2
    at = page_test("live", admin).run()
    assert not at.exception, at.exception
    (w,) = at.warning
    assert "**kafka** is down since" in w.value and "(restarted 2 times): ECONNREFUSED" in w.value
