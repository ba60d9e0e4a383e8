"""Recording a camera's normal period: its own live footage, kept to learn its normality from.

While a camera's period is ``recording``, every segment it scores outside an event is
copied (server side) to ``normal/<camera>/<segment id>`` — out of retention's reach, which
only deletes what segment and event rows name — and listed on the camera's
:class:`~vigil.models.NormalPeriod` row with its duration and hour of day. Once
``CameraParams.normal_period_s`` seconds are recorded the period is ``complete``: the
trainer (``vigil train-normal --camera``, or its watcher) learns the camera's normality
from exactly these clips.

The object is written before the row names it, so a row never points at a missing clip; a
crash between the two leaves an unlisted object and one clip fewer, nothing wrong.
"""

from __future__ import annotations

import logging
from datetime import UTC

from sqlalchemy.engine import Engine

from vigil.config import CameraParams
from vigil.contracts import SegmentRef
from vigil.db import session_scope
from vigil.models import NormalPeriod, utcnow
from vigil.objectstore import ObjectStore

log = logging.getLogger(__name__)

NORMAL_PREFIX = "normal/"
RECORDING, COMPLETE, TRAINING, TRAINED, FAILED = "recording", "complete", "training", "trained", "failed"


def clip_key(camera_id: str, segment_id: str, source_key: str) -> str:
    ext = source_key.rsplit("/", 1)[-1].partition(".")[2]
    return f"{NORMAL_PREFIX}{camera_id}/{segment_id.replace('/', '_')}" + (f".{ext}" if ext else "")


class NormalPeriodRecorder:
    """Called by the scoring worker after each committed segment."""

    def __init__(self, engine: Engine, store: ObjectStore) -> None:
        self.engine, self.store = engine, store
        self._finished: set[str] = set()  # cameras whose period is no longer recording (no SQL per segment)

    def record(self, ref: SegmentRef, params: CameraParams, *, in_event: bool) -> str | None:
        """Record ``ref`` into its camera's period; returns the period's status, ``None`` when nothing to do."""
        cam = ref.camera_id
        if params.normal_period_s <= 0 or cam in self._finished:
            return None
        with session_scope(self.engine) as db:
            row = db.get(NormalPeriod, cam)
            if row is None:
                row = NormalPeriod(camera_id=cam, target_s=params.normal_period_s, fps=ref.fps)
                log.info("camera %s: recording its normal period (%.0f s of footage)", cam, params.normal_period_s)
            if row.status != RECORDING:
                self._finished.add(cam)
                return row.status
            # an anomaly is not normal footage; a re-delivered segment is listed once
            if in_event or any(c["segment_id"] == ref.segment_id for c in row.clips):
                return row.status
            key = clip_key(cam, ref.segment_id, ref.object_key)
            self.store.copy(ref.object_key, key)
            seconds = max((ref.t_end - ref.t_start).total_seconds(), ref.n_frames / ref.fps)
            hours = list(row.hours)
            hours[ref.t_start.astimezone(UTC).hour] += seconds
            row.clips = [*row.clips, {"segment_id": ref.segment_id, "key": key, "seq": ref.seq,
                                      "t_start": ref.t_start.isoformat(), "seconds": seconds}]
            row.hours, row.recorded_s, row.fps = hours, row.recorded_s + seconds, ref.fps
            row.target_s = params.normal_period_s  # a changed setting applies to the period still recording
            row.updated_at = utcnow()
            if row.recorded_s >= row.target_s:
                row.status, row.ended_at = COMPLETE, utcnow()
                self._finished.add(cam)
                log.info("camera %s: normal period complete (%d clips, %.0f s)", cam, len(row.clips), row.recorded_s)
            db.add(row)
            return row.status
