"""Events reach people exactly once, whatever fails on the way: the real embedded broker
(Tansu), the real outbox relay and ``vigil notify`` as processes of their own, a signed-webhook
receiver over HTTP and a real Mosquitto from Debian's packages on loopback.

The events are made by the scoring path's own sink and event tracker (the code the worker runs
after Serve answers) from a scripted score sequence, so each event opens, is updated twice and
closes (versions 1-4) at a known moment; the model is not what these tests are about
(test_pipeline and test_faults score through Serve). The truth is SQL: every (event id,
version) in ``event_outbox`` must reach the webhook and both MQTT topics, once after dedupe on
the idempotency key, and each event's versions in order.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, select

from infra.embedded import apply_stack_endpoints, free_port, wait_tcp
from services.notify.channels import verify_signature
from services.scoring.sink import Sink
from vigil.bus import ensure_topics, make_consumer
from vigil.clock import utcnow
from vigil.config import CameraParams, load_settings
from vigil.contracts import SegmentRef
from vigil.db import make_engine, migrate
from vigil.events import EventTracker
from vigil.models import Delivery, EventOutbox

from tests.integration.util import log_tail, wait_until

REPO = Path(__file__).resolve().parents[2]
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
pytestmark = pytest.mark.skipif(not (MOSQUITTO and MOSQUITTO_PASSWD),
                                reason="Debian's mosquitto is not installed (make mosquitto)")
SECRET = "hook-secret"
EVENT = [0.1, 0.9, 0.95, 0.92, 0.1]  # quiet, new, update, update, end: versions 1-4
PARAMS = CameraParams(threshold_mode="fixed", threshold=0.5, release_threshold=0.4, min_event_segments=1,
                      end_after_segments=1, smoothing_alpha=1.0)


# ---------------------------------------------------------------- receivers


class Receiver:
    """A webhook endpoint that checks each signature and can go down and come back on its port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[dict] = []  # arrival order
        self.bad_signatures = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify_signature(SECRET, self.headers["X-Vigil-Timestamp"], body,
                                      self.headers.get("X-Vigil-Signature", ""))
                if not ok:
                    rec.bad_signatures += 1
                doc = json.loads(body)
                rec.got.append({"at": time.time(), "key": self.headers["Idempotency-Key"], "doc": doc})
                self.send_response(200 if ok else 401)
                self.end_headers()

            def log_message(self, *a) -> None:  # noqa: ANN002
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class Subscriber:
    def __init__(self, port: int, user: str, password: str, prefix: str) -> None:
        import paho.mqtt.client as mqtt

        self.got: list[tuple[str, dict]] = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{prefix}")
        self.c.username_pw_set(user, password)
        ready = threading.Event()
        self.c.on_connect = lambda c, *a: (c.subscribe(f"{prefix}/#", qos=1), ready.set())
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, json.loads(m.payload)))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert ready.wait(10), "MQTT subscriber did not connect"
        time.sleep(0.3)  # the SUBACK

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def mosquitto(tmp_path):
    """Mosquitto on a loopback port with a password file: anonymous clients are refused."""
    port, d = free_port(), tmp_path / "mqtt"
    d.mkdir()
    subprocess.run([MOSQUITTO_PASSWD, "-b", "-c", str(d / "passwd"), "vigil", "mqtt-pass"], check=True)
    (d / "passwd").chmod(0o600)
    (d / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                                      f"password_file {d / 'passwd'}\npersistence false\n"
                                      # as root it would drop to the mosquitto user, who cannot read tmp_path
                                      f"user {getpass.getuser()}\n")
    log = open(d / "mosquitto.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([MOSQUITTO, "-c", str(d / "mosquitto.conf")], stdout=log, stderr=subprocess.STDOUT)
    wait_tcp(port, 10, proc, "mosquitto")
    yield port
    proc.terminate()
    proc.wait(10)


# ---------------------------------------------------------------- the platform's processes


def _config(stack, tmp: Path, name: str, hook: Receiver, mqtt_port: int) -> Path:
    cfg = {
        "kafka": {"segments_topic": f"{name}.segments", "events_topic": f"{name}.events", "dlq_topic": f"{name}.dlq",
                  "partitions": 2, "session_timeout_ms": 6000, "max_poll_interval_ms": 10000},
        "database": {"url": f"sqlite:///{tmp / (name + '.db')}"},
        "notify": {
            "consumer_group": f"{name}-notify", "attempts": 1000, "backoff_initial_s": 0.5, "backoff_max_s": 2.0,
            "channels": [
                {"kind": "webhook", "name": "hook", "url": f"http://127.0.0.1:{hook.port}/vigil", "secret": SECRET,
                 "timeout_s": 3},
                {"kind": "mqtt", "name": "mqtt", "port": mqtt_port, "username": "vigil", "password": "mqtt-pass",
                 "topic_prefix": name, "timeout_s": 3},
            ],
            "rules": [{"name": "everything", "channels": ["hook", "mqtt"]}],
        },
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _spawn(cmd: str, cfg: Path, state_dir: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VIGIL_LOOPBACK_ONLY": "1"}
    return subprocess.Popen([sys.executable, "-m", "services.cli", cmd, "--config", str(cfg), "--state-dir",
                             str(state_dir)], cwd=REPO, env=env, stdout=open(log, "ab"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, start_new_session=True)


class Scenario:
    def __init__(self, stack, tmp: Path, name: str, hook: Receiver, mqtt_port: int) -> None:
        st, base = stack
        self.stack, self.name, self.tmp, self.hook = st, name, tmp, hook
        self.cfg = _config(stack, tmp, name, hook, mqtt_port)
        self.state_dir = base.state_dir
        self.s = apply_stack_endpoints(load_settings(self.cfg, state_dir=base.state_dir))
        migrate(self.s.database_url)
        ensure_topics(self.s.kafka)
        self.engine = make_engine(self.s.database_url)
        self.sink = Sink(self.engine)
        self.sub = Subscriber(mqtt_port, "vigil", "mqtt-pass", name)
        self.logs = {"relay": tmp / "relay.log", "notify": tmp / "notify.log"}
        self.procs: dict[str, subprocess.Popen] = {}
        self._trackers: dict[str, EventTracker] = {}
        self._seqs: dict[str, int] = {}

    def start(self, what: str) -> None:
        self.procs[what] = _spawn(what, self.cfg, self.state_dir, self.logs[what])

    def kill(self, what: str) -> None:
        os.killpg(self.procs[what].pid, signal.SIGKILL)
        self.procs[what].wait(10)

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(20)
        self.sub.close()

    def event(self, camera: str, epoch: int = 1, gap_s: float = 0.05) -> None:
        """One event on ``camera``: its segments scored and stored by the sink, as the worker does."""
        tracker = self._trackers.setdefault(camera, EventTracker.for_camera(camera, PARAMS))
        for score in EVENT:
            seq = self._seqs[camera] = self._seqs.get(camera, -1) + 1
            now = utcnow()
            ref = SegmentRef(segment_id=f"{camera}.{epoch}.{seq:06d}", camera_id=camera, seq=seq,
                             t_start=now - timedelta(seconds=1), t_end=now, fps=4, n_frames=4, width=64, height=48,
                             object_key=f"segments/{camera}/{epoch}/{seq:06d}.npz")
            top = [{"text": "a person falling", "prob": score, "abnormal": True}]
            transitions = tracker.update(segment_id=ref.segment_id, seq=seq, t_start=ref.t_start, t_end=ref.t_end,
                                         score=score, top_descriptions=top)
            assert self.sink.commit(ref, {"score": score, "model_version": "scripted", "top_descriptions": top},
                                    tracker, transitions, PARAMS)
            time.sleep(gap_s)

    # ------------------------------------------------------------ what happened
    def truth(self) -> set[tuple[str, int]]:
        with Session(self.engine) as db:
            return {(r.event_id, r.version) for r in db.exec(select(EventOutbox))}

    def delivered(self) -> bool:
        with Session(self.engine) as db:
            rows = list(db.exec(select(Delivery)))
        return len(rows) == 2 * len(self.truth()) and all(r.status == "delivered" for r in rows)

    def wait_delivered(self, timeout: float) -> None:
        try:
            wait_until(self.delivered, timeout, "every event message delivered on both channels")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nrelay:\n{log_tail(self.logs['relay'])}\n"
                                 f"notify:\n{log_tail(self.logs['notify'])}") from None

    def webhook_keys(self) -> list[tuple[str, int]]:
        return [(g["doc"]["event"]["event_id"], g["doc"]["event"]["version"]) for g in self.hook.got]

    def mqtt_keys(self, topic: str) -> list[tuple[str, int]]:
        return [(d["event"]["event_id"], d["event"]["version"]) for t, d in self.sub.got if t == topic]

    def topic_messages(self) -> list[tuple[str, int]]:
        """Every message on the events topic, duplicates included (what the relay published)."""
        c = make_consumer(self.s.kafka, self.s.kafka.events_topic, client_id="events-probe", consumer_timeout_ms=3000)
        out = [(json.loads(m.value)["event_id"], json.loads(m.value)["version"]) for m in c]
        c.close()
        return out

    def check_exactly_once(self, undisturbed: str | None = None) -> dict:
        truth = self.truth()
        hook = self.webhook_keys()
        assert set(hook) == truth, f"webhook missed {sorted(truth - set(hook))}"
        for topic in (f"{self.name}/events",):
            assert set(self.mqtt_keys(topic)) == truth
        per_camera = {(e, v) for t, d in self.sub.got if t.endswith("/event")
                      for e, v in [(d["event"]["event_id"], d["event"]["version"])]}
        assert per_camera == truth
        for topic, d in self.sub.got:  # the camera's own topic names the camera of the event
            if topic.endswith("/event"):
                assert topic == f"{self.name}/{d['event']['camera_id']}/event"
        # in order per event: the versions of an event arrive 1, 2, 3, 4 (retries may repeat one)
        first_seen: dict[str, list[int]] = {}
        for e, v in hook:
            if v not in first_seen.setdefault(e, []):
                first_seen[e].append(v)
        assert all(vs == sorted(vs) for vs in first_seen.values()), first_seen
        assert self.hook.bad_signatures == 0
        # the event rows' versions are what was delivered last
        with Session(self.engine) as db:
            from vigil.models import Event

            final = {e.id: e.version for e in db.exec(select(Event))}
        assert {e: max(vs) for e, vs in first_seen.items()} == final
        # segment end -> first arrival at the webhook, for every message; and for the messages
        # of the events finished before the fault (``undisturbed``)
        arrival = {k: min(g["at"] for g in self.hook.got if g["key"] == k) - _ts(k, self.hook.got)
                   for k in {g["key"] for g in self.hook.got}}
        lat = sorted(arrival.values())
        calm = sorted(v for k, v in arrival.items() if k.split(":")[1].startswith(undisturbed)) if undisturbed else []
        topic = self.topic_messages()
        return {"events": len(final), "messages": len(truth), "webhook_received": len(hook),
                "webhook_duplicates": len(hook) - len(set(hook)), "mqtt_received": len(self.mqtt_keys(f"{self.name}/events")),
                "topic_messages": len(topic), "topic_duplicates": len(topic) - len(set(topic)),
                "after_dedupe": len(set(hook)), "latency_p50_s": round(statistics.median(lat), 3),
                "latency_p95_s": _p95(lat),
                **({"undisturbed_latency_p50_s": round(statistics.median(calm), 3),
                    "undisturbed_latency_p95_s": _p95(calm)} if calm else {})}


def _p95(xs: list[float]) -> float:
    return round(xs[min(len(xs) - 1, int(0.95 * len(xs)))], 3)


def _ts(key: str, got: list[dict]) -> float:
    from datetime import datetime

    doc = next(g["doc"] for g in got if g["key"] == key)
    return datetime.fromisoformat(doc["event"]["t_end"]).timestamp()


def _record(name: str, figures: dict) -> None:
    print(f"\n{name}: {json.dumps(figures)}")
    out = os.environ.get("VIGIL_NOTIFY_FIGURES")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"test": name, **figures}) + "\n")


