"""The review workflow: new -> acknowledged -> resolved, with assignee, note, audit and training feedback."""

from __future__ import annotations

from sqlmodel import Session

from vigil.models import Event, utcnow


def _events(engine, n=3) -> None:
    now = utcnow()
    with Session(engine) as s:
        for i in range(n):
            s.add(Event(id=f"ev:{i}", camera_id="cam-a", t_start=now, t_end=now, first_seq=i, last_seq=i,
                        peak_score=0.7, model_version="m"))
        s.commit()


def _user(client, admin, name: str, role: str = "analyst") -> dict[str, str]:
    uid = client.post("/users", headers=admin, json={"name": name, "role": role}).json()["id"]
    return {"X-API-Key": client.post(f"/users/{uid}/keys", headers=admin, json={}).json()["key"]}


def test_acknowledge_assign_resolve_with_audit_and_feedback(client, admin, engine):
    _events(engine)
    ana = _user(client, admin, "ana")
    r = client.patch("/events/ev:0/review", headers=ana, json={"status": "acknowledged", "assignee": "ana"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["review_status"], body["assignee"], body["reviewed_by"]) == ("acknowledged", "ana", "ana")
    assert body["reviewed_at"].endswith(("+00:00", "Z"))
    r = client.patch("/events/ev:0/review", headers=ana,
                     json={"status": "resolved", "resolution": "false_positive", "note": "a swaying flag"})
    assert r.status_code == 200 and r.json()["resolution"] == "false_positive" and r.json()["assignee"] == "ana"
    fb = client.get("/events/ev:0/feedback", headers=ana).json()
    assert [(f["label"], f["note"], f["author"]) for f in fb] == [("false_positive", "a swaying flag", "ana")]
    client.patch("/events/ev:1/review", headers=ana, json={"status": "resolved", "resolution": "duplicate"})
    assert client.get("/events/ev:1/feedback", headers=ana).json() == []  # a duplicate teaches nothing
    log = client.get("/audit", headers=admin, params={"action": "event.review"}).json()
    assert [e["target"] for e in log] == ["event:ev:1", "event:ev:0", "event:ev:0"]
    first = log[-1]
    assert first["before"]["review_status"] == "new" and first["after"]["review_status"] == "acknowledged"


def test_bad_reviews_are_refused_with_the_reason(client, admin, engine):
    _events(engine, 1)
    ana = _user(client, admin, "ana")
    viewer = _user(client, admin, "val", role="viewer")
    r = client.patch("/events/ev:0/review", headers=ana, json={"status": "resolved"})
    assert r.status_code == 422 and "resolution" in r.json()["detail"]
    r = client.patch("/events/ev:0/review", headers=ana, json={"status": "acknowledged", "resolution": "duplicate"})
    assert r.status_code == 422
    r = client.patch("/events/ev:0/review", headers=ana, json={"status": "acknowledged", "assignee": "nobody"})
    assert r.status_code == 422 and "nobody" in r.json()["detail"]
    assert client.patch("/events/ev:0/review", headers=viewer, json={"status": "acknowledged"}).status_code == 403
    assert client.patch("/events/ev:9/review", headers=ana, json={"status": "acknowledged"}).status_code == 404
    assert client.get("/events/ev:0", headers=ana).json()["review_status"] == "new"


def test_events_filter_unreviewed_and_assigned_to_someone(client, admin, engine):
    _events(engine)
    ana = _user(client, admin, "ana")
    client.patch("/events/ev:0/review", headers=ana, json={"status": "acknowledged", "assignee": "ana"})
    client.patch("/events/ev:1/review", headers=ana, json={"status": "resolved", "resolution": "true_positive"})

    def ids(**params):
        return sorted(e["id"] for e in client.get("/events", headers=ana, params=params).json()["items"])

    assert ids(review="new") == ["ev:2"]
    assert ids(review=["new", "acknowledged"]) == ["ev:0", "ev:2"]
    assert ids(assignee="ana") == ["ev:0"]
    page = client.get("/events", headers=ana).json()["items"]
    assert {e["id"]: e["review_status"] for e in page} == {"ev:0": "acknowledged", "ev:1": "resolved", "ev:2": "new"}
