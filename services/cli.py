"""The ``vigil`` command line: one entry point, one subcommand per service or job.

Heavy imports (torch, open_clip, Ray) happen inside the commands that need them, so
``vigil --help`` and config errors answer at once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from vigil.config import ConfigError, Settings, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Vigil: zero-shot video anomaly detection.")
eval_app = typer.Typer(no_args_is_help=True, help="Benchmarks on labelled footage.")
app.add_typer(eval_app, name="eval")

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (default $VIGIL_CONFIG)")]
StateOpt = Annotated[Optional[Path], typer.Option("--state-dir", help="state directory (logs, SQLite, servers)")]

log = logging.getLogger("vigil")
_dry_run: str | None = None  # `vigil --dry-run CMD ...`: CMD; _settings stops it once its settings parse


@app.callback()
def _main(ctx: typer.Context, dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="parse the command's arguments and settings, say so, and exit 0 without starting "
        "anything (how the Helm chart's commands are checked)")] = False) -> None:
    global _dry_run
    _dry_run = ctx.invoked_subcommand if dry_run else None


def _settings(config: Path | None, state_dir: Path | None = None, **overrides) -> Settings:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never a minute of hub retries
    if state_dir is not None:
        overrides["state_dir"] = state_dir
    try:
        s = load_settings(config, **overrides)
    except ConfigError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    if _dry_run:
        typer.echo(f"dry run: `vigil {_dry_run}` accepted its arguments and settings "
                   f"({config or os.environ.get('VIGIL_CONFIG') or 'defaults and VIGIL_* environment'})")
        raise typer.Exit(0)
    logging.basicConfig(level=s.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # kafka-python logs every failed reconnect as an error (a hundred lines a broker outage); the
    # supervisor and the services say once what is down and when it is back
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    return s


def _fail(msg: str, code: int = 1) -> typer.Exit:
    typer.secho(msg, fg="red", err=True)
    return typer.Exit(code)


class _StopOnSignal:
    """SIGINT/SIGTERM set an event instead of raising, so shutdown runs in order."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __enter__(self) -> threading.Event:
        self._old = {s: signal.signal(s, lambda *_: self.event.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        return self.event

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def _resolved(settings: Settings) -> Settings:
    from infra.embedded import StackError, apply_stack_endpoints

    try:
        return apply_stack_endpoints(settings)
    except StackError as exc:
        raise _fail(str(exc)) from None


# ---------------------------------------------------------------- services


@app.command()
def up(config: ConfigOpt = None, state_dir: StateOpt = None,
       no_ray: Annotated[bool, typer.Option("--no-ray", help="do not start a local Ray")] = False) -> None:
    """Start the embedded stack (Kafka-protocol broker, S3, SQLite, Ray) until Ctrl-C."""
    from infra.embedded import EmbeddedStack, StackError

    s = _settings(config, state_dir)
    stack = EmbeddedStack(s, with_ray=not no_ray)
    try:
        stack.start()
    except StackError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"Vigil stack up in {stack.state_dir} (logs in {stack.log_dir})")
    for k, v in stack.endpoints.items():
        typer.echo(f"  {k:9s} {v}")
    typer.echo("Ctrl-C to stop.")
    from infra.recovery import after_broker_restart

    # every part is restarted when it dies (the broker's topics and unscored segments recovered);
    # one that dies beyond the restart budget stops the stack with its reason and exit code 1
    from infra.supervisor import MainThread

    main = MainThread()  # a dead Ray head is started again here, on the main thread
    supervisor = stack.supervisor({"kafka": after_broker_restart(stack.resolved_settings())}, main=main).start()
    from vigil.db import make_engine
    from vigil.objectstore import ObjectStore
    from vigil.retention import RetentionSchedule

    resolved = stack.resolved_settings()
    retention = RetentionSchedule(ObjectStore(resolved.s3), make_engine(resolved.database_url), s.retention).start()
    if s.retention.every_s:
        typer.echo(f"retention: a cleanup pass every {s.retention.every_s:.0f} s (retention.every_s)")
    with _StopOnSignal() as stop:
        while not stop.is_set() and not supervisor.failed.is_set():
            main.serve(1.0)
    retention.close()
    supervisor.close()
    stack.stop()
    if supervisor.failed.is_set():
        raise _fail(f"stack stopped: {supervisor.reason}; see {stack.log_dir}")
    typer.echo("stack stopped")


@app.command()
def ingest(config: ConfigOpt = None, state_dir: StateOpt = None,
           max_segments: Annotated[Optional[int], typer.Option(help="stop each camera after N segments")] = None,
           follow: Annotated[bool, typer.Option(
               "--follow/--static", help="follow the cameras table (SQL, the source of truth): cameras added, "
               "edited, disabled or deleted in the dashboard or the API take effect within seconds; --static "
               "runs only the configured cameras and stops when their sources end")] = True) -> None:
    """Read the cameras and publish their segments; report each source's health to SQL.

    Several ingest processes share the cameras table by ``ingest.shard`` (``VIGIL_INGEST__SHARD=i/n``).
    """
    from services.ingest.desired import DesiredCameras
    from services.ingest.runner import IngestService
    from services.ingest.status import SourceStatusReporter
    from vigil.bus import ensure_topics, make_producer
    from vigil.camera_seed import seed_cameras
    from vigil.db import make_engine, migrate
    from vigil.objectstore import ObjectStore

    s = _resolved(_settings(config, state_dir))
    desired = status = None
    if follow:
        migrate(s.database_url)
        engine = make_engine(s.database_url)
        seed_cameras(engine, s.cameras)  # idempotent: the API does the same at its start
        desired, status = DesiredCameras(engine, s).read, SourceStatusReporter(engine)
    elif not s.cameras:
        raise _fail("no cameras configured: add a `cameras:` list to the config")
    ensure_topics(s.kafka)
    svc = IngestService(s, ObjectStore(s.s3), make_producer(s.kafka, "vigil-ingest"), max_segments=max_segments,
                        desired=desired, status=status, reconcile_every_s=s.ingest.reconcile_every_s)
    svc.start()
    with _StopOnSignal() as stop:
        while not stop.is_set():
            if svc.join(timeout=1.0) and not follow:
                break
    health = svc.health()
    svc.shutdown()
    for h in health:
        typer.echo(f"{h.camera_id}: {h.state}, {h.segments} segments, {h.dropped} dropped" + (f", {h.error}" if h.error else ""))
    if any(h.state == "failed" for h in health):
        raise typer.Exit(1)


def _start_worker(s: Settings, *, metrics_port: int | None = None, deploy: bool = True):
    from infra.embedded import ray_init_client
    from services.scoring.deploy import deploy_scoring_app, get_scoring_handle, handle_score_fn
    from services.scoring.sink import Sink
    from services.scoring.worker import ScoringWorker
    from vigil.bus import ensure_topics, make_consumer, make_producer
    from vigil.db import make_engine, migrate
    from vigil.objectstore import ObjectStore

    ray_init_client(s)
    migrate(s.database_url)
    ensure_topics(s.kafka)
    engine, store = make_engine(s.database_url), ObjectStore(s.s3)
    control = None
    if deploy:
        from services.trainer.registry import serving_user_config

        # a fresh replica must serve the active model version, not the zero-shot heads
        applied = serving_user_config(s, engine, store)
        handle = deploy_scoring_app(s, user_config=applied)
        control = serving_reconciler(s, engine, store, applied)
    else:  # the RayService owns the app's config (issue 25): prompt sets and versions come with it
        handle = get_scoring_handle(s)
    if metrics_port is not None:
        from vigil.metrics import serve_metrics

        serve_metrics(metrics_port)
    from vigil.normal_period import NormalPeriodRecorder

    worker = ScoringWorker(
        s, score_fn=handle_score_fn(handle), sink=Sink(engine), store=store, recorder=NormalPeriodRecorder(engine, store),
        producer=make_producer(s.kafka, "vigil-scoring"),
        consumer=make_consumer(s.kafka, group=s.kafka.consumer_group, client_id="vigil-scoring"),
        control=control,
    )
    return worker, control


def serving_reconciler(s: Settings, engine, store, applied: dict):  # noqa: ANN001
    """The scorer follows SQL (model activation, prompt sets, camera contexts): composed here,
    so the scoring service needs nothing from the trainer's registry but this callable."""
    from services.scoring.control_plane import ServingReconciler
    from services.scoring.deploy import reconfigure_scoring_app
    from services.trainer.registry import serving_user_config

    rec = ServingReconciler(s, engine, lambda: serving_user_config(s, engine, store),
                            lambda uc: reconfigure_scoring_app(s, uc), applied=applied)
    try:
        rec.poll()  # prompt sets already edited in SQL apply before the first segment
    except Exception as exc:  # noqa: BLE001  the reconciler retries; scoring starts anyway
        log.warning("scoring control plane: first read failed (%s)", exc)
    return rec.start()


@app.command("score-worker")
def score_worker(config: ConfigOpt = None, state_dir: StateOpt = None,
                 metrics_port: Annotated[int, typer.Option(help="Prometheus port (0 = free port)")] = 9100,
                 deploy: Annotated[bool, typer.Option(
                     "--deploy/--no-deploy",
                     help="deploy the Serve app (embedded stack) or use the one already running (RayService)")] = True,
                 auto_train: Annotated[bool, typer.Option(
                     "--auto-train/--no-auto-train",
                     help="train each camera's normality when its normal period completes (vigil train-normal --watch "
                     "in this process)")] = True,
                 relay: Annotated[bool, typer.Option(
                     "--relay/--no-relay", help="publish the event outbox from this process (a cluster runs "
                     "`vigil relay` once instead)")] = True,
                 evidence: Annotated[bool, typer.Option(
                     "--evidence/--no-evidence", help="build event clips in this process too (one replica at a "
                     "time sweeps, by a SQL lease; a cluster runs `vigil evidence` instead)")] = True,
                 ) -> None:
    """Consume segments, score them on the Serve app, store results and their event messages (the outbox)."""
    from services.scoring.evidence_maintainer import EvidenceMaintainer
    from services.trainer.normal_camera import NormalPeriodWatcher

    s = _resolved(_settings(config, state_dir))
    worker, control = _start_worker(s, metrics_port=metrics_port, deploy=deploy)
    maintainer = EvidenceMaintainer(worker.store, worker.sink.engine, s).start() if evidence else None
    watcher = NormalPeriodWatcher(s).start() if auto_train else None
    outbox = _outbox_relay(s, worker.sink.engine).start() if relay else None
    with _StopOnSignal() as stop:
        threading.Thread(target=lambda: (stop.wait(), worker.stop.set()), daemon=True).start()
        worker.run()
    worker.close()
    if outbox is not None:
        outbox.close()
    if maintainer is not None:
        maintainer.close()
    if control is not None:
        control.close()
    if watcher is not None:
        watcher.close()


@app.command()
def rescore(
    camera: Annotated[str, typer.Option("--camera", help="camera id")],
    t_from: Annotated[str, typer.Option("--from", help="segments starting at or after (ISO 8601; naive = UTC)")],
    t_to: Annotated[str, typer.Option("--to", help="... and before (ISO 8601)")],
    model: Annotated[Optional[str], typer.Option(
        "--model", help="a registered heads version (see the Models page); default: what is served now")] = None,
    config: ConfigOpt = None, state_dir: StateOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Score a camera's stored segments again and overwrite their rows and events (superseding the
    events no longer found), through the served path; with --model on a Serve app of its own."""
    from infra.embedded import ray_init_client
    from services.scoring.control_plane import ServingReconciler
    from services.scoring.deploy import deploy_scoring_app, get_scoring_handle, handle_score_fn
    from services.scoring.rescore import RescoreError
    from services.scoring.rescore import rescore as run_rescore
    from services.scoring.sink import Sink
    from services.scoring.worker import ScoringWorker
    from services.trainer.registry import heads_ref, serving_user_config
    from vigil.db import make_engine, migrate
    from vigil.models import ModelVersion
    from vigil.objectstore import ObjectStore

    try:
        span = [datetime.fromisoformat(t) for t in (t_from, t_to)]
    except ValueError as exc:
        raise _fail(f"--from/--to: {exc} (ISO 8601, e.g. 2026-12-04T08:00:00+00:00)", 2) from None
    s = _resolved(_settings(config, state_dir))
    migrate(s.database_url)
    engine, store = make_engine(s.database_url), ObjectStore(s.s3)
    uc = serving_user_config(s, engine, store)
    if model is not None:
        from sqlmodel import Session, select

        with Session(engine) as db:
            if db.get(ModelVersion, model) is None:
                known = [m.id for m in db.exec(select(ModelVersion))]
                raise _fail(f"--model {model!r} is not a registered model version; known: {known or 'none'}", 2)
        from vigil.artefacts import parse_ref

        uc["heads"], uc["object_store"] = heads_ref(s, model), s.s3.for_workers()
        try:  # its heads must be in the store: say so before deploying
            present = store.exists(parse_ref(uc["heads"]).path)
        except Exception as exc:  # noqa: BLE001
            raise _fail(f"--model {model!r}: its heads cannot be fetched ({exc})", 2) from None
        if not present:
            raise _fail(f"--model {model!r}: its heads are not in the object store ({uc['heads']})", 2)
    ray_init_client(s)
    own_app = model is not None
    s_app = s.model_copy(update={"serve": s.serve.model_copy(update={"app_name": f"{s.serve.app_name}-rescore"})})
    handles: list = []
    if not own_app:
        try:
            handles.append(get_scoring_handle(s))
        except Exception:  # noqa: BLE001  nothing serves yet: an app of its own with the served configuration
            own_app = True
    # the cameras' prompt sets (SQL's too), thresholds and masks as the control plane hands them
    # to the live worker; an app of its own is deployed with that configuration (the live app
    # keeps serving its cameras meanwhile)
    def apply(cfg: dict) -> None:
        if own_app:
            handles.append(deploy_scoring_app(s_app, user_config=cfg))

    control = ServingReconciler(s, engine, lambda: uc, apply)
    control.poll()
    handle = handles[0]
    worker = ScoringWorker(s, score_fn=handle_score_fn(handle), sink=Sink(engine), store=store, producer=None,
                           consumer=None, control=control)
    try:
        report = run_rescore(worker, camera, span[0], span[1], progress=not as_json)
    except RescoreError as exc:
        raise _fail(str(exc), 2) from None
    finally:
        worker.pool.shutdown(wait=False)
        if own_app:
            from ray import serve

            serve.delete(s_app.serve.app_name)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        typer.echo(f"re-scored {report.segments} segment(s) of {camera} with {', '.join(report.model_versions)}: "
                   f"{len(report.events)} event(s) ({len(report.kept)} kept), {len(report.superseded)} superseded"
                   + (f", {len(report.missing)} segment object(s) missing" if report.missing else ""))


def _outbox_relay(s: Settings, engine):  # noqa: ANN001, ANN202
    from services.scoring.relay import OutboxRelay
    from vigil.bus import make_producer

    return OutboxRelay(engine, make_producer(s.kafka, "vigil-relay"), s.kafka.events_topic)


@app.command()
def relay(config: ConfigOpt = None, state_dir: StateOpt = None) -> None:
    """Publish the event outbox to the events topic: each message once the broker acknowledges it."""
    from vigil.bus import ensure_topics
    from vigil.db import make_engine, migrate

    s = _resolved(_settings(config, state_dir))
    migrate(s.database_url)
    ensure_topics(s.kafka)
    outbox = _outbox_relay(s, make_engine(s.database_url))
    with _StopOnSignal() as stop:
        threading.Thread(target=lambda: (stop.wait(), outbox.stop.set()), daemon=True).start()
        outbox.run()
    outbox.close()
    typer.echo(f"published {outbox.published} event message(s); {outbox.backlog()} left in the outbox")


def _notifier(s: Settings, engine, *, consume: bool = True):  # noqa: ANN001, ANN202
    from services.notify.channels import make_sender
    from services.notify.notifier import Notifier
    from vigil.bus import make_consumer
    from vigil.objectstore import ObjectStore

    consumer = make_consumer(s.kafka, s.kafka.events_topic, group=s.notify.consumer_group) if consume else None
    store = ObjectStore(s.s3, retry_for_s=2.0) if s.s3.endpoint else None
    return Notifier(s.notify, engine, {c.name: make_sender(c) for c in s.notify.channels}, consumer=consumer,
                    store=store)


@app.command()
def evidence(config: ConfigOpt = None, state_dir: StateOpt = None,
             interval_s: Annotated[float, typer.Option(min=0.5, help="seconds between sweeps")] = 5.0) -> None:
    """Give every closed event its thumbnail and clip; replicas share the work by a SQL lease
    (one sweeps, another takes over within seconds of its death)."""
    from services.scoring.evidence_maintainer import EvidenceMaintainer
    from vigil.db import make_engine, migrate
    from vigil.objectstore import ObjectStore

    s = _resolved(_settings(config, state_dir))
    migrate(s.database_url)
    m = EvidenceMaintainer(ObjectStore(s.s3), make_engine(s.database_url), s, interval_s=interval_s).start()
    typer.echo(f"evidence: sweeping every {interval_s:g} s while holding the lease (holder {m.lease.holder})")
    with _StopOnSignal() as stop:
        stop.wait()
    m.close()
    typer.echo(f"evidence: {m.built} clip(s) built")


@app.command()
def notify(config: ConfigOpt = None, state_dir: StateOpt = None) -> None:
    """Deliver event messages by notify.rules to webhooks (HMAC-signed) and MQTT, each until it lands."""
    from vigil.bus import ensure_topics
    from vigil.db import make_engine, migrate

    s = _settings(config, state_dir)
    if not s.notify.channels or not s.notify.rules:
        raise _fail("notify: no channels or no rules configured (notify.channels, notify.rules in the config); "
                    "nothing would be delivered", 2)
    s = _resolved(s)
    migrate(s.database_url)
    ensure_topics(s.kafka)
    n = _notifier(s, make_engine(s.database_url)).start()
    typer.echo(f"notify: {len(s.notify.rules)} rule(s) to {', '.join(c.name for c in s.notify.channels)}")
    with _StopOnSignal() as stop:
        stop.wait()
    n.close()


@app.command()
def api(config: ConfigOpt = None, state_dir: StateOpt = None) -> None:
    """Serve the REST API (FastAPI) on api.host:api.port."""
    from services.api.main import serve

    s = _settings(config, state_dir)
    try:
        s = _resolved(s)
    except typer.Exit:
        pass  # the API can run on the database alone; clip URLs need S3
    try:
        serve(s)
    except ConfigError as exc:
        raise _fail(str(exc), code=2) from None


def _streamlit_argv(s: Settings, port: int) -> list[str]:
    page = Path(__file__).parent / "dashboard" / "app.py"
    return [sys.executable, "-m", "streamlit", "run", str(page), "--server.address", s.dashboard.host,
            "--server.port", str(port), "--server.headless", "true", "--server.fileWatcherType", "none",
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]


@app.command()
def dashboard(config: ConfigOpt = None, state_dir: StateOpt = None,
              api_url: Annotated[Optional[str], typer.Option(help="API base URL")] = None) -> None:
    """Serve the Streamlit dashboard on dashboard.host:dashboard.port."""
    import subprocess

    s = _settings(config, state_dir)
    env = {**os.environ, "VIGIL_DASHBOARD_API_URL": api_url or f"http://{s.api.host}:{s.api.port}"}
    raise typer.Exit(subprocess.call(_streamlit_argv(s, s.dashboard.port), env=env))


# ---------------------------------------------------------------- demo


@app.command()
def demo(
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    minutes: Annotated[float, typer.Option(help="stop after this many minutes (0 = until Ctrl-C)")] = 0,
    cameras: Annotated[int, typer.Option(help="synthetic cameras when the config names none")] = 3,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write a summary JSON here")] = None,
    no_dashboard: Annotated[bool, typer.Option("--no-dashboard")] = False,
) -> None:
    """Everything on one machine: embedded stack, synthetic cameras, scoring, API and dashboard."""
    from infra.demo import run_demo

    # a demo on one machine: the published default keys are accepted, and it says so
    s = _settings(config, state_dir or Path(".vigil/demo"), environment="development")
    typer.echo("environment: development (the published default API key is accepted; do not expose this demo)")
    summary = run_demo(s, minutes=minutes, n_cameras=cameras, dashboard=not no_dashboard, echo=typer.echo)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(summary, indent=2))
        typer.echo(f"summary written to {json_out}")
    if summary.get("failed"):
        raise _fail(f"demo stopped: {summary['failed']}")


@app.command()
def bench(
    cameras: Annotated[int, typer.Option(help="synthetic SynthCity cameras")] = 2,
    seconds: Annotated[float, typer.Option(help="seconds of camera footage streamed in real time")] = 60.0,
    model: Annotated[Optional[str], typer.Option(
        help="backbone registry name, e.g. ViT-B-32-random; default: the served default (model.backbone)")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the result JSON here")] = None,
    load: Annotated[Optional[float], typer.Option(
        help="offered load as a fraction of the bare encoder throughput (sets --fps); e.g. 0.5 or 1.5")] = None,
    fps: Annotated[float, typer.Option(help="frames per second per camera (ignored with --load)")] = 4.0,
    frames_per_segment: Annotated[int, typer.Option(help="T frames per segment")] = 16,
    batch_size: Annotated[int, typer.Option(help="Encode max_batch_size (segments)")] = 4,
    threads: Annotated[int, typer.Option(help="torch threads per Encode replica (and per bare loop)")] = 2,
    replicas: Annotated[int, typer.Option(
        help="Encode replicas; the bare reference runs as many loops in parallel processes")] = 1,
    bare_seconds: Annotated[float, typer.Option(help="seconds of each bare-encoder measurement")] = 20.0,
    state_dir: StateOpt = None,
) -> None:
    """Drive synthetic cameras through the real embedded stack and compare with the bare encoder."""
    from services.bench import run_bench
    from services.bench.run import BenchLoadError

    served = _settings(None)  # logging set-up, HF offline
    model = model or served.model.backbone
    logging.getLogger("vigil").setLevel(logging.WARNING)
    try:
        res = run_bench(cameras, seconds, model, json_out, load=load, fps=fps, frames_per_segment=frames_per_segment,
                        batch_size=batch_size, threads=threads, replicas=replicas, bare_seconds=bare_seconds,
                        state_dir=state_dir, echo=typer.echo)
    except BenchLoadError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if json_out:
        typer.echo(f"result written to {json_out}")
    if res.e2e_fps != res.e2e_fps:  # NaN: nothing was scored
        raise typer.Exit(1)


@app.command()
def cleanup(config: ConfigOpt = None, state_dir: StateOpt = None,
            max_batches: Annotated[Optional[int], typer.Option(help="bound the work of this run")] = None) -> None:
    """Retention: delete expired events and segments, objects and rows together (safe to interrupt)."""
    from vigil.db import make_engine, migrate
    from vigil.objectstore import ObjectStore
    from vigil.retention import cleanup as run_cleanup

    s = _resolved(_settings(config, state_dir))
    migrate(s.database_url)
    report = run_cleanup(ObjectStore(s.s3), make_engine(s.database_url), s.retention, max_batches=max_batches)
    typer.echo(str(report))


# ---------------------------------------------------------------- learning normality, evaluation


@app.command("train-normal")
def train_normal_cmd(
    frames: Annotated[Optional[list[Path]], typer.Argument(help="normal clips: folders of frames or video files")] = None,
    out: Annotated[Optional[Path], typer.Option(help="output folder (checkpoint + resumable training state)")] = None,
    camera: Annotated[Optional[str], typer.Option(
        help="train this camera's normality from its recorded normal period (a Ray Train job), check it on "
        "held-out normal clips, register and activate it")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="run until Ctrl-C, training each camera whose normal "
                                                      "period completes")] = False,
    activate: Annotated[bool, typer.Option("--activate/--no-activate", help="with --camera: serve it")] = True,
    force: Annotated[bool, typer.Option(help="with --camera: train on a period still recording")] = False,
    fps: Annotated[float, typer.Option(help="frame rate of the clips")] = 10.0,
    steps: Annotated[Optional[int], typer.Option(min=1, help="training steps (default: normality.steps, 300)")] = None,
    seed: int = 0,
    resume: Annotated[bool, typer.Option("--resume/--no-resume")] = True,
    threads: Annotated[Optional[int], typer.Option(help="torch threads")] = None,
    config: ConfigOpt = None, state_dir: StateOpt = None,
) -> None:
    """Learn a camera's normality from normal footage only (self-supervised DPC/InfoNCE).

    Either from clips on this machine (CLIPS --out DIR), or from a camera's own recorded normal
    period in the platform (--camera ID; --watch does it for every camera when its period ends)."""
    if camera or watch:
        if frames or out:
            raise _fail("--camera/--watch train from the platform's recorded footage: drop CLIPS and --out")
        from infra.embedded import ray_init_client
        from services.trainer.normal_camera import NormalPeriodWatcher, NormalTrainingError, train_camera

        s = _resolved(_settings(config, state_dir))
        ray_init_client(s)
        if watch:
            watcher = NormalPeriodWatcher(s, steps=steps, echo=typer.echo).start()
            typer.echo("training each camera whose normal period completes; Ctrl-C to stop")
            with _StopOnSignal() as stop:
                stop.wait()
            watcher.close()
            return
        try:
            res = train_camera(s, camera, steps=steps, activate=activate, force=force, seed=seed, echo=typer.echo)
        except NormalTrainingError as exc:
            raise _fail(str(exc)) from None
        typer.echo(json.dumps({"run_id": res.run_id, "camera_id": res.camera_id, "version": res.version,
                               "registered": res.registered, "activated": res.activated, "reason": res.reason}))
        if not res.registered:
            raise typer.Exit(1)
        return
    if not frames or out is None:
        raise _fail("give normal clips and --out DIR, or --camera ID to train from a camera's recorded normal period")
    from services.trainer.normality import train_normal

    _settings(config, state_dir)
    missing = [str(f) for f in frames if not f.exists()]
    if missing:
        raise _fail(f"no such folder of frames or video file: {', '.join(missing)}")
    path = train_normal(frames, out, fps=fps, steps=steps or 300, seed=seed, resume=resume, threads=threads)
    typer.echo(f"normality model written to {path}")


_EVAL_LAYOUTS = {
    "ucsd": ("UCSD Ped1/Ped2 root (training/, testing/, pedN.mat)", "testing"),
    "avenue": ("CUHK Avenue root (training_videos/, testing_videos/, testing_label_mask/)", "testing_videos"),
    "shanghaitech": ("ShanghaiTech root (training/videos/, testing/frames/, testing/test_frame_mask/)", "testing"),
}


def _register_dataset_eval(dataset: str) -> None:
    root_help, test_dir = _EVAL_LAYOUTS[dataset]

    def eval_dataset(
        root: Path = typer.Option(..., help=root_help),  # a default, not Annotated: the help is per dataset
        json_out: Annotated[Optional[Path], typer.Option("--json", help="write the metrics here")] = None,
        checkpoint: Annotated[Optional[Path], typer.Option(help="a trained normality.pt (skip training)")] = None,
        steps: Annotated[Optional[int], typer.Option(help="training steps (default: the model's default)")] = None,
        clips: Annotated[Optional[str], typer.Option(help="comma-separated test clips, e.g. 01,02")] = None,
        ablation: Annotated[bool, typer.Option(help="also score each stream alone and each left out, and the other gates (offline only)")] = False,
        through_stack: Annotated[bool, typer.Option(
            "--through-stack", help="stream each test clip as a camera of a fresh embedded stack (ingest, S3, "
            "Kafka, Serve, SQL) and compute the metrics from the SQL rows")] = False,
        seed: int = 0,
        threads: Annotated[Optional[int], typer.Option(help="torch threads")] = None,
        train_minutes: Annotated[Optional[float], typer.Option(
            min=0.05, help="learn normality from only the first N minutes of the normal footage (a live "
            "camera's normal period)")] = None,
        at_fps: Annotated[Optional[float], typer.Option(
            min=0.5, help="train and score the footage resampled to this frame rate, e.g. 4 (the live "
            "default); the labels follow the kept frames")] = None,
    ) -> None:
        from services.eval.ucsd import run_dataset_eval

        _settings(None)
        if not (root / test_dir).is_dir():
            raise _fail(f"{root} is not a {dataset} root: it has no {test_dir}/ folder")
        if through_stack and ablation:
            raise _fail("--ablation runs offline only; drop it or --through-stack")
        try:
            res = run_dataset_eval(root, json_out, dataset=dataset, checkpoint=checkpoint, steps=steps, seed=seed,
                                   ablation=ablation, clips=clips.split(",") if clips else None, threads=threads,
                                   through_stack=through_stack, train_minutes=train_minutes, at_fps=at_fps)
        except ValueError as exc:  # a test clip not in the root, a rate the footage cannot be resampled to
            raise _fail(str(exc)) from None
        typer.echo(json.dumps({k: res[k] for k in ("dataset", "path", "fps", "auc", "auc_video_norm", "ap", "frames",
                                                   "train_seconds", "train_frames", "score_fps", "model_version")
                               if k in res},
                              indent=2))

    eval_dataset.__doc__ = (f"Train on the {dataset} normal training clips, score every test frame, "
                            "report pooled frame AUC.")
    eval_app.command(dataset)(eval_dataset)


@eval_app.command("false-alarms")
def eval_false_alarms(
    video: Annotated[Path, typer.Argument(help="a video of normal footage (e.g. ../shared/data/pets2009_vtest/vtest.avi)")],
    loops: Annotated[int, typer.Option(min=1, help="play it this many times (each seam is a cut in the footage)")] = 10,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the record here")] = None,
    config: ConfigOpt = None,
) -> None:
    """False alarms per hour of the served detector on normal footage, through a fresh embedded stack
    with the live camera defaults (events opened on normal footage are false alarms)."""
    from services.eval.false_alarms import run_false_alarms

    s = _settings(config)
    if not video.is_file():
        raise _fail(f"no such video file: {video}")
    try:
        res = run_false_alarms(video, loops=loops, settings=s)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(res, indent=2, default=str))
    typer.echo(json.dumps({k: res[k] for k in ("video", "loops", "segments", "scored_hours_after_calibration",
                                               "false_alarms", "false_alarms_not_at_seams", "false_alarms_per_hour",
                                               "model_versions", "seconds")}, indent=2))


for _dataset in _EVAL_LAYOUTS:
    _register_dataset_eval(_dataset)


# ---------------------------------------------------------------- retraining the heads (issue 9)


@app.command("train")
def train_cmd(
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    train_config: Annotated[Optional[Path], typer.Option("--train-config", help="YAML of services.trainer.config.TrainConfig")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="override epochs")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="override scaling.num_workers")] = None,
    use_anomalies: Annotated[bool, typer.Option("--use-confirmed-anomalies", help="train on confirmed anomalies too (opt-in: no longer zero-shot)")] = False,
    activate: Annotated[Optional[bool], typer.Option("--activate/--no-activate", help="activate a version that passes the gate")] = None,
    run_id: Annotated[Optional[str], typer.Option(help="run id (default: generated)")] = None,
    schedule: Annotated[Optional[str], typer.Option(help='cron expression: run at these times until Ctrl-C, e.g. "0 3 * * *"')] = None,
) -> None:
    """Retrain the heads from stored clips and analyst feedback (Ray Train), gate, register, activate."""
    from infra.embedded import ray_init_client
    from services.trainer.config import load_train_config
    from services.trainer.run import read_progress, run_training
    from vigil.db import make_engine

    s = _resolved(_settings(config, state_dir))
    try:
        cfg = load_train_config(train_config, epochs=epochs, activate=activate)
    except ValueError as exc:
        raise _fail(f"training config: {exc}", 2) from None
    if workers:
        cfg = cfg.model_copy(update={"scaling": cfg.scaling.model_copy(update={"num_workers": workers})})
    if use_anomalies:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"use_confirmed_anomalies": True})})
    ray_init_client(s)

    def once() -> None:
        rid = run_id if not schedule else None
        rid = rid or f"train-{time.strftime('%Y%m%dT%H%M%S')}"
        engine, done, seen = make_engine(s.database_url), threading.Event(), [None]

        def follow() -> None:  # progress from the run's SQL row (what the dashboard shows too)
            finished = False
            while not finished:  # one last read after the run ends: its final epoch may land between polls
                finished = done.wait(2.0)
                p = read_progress(engine, rid).get("progress")
                if p and p.get("epoch") != seen[0]:
                    seen[0] = p.get("epoch")
                    typer.echo(f"  epoch {p['epoch']}/{p['epochs']}  loss {p.get('loss') or 0:.4f}"
                               + (f"  (resumed at epoch {p['resumed_from']})" if p.get("resumed_from") else ""))

        th = threading.Thread(target=follow, daemon=True)
        th.start()
        try:
            out = run_training(s, cfg, run_id=rid, echo=typer.echo)
        finally:
            done.set()
            th.join(5)
        typer.echo(json.dumps({"run_id": out.run_id, "status": out.status, "parent": out.parent,
                               "candidate": out.candidate, "registered": out.registered, "activated": out.activated,
                               "reason": out.reason, "candidate_metrics": out.metrics.get("candidate"),
                               "active_metrics": out.metrics.get("active")}, indent=2, default=str))

    if not schedule:
        try:
            once()
        except Exception as exc:  # noqa: BLE001
            raise _fail(f"training failed: {exc}") from None
        return
    from services.trainer.schedule import run_schedule

    with _StopOnSignal() as stop:
        try:
            run_schedule(schedule, once, stop, echo=typer.echo)
        except (ValueError, RuntimeError) as exc:
            raise _fail(str(exc), 2) from None


@app.command("train-tiny")
def train_tiny_cmd(
    out: Annotated[Path, typer.Option(help="checkpoint path")] = Path("shared/model/weights/vigil-tiny.pt"),
    seed: int = 0,
    steps: Annotated[int, typer.Option(min=1)] = 300,
    threads: Annotated[int, typer.Option(min=1)] = 2,
    crop_steps: Annotated[int, typer.Option(min=0, help="stage 2 on detector crops (0 skips it)")] = 3000,
) -> None:
    """Train vigil-tiny, the offline CLIP, contrastively on SynthCity frames and captions, then crops."""
    from services.trainer.tiny_clip import train_tiny_clip

    _settings(None)
    info = train_tiny_clip(out, seed=seed, steps=steps, threads=threads, crop_steps=crop_steps)
    typer.echo(json.dumps(info, indent=2, default=str))


class SemanticMode(str, Enum):
    frame = "frame"
    object = "object"
    frame_object = "frame+object"


class SynthCitySplit(str, Enum):
    eval = "eval"
    dev = "dev"


@eval_app.command("synthcity")
def eval_synthcity(
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the metrics here")] = None,
    backbone: Annotated[str, typer.Option(help="backbone registry name")] = "vigil-tiny",
    quick: Annotated[bool, typer.Option(help="reduced run (fewer cameras and frames)")] = False,
    mode: Annotated[SemanticMode, typer.Option(help="semantic stream on whole frames, detector crops or both")] = SemanticMode.frame_object,
    split: Annotated[SynthCitySplit, typer.Option(help="eval: the benchmark's cameras; dev: cameras for design choices")] = SynthCitySplit.eval,
) -> None:
    """Zero-shot benchmark on held-out SynthCity cameras: semantic, predictive and fused AUC."""
    from services.eval.synthcity import run_synthcity_eval

    _settings(None)
    res = run_synthcity_eval(json_out, quick=quick, backbone=backbone, mode=mode.value, split=split.value)
    typer.echo(json.dumps({k: res[k] for k in ("auc_semantic", "auc_predictive", "auc_fused") if k in res}, indent=2))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