@pytest.fixture
def scenario(stack, tmp_path, mosquitto, request):
    hook = Receiver()
    hook.start()
    sc = Scenario(stack, tmp_path, request.node.name.split("[")[0][5:30].replace("_", "-"), hook, mosquitto)
    yield sc
    sc.close()
    hook.stop()


# ---------------------------------------------------------------- the faults


def _broker_pid(stack) -> int:
    st, _ = stack
    return next(p.proc.pid for p in st.procs if p.name == "kafka")


def test_broker_stopped_20s_while_events_open_update_and_close(stack, scenario):
    sc = scenario
    sc.start("relay")
    sc.start("notify")
    sc.event("cam-w")  # warm-up: both processes started, their consumer joined
    wait_until(sc.delivered, 60, "the warm-up event delivered")
    sc.event("cam-a")  # the undisturbed one
    wait_until(sc.delivered, 60, "the first event delivered before the outage")
    pid = _broker_pid(stack)
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        for cam in ("cam-a", "cam-b", "cam-c"):  # events open, update and close while the broker is away
            sc.event(cam, gap_s=0.5)
        time.sleep(max(0.0, 20 - (time.monotonic() - t0)))
        assert sc.procs["relay"].poll() is None and sc.procs["notify"].poll() is None
    finally:
        os.kill(pid, signal.SIGCONT)
    sc.wait_delivered(120)
    time.sleep(2)  # anything late would show up as a duplicate now
    figures = sc.check_exactly_once(undisturbed="cam-a.1.000001")
    assert figures["events"] == 5 and figures["messages"] == 20
    _record("broker_stopped_20s", figures)


