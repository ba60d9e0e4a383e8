"""Skeleton end to end on real servers: ingest → Kafka → Serve → SQL, offsets, events, DLQ."""

from __future__ import annotations

import threading
import time

import pytest
from kafka import TopicPartition
from sqlmodel import Session, func, select

from services.ingest.runner import IngestService
from services.scoring.deploy import deploy_scoring_app, handle_score_fn
from services.scoring.sink import Sink
from services.scoring.relay import Deduper, OutboxRelay
from services.scoring.worker import ScoringWorker
from vigil.bus import ensure_topics, make_consumer, make_producer
from vigil.config import CameraConfig, FileSource
from vigil.contracts import DeadLetter, EventMessage, decode
from vigil.db import make_engine, migrate
from vigil.models import Event, SegmentScore
from vigil.objectstore import ObjectStore
from vigil.segments import decode_segment

from tests.integration.util import listening_sockets, process_tree, wait_until

N_CAMERAS, N_SEGMENTS, T = 3, 20, 8


def _count(engine, model) -> int:
    with Session(engine) as s:
        return s.exec(select(func.count()).select_from(model)).one()


_wait = wait_until


@pytest.fixture(scope="module")
def pipeline(stack, tmp_path_factory):
    st, base = stack
    import cv2
    import numpy as np

    vids = tmp_path_factory.mktemp("videos")
    cams = []
    for i in range(N_CAMERAS):
        path = vids / f"cam{i}.mp4"
        vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
        for k in range(N_SEGMENTS * T + 5):
            img = np.full((120, 160, 3), 60 + 40 * i, np.uint8)
            x = (k * (3 + i)) % 140
            cv2.rectangle(img, (x, 40), (x + 20, 60), (255, 255, 255), -1)
            vw.write(img)
        vw.release()
        # camera 0 has threshold 0: every segment is "anomalous", so events must be written.
        params = {"fps": 10.0, "frames_per_segment": T, "threshold_mode": "fixed",
                  "threshold": 0.0 if i == 0 else 0.99,
                  "min_event_segments": 2}
        cams.append(CameraConfig(id=f"cam{i}", source=FileSource(path=path, realtime=False), params=params))
    # own topics and database: other modules share the session's broker and SQL store
    kafka = base.kafka.model_copy(update={"segments_topic": "pl.segments", "events_topic": "pl.events",
                                          "dlq_topic": "pl.dlq"})
    db = base.database.model_copy(update={"url": f"sqlite:///{tmp_path_factory.mktemp('pl-db') / 'pl.db'}"})
    s = base.model_copy(update={"cameras": cams, "kafka": kafka, "database": db})
    migrate(s.database_url)
    ensure_topics(s.kafka)
    engine = make_engine(s.database_url)
    handle = deploy_scoring_app(s)
    worker = ScoringWorker(
        s, score_fn=handle_score_fn(handle), sink=Sink(engine), store=ObjectStore(s.s3),
        producer=make_producer(s.kafka), consumer=make_consumer(s.kafka, group="vigil-test", client_id="t"),
    )
    th = threading.Thread(target=worker.run, daemon=True)
    th.start()
    relay = OutboxRelay(engine, make_producer(s.kafka), s.kafka.events_topic).start()
    ingest = IngestService(s, ObjectStore(s.s3), make_producer(s.kafka), max_segments=N_SEGMENTS)
    ingest.start()
    assert ingest.join(timeout=120), "ingest did not finish"
    _wait(lambda: _count(engine, SegmentScore) >= N_CAMERAS * N_SEGMENTS, 240, "all segments scored")
    _wait(lambda: relay.backlog() == 0, 60, "the event outbox published")
    yield s, engine, worker, ingest
    worker.stop.set()
    th.join(30)
    worker.close()
    relay.close()
    from ray import serve

    serve.delete(s.serve.app_name)  # frees its CPUs for the next module's apps


def test_every_segment_scored_once(pipeline):
    s, engine, worker, ingest = pipeline
    assert [h.segments for h in ingest.health()] == [N_SEGMENTS] * N_CAMERAS
    time.sleep(2)  # nothing more may arrive
    assert _count(engine, SegmentScore) == N_CAMERAS * N_SEGMENTS
    with Session(engine) as db:
        per_cam = dict(db.exec(select(SegmentScore.camera_id, func.count()).group_by(SegmentScore.camera_id)).all())
        rows = db.exec(select(SegmentScore)).all()
    assert per_cam == {f"cam{i}": N_SEGMENTS for i in range(N_CAMERAS)}
    assert all(0.0 <= r.score <= 1.0 and len(r.frame_scores) == T for r in rows)


