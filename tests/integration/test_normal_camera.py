"""A camera learns its own normality inside the platform, on the real embedded stack.

A file camera streams a UCSD Ped2 training clip (normal footage) in real time through ingest →
S3 + Kafka → Serve → SQL. The scoring worker records the camera's normal period into the
object store; when it is complete the watcher trains the camera's normality as a Ray Train
job, checks it on held-out normal clips, registers it with its lineage and activates it:
the Score replica fetches it by its ``s3://`` URI through ``reconfigure()`` while the camera
keeps streaming — same replica, every segment scored exactly once, and every segment after
the switch scored by the camera's own version. The API says which version scores it.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import ray
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from services.ingest.runner import IngestService
from services.scoring.deploy import deploy_scoring_app, handle_score_fn
from services.scoring.sink import Sink
from services.scoring.worker import ScoringWorker
from services.trainer import registry
from services.trainer.normal_camera import NormalPeriodWatcher
from vigil.bus import ensure_topics, make_consumer, make_producer
from vigil.config import CameraConfig, FramesSource
from vigil.db import make_engine
from vigil.models import ModelVersion, NormalPeriod, SegmentScore, TrainingRun
from vigil.normal_period import NormalPeriodRecorder
from vigil.objectstore import ObjectStore

ROOT = Path(os.environ.get("VIGIL_UCSD_PED2", Path(__file__).resolve().parents[3] / "shared/data/ucsd_ped2"))
CLIPS = [ROOT / f"training/frames/{c}" for c in ("01", "02", "03")]  # 420 normal frames, one scene
CAM = "cam-normal"
T, FPS = 16, 10.0  # 1.6 s a segment
PERIOD_S = 28.0  # 18 segments recorded → six clips of three; the last one held out
CLIP_SEGMENTS = 3


def _score_replicas() -> set[str]:
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "#Score#" in a["name"]}


@pytest.fixture(scope="module")
def learnt(stack, tmp_path_factory):
    if not all(c.is_dir() for c in CLIPS):
        pytest.skip(f"UCSD Ped2 not found at {ROOT}")
    st, s = stack
    footage = tmp_path_factory.mktemp("ped2-normal")  # the three clips as one camera's stream (links, no copies)
    for i, f in enumerate(p for c in CLIPS for p in sorted(c.glob("*.jpg"))):
        (footage / f"{i:05d}.jpg").symlink_to(f)
    cam = CameraConfig(id=CAM, source=FramesSource(path=footage, fps=FPS, loop=True, realtime=True),
                       params={"fps": FPS, "frames_per_segment": T, "normal_period_s": PERIOD_S})
    s2 = s.model_copy(update={
        "cameras": [cam],
        "normality": s.normality.model_copy(update={"steps": 30, "clip_segments": CLIP_SEGMENTS, "cpus": 0.25,
                                                    "watch_interval_s": 1.0}),
    })
    store, engine = ObjectStore(s2.s3), make_engine(s2.database_url)
    ensure_topics(s2.kafka)
    handle = deploy_scoring_app(s2, user_config=registry.serving_user_config(s2, engine, store))
    before = _score_replicas()
    worker = ScoringWorker(s2, score_fn=handle_score_fn(handle), sink=Sink(engine), store=store,
                           producer=make_producer(s2.kafka), recorder=NormalPeriodRecorder(engine, store),
                           consumer=make_consumer(s2.kafka, group="vigil-normal", client_id="n"))
    th = threading.Thread(target=worker.run, daemon=True)
    th.start()
    ingest = IngestService(s2, store, make_producer(s2.kafka), max_segments=400)
    ingest.start()
    watcher = NormalPeriodWatcher(s2, echo=print).start()

    def rows():
        with Session(engine) as db:
            return db.exec(select(SegmentScore).where(SegmentScore.camera_id == CAM).order_by(SegmentScore.seq)).all()

    t0 = time.monotonic()
    try:
        deadline = time.monotonic() + 600
        while not watcher.outcomes and not watcher.errors and time.monotonic() < deadline:
            time.sleep(1.0)
        assert not watcher.errors, watcher.errors
        assert watcher.outcomes, "no automatic training run within 600 s"
        learnt_s = time.monotonic() - t0
        out = watcher.outcomes[0]
        print("automatic run:", out.reason, out.metrics)
        # keep streaming until a few segments are scored by the new version
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            got = rows()
            if sum(1 for r in got if r.model_version.endswith(out.version.split(":", 1)[1] if out.version else "-")) >= 3:
                break
            time.sleep(0.5)
    finally:
        watcher.close()
        ingest.shutdown()
        produced = ingest.health()[0].segments
        deadline = time.monotonic() + 120
        while len(rows()) < produced and time.monotonic() < deadline:
            time.sleep(0.5)
        got = rows()
        worker.stop.set()
        th.join(30)
        worker.close()
        after = _score_replicas()
        from ray import serve

        info = handle.scorer_info.remote().result(timeout_s=30)
        serve.delete(s2.serve.app_name)  # frees its CPUs for later modules
    print(f"normal period recorded, trained, checked and activated {learnt_s:.0f} s after the camera started")
    return s2, store, engine, out, got, produced, before, after, info


def test_period_is_recorded_into_the_object_store(learnt):
    s, store, engine, out, *_ = learnt
    with Session(engine) as db:
        period = db.get(NormalPeriod, CAM)
    assert period.status == "trained" and period.model_version == out.version
    assert period.recorded_s >= PERIOD_S and len(period.clips) == 18
    assert abs(sum(period.hours) - period.recorded_s) < 1e-6, "every recorded second is in its hour of day"
    keys = set(store.list(f"normal/{CAM}/"))
    assert {c["key"] for c in period.clips} <= keys, "each listed clip is an object under normal/<camera>/"


def test_version_is_checked_registered_with_lineage(learnt):
    s, store, engine, out, *_ = learnt
    assert out.registered and out.activated, out.reason
    print("check:", out.metrics["check"])
    assert out.metrics["check"]["frames"] >= T and out.metrics["check"]["exceedance"] <= s.normality.max_check_exceedance
    with Session(engine) as db:
        row = db.get(ModelVersion, out.version)
        run = db.get(TrainingRun, out.run_id)
    assert row.kind == "normality" and row.camera_id == CAM and row.active
    assert run.status == "succeeded" and run.output_model_version == out.version
    lin = registry.read_lineage(store, out.version)
    assert lin["camera_id"] == CAM and lin["run_id"] == out.run_id and lin["parent"] is None
    assert len(lin["data"]["train_clips"]) == 5 and len(lin["data"]["check_clips"]) == 1
    assert [len(c) for c in lin["data"]["train_clips"]] == [CLIP_SEGMENTS] * 5
    assert store.exists(row.checkpoint_key)
    assert any(k.endswith("normality.pt") for k in store.list(f"training/ray/{out.run_id}/")), \
        "the Ray Train checkpoint is in the object store"


def test_score_replica_loads_it_by_uri_without_restart_or_lost_segment(learnt):
    s, store, engine, out, got, produced, before, after, info = learnt
    assert before and after == before, "the Score replica was reconfigured in place, not restarted"
    assert info["normality"] == {CAM: out.version.split(":", 1)[1]}
    assert [r.seq for r in got] == list(range(produced)), "every segment scored exactly once, none lost"
    digest = out.version.split(":", 1)[1]
    versions = [r.model_version for r in got]
    first_own = next(i for i, v in enumerate(versions) if v.endswith(f"+normality:{digest}"))
    assert 0 < first_own < len(versions) - 2
    assert all("+normality:" not in v for v in versions[:first_own]), "zero-shot defaults until it has its own"
    assert all(v.endswith(f"+normality:{digest}") for v in versions[first_own:]), "its own version from then on"
    print(f"segments 0..{first_own - 1} zero-shot defaults, {first_own}..{len(versions) - 1} {out.version}")


def test_api_says_which_version_scores_the_camera(learnt):
    s, store, engine, out, *_ = learnt
    from services.api.main import create_app

    with TestClient(create_app(s)) as client:
        h = client.get(f"/cameras/{CAM}/health", headers={"X-API-Key": s.api.admin_key.get_secret_value()})
    assert h.status_code == 200, h.text
    body = h.json()
    assert body["normality_version"] == out.version and body["scored_by"] == f"own normality {out.version}"
    assert body["last_model_version"].endswith(out.version.replace("normality:", "+normality:"))
    assert body["normal_period"]["status"] == "trained"


def test_no_s3_secret_in_the_train_run_storage_the_serve_config_or_the_ray_logs(learnt, stack):
    """The S3 secret reaches Ray workers through their environment only (S3Settings.for_workers):
    grep the run's storage in the object store, the served user_config and every Ray log."""
    import json

    st, _ = stack
    s, store, engine, out, *_ = learnt
    secret = s.s3.secret_key.get_secret_value()
    run_keys = store.list(f"training/ray/{out.run_id}/")
    assert run_keys
    assert not [k for k in run_keys if secret.encode() in store.get(k)], "the secret is in the Train run storage"
    uc = registry.serving_user_config(s, engine, store)
    assert uc.get("object_store") and secret not in json.dumps(uc), "the secret is in the Serve user_config"
    logs = st._ray_temp_dir() / "session_latest" / "logs"
    files = [p for p in logs.rglob("*") if p.is_file()]
    assert files, f"no Ray logs under {logs}"
    assert not [p.name for p in files if secret.encode() in p.read_bytes()], "the secret is in a Ray log"
