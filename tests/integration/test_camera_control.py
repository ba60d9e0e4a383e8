"""A camera added, disabled and deleted through the API reaches ingest, on the real embedded stack.

Ingest follows the cameras table (SQL is the source of truth): the API writes a row for a
frames camera over a UCSD Ped2 clip; within seconds ingest streams it through S3 + Kafka →
Serve → SQL; disabling it stops its segments; deleting it removes it from ingest. The
configured cameras never restart meanwhile.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from pydantic import SecretStr
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from services.api.main import create_app
from services.ingest.desired import DesiredCameras
from services.ingest.runner import IngestService
from services.ingest.status import SourceStatusReporter
from services.scoring.deploy import deploy_scoring_app, handle_score_fn
from services.scoring.sink import Sink
from services.scoring.worker import ScoringWorker
from vigil.bus import ensure_topics, make_consumer, make_producer
from vigil.db import make_engine
from vigil.models import SegmentScore
from vigil.objectstore import ObjectStore

ROOT = Path(os.environ.get("VIGIL_UCSD_PED2", Path(__file__).resolve().parents[3] / "shared/data/ucsd_ped2"))
CLIP = ROOT / "testing/frames/01"
KEY = "camera-control-admin-key"


def _count(engine, camera_id: str) -> int:
    with Session(engine) as db:
        return db.exec(select(func.count()).select_from(SegmentScore)
                       .where(SegmentScore.camera_id == camera_id, SegmentScore.zone.is_(None))).one()  # whole view


def _wait(cond, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"{what} not within {timeout:.0f} s"
        time.sleep(0.5)
    return time.monotonic() - t0


def test_camera_added_disabled_and_deleted_through_the_api_reaches_ingest(stack):
    if not CLIP.is_dir():
        pytest.skip(f"UCSD Ped2 not found at {ROOT}")
    _, s = stack
    s = s.model_copy(update={"api": s.api.model_copy(update={"admin_key": SecretStr(KEY)}), "cameras": [],
                             "camera_defaults": s.camera_defaults.model_copy(update={"fps": 10.0})})
    store, engine = ObjectStore(s.s3), make_engine(s.database_url)
    ensure_topics(s.kafka)
    handle = deploy_scoring_app(s)
    worker = ScoringWorker(s, score_fn=handle_score_fn(handle), sink=Sink(engine), store=store,
                           producer=make_producer(s.kafka),
                           consumer=make_consumer(s.kafka, group="vigil-camera-control", client_id="cc"))
    th = threading.Thread(target=worker.run, daemon=True)
    th.start()
    ingest = IngestService(s, store, make_producer(s.kafka), desired=DesiredCameras(engine, s).read,
                           reconcile_every_s=1.0, status=SourceStatusReporter(engine))
    ingest.start()
    admin = {"X-API-Key": KEY}
    try:
        with TestClient(create_app(s, engine=engine, store=store)) as api:
            assert ingest.health() == []
            r = api.post("/cameras", headers=admin, json={
                "id": "added-cam", "source_type": "frames", "context": "campus",
                "source_uri": f"{CLIP}?fps=10&loop=true&realtime=true"})
            assert r.status_code == 201, r.text
            scored_s = _wait(lambda: _count(engine, "added-cam") >= 2, 60, "the added camera's segments scored")
            print(f"camera added through the API: 2 segments scored {scored_s:.1f} s later")
            running = ingest.running["added-cam"][0]
            assert running.cam.params.context == "campus"

            def source():
                return api.get("/cameras/added-cam/health", headers=admin).json()["source"] or {}

            _wait(lambda: source().get("segments", 0) >= 2 and source().get("fps"), 10, "its health reaching the API")
            src = source()
            assert src["connected"] and src["reporting"] and src["state"] == "streaming", src
            assert 8.0 <= src["fps"] <= 12.0, src  # sampled at the camera's 10 fps, measured by ingest
            assert str(CLIP) not in api.get("/cameras/added-cam/health", headers=admin).text
            print(f"its health in the API: connected, {src['fps']} fps, {src['segments']} segments")

            assert api.patch("/cameras/added-cam", headers=admin, json={"enabled": False}).status_code == 200
            _wait(lambda: "added-cam" not in ingest.running, 10, "ingest stopping the disabled camera")
            _wait(lambda: not api.get("/cameras/added-cam/health", headers=admin).json()["source"], 10,
                  "the disabled camera's source health leaving the API")
            assert running.stop.is_set()
            _wait(lambda: running.capture_done.is_set(), 10, "its capture ending")
            published = running.health.segments
            _wait(lambda: _count(engine, "added-cam") >= published, 60, "its published segments scored")
            n = _count(engine, "added-cam")
            time.sleep(6.0)  # more than a segment of footage (1.6 s at 10 fps) several times over
            assert _count(engine, "added-cam") == n, "a disabled camera kept publishing"

            assert api.patch("/cameras/added-cam", headers=admin, json={"enabled": True}).status_code == 200
            _wait(lambda: _count(engine, "added-cam") > n, 60, "the re-enabled camera's segments scored")
            assert api.delete("/cameras/added-cam", headers=admin).status_code == 204
            _wait(lambda: ingest.health() == [], 10, "the deleted camera leaving ingest")
            assert api.get("/cameras/added-cam", headers=admin).status_code == 404
            assert api.get("/cameras/added-cam/health", headers=admin).status_code == 404
    finally:
        ingest.shutdown(timeout=10)
        worker.stop.set()
        th.join(30)
        worker.close()
        from ray import serve

        serve.delete(s.serve.app_name)