def test_relay_sigkilled_three_times_loses_and_duplicates_nothing(stack, scenario):
    sc = scenario
    sc.start("notify")
    sc.start("relay")
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set() and i < 12:
            sc.event(f"cam-{i % 3}", gap_s=0.1)
            i += 1

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    for _ in range(3):
        time.sleep(3)
        sc.kill("relay")
        time.sleep(1)
        sc.start("relay")
    feeder.join(120)
    stop.set()
    sc.wait_delivered(120)
    time.sleep(2)
    figures = sc.check_exactly_once()
    assert figures["events"] == 12 and figures["messages"] == 48
    _record("relay_sigkilled_x3", figures)


def test_webhook_down_30s_every_notification_delivered_in_order_after(stack, scenario):
    sc = scenario
    sc.start("relay")
    sc.start("notify")
    sc.event("cam-w")  # warm-up
    wait_until(sc.delivered, 60, "the warm-up event delivered")
    sc.event("cam-a")
    wait_until(sc.delivered, 60, "the first event delivered before the receiver goes down")
    sc.hook.stop()
    t_down = time.monotonic()
    for cam in ("cam-a", "cam-b"):
        sc.event(cam, gap_s=0.3)
    wait_until(lambda: len(sc.mqtt_keys(f"{sc.name}/events")) >= 16, 60, "MQTT delivers while the webhook is down")
    with Session(sc.engine) as db:
        stuck = [r for r in db.exec(select(Delivery).where(Delivery.channel == "hook", Delivery.status == "pending"))]
    heads = {}  # each event's lowest pending version is being tried; its later versions wait behind it
    for r in sorted(stuck, key=lambda r: r.version):
        heads.setdefault(r.event_id, r)
    assert len(heads) == 2 and all(r.attempts >= 1 and r.last_error for r in heads.values()), heads
    assert all(r.attempts == 0 for r in stuck if r not in heads.values())
    time.sleep(max(0.0, 30 - (time.monotonic() - t_down)))
    t_up = time.monotonic()
    sc.hook.start()
    sc.wait_delivered(60)
    recovery = time.monotonic() - t_up
    time.sleep(2)
    figures = sc.check_exactly_once(undisturbed="cam-a.1.000001")
    assert figures["events"] == 4 and figures["messages"] == 16
    _record("webhook_down_30s", {**figures, "recovery_s": round(recovery, 2)})
