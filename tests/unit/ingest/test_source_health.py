"""Camera health as ingest measures it, reports it to SQL and the API shows it (never the URL)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from services.api.main import create_app
from services.ingest.runner import CameraIngest, IngestService, SourceHealth
from services.ingest.status import SourceStatusReporter
from vigil.config import CameraConfig, IngestSettings, Settings, StreamSource, SyntheticSource
from vigil.db import make_engine, migrate, session_scope
from vigil.models import Camera, SourceStatus

from .test_runner import FakeProducer, FakeStore, _camera

ADMIN = "test-admin-key-0123456789"


@pytest.fixture
def settings(tmp_path):
    return Settings(state_dir=tmp_path, database={"url": f"sqlite:///{tmp_path / 'vigil.db'}"},
                    api={"admin_key": ADMIN}, ingest={"reconcile_every_s": 0.2})


@pytest.fixture
def engine(settings):
    migrate(settings.database_url)
    eng = make_engine(settings.database_url)
    yield eng
    eng.dispose()


def test_measured_fps_and_connected_follow_the_frames():
    h = SourceHealth("cam")
    assert h.fps is None and not h.connected()
    for i in range(9):  # 9 frames sampled 0.25 s apart: 4 fps
        h.frame_sampled(100.0 + i * 0.25)
    h.state, h.last_frame_at = "streaming", 102.0
    assert h.fps == pytest.approx(4.0)
    assert h.connected(now=104.0) and not h.connected(now=108.0)
    assert h.connected(now=108.0, nominal_fps=0.2)  # a 0.2 fps camera is not stale after 6 s
    for i in range(4):  # the window forgets frames older than 10 s
        h.frame_sampled(130.0 + i)
    assert h.fps == pytest.approx(1.0)


def test_a_file_camera_reports_fps_segments_and_when_its_last_segment_went_out(tmp_path):
    cam = _camera(tmp_path)
    health = CameraIngest(cam, FakeStore(), FakeProducer(), "t").run()
    assert health.segments == 5 and health.last_segment_at is not None and health.reconnects == 0
    assert health.fps is not None and health.fps > 4.0  # realtime=False: read faster than the camera's 4 fps


def test_an_unreachable_stream_counts_reconnects_and_its_error_never_holds_the_url():
    url = "rtsp://admin:hunter2@127.0.0.1:9/stream"
    cam = CameraConfig(id="door", source=StreamSource(type="rtsp", url=SecretStr(url), reconnect_initial_s=0.02,
                                                      reconnect_max_s=0.05, max_reconnects=3))
    health = CameraIngest(cam, FakeStore(), FakeProducer(), "t").run()
    assert health.state == "failed" and health.reconnects == 3
    assert "127.0.0.1" not in health.error and "hunter2" not in health.error and "<source>" in health.error


def test_a_missing_file_error_names_no_path(tmp_path):
    cam = _camera(tmp_path)
    cam = cam.model_copy(update={"source": cam.source.model_copy(update={"path": tmp_path / "gone" / "v.mp4"})})
    health = CameraIngest(cam, FakeStore(), FakeProducer(), "t").run()
    assert health.state == "failed" and str(tmp_path) not in health.error and "does not exist" in health.error


def test_reporter_upserts_running_cameras_and_removes_the_ones_it_stopped(engine):
    rep = SourceStatusReporter(engine, ingest="box:1")
    a, b = SourceHealth("a", state="streaming", frames=10, last_frame_at=time.time()), SourceHealth("b")
    rep.report([(a, 4.0), (b, 4.0)])
    other = SourceStatusReporter(engine, ingest="box:2")
    other.report([(SourceHealth("c"), 4.0)])
    a.frames, a.reconnects, a.error = 20, 1, "stream lost after frames"
    rep.report([(a, 4.0)])  # b stopped here
    with session_scope(engine) as db:
        rows = {r.camera_id: r for r in db.exec(SourceStatus.__table__.select())}
    assert set(rows) == {"a", "c"}  # another process's camera is left alone
    assert rows["a"].frames == 20 and rows["a"].reconnects == 1 and rows["a"].connected
    assert rows["a"].last_error == "stream lost after frames"
    rep.close()
    with session_scope(engine) as db:
        a_row, c_row = db.get(SourceStatus, "a"), db.get(SourceStatus, "c")
        assert (a_row.state, a_row.connected, c_row.ingest_id) == ("stopped", False, "box:2")


def test_ingest_reports_each_tick_and_the_api_shows_it(settings, engine):
    with session_scope(engine) as db:
        db.add(Camera(id="plaza", source_type="synthetic"))
    cam = CameraConfig(id="plaza", source=SyntheticSource(fps=8.0, realtime=True),
                       params={"fps": 4.0, "frames_per_segment": 4})
    rep = SourceStatusReporter(engine, ingest="box:1")
    svc = IngestService(settings, FakeStore(), FakeProducer(), desired=lambda: [cam], status=rep,
                        reconcile_every_s=0.2)
    svc.start()
    # the API started first: its start-up takes longer than the 0.6 s a report counts as fresh
    # here (3 ticks of 0.2 s) on a loaded machine; then its answer is read while ingest runs
    try:
        with TestClient(create_app(settings, engine=engine, store=FakeStore())) as http:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                src = http.get("/cameras/plaza/health", headers={"X-API-Key": ADMIN}).json()["source"]
                if src and src["segments"] >= 2 and src["fps"] and src["reporting"]:
                    break
                time.sleep(0.1)
    finally:
        svc.shutdown()
    assert src["connected"] and src["reporting"] and src["state"] == "streaming" and src["segments"] >= 2, src
    assert 3.0 <= src["fps"] <= 5.0, src  # realtime at the camera's 4 fps
    with session_scope(engine) as db:
        assert db.get(SourceStatus, "plaza").state == "stopped"


def test_the_api_says_when_ingest_stopped_reporting_and_deleting_a_camera_drops_its_health(settings, engine):
    old = datetime.now(UTC) - timedelta(minutes=2)
    with session_scope(engine) as db:
        db.add(Camera(id="gate", source_type="rtsp", source_uri="rtsp://u:p@10.0.0.9/s"))
        db.add(SourceStatus(camera_id="gate", ingest_id="box:1", state="streaming", connected=True, reported_at=old))
    hdr = {"X-API-Key": ADMIN}
    with TestClient(create_app(settings, engine=engine, store=FakeStore())) as http:
        src = http.get("/cameras/gate/health", headers=hdr).json()["source"]
        assert (src["reporting"], src["connected"]) == (False, False)
        assert "10.0.0.9" not in http.get("/cameras/gate/health", headers=hdr).text
        assert http.delete("/cameras/gate", headers=hdr).status_code == 204
        assert http.get("/cameras/gate/health", headers=hdr).status_code == 404
    with session_scope(engine) as db:
        assert db.get(SourceStatus, "gate") is None


def test_shards_split_the_cameras_between_ingest_processes():
    ids = [f"cam-{i}" for i in range(60)]
    shards = [IngestSettings(shard=f"{i}/3") for i in range(3)]
    owners = [[s.runs(c) for s in shards].count(True) for c in ids]
    assert owners == [1] * len(ids)  # every camera runs in exactly one process
    assert all(10 <= sum(s.runs(c) for c in ids) <= 30 for s in shards)  # roughly even
    assert IngestSettings().runs("anything")
    with pytest.raises(ValidationError, match="below the count"):
        IngestSettings(shard="3/3")
    with pytest.raises(ValidationError):
        IngestSettings(shard="two of three")


def test_each_ingest_shard_reads_only_its_share_of_the_cameras_table(settings, engine, tmp_path):
    from services.ingest.desired import DesiredCameras

    ids = [f"cam-{i}" for i in range(12)]
    with session_scope(engine) as db:
        for cid in ids:
            db.add(Camera(id=cid, source_type="file", source_uri=str(tmp_path / "v.mp4")))
    shares = []
    for i in range(3):
        s = settings.model_copy(update={"ingest": IngestSettings(shard=f"{i}/3")})
        shares.append({c.id for c in DesiredCameras(engine, s).read()})
    assert set().union(*shares) == set(ids) and sum(map(len, shares)) == len(ids) and all(shares)
    # a camera seeded from one group's configuration runs in that group's process only
    with session_scope(engine) as db:
        db.add(Camera(id="lobby", source_type="synthetic", from_config=True))
    group = CameraConfig(id="lobby", source=SyntheticSource())
    own = settings.model_copy(update={"ingest": IngestSettings(shard="1/3"), "cameras": [group]})
    other = settings.model_copy(update={"ingest": IngestSettings(shard="0/3")})
    assert "lobby" in {c.id for c in DesiredCameras(engine, own).read()}
    assert "lobby" not in {c.id for c in DesiredCameras(engine, other).read()}
