"""``vigil demo``: the whole platform on one machine, on footage it generates itself.

Starts the embedded stack, the scoring worker (Serve app on the local Ray), the API, the
dashboard and synthetic SynthCity cameras; prints URLs and a live summary; stops in order
after ``minutes`` or on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from vigil.clock import as_utc, utcnow
from vigil.config import CameraConfig, CameraParams, Settings, SyntheticSource

log = logging.getLogger(__name__)

DEMO_PROMPT_SETS = {"campus_walkway": "walkway"}  # a walking-only zone: cycling is abnormal there
DEMO_FPS = 8.0
DEMO_SCENES = ["campus_walkway", "street", "plaza", "parking_lot", "subway_platform", "shop_floor"]


def demo_cameras(n: int, defaults: CameraParams) -> list[CameraConfig]:
    """``n`` SynthCity cameras over the scene types, inheriting the configured camera defaults.

    The demo shows an event within its first minute by a shorter calibration for its own
    cameras (a real camera keeps the configured one): 1-second segments (8 frames at 8 fps)
    and an event threshold learnt from 8 segments instead of 16, after the model's own 16
    warm-up segments, so thresholds exist 24 s after a camera starts streaming.
    """
    cams = []
    for i in range(n):
        scene = DEMO_SCENES[i % len(DEMO_SCENES)]
        params = defaults.model_copy(update={"fps": DEMO_FPS, "frames_per_segment": 8, "calibration_segments": 8,
                                             "context": scene,
                                             "prompt_set": DEMO_PROMPT_SETS.get(scene, defaults.prompt_set)})
        cams.append(CameraConfig(id=f"cam-{i + 1:02d}", name=f"{scene.replace('_', ' ')} {i + 1}",
                                 source=SyntheticSource(scene=scene, seed=1000 + i, fps=DEMO_FPS, realtime=True,
                                                        anomaly_rate=0.3),
                                 params=params))
    return cams


def _demo_settings(s: Settings, n_cameras: int) -> Settings:
    upd: dict[str, Any] = {}
    if not s.cameras:
        upd["cameras"] = demo_cameras(n_cameras, s.camera_defaults)
    return s.model_copy(update=upd) if upd else s


def _free(port: int) -> int:
    """``port`` if it is free on loopback, else any free port."""
    import socket

    from infra.embedded import free_port

    if port == 0:
        return free_port()
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return port
        except OSError:
            return free_port()


def run_demo(settings: Settings, *, minutes: float = 0, n_cameras: int = 3, dashboard: bool = True,
             echo: Callable[[str], None] = print) -> dict[str, Any]:
    import uvicorn
    from sqlmodel import Session, func, select

    from infra.embedded import LOOPBACK, EmbeddedStack, accepts, wait_tcp
    from infra.supervisor import MainThread, Part
    from services.api.main import create_app
    from services.ingest.runner import IngestService
    from services.scoring.deploy import RebindableScoreFn, deploy_scoring_app
    from services.scoring.evidence_maintainer import EvidenceMaintainer
    from services.scoring.sink import Sink
    from services.scoring.worker import ScoringWorker
    from services.trainer.registry import serving_user_config
    from vigil.bus import ensure_topics, make_consumer, make_producer
    from vigil.db import make_engine
    from vigil.models import Event, SegmentScore
    from vigil.normal_period import NormalPeriodRecorder
    from vigil.objectstore import ObjectStore

    settings = _demo_settings(settings, n_cameras)
    t_begin, wall_begin = time.monotonic(), utcnow()
    stack = EmbeddedStack(settings)
    s = stack.start()
    from infra.recovery import after_broker_restart

    serving: dict[str, Any] = {}  # what a Ray restart redeploys: set once the app first deployed

    def after_ray_restart() -> dict[str, int]:
        """A new Ray cluster: the scoring app deployed again with the active versions, the worker
        pointed at it; its camera state is rebuilt from SQL as after a rebalance (its failed
        calls rewound it)."""
        if not serving:
            return {}
        uc = serving_user_config(s, serving["engine"], serving["store"])
        serving["score_fn"].bind(deploy_scoring_app(s, user_config=uc))
        serving["control"].applied = uc
        return {"redeployed": 1}

    def before_ray_restart() -> None:
        """The worker's calls wait for the new app instead of reaching into the old cluster."""
        if serving:
            serving["score_fn"].unbind()

    main = MainThread()  # Ray restarts run here, in the loop below
    supervisor = stack.supervisor({"kafka": after_broker_restart(s), "ray": after_ray_restart}, main=main,
                                  before_restart={"ray": before_ray_restart}).start()
    stop = threading.Event()
    old = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    threads: list[threading.Thread] = []
    dash_proc = None
    api_server = None
    ingest = None
    worker = None
    control = None
    relay = None
    evidence = None
    try:
        api_port, dash_port = _free(s.api.port), _free(s.dashboard.port)
        s = s.model_copy(update={"api": s.api.model_copy(update={"port": api_port}),
                                 "dashboard": s.dashboard.model_copy(update={"port": dash_port})})
        engine = make_engine(s.database_url)
        from vigil.camera_seed import seed_cameras

        seed_cameras(engine, s.cameras)  # before anything reads the table (the API's own seeding then finds them)
        ensure_topics(s.kafka)
        store = ObjectStore(s.s3)
        # API, dashboard and ingest first: the cameras show on Live and stream while the model deploys
        # (their segments wait in Kafka), so thresholds are learnt and events open sooner
        api_server = uvicorn.Server(uvicorn.Config(create_app(s), host="127.0.0.1", port=api_port, log_level="warning"))
        api_thread = threading.Thread(target=api_server.run, name="api", daemon=True)
        threads.append(api_thread)
        api_thread.start()
        live: dict[str, Any] = {"api": api_thread}

        def restart_api() -> None:
            nonlocal api_server
            api_server = uvicorn.Server(uvicorn.Config(create_app(s), host="127.0.0.1", port=api_port,
                                                       log_level="warning"))
            live["api"] = threading.Thread(target=api_server.run, name="api", daemon=True)
            threads.append(live["api"])
            live["api"].start()
            wait_tcp(api_port, 60, what="API")

        supervisor.add(Part("api", restart_api, lambda: live["api"].is_alive() and accepts(LOOPBACK, api_port)))
        ready_by = time.monotonic() + 60
        while not api_server.started and time.monotonic() < ready_by:  # print URLs that answer
            time.sleep(0.1)

        if dashboard:
            from services.cli import _streamlit_argv

            env = {**os.environ, "VIGIL_DASHBOARD_API_URL": f"http://127.0.0.1:{api_port}",
                   "VIGIL_DASHBOARD_API_KEY": s.api.admin_key.get_secret_value()}
            log_file = open(stack.log_dir / "dashboard.log", "ab")  # noqa: SIM115

            def start_dashboard() -> None:
                nonlocal dash_proc
                dash_proc = subprocess.Popen(_streamlit_argv(s, dash_port), env=env, stdout=log_file,
                                             stderr=subprocess.STDOUT, start_new_session=True)

            start_dashboard()
            supervisor.add(Part("dashboard", lambda: (start_dashboard(), wait_tcp(dash_port, 60, dash_proc, "dashboard")),
                                lambda: dash_proc.poll() is None))

        from services.ingest.desired import DesiredCameras
        from services.ingest.status import SourceStatusReporter

        # ingest follows the cameras table, so a camera added, edited or disabled in the dashboard takes effect within
        # seconds, and reports each source's health where the API's camera health reads it
        ingest = IngestService(s, store, make_producer(s.kafka, "vigil-ingest"),
                               desired=DesiredCameras(engine, s).read, status=SourceStatusReporter(engine),
                               reconcile_every_s=s.ingest.reconcile_every_s)
        ingest.start()
        supervisor.add(Part("ingest", ingest.follow_again, ingest.following))
        echo(f"API        http://127.0.0.1:{api_port}   (header X-API-Key: the api.admin_key setting; try /events)")
        if dashboard:
            echo(f"dashboard  http://127.0.0.1:{dash_port}")
        echo(f"cameras    {', '.join(c.id for c in s.cameras)}")
        echo(f"logs       {stack.log_dir}")

        echo(f"deploying the scoring app (backbone {s.model.backbone}) ...")
        # the cameras' own normality versions and the active heads, as vigil score-worker deploys them
        applied = serving_user_config(s, engine, store)
        handle = deploy_scoring_app(s, user_config=applied)
        from services.cli import serving_reconciler

        control = serving_reconciler(s, engine, store, applied)  # Activate / prompt edits reach Serve
        score_fn = RebindableScoreFn(handle)
        serving.update(engine=engine, store=store, score_fn=score_fn, control=control)
        worker = ScoringWorker(
            s, score_fn=score_fn, sink=Sink(engine), store=store,
            recorder=NormalPeriodRecorder(engine, store), control=control,
            producer=make_producer(s.kafka, "vigil-scoring"),
            consumer=make_consumer(s.kafka, group=s.kafka.consumer_group, client_id="vigil-scoring"),
        )
        worker_thread = threading.Thread(target=worker.run, name="score-worker", daemon=True)
        threads.append(worker_thread)
        worker_thread.start()
        live["score-worker"] = worker_thread

        def restart_worker() -> None:  # its loop died: a new one resumes from the committed offsets
            live["score-worker"] = threading.Thread(target=worker.run, name="score-worker", daemon=True)
            threads.append(live["score-worker"])
            live["score-worker"].start()

        supervisor.add(Part("score-worker", restart_worker,
                            lambda: live["score-worker"].is_alive() or worker.stop.is_set()))
        evidence = EvidenceMaintainer(ObjectStore(s.s3), engine, s).start()
        from services.cli import _outbox_relay

        relay = _outbox_relay(s, engine).start()  # event messages from the outbox to the events topic
        supervisor.add(Part("relay", relay.start, lambda: relay.stop.is_set() or relay.alive()))
        echo("scoring  started")
        deadline = time.monotonic() + minutes * 60 if minutes > 0 else None
        last = 0.0
        sources_ended = False
        progress = (-1, time.monotonic())  # (rows, when they last grew): a stalled tail is given up
        while not stop.is_set():
            if supervisor.failed.is_set():
                echo(f"stopping: a part of the stack failed beyond its restart budget: {supervisor.reason}")
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            health = ingest.health()
            if all(h.state in ("finished", "failed") for h in health):
                # finite sources (files, frame folders) ended: stop once all they published is
                # scored; the main thread keeps serving meanwhile (a Ray restart runs here)
                if not sources_ended:
                    sources_ended = True
                    echo("every source ended: scoring what they published ...")
                with Session(engine) as db:
                    n_seg = db.exec(select(func.count()).select_from(SegmentScore)).one()
                if n_seg >= sum(h.segments for h in health):
                    break
                if n_seg > progress[0]:
                    progress = (n_seg, time.monotonic())
                elif time.monotonic() - progress[1] > 120:
                    echo(f"stopping: no segment scored for 120 s ({n_seg} of {sum(h.segments for h in health)})")
                    break
            main.serve(1.0)
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                with Session(engine) as db:
                    n_seg = db.exec(select(func.count()).select_from(SegmentScore)).one()
                    n_ev = db.exec(select(func.count()).select_from(Event)).one()
                echo(f"[{time.monotonic() - t_begin:6.0f}s] segments scored {n_seg}, events {n_ev}")
        echo("stopping: draining the scoring queue ...")
        ingest.shutdown()
        if not supervisor.failed.is_set():
            _drain(worker, timeout=60)
    finally:
        supervisor.close()
        for sig, h in old.items():
            signal.signal(sig, h)
        if ingest is not None and not ingest.stop.is_set():  # e.g. the scoring app failed to deploy
            ingest.shutdown(timeout=10)
        if worker is not None:
            worker.close()
        if relay is not None:
            relay.close()
        if control is not None:
            control.close()
        if evidence is not None:
            evidence.close()
        if api_server is not None:
            api_server.should_exit = True
        if dash_proc is not None:
            os.killpg(dash_proc.pid, signal.SIGTERM)
            dash_proc.wait(10)
        for th in threads:
            th.join(10)
        summary = _summary(s, time.monotonic() - t_begin, wall_begin) if stack.procs else {}
        summary.update(_supervision(supervisor, ingest))
        stack.stop()
    echo(f"demo done: {summary}")
    return summary


