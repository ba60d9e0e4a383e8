"""``vigil eval … --through-stack``: every test clip becomes a camera of the real stack.

Ingest reads each clip (at the dataset's own frame rate, every frame, in segments of the
eval's length) into the object store and Kafka; the scoring worker sends each segment
through the Serve app (Detect → Encode → Score, with the camera's normality version given
to Score by ``reconfigure()``) and stores its row in SQL; the frame scores are then read
back **from the SQL rows** and compared with the labels. Nothing on this path is specific to
evaluation but the cameras' sources: it is what a live camera runs.

Stored segments are JPEG (the platform's segment format); eval cameras store them at quality
100 and at the clip's own size, so the detector sees what the offline eval sees up to JPEG's
rounding.
"""

from __future__ import annotations

import math
import re
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vigil.config import CameraConfig, FileSource, FramesSource, Settings

STALL_S = 300.0  # no new row for this long: the stack is stuck, stop with what is known


def clip_camera(clip: Any, *, fps: float, segment_frames: int, run: str) -> CameraConfig:
    """One test clip as a camera: a frames folder or a video file, every frame, never paced."""
    frame = next(iter(clip.iter_frames()))
    side = int(max(frame.shape[:2]))
    side += side % 2
    source = (FileSource(path=Path(clip.source), realtime=False) if clip.is_video_file
              else FramesSource(path=Path(clip.source), fps=fps, realtime=False))
    cam_id = re.sub(r"[^A-Za-z0-9_.-]", "-", f"eval-{run}-{clip.name}")[:64]
    return CameraConfig(id=cam_id, name=f"eval {clip.name}", source=source,
                        params={"fps": fps, "frames_per_segment": segment_frames, "max_side": side,
                                "jpeg_quality": 100, "threshold_mode": "fixed"})


def score_through_stack(settings: Settings, clips: Sequence[Any], checkpoint: str | Path, *, fps: float,
                        segment_frames: int = 16, progress: bool = True,
                        timeout_s: float = 3600.0) -> dict[str, Any]:
    """Stream ``clips`` through the running stack of ``settings`` (endpoints resolved, Ray up);
    returns ``{"scores": [per clip frame scores], "model_versions": [...], "segments": n, "seconds": s}``."""
    from sqlmodel import Session, func, select
    from tqdm.auto import tqdm

    from infra.embedded import ray_init_client
    from services.ingest.runner import IngestService
    from services.scoring.deploy import deploy_scoring_app, handle_score_fn
    from services.scoring.sink import Sink
    from services.scoring.worker import ScoringWorker
    from vigil.bus import ensure_topics, make_consumer, make_producer
    from vigil.db import make_engine, migrate
    from vigil.models import SegmentScore
    from vigil.objectstore import ObjectStore

    run = f"{int(time.time() * 1000) % 10**8:08d}"  # fresh camera ids: rows of earlier runs never mix in
    cams = [clip_camera(c, fps=fps, segment_frames=segment_frames, run=run) for c in clips]
    expected = {cam.id: math.ceil(len(c) / segment_frames) for cam, c in zip(cams, clips)}
    s = settings.model_copy(update={"cameras": cams})
    migrate(s.database_url)
    ensure_topics(s.kafka)
    engine = make_engine(s.database_url)
    ray_init_client(s)
    handle = deploy_scoring_app(s, user_config={"normality": {cam.id: str(Path(checkpoint).resolve()) for cam in cams}})
    worker = ScoringWorker(
        s, score_fn=handle_score_fn(handle, timeout_s=600), sink=Sink(engine), store=ObjectStore(s.s3),
        producer=make_producer(s.kafka, "vigil-eval"),
        consumer=make_consumer(s.kafka, group=s.kafka.consumer_group, client_id="vigil-eval"),
    )
    th = threading.Thread(target=worker.run, name="eval-score-worker", daemon=True)
    t0 = time.perf_counter()
    th.start()
    ingest = IngestService(s, ObjectStore(s.s3), make_producer(s.kafka, "vigil-eval-ingest"))
    ingest.start()
    ids = list(expected)
    total = sum(expected.values())

    def count() -> int:
        with Session(engine) as db:
            return int(db.exec(select(func.count()).select_from(SegmentScore)
                               .where(SegmentScore.camera_id.in_(ids))).one())

    bar = tqdm(total=total, desc="through the stack", unit="seg", disable=not progress, dynamic_ncols=True)
    try:
        n, last_change, deadline = 0, time.monotonic(), time.monotonic() + timeout_s
        while n < total:
            failed = [h for h in ingest.health() if h.state == "failed"]
            if failed:
                raise RuntimeError(f"ingest failed for camera {failed[0].camera_id}: {failed[0].error}")
            time.sleep(0.5)
            m = count()
            if m != n:
                bar.update(m - n)
                n, last_change = m, time.monotonic()
            now = time.monotonic()
            if now - last_change > STALL_S or now > deadline:
                raise TimeoutError(f"{n} of {total} segments scored through the stack; none for "
                                   f"{now - last_change:.0f}s (see the worker's log)")
        seconds = time.perf_counter() - t0
    finally:
        bar.close()
        ingest.shutdown()
        worker.stop.set()
        th.join(60)
        worker.close()
    scores, versions = [], set()
    with Session(engine) as db:
        for cam, clip in zip(cams, clips):
            rows = db.exec(select(SegmentScore).where(SegmentScore.camera_id == cam.id)
                           .order_by(SegmentScore.seq)).all()
            frame_scores = np.concatenate([np.asarray(r.frame_scores, np.float64) for r in rows])
            if len(frame_scores) != len(clip):
                raise RuntimeError(f"camera {cam.id}: {len(frame_scores)} scored frames for a clip of {len(clip)}")
            scores.append(frame_scores)
            versions.update(r.model_version for r in rows)
    engine.dispose()
    return {"scores": scores, "model_versions": sorted(versions), "segments": total, "seconds": seconds,
            "cameras": [c.id for c in cams]}
