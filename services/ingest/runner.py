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
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import cv2
import numpy as np

from vigil import metrics
from vigil.clock import utcnow
from vigil.config import CameraConfig, FileSource, FramesSource, Settings, StreamSource, SyntheticSource
from vigil.contracts import SegmentRef
from vigil.objectstore import ObjectStore, ObjectStoreError
from vigil.segments import CONTENT_TYPE, encode_segment

from .sources import SourceError, describe, open_source

log = logging.getLogger(__name__)


@dataclass
class PendingSegment:
    ref: SegmentRef
    payload: bytes


@dataclass
class SourceHealth:
    """One camera source as ingest sees it (the API's CameraHealth is the scoring side)."""

    camera_id: str
    state: str = "starting"  # starting | streaming | finished | failed
    frames: int = 0
    segments: int = 0
    dropped: int = 0
    error: str | None = None
    last_frame_at: float | None = None


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
            for t, frame in open_source(self.cam.source, self.stop):
                self.health.frames += 1
                self.health.last_frame_at = time.time()
                self.health.state = "streaming"
                metrics.FRAMES_READ.labels(self.cam.id).inc()
                metrics.CAMERA_UP.labels(self.cam.id).set(1)
                if t + 1e-9 < next_t:
                    continue
                next_t += period
                if not frames:
                    seg_t0 = t
                frames.append(_resize_to_fit(frame, p.max_side))
                if len(frames) == p.frames_per_segment:
                    self._emit(frames, seq, wall0 + timedelta(seconds=seg_t0), wall0 + timedelta(seconds=t + period))
                    frames, seq = [], seq + 1
                    if self.max_segments is not None and seq >= self.max_segments:
                        break
            else:
                if frames and not self.stop.is_set():  # a finite source ended: its last frames are scored too
                    self._emit(frames, seq, wall0 + timedelta(seconds=seg_t0), wall0 + timedelta(seconds=t + period))
            self.health.state = "finished"
        except SourceError as exc:
            self.health.state, self.health.error = "failed", str(exc)
            metrics.INGEST_ERRORS.labels(self.cam.id, "source").inc()
            log.error("camera %s: %s", self.cam.id, exc)
        finally:
            metrics.CAMERA_UP.labels(self.cam.id).set(0)
            self.capture_done.set()  # the uploader finishes the backlog, then stops

    def _emit(self, frames: list[np.ndarray], seq: int, t_start: datetime, t_end: datetime) -> None:
        p = self.cam.params
        segment_id = f"{self.cam.id}.{self.epoch}.{seq:06d}"
        key = f"segments/{self.cam.id}/{self.epoch}/{seq:06d}.npz"
        h, w = frames[0].shape[:2]
        ref = SegmentRef(
            segment_id=segment_id, camera_id=self.cam.id, seq=seq, t_start=t_start, t_end=t_end,
            fps=p.fps, n_frames=len(frames), width=w, height=h, object_key=key,
        )
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
                self.store.put(item.ref.object_key, item.payload, CONTENT_TYPE)
                self.producer.send(self.topic, key=self.cam.id.encode(), value=item.ref.encode()).get(timeout=30)
                return True
            except Exception as exc:  # noqa: BLE001  keep the segment and retry
                metrics.INGEST_ERRORS.labels(self.cam.id, "upload").inc()
                if self.stop.is_set() and isinstance(exc, ObjectStoreError):
                    lost = 1 + self.buffer.qsize()
                    log.error("camera %s: object store unavailable at shutdown; %d segment(s) not stored: %s",
                              self.cam.id, lost, exc)
                    return False
                log.warning("camera %s: upload of %s failed (%s); retrying", self.cam.id, item.ref.segment_id, exc)
                time.sleep(1.0)

    def run(self) -> SourceHealth:
        up = threading.Thread(target=self.upload, name=f"upload-{self.cam.id}", daemon=True)
        up.start()
        self.capture()
        up.join()
        return self.health


class IngestService:
    """All enabled cameras of the settings, one capture and one upload thread each."""

    def __init__(self, settings: Settings, store: ObjectStore, producer: object,
                 *, max_segments: int | None = None, buffer_segments: int = 64) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.cameras = [
            CameraIngest(cam, store, producer, settings.kafka.segments_topic, buffer_segments=buffer_segments,
                         max_segments=max_segments, stop=self.stop)
            for cam in settings.cameras if cam.enabled
        ]
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for c in self.cameras:
            log.info("camera %s: reading %s", c.cam.id, describe(c.cam.source))
            th = threading.Thread(target=c.run, name=f"camera-{c.cam.id}", daemon=True)
            th.start()
            self.threads.append(th)

    def join(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for th in self.threads:
            th.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(th.is_alive() for th in self.threads)

    def shutdown(self, timeout: float = 30.0) -> None:
        self.stop.set()
        self.join(timeout)

    def health(self) -> list[SourceHealth]:
        return [c.health for c in self.cameras]
