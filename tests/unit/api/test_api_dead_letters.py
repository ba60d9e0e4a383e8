"""Dead letters and notifications that gave up: listed for admins, sent round again, audited."""

from __future__ import annotations

import base64

from sqlmodel import Session

from services.scoring.relay import OutboxRelay
from vigil.contracts import DeadLetter
from vigil.models import Delivery, Event, utcnow
from services.scoring.sink import Sink


def _analyst(client, admin) -> dict[str, str]:
    uid = client.post("/users", headers=admin, json={"name": "ana", "role": "analyst"}).json()["id"]
    return {"X-API-Key": client.post(f"/users/{uid}/keys", headers=admin, json={}).json()["key"]}


class _Ack:
    def get(self, timeout=None):  # noqa: ANN001
        return None


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    def send(self, topic, key=None, value=None):  # noqa: ANN001
        self.sent.append((topic, key, value))
        return _Ack()


def test_dead_letters_are_listed_and_replayed_by_the_relay_once(client, admin, engine):
    sink = Sink(engine)
    dl = DeadLetter.wrap(b'{"not": "a segment"}', "undecodable SegmentRef: x", source_topic="vigil.segments.v1",
                         partition=2, offset=17, key="cam-a", attempts=1)
    sink.record_dead_letter(dl)
    sink.record_dead_letter(dl)  # given up twice (the worker died after the topic took it): kept once
    listed = client.get("/dead-letters", headers=admin).json()
    assert [(d["partition"], d["offset"], d["reason"]) for d in listed] == [(2, 17, "undecodable SegmentRef: x")]
    assert base64.b64decode(listed[0]["payload_b64"]) == b'{"not": "a segment"}'
    assert client.get("/dead-letters", headers=_analyst(client, admin)).status_code == 403
    did = listed[0]["id"]
    r = client.post(f"/dead-letters/{did}/replay", headers=admin)
    assert r.status_code == 202 and r.json()["replay_requested_by"] == "bootstrap-admin"
    assert client.post(f"/dead-letters/{did}/replay", headers=admin).status_code == 409  # already on its way
    assert client.post("/dead-letters/999/replay", headers=admin).status_code == 404
    producer = _Producer()
    relay = OutboxRelay(engine, producer, "vigil.events.v1")
    assert relay.replay_requested() == 1
    assert producer.sent == [("vigil.segments.v1", b"cam-a", b'{"not": "a segment"}')]
    assert relay.replay_requested() == 0  # carried out once
    assert client.get("/dead-letters", headers=admin, params={"state": "pending"}).json() == []
    assert client.get("/dead-letters", headers=admin, params={"state": "replayed"}).json()[0]["replayed_at"]
    log = client.get("/audit", headers=admin, params={"action": "dead_letter.replay"}).json()
    assert [e["target"] for e in log] == [f"dead_letter:{did}"]


def test_event_deliveries_listed_and_a_dead_one_retried(client, admin, engine):
    now = utcnow()
    with Session(engine) as s:
        s.add(Event(id="ev:1", camera_id="cam-a", t_start=now, t_end=now, first_seq=0, last_seq=0, peak_score=0.8,
                    model_version="m"))
        for v, ch, st in ((1, "hook", "delivered"), (1, "mqtt", "dead_letter"), (2, "hook", "pending")):
            s.add(Delivery(event_id="ev:1", version=v, kind="new" if v == 1 else "update", camera_id="cam-a",
                           channel=ch, rule="all", status=st, attempts=12 if st == "dead_letter" else 1,
                           message={}, created_at=now))
        s.commit()
    ana = _analyst(client, admin)
    got = client.get("/events/ev:1/deliveries", headers=ana).json()
    assert [(d["version"], d["channel"], d["status"]) for d in got] == [
        (1, "hook", "delivered"), (1, "mqtt", "dead_letter"), (2, "hook", "pending")]
    assert client.get("/events/ev:9/deliveries", headers=ana).status_code == 404
    dead = client.get("/deliveries", headers=admin, params={"status": "dead_letter"}).json()
    assert [d["channel"] for d in dead] == ["mqtt"]
    r = client.post(f"/deliveries/{dead[0]['id']}/retry", headers=admin)
    assert r.status_code == 202 and (r.json()["status"], r.json()["attempts"]) == ("pending", 0)
    assert client.post(f"/deliveries/{dead[0]['id']}/retry", headers=admin).status_code == 409