def test_segment_objects_retrievable(pipeline):
    s, engine, *_ = pipeline
    store = ObjectStore(s.s3)
    with Session(engine) as db:
        keys = db.exec(select(SegmentScore.object_key)).all()
    assert len(keys) == N_CAMERAS * N_SEGMENTS
    for key in keys:
        seg = decode_segment(store.get(key))
        assert seg.frames.shape[0] == T and seg.frames.dtype.name == "uint8"


def test_offsets_committed(pipeline):
    s, *_ = pipeline
    parts = [TopicPartition(s.kafka.segments_topic, p) for p in range(s.kafka.partitions)]
    # The log's true end per partition, read record by record: Tansu's ListOffsets(latest)
    # was seen to answer one less than the next offset after a busy run (39 for 40 records).
    reader = make_consumer(s.kafka, client_id="end-probe", consumer_timeout_ms=3000)
    reader.assign(parts)
    reader.seek_to_beginning()
    ends = {tp: 0 for tp in parts}
    n = 0
    for rec in reader:
        tp = TopicPartition(rec.topic, rec.partition)
        ends[tp] = max(ends[tp], rec.offset + 1)
        n += 1
    reader.close()
    assert n == N_CAMERAS * N_SEGMENTS
    c = make_consumer(s.kafka, group="vigil-test", client_id="probe")
    _wait(lambda: all((c.committed(tp) or 0) == end for tp, end in ends.items()), 30, "offsets committed")
    c.close()


def test_events_written_and_published(pipeline):
    s, engine, *_ = pipeline
    with Session(engine) as db:
        events = db.exec(select(Event)).all()
    assert "cam0" in {e.camera_id for e in events}, "camera 0 (threshold 0) must have produced an event"
    with Session(engine) as db:
        scores = {r.segment_id: r.score for r in db.exec(select(SegmentScore))}
    for e in events:  # every event is backed by stored segments at or above its camera's threshold
        thr = s.params_for(e.camera_id).threshold
        assert e.segment_ids and all(scores[sid] >= thr for sid in e.segment_ids)
        assert e.peak_score == max(scores[sid] for sid in e.segment_ids)
    ev = next(e for e in events if e.camera_id == "cam0")
    assert ev.first_seq == 0 and len(ev.segment_ids) == N_SEGMENTS  # threshold 0: one event spans all
    c = make_consumer(s.kafka, client_id="events-probe", consumer_timeout_ms=5000)
    c.assign([TopicPartition(s.kafka.events_topic, p) for p in range(s.kafka.partitions)])
    c.seek_to_beginning()
    recs = list(c)
    c.close()
    msgs = [decode(EventMessage, m.value) for m in recs]
    assert any(m.kind == "new" and m.event_id == ev.id and m.version == 1 for m in msgs)
    assert all(r.key == decode(EventMessage, r.value).event_id.encode() for r in recs), "keyed by event id"
    # every change of every event reached the topic, numbered as in SQL (dedupe on event id and version)
    dedupe = Deduper()
    delivered = [m for m in msgs if dedupe.accept(m)]
    assert {e.id: e.version for e in events} == {eid: v for eid, v in dedupe.seen.items()}
    assert len(delivered) == sum(e.version for e in events)


def test_duplicate_delivery_leaves_one_row(pipeline):
    s, engine, worker, _ = pipeline
    c = make_consumer(s.kafka, client_id="dup-probe", consumer_timeout_ms=5000)
    c.assign([TopicPartition(s.kafka.segments_topic, p) for p in range(s.kafka.partitions)])
    c.seek_to_beginning()
    first = next(iter(c))
    c.close()
    before_rows, before_processed = _count(engine, SegmentScore), worker.processed
    p = make_producer(s.kafka)
    p.send(s.kafka.segments_topic, key=first.key, value=first.value).get(10)
    _wait(lambda: worker.processed > before_processed, 60, "the duplicate to be consumed")
    assert _count(engine, SegmentScore) == before_rows


