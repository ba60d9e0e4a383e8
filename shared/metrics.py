"""Prometheus metrics, defined once; each service exposes them with :func:`serve_metrics`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# ingest
FRAMES_READ = Counter("vigil_ingest_frames_read_total", "Frames read from camera sources", ["camera"])
SEGMENTS_PUBLISHED = Counter("vigil_ingest_segments_total", "Segments stored and published", ["camera"])
SEGMENTS_DROPPED = Counter(
    "vigil_ingest_segments_dropped_total", "Segments dropped because the upload buffer was full", ["camera"]
)
INGEST_BUFFER = Gauge("vigil_ingest_buffer_segments", "Segments waiting for upload", ["camera"])
CAMERA_UP = Gauge("vigil_camera_up", "1 while the camera delivers frames", ["camera"])
INGEST_ERRORS = Counter("vigil_ingest_errors_total", "Source or upload errors", ["camera", "kind"])

# scoring
SEGMENTS_SCORED = Counter("vigil_scoring_segments_total", "Segments scored and stored")
FRAMES_SCORED = Counter("vigil_scoring_frames_total", "Frames scored")
DUPLICATES = Counter("vigil_scoring_duplicates_total", "Re-delivered segments skipped (already stored)")
DEAD_LETTERS = Counter("vigil_scoring_dead_letters_total", "Messages sent to the dead-letter topic", ["reason"])
SCORING_ERRORS = Counter("vigil_scoring_errors_total", "Errors while scoring", ["stage"])
STAGE_SECONDS = Histogram(
    "vigil_scoring_stage_seconds",
    "Time per stage of the scoring path",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# the fixed path around the model, stage by stage (ingest and scoring consumer): CPU seconds of the
# thread that ran the stage (a network thread's or a server's share is in the process tables)
STAGE_CPU_SECONDS = Counter("vigil_stage_cpu_seconds_total", "CPU seconds per stage of the path around the model",
                            ["stage"])


@contextmanager
def stage(name: str, wall: str | None = None) -> Iterator[None]:
    """Count the calling thread's CPU seconds under ``name`` (and, with ``wall``, observe the wall
    seconds in :data:`STAGE_SECONDS` under that label)."""
    t0, c0 = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        STAGE_CPU_SECONDS.labels(name).inc(max(0.0, time.thread_time() - c0))
        if wall is not None:
            STAGE_SECONDS.labels(wall).observe(time.perf_counter() - t0)


E2E_LATENCY = Histogram(
    "vigil_scoring_latency_seconds",
    "Segment end to committed row",
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
CONSUMER_LAG = Gauge("vigil_scoring_consumer_lag", "Messages behind the head of the segments topic", ["partition"])
EVENTS_EMITTED = Counter("vigil_events_total", "Event lifecycle messages", ["kind"])
OUTBOX_PUBLISHED = Counter("vigil_outbox_published_total", "Event messages the broker acknowledged from the outbox")

# notify
NOTIFY_DELIVERIES = Counter("vigil_notify_deliveries_total", "Notification attempts by outcome",
                            ["channel", "outcome"])
NOTIFY_DUPLICATES = Counter("vigil_notify_duplicates_total", "Event messages already routed (re-published)")
NOTIFY_LATENCY = Histogram("vigil_notify_latency_seconds", "Event's last segment end to delivery", ["channel"],
                           buckets=(0.5, 1, 2, 4, 8, 16, 32, 64, 128, 300))


def serve_metrics(port: int, host: str = "127.0.0.1") -> int:
    """Expose /metrics; port 0 picks a free one. Returns the port."""
    server, _thread = start_http_server(port, addr=host)
    return server.server_port
