"""Ingest follows the cameras table: rows → cameras, and reconciling only what changed."""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np
import pytest

from services.ingest.desired import DesiredCameras
from services.ingest.runner import IngestService
from vigil.camera_seed import seed_cameras
from vigil.config import CameraConfig, FileSource, Settings, SyntheticSource
from vigil.db import make_engine, migrate, session_scope
from vigil.models import Camera

from .test_runner import FakeProducer, FakeStore


@pytest.fixture
def video(tmp_path):
    path = tmp_path / "v.mp4"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 20.0, (64, 48))
    for i in range(40):
        vw.write(np.full((48, 64, 3), i * 5, np.uint8))
    vw.release()
    return path


@pytest.fixture
def settings(tmp_path):
    return Settings(state_dir=tmp_path, database={"url": f"sqlite:///{tmp_path / 'vigil.db'}"}, cameras=[
        CameraConfig(id="yaml-cam", source=SyntheticSource(scene="plaza"), params={"context": "campus"}),
    ])


@pytest.fixture
def engine(settings):
    migrate(settings.database_url)
    eng = make_engine(settings.database_url)
    yield eng
    eng.dispose()


def test_rows_become_cameras_and_unusable_rows_are_reported_once(settings, engine, video, caplog):
    seed_cameras(engine, settings.cameras)
    with session_scope(engine) as db:
        db.get(Camera, "yaml-cam").context = "night-shift"  # an analyst's edit of a configured camera
        db.add(Camera(id="added", source_type="file", source_uri=f"file://{video}?loop=true", context="lobby"))
        db.add(Camera(id="off", source_type="file", source_uri=str(video), enabled=False))
        db.add(Camera(id="no-source", source_type="rtsp"))
    desired = DesiredCameras(engine, settings)
    with caplog.at_level(logging.ERROR, logger="services.ingest.desired"):
        first, second = desired.read(), desired.read()
    cams = {c.id: c for c in first}
    assert first == second and set(cams) == {"added", "yaml-cam"}
    # a configured camera keeps its YAML source (the URL never goes to SQL); the row's context wins
    assert cams["yaml-cam"].source == settings.cameras[0].source and cams["yaml-cam"].params.context == "night-shift"
    assert cams["added"].source == FileSource(path=video, loop=True) and cams["added"].params.context == "lobby"
    assert cams["added"].params.fps == settings.camera_defaults.fps
    reports = [r.getMessage() for r in caplog.records if r.name == "services.ingest.desired"]
    assert len(reports) == 1 and "no-source" in reports[0] and "source_uri" in reports[0]


def test_a_stream_row_with_a_bad_url_is_reported_without_the_url(settings, engine, caplog):
    with session_scope(engine) as db:
        db.add(Camera(id="cam", source_type="frames", source_uri="/x?fps=-3&token=s3cret"))
    with caplog.at_level(logging.ERROR, logger="services.ingest.desired"):
        assert DesiredCameras(engine, settings).read() == []
    msg = caplog.records[0].getMessage()
    assert "camera cam" in msg and "fps" in msg and "s3cret" not in msg


def _looping(video, cid, **params):
    return CameraConfig(id=cid, source=FileSource(path=video, loop=True, realtime=True),
                        params={"fps": 4.0, "frames_per_segment": 2, **params})


def _wait(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_reconcile_starts_stops_and_restarts_only_what_changed(settings, video):
    desired = [_looping(video, "a"), _looping(video, "b")]
    prod = FakeProducer()
    svc = IngestService(settings, FakeStore(), prod, desired=lambda: list(desired), reconcile_every_s=0.1)
    svc.start()
    try:
        _wait(lambda: {h.camera_id for h in svc.health() if h.segments} == {"a", "b"})
        a_before = svc.running["a"][0]
        desired[1] = _looping(video, "b", frames_per_segment=3)  # an edit: b restarts with it
        _wait(lambda: svc.running["b"][0].cam.params.frames_per_segment == 3)
        assert svc.running["a"][0] is a_before and not a_before.stop.is_set()
        desired[:] = [desired[1], _looping(video, "c"), _looping(video, "off").model_copy(update={"enabled": False})]
        _wait(lambda: set(svc.running) == {"b", "c"})
        assert a_before.stop.is_set()
        _wait(lambda: not svc.running.get("a") and svc.running["c"][0].health.segments > 0)
        sent_a = sum(1 for _, key, _ in prod.sent if key == b"a")
        time.sleep(1.0)  # a stopped: it publishes nothing more once its buffer is through
        assert sum(1 for _, key, _ in prod.sent if key == b"a") <= sent_a + svc.buffer_segments
        assert {h.camera_id for h in svc.health()} == {"b", "c"}
    finally:
        svc.shutdown(timeout=5)
    assert all(not th.is_alive() for _, th in svc.running.values())


def test_an_unreadable_table_keeps_the_running_cameras(settings, video):
    calls = {"n": 0}

    def desired():
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError("database is locked")
        return [_looping(video, "a")]

    svc = IngestService(settings, FakeStore(), FakeProducer(), desired=desired, reconcile_every_s=0.05)
    svc.start()
    try:
        _wait(lambda: calls["n"] >= 4)
        assert set(svc.running) == {"a"} and not svc.running["a"][0].stop.is_set()
    finally:
        svc.shutdown(timeout=5)
