"""Closed events get their clip once the post-roll is stored; the sweep is idempotent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from sqlmodel import Session

from services.scoring.evidence_maintainer import pending_events, sweep
from vigil.config import load_settings
from vigil.db import make_engine, migrate
from vigil.models import Event, SegmentScore
from vigil.objectstore import ObjectMissing
from vigil.segments import encode_segment

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class MemStore:
    def __init__(self):
        self.objects: dict[str, bytes] = {}

    def put(self, key, data, content_type=""):
        self.objects[key] = data

    def get(self, key):
        if key not in self.objects:
            raise ObjectMissing(key)
        return self.objects[key]


def _segment(db, store, seq):
    frames = np.zeros((4, 48, 64, 3), np.uint8)
    frames[:, 10:20, seq * 5 : seq * 5 + 10] = 255
    key = f"segments/cam/1/{seq:06d}.npz"
    store.put(key, encode_segment(frames))
    db.add(SegmentScore(segment_id=f"cam.1.{seq}", camera_id="cam", seq=seq, t_start=T0 + timedelta(seconds=4 * seq),
                        t_end=T0 + timedelta(seconds=4 * seq + 4), score=0.9 if seq in (2, 3) else 0.1,
                        model_version="m", object_key=key, frame_scores=[0.5] * 4))


def test_sweep_waits_for_post_roll_then_builds_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'v.db'}"
    migrate(url)
    engine = make_engine(url)
    settings = load_settings(None, camera_defaults={"post_roll_s": 4.0, "pre_roll_s": 4.0})
    store = MemStore()
    with Session(engine) as db:
        for seq in range(4):
            _segment(db, store, seq)
        db.add(Event(id="cam-2", camera_id="cam", t_start=T0 + timedelta(seconds=8), t_end=T0 + timedelta(seconds=16),
                     first_seq=2, last_seq=3, peak_score=0.9, status="closed", model_version="m",
                     segment_ids=["cam.1.2", "cam.1.3"]))
        db.commit()
    now = T0 + timedelta(seconds=18)
    assert pending_events(engine, settings, now=now) == []  # post-roll (16..20 s) not stored yet
    with Session(engine) as db:
        _segment(db, store, 4)
        db.commit()
    assert pending_events(engine, settings, now=now) == ["cam-2"]
    assert sweep(store, engine, settings) == 1
    with Session(engine) as db:
        ev = db.get(Event, "cam-2")
    assert ev.clip_key in store.objects and ev.thumbnail_key in store.objects
    assert store.objects[ev.clip_key][4:8] == b"ftyp"  # an MP4
    assert sweep(store, engine, settings) == 0  # nothing left to do


def test_event_whose_segments_are_gone_is_marked_not_retried(tmp_path):
    url = f"sqlite:///{tmp_path / 'v.db'}"
    migrate(url)
    engine = make_engine(url)
    settings = load_settings(None)
    with Session(engine) as db:
        db.add(Event(id="old", camera_id="cam", t_start=T0, t_end=T0, first_seq=0, last_seq=0, peak_score=0.9,
                     status="closed", model_version="m"))
        db.commit()
    assert sweep(MemStore(), engine, settings) == 0  # overdue, no footage: logged, marked
    with Session(engine) as db:
        assert db.get(Event, "old").clip_key == ""
    assert pending_events(engine, settings) == []
