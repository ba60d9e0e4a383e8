"""Retention: days per severity; objects and rows go together; interrupted runs resume."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from vigil.models import Event, Feedback, SegmentScore
from vigil.retention import RetentionSettings, cleanup

CFG = RetentionSettings(days={"low": 7, "medium": 30, "high": 90}, default_days=60, segment_days=3, batch_size=2)


def _populate(engine, store, make_event, now):
    """Events of each severity at several ages, with evidence objects, feedback and segments."""
    evs = []
    spec = [  # (age days, severity, status)
        (1, "low", "closed"), (8, "low", "closed"), (8, "low", "open"),
        (20, "medium", "closed"), (31, "medium", "closed"),
        (89, "high", "closed"), (91, "high", "closed"),
        (50, "weird", "closed"), (61, "weird", "closed"),
    ]
    with Session(engine, expire_on_commit=False) as s:
        for i, (age, sev, status) in enumerate(spec):
            ev = make_event(i, severity=sev, status=status)
            ev.t_start = now - timedelta(days=age, minutes=1)
            ev.t_end = now - timedelta(days=age)
            ev.clip_key, ev.thumbnail_key = f"evidence/cam-a/e{i}/clip.mp4", f"evidence/cam-a/e{i}/thumb.jpg"
            ev.segment_ids = [f"seg-e{i}"]
            store.put(ev.clip_key, b"mp4")
            store.put(ev.thumbnail_key, b"jpg")
            s.add(ev)
            s.add(Feedback(event_id=ev.id, camera_id="cam-a", label="true_positive", author="t"))
            # the segment the event names, and an unrelated segment of the same age
            for sid in (f"seg-e{i}", f"seg-x{i}"):
                key = f"segments/cam-a/{sid}.npz"
                store.put(key, b"npz")
                s.add(SegmentScore(segment_id=sid, camera_id="cam-a", seq=i, score=0.5, model_version="m",
                                   object_key=key, t_start=ev.t_start, t_end=ev.t_end))
            evs.append((ev.id, age, sev, status))
        s.commit()
    return evs


def _expired(age, sev, status):
    return status == "closed" and age > CFG.days_for(sev)


def _check_consistent(engine, store):
    """Every visible event has its objects; every evidence object has a row."""
    with Session(engine) as s:
        rows = s.exec(select(Event)).all()
        for r in rows:
            if r.purge_started_at is None:
                assert store.exists(r.clip_key) and store.exists(r.thumbnail_key), r.id
        named = {k for r in rows for k in (r.clip_key, r.thumbnail_key)}
    assert set(store.list("evidence/")) <= named


def test_days_per_severity(engine, store, make_event):
    from vigil.models import utcnow

    now = utcnow()
    evs = _populate(engine, store, make_event, now)
    report = cleanup(store, engine, CFG, now=now)
    with Session(engine) as s:
        left = {e.id for e in s.exec(select(Event))}
        fb = {f.event_id for f in s.exec(select(Feedback))}
        segs = {g.segment_id for g in s.exec(select(SegmentScore))}
    expect = {eid for eid, age, sev, st in evs if not _expired(age, sev, st)}
    assert left == expect == fb
    assert report.events_deleted == len(evs) - len(expect) == 4
    assert report.event_objects_deleted == 8
    # evidence objects of deleted events are gone, of kept ones present
    _check_consistent(engine, store)
    assert len(store.list("evidence/")) == 2 * len(expect)
    # segments older than 3 days go unless a remaining event names them
    kept_named = {f"seg-e{int(eid[-1])}" for eid in expect}
    assert segs == kept_named | {"seg-x0"}  # seg-x0 is 1 day old
    assert set(store.list("segments/")) == {f"segments/cam-a/{g}.npz" for g in segs}
    # a second run has nothing to do
    again = cleanup(store, engine, CFG, now=now)
    assert (again.events_deleted, again.segments_deleted) == (0, 0)


class Boom(Exception):
    pass


class FlakyStore:
    """Wraps a store; raises on the n-th delete (a process killed mid-cleanup)."""

    def __init__(self, inner, fail_at):
        self.inner, self.fail_at, self.n = inner, fail_at, 0

    def delete(self, key):
        self.n += 1
        if self.n == self.fail_at:
            raise Boom(key)
        self.inner.delete(key)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("fail_at", [1, 2, 3, 6, 9])
def test_interrupted_cleanup_never_splits_objects_from_rows_and_resumes(engine, store, make_event, client, admin,
                                                                         fail_at):
    from vigil.models import utcnow

    now = utcnow()
    evs = _populate(engine, store, make_event, now)
    with pytest.raises(Boom):
        cleanup(FlakyStore(store, fail_at), engine, CFG, now=now)
    _check_consistent(engine, store)
    # the API hides events whose deletion has started
    visible = {e["id"] for e in client.get("/events", headers=admin, params={"limit": 500}).json()["items"]}
    for eid in visible:
        d = client.get(f"/events/{eid}", headers=admin).json()
        assert store.exists(d["clip_key"]) and store.exists(d["thumbnail_key"])
    report = cleanup(store, engine, CFG, now=now)
    if fail_at <= 8:  # 4 expired events x 2 objects are deleted before any segment
        assert report.resumed >= 1
    with Session(engine) as s:
        left = {e.id for e in s.exec(select(Event))}
        segs = {g.segment_id for g in s.exec(select(SegmentScore))}
    expect = {eid for eid, age, sev, st in evs if not _expired(age, sev, st)}
    assert left == expect
    assert segs == {f"seg-e{int(eid[-1])}" for eid in expect} | {"seg-x0"}
    assert set(store.list("segments/")) == {f"segments/cam-a/{g}.npz" for g in segs}
    _check_consistent(engine, store)


def test_open_events_never_expire(engine, store, make_event):
    from vigil.models import utcnow

    now = utcnow()
    with Session(engine) as s:
        ev = make_event(0, severity="low", status="open")
        ev.t_start, ev.t_end = now - timedelta(days=400), now - timedelta(days=399)
        s.add(ev)
        s.commit()
    assert cleanup(store, engine, CFG, now=now).events_deleted == 0


def test_the_schedule_runs_passes_until_closed_and_survives_a_failing_one(engine, store, make_event, caplog):
    import logging
    import time

    from vigil.models import utcnow
    from vigil.retention import RetentionSchedule

    now = utcnow()
    evs = _populate(engine, store, make_event, now)
    delete = store.delete
    calls = {"n": 0}

    def flaky_delete(key):  # the first pass finds the store away
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("store away")
        return delete(key)

    store.delete = flaky_delete
    caplog.set_level(logging.WARNING, logger="vigil.retention")
    sched = RetentionSchedule(store, engine, CFG.model_copy(update={"every_s": 0.05})).start()
    deadline = time.monotonic() + 10
    while sched.passes < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    sched.close()
    assert sched.passes >= 2 and not sched.thread.is_alive()
    with Session(engine) as s:
        left = {e.id for e in s.exec(select(Event))}
    assert left == {eid for eid, age, sev, st in evs if not _expired(age, sev, st)}
    assert any("retention pass failed (ConnectionError: store away)" in r.getMessage() for r in caplog.records)
    _check_consistent(engine, store)


def test_every_s_0_never_starts_the_thread(engine, store):
    from vigil.retention import RetentionSchedule

    sched = RetentionSchedule(store, engine, CFG.model_copy(update={"every_s": 0})).start()
    assert not sched.thread.is_alive()
    sched.close()
