"""Re-scoring stored segments: ``vigil rescore --camera ID --from T --to T [--model VERSION]``.

The camera's stored segments in the range are scored again, oldest first, through the scoring
worker's own path (:meth:`ScoringWorker.rescore_segment`: masks, the served Detect → Encode →
Score, the event tracker, the sink) and their rows are overwritten with the new scores and the
model version that made them. Deterministic: the re-scoring starts from a fresh model state and
the camera's learnt thresholds (its stored tracker, emptied of any open event), so the same
range and model give the same rows and events every time. Events are named by the segment they
open at, so one found again keeps its id (and its review) and takes the new view of it; one
still open where the range ends is closed there; an event of the range that re-scoring no
longer finds is ended as ``superseded`` (its row stays; never silently deleted). Every change
goes through the outbox, so notifications follow. The live camera state is not touched.
Zones are not re-scored (their rows keep the live scores).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, select
from tqdm import tqdm

from vigil.clock import as_utc
from vigil.contracts import SegmentRef
from vigil.events import EventTracker
from vigil.models import CameraState, Event, SegmentScore

from .worker import Poison, ScoringWorker, _CameraRuntime

log = logging.getLogger(__name__)


class RescoreError(ValueError):
    """Nothing to re-score as asked; the message says what was looked for."""


@dataclass
class RescoreReport:
    camera_id: str
    t_from: datetime
    t_to: datetime
    segments: int = 0
    missing: list[str] = field(default_factory=list)  # segment objects gone (retention): rows kept
    model_versions: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # what the re-scoring found
    kept: list[str] = field(default_factory=list)  # ... of which existed before (same id)
    superseded: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"camera_id": self.camera_id, "from": self.t_from.isoformat(), "to": self.t_to.isoformat(),
                "segments": self.segments, "missing": self.missing, "model_versions": self.model_versions,
                "events": self.events, "kept": self.kept, "superseded": self.superseded}


def stored_segments(engine, camera_id: str, t_from: datetime, t_to: datetime) -> list[SegmentScore]:  # noqa: ANN001
    with Session(engine) as s:
        return list(s.exec(select(SegmentScore).where(
            SegmentScore.camera_id == camera_id, SegmentScore.zone.is_(None),
            SegmentScore.t_start >= t_from, SegmentScore.t_start < t_to,
        ).order_by(SegmentScore.t_start, SegmentScore.segment_id)))


def events_in(engine, camera_id: str, t_from: datetime, t_to: datetime) -> set[str]:  # noqa: ANN001
    """The camera's whole-view events that start in the range (and are not superseded already)."""
    with Session(engine) as s:
        return set(s.exec(select(Event.id).where(
            Event.camera_id == camera_id, Event.zone.is_(None), Event.status != "superseded",
            Event.t_start >= t_from, Event.t_start < t_to)))


def starting_runtime(engine, worker: ScoringWorker, camera_id: str) -> _CameraRuntime:  # noqa: ANN001
    params = worker.control.params_for(camera_id)
    with Session(engine) as s:
        row = s.get(CameraState, camera_id)
        stored = dict(row.tracker) if row is not None and row.tracker else None
    if stored is None:
        tracker = EventTracker.for_camera(camera_id, params)
    else:  # the learnt thresholds, nothing of the live stream's moment
        tracker = EventTracker.from_dict(stored)
        tracker.retune(params)
        tracker.open, tracker.pending, tracker.quiet, tracker.smoothed = None, [], 0, None
        tracker.last_seq = tracker.last_t_end = None
    return _CameraRuntime(tracker, {})


def rescore(worker: ScoringWorker, camera_id: str, t_from: datetime, t_to: datetime, *,
            progress: bool = True) -> RescoreReport:
    engine = worker.sink.engine
    t_from, t_to = as_utc(t_from), as_utc(t_to)
    if t_to <= t_from:
        raise RescoreError(f"--to ({t_to.isoformat()}) must be after --from ({t_from.isoformat()})")
    rows = stored_segments(engine, camera_id, t_from, t_to)
    if not rows:
        raise RescoreError(f"camera {camera_id!r} has no stored segments starting between {t_from.isoformat()} "
                           f"and {t_to.isoformat()}")
    report = RescoreReport(camera_id, t_from, t_to)
    before = events_in(engine, camera_id, t_from, t_to)
    rt = starting_runtime(engine, worker, camera_id)
    fps = worker.control.params_for(camera_id).fps
    found: list[str] = []
    for row in tqdm(rows, desc=f"rescore {camera_id}", unit="segment", disable=not progress):
        ref = SegmentRef(segment_id=row.segment_id, camera_id=camera_id, seq=row.seq, t_start=as_utc(row.t_start),
                         t_end=as_utc(row.t_end), fps=fps, n_frames=max(1, len(row.frame_scores)), width=1, height=1,
                         object_key=row.object_key)
        try:
            transitions = worker.rescore_segment(ref, rt)
        except Poison as exc:  # its object is gone: the row stays as it was
            log.warning("segment %s not re-scored: %s", row.segment_id, exc)
            report.missing.append(row.segment_id)
            continue
        rt = worker.cameras[camera_id]
        report.segments += 1
        for tr in transitions:
            if tr.event.id not in found:
                found.append(tr.event.id)
    with Session(engine) as s:
        versions = {r.model_version for r in s.exec(select(SegmentScore).where(
            SegmentScore.segment_id.in_([r.segment_id for r in rows if r.segment_id not in report.missing])))}
    if rt.tracker.open is not None:  # the range ends here; what follows is the live worker's
        worker.sink.end_events([rt.tracker.open["id"]])
    report.model_versions = sorted(versions)
    report.events = found
    report.kept = [e for e in found if e in before]
    report.superseded = sorted(before - set(found))
    worker.sink.end_events(report.superseded, superseded=True)
    return report
