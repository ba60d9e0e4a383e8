"""``vigil eval false-alarms VIDEO``: how often the served detector cries wolf on normal footage.

The video becomes a camera of the real stack with the live defaults (``camera_defaults``: 4 fps,
320 px, JPEG 85, a threshold calibrated from the camera's own first segments), streamed through
ingest → object store + Kafka → Serve → SQL exactly as a live camera; every event the stack
opens on it is a false alarm, since the footage is normal. The rate is per hour of footage
scored after the threshold was calibrated (before it, no event can open).

A short video is looped ``loops`` times: each seam is a cut in the footage (people jump back
to where they were), which a detector may rightly find abnormal, so the record counts seams
and says which events start at one.
"""

from __future__ import annotations

import math
import re
import threading
import time
from pathlib import Path
from typing import Any

from vigil.config import CameraConfig, FileSource, Settings


def _video_frames(path: Path) -> tuple[int, float]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"{path}: not a readable video file")
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def false_alarms_through_stack(settings: Settings, video: str | Path, *, loops: int = 10, progress: bool = True,
                               timeout_s: float = 3600.0) -> dict[str, Any]:
    """Stream ``video`` (normal footage) ``loops`` times as one live-default camera of the
    running stack of ``settings``; returns the events, the rate per hour and the scores."""
    from sqlmodel import Session, select
    from tqdm.auto import tqdm

    from infra.embedded import ray_init_client
    from services.ingest.runner import IngestService
    from services.scoring.deploy import deploy_scoring_app, handle_score_fn
    from services.scoring.sink import Sink
    from services.scoring.worker import ScoringWorker
    from vigil.bus import ensure_topics, make_consumer, make_producer
    from vigil.db import make_engine, migrate
    from vigil.models import Event, SegmentScore
    from vigil.normal_period import NormalPeriodRecorder
    from vigil.objectstore import ObjectStore

    video = Path(video)
    n_frames, video_fps = _video_frames(video)
    if n_frames <= 0 or video_fps <= 0:
        raise ValueError(f"{video}: no frame count or frame rate in its header")
    params = settings.camera_defaults
    loop_s = n_frames / video_fps
    sampled_per_loop = math.floor(loop_s * params.fps)
    n_segments = loops * sampled_per_loop // params.frames_per_segment
    seg_s = params.frames_per_segment / params.fps
    run = f"{int(time.time() * 1000) % 10**8:08d}"
    cam = CameraConfig(id=re.sub(r"[^A-Za-z0-9_.-]", "-", f"fa-{run}-{video.stem}")[:64], name=f"false alarms {video.name}",
                       source=FileSource(path=video, loop=loops > 1, realtime=False))
    s = settings.model_copy(update={"cameras": [cam]})
    migrate(s.database_url)
    ensure_topics(s.kafka)
    engine, store = make_engine(s.database_url), ObjectStore(s.s3)
    ray_init_client(s)
    from services.trainer.registry import serving_user_config

    handle = deploy_scoring_app(s, user_config=serving_user_config(s, engine, store))
    worker = ScoringWorker(s, score_fn=handle_score_fn(handle, timeout_s=600), sink=Sink(engine), store=store,
                           producer=make_producer(s.kafka, "vigil-fa"), recorder=NormalPeriodRecorder(engine, store),
                           consumer=make_consumer(s.kafka, group=s.kafka.consumer_group, client_id="vigil-fa"))
    th = threading.Thread(target=worker.run, name="fa-score-worker", daemon=True)
    t0 = time.perf_counter()
    th.start()
    ingest = IngestService(s, store, make_producer(s.kafka, "vigil-fa-ingest"), max_segments=n_segments)
    ingest.start()

    def rows() -> list[SegmentScore]:
        with Session(engine) as db:
            return db.exec(select(SegmentScore).where(SegmentScore.camera_id == cam.id).order_by(SegmentScore.seq)).all()

    bar = tqdm(total=n_segments, desc="normal footage through the stack", unit="seg", disable=not progress,
               dynamic_ncols=True)
    try:
        n, last_change, deadline = 0, time.monotonic(), time.monotonic() + timeout_s
        while n < n_segments:
            failed = [h for h in ingest.health() if h.state == "failed"]
            if failed:
                raise RuntimeError(f"ingest failed for camera {cam.id}: {failed[0].error}")
            time.sleep(0.5)
            m = len(rows())
            if m != n:
                bar.update(m - n)
                n, last_change = m, time.monotonic()
            if time.monotonic() - last_change > 300 or time.monotonic() > deadline:
                raise TimeoutError(f"{n} of {n_segments} segments scored; none for {time.monotonic() - last_change:.0f}s")
        seconds = time.perf_counter() - t0
    finally:
        bar.close()
        ingest.shutdown()
        worker.stop.set()
        th.join(60)
        worker.close()
    got = rows()
    with Session(engine) as db:
        events = db.exec(select(Event).where(Event.camera_id == cam.id).order_by(Event.first_seq)).all()
    engine.dispose()
    calibrated_after = params.calibration_skip_segments + params.calibration_segments
    scored_hours = max(0, len(got) - calibrated_after) * seg_s / 3600.0
    per_loop = sampled_per_loop / params.frames_per_segment
    seams = [round(k * per_loop, 2) for k in range(1, loops)]
    ev = [{"id": e.id, "first_seq": e.first_seq, "last_seq": e.last_seq, "peak_score": round(e.peak_score, 4),
           "at_seam": any(e.first_seq - 1 <= x <= e.last_seq + 1 for x in seams),
           "top_descriptions": e.top_descriptions[:3]} for e in events]
    scores = [r.score for r in got]
    return {
        "path": "stack", "video": video.name, "video_frames": n_frames, "video_fps": video_fps, "loops": loops,
        "seam_segments": seams, "camera_params": params.model_dump(mode="json"), "backbone": s.model.backbone,
        "segments": len(got), "segment_s": seg_s, "threshold_calibrated_after_segments": calibrated_after,
        "scored_hours_after_calibration": round(scored_hours, 4),
        "events": ev, "false_alarms": len(ev), "false_alarms_not_at_seams": sum(not e["at_seam"] for e in ev),
        "false_alarms_per_hour": round(len(ev) / scored_hours, 2) if scored_hours else None,
        "model_versions": sorted({r.model_version for r in got}),
        "score_quantiles": {q: round(float(sorted(scores)[min(len(scores) - 1, int(q * len(scores)))]), 4)
                            for q in (0.5, 0.9, 0.99)} if scores else {},
        "seconds": round(seconds, 1),
    }


def run_false_alarms(video: str | Path, *, loops: int = 10, settings: Settings | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """Through a running stack (``settings`` with endpoints), or a fresh embedded one (stopped after)."""
    from vigil.config import load_settings

    settings = settings or load_settings(None)
    if settings.kafka.bootstrap_servers and settings.s3.endpoint and settings.ray.address:
        return false_alarms_through_stack(settings, video, loops=loops, progress=progress)
    import tempfile

    from infra.embedded import EmbeddedStack

    with tempfile.TemporaryDirectory(prefix="vigil-fa-") as tmp:
        with EmbeddedStack(settings.model_copy(update={"state_dir": Path(tmp)})) as resolved:
            try:
                return false_alarms_through_stack(resolved, video, loops=loops, progress=progress)
            finally:
                import ray

                ray.shutdown()
