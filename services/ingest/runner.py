"""Ingest: camera source → sampled frames → segments → object store + ``SegmentRef`` on Kafka.

Per camera, a capture thread samples frames at the camera's fps and cuts segments of T
frames; an upload thread stores each segment once, then publishes its claim check keyed by
camera id (so a camera stays in order). Between them sits a bounded buffer: while the
object store or broker is down, the upload thread retries and the buffer absorbs the
backlog; when it is full a real-time camera drops its oldest segment (counted), an
offline source waits (backpressure).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import cv2
import numpy as np

from vigil import metrics
from vigil.clock import utcnow
from vigil.config import CameraConfig, FileSource, FramesSource, Settings, StreamSource, SyntheticSource
from vigil.contracts import SegmentRef
from vigil.objectstore import ObjectStore, ObjectStoreError
from vigil.segments import CONTENT_TYPE, encode_segment, single_threaded_codec

from .sources import SourceError, describe, open_source, scrub

log = logging.getLogger(__name__)
# counted per frame: the labelled child is looked up once
_CAMERA_READ_CPU = metrics.STAGE_CPU_SECONDS.labels("camera_read")


@dataclass
class PendingSegment:
    ref: SegmentRef
    payload: bytes


FPS_WINDOW_S = 10.0  # measured fps: frames sampled over about this many seconds
STALE_AFTER_S = 5.0  # no frame for this long (and never less than two frame periods): not connected


@dataclass
class SourceHealth:
    """One camera source as ingest sees it; reported to SQL and shown by the API's camera
    health next to the scoring side. Wall-clock times (``time.time()``)."""

    camera_id: str
    state: str = "starting"  # starting | streaming | reconnecting | finished | failed
    frames: int = 0
    segments: int = 0
    dropped: int = 0
    reconnects: int = 0
    error: str | None = None  # the newest error, scrubbed of the source URL or path
    last_frame_at: float | None = None
    last_segment_at: float | None = None
    started_at: float = field(default_factory=time.time)
    _sampled: deque[float] = field(default_factory=deque, repr=False, compare=False)

    def frame_sampled(self, now: float) -> None:
        self._sampled.append(now)
        while self._sampled and now - self._sampled[0] > FPS_WINDOW_S:
            self._sampled.popleft()

    @property
    def fps(self) -> float | None:
        """Frames per second sampled into segments over the last ``FPS_WINDOW_S``."""
        ts = list(self._sampled)
        if len(ts) < 2 or ts[-1] <= ts[0]:
            return None
        return (len(ts) - 1) / (ts[-1] - ts[0])

    def connected(self, now: float | None = None, nominal_fps: float | None = None) -> bool:
        if self.state != "streaming" or self.last_frame_at is None:
            return False
        stale = max(STALE_AFTER_S, 2.0 / nominal_fps) if nominal_fps else STALE_AFTER_S
        return (time.time() if now is None else now) - self.last_frame_at <= stale


def _resize_to_fit(frame: np.ndarray, max_side: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        nh, nw = h, w
    else:
        nh, nw = int(round(h * scale)), int(round(w * scale))
    nh, nw = nh - nh % 2, nw - nw % 2  # even sizes: evidence clips are yuv420p
    if (nh, nw) == (h, w):
        return frame
    return cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)


def _is_realtime(cam: CameraConfig) -> bool:
    src = cam.source
    if isinstance(src, StreamSource):
        return True
    if isinstance(src, (FileSource, FramesSource, SyntheticSource)):
        return src.realtime
    return False


@dataclass
class CameraIngest:
    """Capture + upload for one camera."""

    cam: CameraConfig
    store: ObjectStore
    producer: object  # KafkaProducer
    topic: str
    buffer_segments: int = 64
    max_segments: int | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    health: SourceHealth = field(init=False)

    def __post_init__(self) -> None:
        self.health = SourceHealth(self.cam.id)
        self.buffer: queue.Queue[PendingSegment] = queue.Queue(self.buffer_segments)
        self.capture_done = threading.Event()
        self.epoch = int(time.time() * 1000)  # distinguishes this run's segment ids from earlier runs'
        self._failing_since: float | None = None  # uploads failing since (monotonic); logged once per outage

    # -- capture
    def capture(self) -> None:
        p = self.cam.params
        period = 1.0 / p.fps
        next_t = 0.0
        frames: list[np.ndarray] = []
        seq = 0
        wall0 = utcnow()
        seg_t0 = 0.0
        try:
            c_body_end = time.thread_time()
            for t, frame in open_source(self.cam.source, self.stop, self._retrying):
                # the source's own cost (read and decode the camera's frame): between the loop bodies
                _CAMERA_READ_CPU.inc(max(0.0, time.thread_time() - c_body_end))
                now = time.time()
                self.health.frames += 1
                self.health.last_frame_at = now
                self.health.state = "streaming"
                metrics.FRAMES_READ.labels(self.cam.id).inc()
                metrics.CAMERA_UP.labels(self.cam.id).set(1)
                if t + 1e-9 < next_t:
                    c_body_end = time.thread_time()
                    continue
                next_t += period
                self.health.frame_sampled(now)
                if not frames:
                    seg_t0 = t
                with metrics.stage("frame_resize"):
                    frames.append(_resize_to_fit(frame, p.max_side))
                if len(frames) == p.frames_per_segment:
                    self._emit(frames, seq, wall0 + timedelta(seconds=seg_t0), wall0 + timedelta(seconds=t + period))
                    frames, seq = [], seq + 1
                    if self.max_segments is not None and seq >= self.max_segments:
                        break
                c_body_end = time.thread_time()
            else:
                if frames and not self.stop.is_set():  # a finite source ended: its last frames are scored too
                    self._emit(frames, seq, wall0 + timedelta(seconds=seg_t0), wall0 + timedelta(seconds=t + period))
            self.health.state = "finished"
        except SourceError as exc:
            self.health.state, self.health.error = "failed", scrub(str(exc), self.cam.source)
            metrics.INGEST_ERRORS.labels(self.cam.id, "source").inc()
            log.error("camera %s: %s", self.cam.id, exc)
        finally:
            metrics.CAMERA_UP.labels(self.cam.id).set(0)
            self.capture_done.set()  # the uploader finishes the backlog, then stops

    def _retrying(self, reason: str) -> None:
        self.health.reconnects += 1
        self.health.state, self.health.error = "reconnecting", reason
        metrics.CAMERA_UP.labels(self.cam.id).set(0)

    def _emit(self, frames: list[np.ndarray], seq: int, t_start: datetime, t_end: datetime) -> None:
        p = self.cam.params
        segment_id = f"{self.cam.id}.{self.epoch}.{seq:06d}"
        key = f"segments/{self.cam.id}/{self.epoch}/{seq:06d}.npz"
        h, w = frames[0].shape[:2]
        ref = SegmentRef(
            segment_id=segment_id, camera_id=self.cam.id, seq=seq, t_start=t_start, t_end=t_end,
            fps=p.fps, n_frames=len(frames), width=w, height=h, object_key=key,
        )
        with metrics.stage("segment_encode"):
            payload = encode_segment(frames, quality=p.jpeg_quality, meta=ref.model_dump(mode="json"))
        item = PendingSegment(ref, payload)
        if _is_realtime(self.cam):
            while True:
                try:
                    self.buffer.put_nowait(item)
                    break
                except queue.Full:
                    try:
                        old = self.buffer.get_nowait()
                    except queue.Empty:
                        continue
                    self.health.dropped += 1
                    metrics.SEGMENTS_DROPPED.labels(self.cam.id).inc()
                    log.warning("camera %s: upload buffer full; dropped segment %s", self.cam.id, old.ref.segment_id)
        else:
            while not self.stop.is_set():
                try:
                    self.buffer.put(item, timeout=0.5)
                    break
                except queue.Full:
                    continue
        metrics.INGEST_BUFFER.labels(self.cam.id).set(self.buffer.qsize())

    # -- upload
    def upload(self) -> None:
        while True:
            try:
                item = self.buffer.get(timeout=0.2)
            except queue.Empty:
                if self.capture_done.is_set():
                    return
                continue
            metrics.INGEST_BUFFER.labels(self.cam.id).set(self.buffer.qsize())
            if self._publish(item):
                self.health.segments += 1
                self.health.last_segment_at = time.time()
                metrics.SEGMENTS_PUBLISHED.labels(self.cam.id).inc()
            else:  # shutting down with the store gone: don't wait out every buffered segment
                while not self.buffer.empty():
                    self.buffer.get_nowait()
                return

    def _publish(self, item: PendingSegment) -> bool:
        """Store, then announce (claim check). Retries until it works; after a shutdown
        request, gives up once the store has been unreachable for its whole retry period."""
        while True:
            try:
                with metrics.stage("s3_put"):
                    self.store.put(item.ref.object_key, item.payload, CONTENT_TYPE)
                with metrics.stage("kafka_produce"):
                    self.producer.send(self.topic, key=self.cam.id.encode(), value=item.ref.encode()).get(timeout=30)
                if self._failing_since is not None:  # one line per outage, not one per retry
                    log.info("camera %s: uploads work again after %.0f s", self.cam.id,
                             time.monotonic() - self._failing_since)
                    self._failing_since = None
                return True
            except Exception as exc:  # noqa: BLE001  keep the segment and retry
                metrics.INGEST_ERRORS.labels(self.cam.id, "upload").inc()
                self.health.error = f"upload failed ({type(exc).__name__}); retrying"
                if self.stop.is_set() and isinstance(exc, ObjectStoreError):
                    lost = 1 + self.buffer.qsize()
                    log.error("camera %s: object store unavailable at shutdown; %d segment(s) not stored: %s",
                              self.cam.id, lost, exc)
                    return False
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.warning("camera %s: upload of %s failed (%s); retrying every second, segments kept "
                                "in the buffer", self.cam.id, item.ref.segment_id, exc)
                time.sleep(1.0)

    def run(self) -> SourceHealth:
        up = threading.Thread(target=self.upload, name=f"upload-{self.cam.id}", daemon=True)
        up.start()
        self.capture()
        up.join()
        return self.health


class SourceStatusSink(Protocol):
    """Where camera health goes (:class:`services.ingest.status.SourceStatusReporter`)."""

    def report(self, healths: list[tuple[SourceHealth, float]]) -> None: ...

    def close(self) -> None: ...


class IngestService:
    """The cameras to ingest, one capture and one upload thread each.

    Static (``desired=None``): the enabled cameras of the settings, as a one-off run or a
    benchmark uses them. Following the cameras table (``desired``: a callable returning the
    wanted cameras, :class:`~services.ingest.desired.DesiredCameras` ``.read``): every
    ``reconcile_every_s`` the running cameras are compared with it; a new camera starts, a
    disabled or deleted one stops, an edited one restarts with its new settings, and the other
    cameras are never touched.
    """

    def __init__(self, settings: Settings, store: ObjectStore, producer: object,
                 *, max_segments: int | None = None, buffer_segments: int = 64,
                 desired: Callable[[], list[CameraConfig]] | None = None, reconcile_every_s: float = 5.0,
                 status: SourceStatusSink | None = None) -> None:
        self.settings = settings
        self.store, self.producer, self.topic = store, producer, settings.kafka.segments_topic
        self.max_segments, self.buffer_segments = max_segments, buffer_segments
        self.stop = threading.Event()
        self.desired, self.reconcile_every_s = desired, reconcile_every_s
        self.running: dict[str, tuple[CameraIngest, threading.Thread]] = {}
        self._lock = threading.Lock()
        self._pending = [cam for cam in settings.cameras if cam.enabled] if desired is None else []
        self._reconciler: threading.Thread | None = None
        self.status, self._status_failing = status, False

    @property
    def cameras(self) -> list[CameraIngest]:
        with self._lock:
            return [c for c, _ in self.running.values()]

    def _start_camera(self, cam: CameraConfig, delay_s: float = 0.0) -> None:
        ci = CameraIngest(cam, self.store, self.producer, self.topic, buffer_segments=self.buffer_segments,
                          max_segments=self.max_segments)
        log.info("camera %s: reading %s", cam.id, describe(cam.source))

        def run() -> None:
            if not ci.stop.wait(delay_s):
                ci.run()

        th = threading.Thread(target=run, name=f"camera-{cam.id}", daemon=True)
        self.running[cam.id] = (ci, th)
        th.start()

    def _stop_camera(self, camera_id: str, why: str) -> None:
        ci, _ = self.running.pop(camera_id)
        ci.stop.set()  # its uploader finishes what it buffered; nothing waits for it here
        log.info("camera %s: stopped (%s)", camera_id, why)

    def reconcile(self, desired: list[CameraConfig], *, stagger_s: float = 0.0) -> dict[str, list[str]]:
        """Bring the running cameras to ``desired`` (its disabled entries count as absent);
        ``stagger_s``: the i-th camera started begins i × that later (benchmarks)."""
        want = {c.id: c for c in desired if c.enabled}
        done: dict[str, list[str]] = {"started": [], "stopped": [], "restarted": []}
        with self._lock:
            if self.stop.is_set():
                return done
            for cid in [c for c in self.running if c not in want]:
                self._stop_camera(cid, "disabled or removed")
                done["stopped"].append(cid)
            for cid, cam in want.items():
                if cid not in self.running:
                    self._start_camera(cam, len(done["started"]) * stagger_s)
                    done["started"].append(cid)
                elif self.running[cid][0].cam != cam:
                    self._stop_camera(cid, "its settings changed")
                    self._start_camera(cam)
                    done["restarted"].append(cid)
        return done

    def _follow(self) -> None:
        while not self.stop.is_set():
            try:
                self.reconcile(self.desired())
            except Exception as exc:  # noqa: BLE001  the table is unreachable: keep what runs, try again
                log.warning("cameras table not read (%s); the running cameras carry on", exc)
            self.report_status()
            self.stop.wait(self.reconcile_every_s)

    def report_status(self) -> None:
        """Tell the status sink how each running camera's source is doing (one log line when
        reporting starts or stops failing, not one per tick)."""
        if self.status is None:
            return
        with self._lock:
            healths = [(c.health, c.cam.params.fps) for c, _ in self.running.values()]
        try:
            self.status.report(healths)
        except Exception as exc:  # noqa: BLE001  health is advisory: the cameras keep streaming
            if not self._status_failing:
                log.warning("camera health not reported (%s); retrying every tick", exc)
            self._status_failing = True
        else:
            if self._status_failing:
                log.info("camera health reported again")
            self._status_failing = False

    def start(self, *, stagger_s: float = 0.0) -> None:
        single_threaded_codec()
        if self.desired is None:
            self.reconcile(self._pending, stagger_s=stagger_s)
            return
        self.reconcile(self.desired())  # the first read is synchronous: a bad database fails loudly here
        self._reconciler = threading.Thread(target=self._follow, name="ingest-reconcile", daemon=True)
        self._reconciler.start()

    def following(self) -> bool:
        """True while the reconcile loop runs (or when there is none to run: a static camera set)."""
        return self._reconciler is None or self._reconciler.is_alive() or self.stop.is_set()

    def follow_again(self) -> None:
        """Start the reconcile loop again after it died (the supervisor's restart)."""
        if self.desired is not None and not self.following():
            self._reconciler = threading.Thread(target=self._follow, name="ingest-reconcile", daemon=True)
            self._reconciler.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the running cameras' sources to end; True when none is left streaming."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for _, th in list(self.running.values()):
            th.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(th.is_alive() for _, th in list(self.running.values()))

    def shutdown(self, timeout: float = 30.0) -> None:
        with self._lock:
            self.stop.set()
            for ci, _ in self.running.values():
                ci.stop.set()
        self.join(timeout)
        if self.status is not None:
            try:
                self.status.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("camera health not marked stopped (%s)", exc)

    def health(self) -> list[SourceHealth]:
        return [c.health for c in self.cameras]