def _supervision(supervisor: Any, ingest: Any) -> dict[str, Any]:
    """What the supervisor and ingest went through: restarts per part, segments re-announced
    after a broker restart, segments ingest dropped (its buffer full while a part was down),
    and the part that failed for good, if one did."""
    parts = supervisor.snapshot()
    out: dict[str, Any] = {
        "restarts": {n: p["restarts"] for n, p in parts.items() if p["restarts"]},
        "recovery_s": {n: p["recovery_s"] for n, p in parts.items() if p["recovery_s"]},
        "reannounced": sum(p.results.get("reannounced", 0) for p in supervisor.parts.values()),
        "captured_segments": sum(h.segments for h in ingest.health()) if ingest is not None else 0,
        "dropped_segments": sum(h.dropped for h in ingest.health()) if ingest is not None else 0,
        "failed": supervisor.reason,
    }
    return out


def _drain(worker: Any, timeout: float) -> None:
    """Wait until the worker has caught up with what ingest published."""
    deadline = time.monotonic() + timeout
    last, still = -1, 0
    while time.monotonic() < deadline:
        time.sleep(1.0)
        if worker.processed == last:
            still += 1
            if still >= 3:
                return
        else:
            last, still = worker.processed, 0


def _summary(s: Settings, seconds: float, wall_begin: datetime) -> dict[str, Any]:
    from sqlmodel import Session, func, select

    from vigil.db import make_engine
    from vigil.models import Event, SegmentScore

    engine = make_engine(s.database_url)
    with Session(engine) as db:
        n_seg = db.exec(select(func.count()).select_from(SegmentScore)).one()
        n_ev = db.exec(select(func.count()).select_from(Event)).one()
        n_cam = db.exec(select(func.count(func.distinct(SegmentScore.camera_id)))).one()
        first_row = db.exec(select(func.min(SegmentScore.scored_at))).one()
        first_ev = db.exec(select(func.min(Event.created_at))).one()
    engine.dispose()

    def after(t: datetime | None) -> float | None:
        return None if t is None else round((as_utc(t) - wall_begin).total_seconds(), 1)

    return {"segments": int(n_seg), "events": int(n_ev), "cameras": int(n_cam), "seconds": round(seconds, 1),
            "first_segment_s": after(first_row), "first_event_s": after(first_ev)}
