"""Scoring-path metrics beyond the shared ones in :mod:`vigil.metrics` (same registry)."""

from __future__ import annotations

from prometheus_client import Gauge, Histogram

INFLIGHT = Gauge("vigil_scoring_inflight_segments", "Polled segments not yet committed (bounded by max_inflight)")
PAUSED = Gauge("vigil_scoring_paused", "1 while the consumer pauses its partitions (backpressure)")
BATCH_SIZE = Histogram(
    "vigil_scoring_encode_batch_size", "Segments per Encode batch formed by Serve",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
)
