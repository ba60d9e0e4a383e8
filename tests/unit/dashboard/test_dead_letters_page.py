"""Dead letters page (admins): list, replay a segment, retry a notification, against the real API app."""

from __future__ import annotations

from services.scoring.sink import Sink
from tests.unit.dashboard.dash_helpers import page_test
from vigil.contracts import DeadLetter
from vigil.models import Delivery


def test_lists_dead_segments_and_replays_one(admin, engine, user_client):
    Sink(engine).record_dead_letter(DeadLetter.wrap(b'{"segment_id": 1}', "deterministic failure, given up after 2 "
                                                    "attempts: KeyError: 'unknown prompt set'", source_topic="seg",
                                                    partition=1, offset=40, key="cam-a", attempts=2))
    at = page_test("dead_letters", admin).run()
    assert not at.exception, at.exception
    df = at.dataframe[0].value
    assert list(df["where"]) == ["seg[1]@40"] and "unknown prompt set" in df["reason"][0]
    assert df["payload"][0] == '{"segment_id": 1}'
    next(b for b in at.button if b.label == "Replay to its topic").click().run()
    assert not at.exception, at.exception
    (row,) = admin.dead_letters()
    assert row["replay_requested_by"] == "bootstrap-admin" and row["replayed_at"] is None
    at = page_test("dead_letters", user_client("analyst")).run()
    assert any("for admins" in i.value for i in at.info)


def test_retries_a_dead_notification(admin, seed):
    seed(Delivery(event_id="ev:1", version=1, kind="new", camera_id="cam-a", channel="soc", rule="all",
                  status="dead_letter", attempts=12, message={}, last_error="HTTP 500"))
    at = page_test("dead_letters", admin).run()
    assert list(at.dataframe[-1].value["last error"]) == ["HTTP 500"]
    next(b for b in at.button if b.label == "Retry with a fresh budget").click().run()
    assert not at.exception, at.exception
    assert admin.failed_deliveries() == []