def test_malformed_message_goes_to_dead_letter_and_worker_continues(pipeline):
    s, engine, worker, _ = pipeline
    p = make_producer(s.kafka)
    bad = [b"not json at all", b'{"schema_version": 99, "segment_id": "x"}',
           b'{"schema_version": 1, "segment_id": "y", "camera_id": "cam0"}']
    for b in bad:
        p.send(s.kafka.segments_topic, key=b"cam0", value=b).get(10)
    # then a valid segment whose object is missing: also poison, with its own reason
    from datetime import UTC, datetime

    from vigil.contracts import SegmentRef

    missing = SegmentRef(segment_id="ghost", camera_id="cam1", seq=999, t_start=datetime.now(UTC),
                         t_end=datetime.now(UTC), fps=4, n_frames=4, width=8, height=8, object_key="segments/none.npz")
    p.send(s.kafka.segments_topic, key=b"cam1", value=missing.encode()).get(10)
    c = make_consumer(s.kafka, client_id="dlq-probe", consumer_timeout_ms=3000)
    c.assign([TopicPartition(s.kafka.dlq_topic, 0)])
    got: list[DeadLetter] = []

    def poll() -> bool:
        got.extend(decode(DeadLetter, m.value) for m in c)
        return len(got) >= 4

    _wait(poll, 60, "4 dead letters")
    c.close()
    reasons = " | ".join(d.reason for d in got)
    assert "not JSON" in reasons and "schema_version 99" in reasons and "missing" in reasons
    assert set(bad) <= {d.payload for d in got}  # the original bytes are kept
    # the partitions moved on: a valid segment sent after the poison records is scored
    with Session(engine) as db:
        stored = db.exec(select(SegmentScore).where(SegmentScore.camera_id == "cam1")).first()
    after = SegmentRef(segment_id="after-poison", camera_id="cam1", seq=1000, t_start=datetime.now(UTC),
                       t_end=datetime.now(UTC), fps=10.0, n_frames=T, width=160, height=120,
                       object_key=stored.object_key)
    p.send(s.kafka.segments_topic, key=b"cam1", value=after.encode()).get(10)
    p.send(s.kafka.segments_topic, key=b"cam0", value=after.model_copy(update={
        "segment_id": "after-poison-0", "camera_id": "cam0"}).encode()).get(10)
    _wait(lambda: {"after-poison", "after-poison-0"} <= _ids(engine), 60, "the segments after the poison scored")


def _ids(engine) -> set[str]:
    with Session(engine) as db:
        return set(db.exec(select(SegmentScore.segment_id)).all())


