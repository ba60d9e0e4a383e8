"""Training sets: calibration clips split train/held-out, feedback labels, opt-in anomalies."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from services.trainer.config import DataSettings
from services.trainer.dataset import build_training_set, calibration_key, put_calibration_clip
from vigil.db import session_scope
from vigil.models import Event, Feedback

from .fakes import add_event


def _frames(n: int, v: int = 80) -> np.ndarray:
    return np.full((n, 24, 32, 3), v, np.uint8)


def _world(store, engine):
    for cam in ("a", "b"):
        for k in range(4):
            put_calibration_clip(store, cam, f"{k:03d}", _frames(16), fps=4.0)
    with session_scope(engine) as db:
        add_event(db, store, camera_id="a", event_id="fp1", segments=[_frames(8)] * 2, label="false_positive", first_seq=0, fps=4)
        add_event(db, store, camera_id="a", event_id="tp1", segments=[_frames(8)], label="true_positive", first_seq=10, fps=4)
        add_event(db, store, camera_id="b", event_id="tp2", segments=[_frames(8)], label="true_positive", first_seq=20, fps=4)
        add_event(db, store, camera_id="b", event_id="tp3", segments=[_frames(8)], label="true_positive", first_seq=30, fps=4)
        # an analyst changed their mind: the latest feedback wins (tp -> fp)
        add_event(db, store, camera_id="b", event_id="flip", segments=[_frames(8)], label="true_positive", first_seq=40, fps=4)
    with session_scope(engine) as db:
        db.add(Feedback(event_id="flip", camera_id="b", author="x", label="false_positive"))


def test_calibration_split_and_feedback_labels(store, engine):
    _world(store, engine)
    ts = build_training_set(store, engine, DataSettings(holdout_every=3))
    cal = ts.select(source="calibration")
    assert len(cal) == 8
    held = {c.clip_id for c in cal if c.split == "eval"}
    assert held == {"cal:a:002", "cal:b:002"}  # every 3rd clip of each camera
    fp = ts.select(source="false_positive")
    assert {c.event_id for c in fp} == {"fp1", "flip"} and all(c.split == "train" and c.label == 0 for c in fp)
    fp1 = next(c for c in fp if c.event_id == "fp1")
    assert fp1.keys == ("segments/a/000000000.npz", "segments/a/000000001.npz")  # in time order
    tp = ts.select(source="confirmed_anomaly")
    assert {c.event_id for c in tp} == {"tp1", "tp2", "tp3"}
    assert all(c.split == "eval" and c.label == 1 for c in tp), "confirmed anomalies are held out (zero-shot)"
    assert ts.digest == build_training_set(store, engine, DataSettings(holdout_every=3)).digest


def test_confirmed_anomalies_train_only_when_opted_in(store, engine):
    _world(store, engine)
    ts = build_training_set(store, engine, DataSettings(holdout_every=3, use_confirmed_anomalies=True))
    tp = ts.select(source="confirmed_anomaly")
    assert [c.split for c in tp] == ["train", "train", "eval"]  # still every 3rd held out
    assert ts.digest != build_training_set(store, engine, DataSettings(holdout_every=3)).digest


def test_purged_events_and_missing_segments_are_skipped(store, engine):
    _world(store, engine)
    with session_scope(engine) as db:
        db.get(Event, "tp1").purge_started_at = datetime.now(UTC)
    store.delete("segments/b/000000020.npz")  # tp2's only segment is gone (retention)
    ts = build_training_set(store, engine, DataSettings())
    assert {c.event_id for c in ts.select(source="confirmed_anomaly")} == {"tp3"}


def test_camera_filter_and_empty_set(store, engine):
    _world(store, engine)
    ts = build_training_set(store, engine, DataSettings(cameras=["b"]))
    assert ts.cameras == ["b"]
    with pytest.raises(ValueError, match="no training clips"):
        build_training_set(store, engine, DataSettings(cameras=["nope"]))
    assert calibration_key("a", "x") == "clips/a/normal/x.npz"