def test_every_listener_is_loopback(stack, pipeline):
    st, _ = stack
    import os

    pids = process_tree(os.getpid())
    socks = listening_sockets(pids)
    assert socks, "expected the stack's listeners"
    bad = [x for x in socks if x[0] not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")]
    assert not bad, f"listeners not on loopback: {bad}"


def test_a_deterministic_failure_is_dead_lettered_after_its_budget_and_the_partition_moves_on(pipeline):
    """A camera that names a prompt set the Serve app does not know: Score refuses each try the
    same way, so after ``retry.deterministic_attempts`` the record goes to the dead-letter topic
    (and SQL) with its reason and attempts, and the camera's later segments in the same
    partition are scored."""
    from datetime import UTC, datetime

    from services.scoring.control_plane import ConfiguredControl
    from vigil.contracts import SegmentRef

    s, engine, worker, _ = pipeline
    budget = s.retry.deterministic_attempts
    with Session(engine) as db:
        stored = db.exec(select(SegmentScore).where(SegmentScore.camera_id == "cam1")).first()
    # the camera's prompt set as the control plane hands it to the worker: one that does not exist
    bad = CameraConfig(id="cam-typo", source=s.cameras[1].source,
                       params={"fps": 10.0, "frames_per_segment": T, "prompt_set": "no-such-prompt-set"})
    worker.control = ConfiguredControl(s.model_copy(update={"cameras": [*s.cameras, bad]}))
    p = make_producer(s.kafka)
    mk = lambda sid, cam: SegmentRef(segment_id=sid, camera_id=cam, seq=0, t_start=datetime.now(UTC),  # noqa: E731
                                     t_end=datetime.now(UTC), fps=10.0, n_frames=T, width=160, height=120,
                                     object_key=stored.object_key)
    p.send(s.kafka.segments_topic, key=b"cam-typo", value=mk("typo-1", "cam-typo").encode()).get(10)
    _wait(lambda: _dead(engine, "typo-1") is not None, 90, "the record dead-lettered after its budget")
    row = _dead(engine, "typo-1")
    assert row.attempts == budget and f"given up after {budget} attempts" in row.reason
    assert "no-such-prompt-set" in row.reason and row.reason.startswith("deterministic failure")
    # the same partition (same key) moves on: the camera's next segment, with a good prompt set now
    worker.control = ConfiguredControl(s)
    p.send(s.kafka.segments_topic, key=b"cam-typo", value=mk("typo-2", "cam-typo").encode()).get(10)
    _wait(lambda: "typo-2" in _ids(engine), 60, "the record after the poison scored")
    assert "typo-1" not in _ids(engine)
    # the prompt set fixed, an admin replays the dead letter through the API; the running relay
    # re-publishes it to the segments topic and the worker scores it
    from fastapi.testclient import TestClient

    from services.api.main import create_app

    from pydantic import SecretStr

    api_settings = s.model_copy(update={"api": s.api.model_copy(update={"admin_key": SecretStr("pipeline-admin")})})
    with TestClient(create_app(api_settings, engine=engine)) as api:
        listed = api.get("/dead-letters", headers={"X-API-Key": "pipeline-admin"}, params={"state": "pending"}).json()
        (dl,) = [d for d in listed if d["id"] == row.id]
        assert api.post(f"/dead-letters/{dl['id']}/replay", headers={"X-API-Key": "pipeline-admin"}).status_code == 202
    _wait(lambda: "typo-1" in _ids(engine), 60, "the replayed record scored")
    assert _dead(engine, "typo-1").replayed_at is not None


def _dead(engine, segment_id: str):
    import base64

    from vigil.models import DeadLetterRow

    with Session(engine) as db:
        for r in db.exec(select(DeadLetterRow)):
            if segment_id.encode() in base64.b64decode(r.payload_b64):
                return r
    return None


def test_ingest_restarted_twice_over_one_camera_gives_distinct_events_each_with_its_own_clip(pipeline):
    """Camera 0 (threshold 0: every segment anomalous) is ingested twice more after the first
    run: each run restarts its sequence at 0 under a new epoch, which ends the event still open
    from the run before; three events with their own ids, segments and clips."""
    from datetime import UTC, datetime, timedelta

    from services.scoring.evidence_maintainer import sweep

    s, engine, worker, _ = pipeline
    cam0 = s.model_copy(update={"cameras": [s.cameras[0]]})
    for run in (1, 2):
        before = _count(engine, SegmentScore)
        ing = IngestService(cam0, ObjectStore(s.s3), make_producer(s.kafka), max_segments=4)
        ing.start()
        assert ing.join(timeout=120), f"ingest run {run + 1} did not finish"
        _wait(lambda: _count(engine, SegmentScore) >= before + 4, 120, f"run {run + 1}'s segments scored")
        time.sleep(1.0)  # a new epoch (milliseconds) for the next run
    with Session(engine) as db:
        events = sorted(db.exec(select(Event).where(Event.camera_id == "cam0")).all(), key=lambda e: e.t_start)
    assert len(events) == 3 and len({e.id for e in events}) == 3
    # ingest's ids are <camera>.<epoch>.<seq> (the poison test above sent one of its own to cam0)
    ingested = [[sid for sid in e.segment_ids if sid.count(".") == 2] for e in events]
    epochs = [{sid.split(".")[1] for sid in ids} for ids in ingested]
    assert all(len(ep) == 1 for ep in epochs) and len(set.union(*epochs)) == 3, epochs  # one run each
    assert [len(ids) for ids in ingested] == [N_SEGMENTS, 4, 4]
    assert [e.status for e in events] == ["closed", "closed", "open"]  # the restarts ended the first two
    store = ObjectStore(s.s3)
    # as the maintainer sweeps once their post-roll is overdue (the last run may not have covered it)
    assert sweep(store, engine, s, now=datetime.now(UTC) + timedelta(minutes=2)) >= 2  # other cameras' too
    with Session(engine) as db:
        clips = [db.get(Event, e.id).clip_key for e in events[:2]]
    assert all(clips) and len(set(clips)) == 2 and all(store.exists(k) for k in clips)


def test_rescore_through_serve_overwrites_deterministically_and_supersedes(pipeline):
    """vigil rescore's core on the live Serve app: camera 1's stored segments scored again. With
    a threshold of 0 every segment is in an event; scored again asking for 100 segments in a row
    before an event opens (more than the range holds), that event is no longer found and ends as
    superseded, its row kept."""
    from datetime import timedelta

    from services.scoring.control_plane import ConfiguredControl
    from services.scoring.rescore import rescore

    s, engine, worker, _ = pipeline
    with Session(engine) as db:
        rows = db.exec(select(SegmentScore).where(SegmentScore.camera_id == "cam1", SegmentScore.zone.is_(None))
                       .order_by(SegmentScore.t_start)).all()
        ingested = [r for r in rows if r.segment_id.count(".") == 2]
    t_from, t_to = ingested[0].t_start, ingested[-1].t_start + timedelta(microseconds=1)

    def settings_with(**params):
        cams = [c.model_copy(update={"params": c.params.model_copy(update=params)}) if c.id == "cam1" else c
                for c in s.cameras]
        return s.model_copy(update={"cameras": cams})

    def run(**params):
        w = ScoringWorker(s, score_fn=worker.score_fn, sink=Sink(engine), store=ObjectStore(s.s3), producer=None,
                          consumer=None, control=ConfiguredControl(settings_with(**params)))
        rep = rescore(w, "cam1", t_from, t_to, progress=False)
        w.pool.shutdown(wait=False)
        with Session(engine) as db:
            got = {r.segment_id: (r.score, r.model_version) for r in db.exec(
                select(SegmentScore).where(SegmentScore.segment_id.in_([r.segment_id for r in ingested])))}
        return rep, got

    rep, first = run(threshold=0.0)
    assert rep.segments == len(ingested) and len(rep.events) == 1 and not rep.missing
    (eid,) = rep.events
    rep2, second = run(threshold=0.0)
    assert second == first and rep2.events == [eid]  # the same range and model: the same rows and event
    with Session(engine) as db:
        assert db.get(Event, eid).status == "closed"  # ended where the range ends
    rep3, _ = run(threshold=0.0, min_event_segments=100)
    assert rep3.superseded == [eid] and rep3.events == []
    with Session(engine) as db:
        ev = db.get(Event, eid)
        assert ev is not None and ev.status == "superseded"


def test_the_rescore_command_on_the_running_stack(stack, pipeline, tmp_path):
    """`vigil rescore` as a user runs it: its own process, the stack's Ray and the live Serve app;
    an unknown --model is refused by name before anything is touched."""
    import json as _json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    st, base = stack
    s, engine, *_ = pipeline
    cam = s.cameras[2]
    cfg = tmp_path / "rescore.yaml"
    cfg.write_text(yaml.safe_dump({
        "kafka": {"segments_topic": s.kafka.segments_topic, "events_topic": s.kafka.events_topic,
                  "dlq_topic": s.kafka.dlq_topic},
        "database": {"url": s.database_url},
        "model": {"backbone": s.model.backbone, "torch_threads": 1},
        "cameras": [{"id": cam.id, "source": {"type": "file", "path": str(cam.source.path)},
                     "params": cam.params.model_dump(mode="json")}],
    }))
    with Session(engine) as db:
        rows = db.exec(select(SegmentScore).where(SegmentScore.camera_id == cam.id).order_by(SegmentScore.t_start)).all()
    argv = [sys.executable, "-m", "services.cli", "rescore", "--camera", cam.id, "--from", rows[0].t_start.isoformat(),
            "--to", (rows[-1].t_end).isoformat(), "--config", str(cfg), "--state-dir", str(base.state_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "VIGIL_LOOPBACK_ONLY": "1"}
    repo = Path(__file__).resolve().parents[2]
    bad = subprocess.run([*argv, "--model", "no-such-version"], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "no-such-version" in bad.stderr and "not a registered model version" in bad.stderr
    ok = subprocess.run([*argv, "--json"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-3000:]
    report = _json.loads(ok.stdout.strip().splitlines()[-1])
    assert report["segments"] == len(rows) and report["model_versions"] == sorted({r.model_version for r in rows})
