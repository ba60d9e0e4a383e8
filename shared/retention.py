"""Retention: delete old events (by severity) and old segments, objects and rows together.

Safe to interrupt at any point:

- Events are deleted in three steps: mark the row (``purge_started_at``, committed; from then
  on the API no longer shows it), delete its objects (a missing object is fine), then delete
  the row and its feedback in one transaction. A run that dies after the mark leaves a
  marked row, which the next run finishes first. No visible row ever lacks its objects, and
  no object is ever left without a row that names it.
- Segments: the object first, then its ``segment_scores`` row; an interrupted run leaves at
  most a row whose object is gone, and the next run deletes it. Segments that a remaining
  event lists in ``segment_ids`` are kept, so evidence can still be rebuilt.

Only closed events expire; an open event is never touched.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from vigil.config import RetentionSettings
from vigil.clock import as_utc, utcnow
from vigil.models import Event, Feedback, SegmentScore

log = logging.getLogger(__name__)


@dataclass
class CleanupReport:
    events_deleted: int = 0
    event_objects_deleted: int = 0
    segments_deleted: int = 0
    resumed: int = 0  # events whose deletion an earlier, interrupted run had started


def _delete_object(store, key: str | None) -> int:  # noqa: ANN001
    if not key:
        return 0
    store.delete(key)  # S3 DELETE of a missing key succeeds; a fake store may ignore it too
    return 1


def _finish_marked(store, engine: Engine, report: CleanupReport, limit: int) -> int:  # noqa: ANN001
    """Delete objects, then rows, of events already marked for purge. Returns how many."""
    with Session(engine) as s:
        rows = list(s.exec(select(Event).where(Event.purge_started_at.is_not(None)).order_by(Event.id).limit(limit)))
        s.expunge_all()
    for ev in rows:
        report.event_objects_deleted += _delete_object(store, ev.clip_key) + _delete_object(store, ev.thumbnail_key)
        with Session(engine) as s:
            s.exec(delete(Feedback).where(Feedback.event_id == ev.id))
            s.exec(delete(Event).where(Event.id == ev.id, Event.purge_started_at.is_not(None)))
            s.commit()
        report.events_deleted += 1
    return len(rows)


def _mark_expired(engine: Engine, cfg: RetentionSettings, now: datetime, limit: int) -> int:
    """Mark up to ``limit`` expired closed events for purge (one committed UPDATE)."""
    severities = set(cfg.days)
    conds = [and_(Event.severity == sev, Event.t_end < now - timedelta(days=d)) for sev, d in cfg.days.items()]
    conds.append(and_(Event.severity.not_in(severities), Event.t_end < now - timedelta(days=cfg.default_days)))
    with Session(engine) as s:
        ids = list(s.exec(
            select(Event.id)
            .where(Event.status == "closed", Event.purge_started_at.is_(None), or_(*conds))
            .order_by(Event.t_end)
            .limit(limit)
        ))
        if not ids:
            return 0
        s.exec(update(Event).where(Event.id.in_(ids), Event.purge_started_at.is_(None)).values(purge_started_at=now))
        s.commit()
    return len(ids)


def _purge_segments(store, engine: Engine, cfg: RetentionSettings, now: datetime, report: CleanupReport,  # noqa: ANN001
                    max_batches: int | None) -> None:
    cutoff = now - timedelta(days=cfg.segment_days)
    after: str | None = None
    batches = 0
    while max_batches is None or batches < max_batches:
        batches += 1
        with Session(engine) as s:
            q = select(SegmentScore).where(SegmentScore.t_end < cutoff)
            if after is not None:
                q = q.where(SegmentScore.segment_id > after)
            segs = list(s.exec(q.order_by(SegmentScore.segment_id).limit(cfg.batch_size)))
            if not segs:
                return
            after = segs[-1].segment_id
            # segments a remaining event names are kept (its evidence can be rebuilt from them)
            cams = {g.camera_id for g in segs}
            lo = min(as_utc(g.t_start) for g in segs)
            keep: set[str] = set()
            for ids in s.exec(select(Event.segment_ids).where(Event.camera_id.in_(cams), Event.t_end >= lo,
                                                             Event.purge_started_at.is_(None))):
                keep.update(ids or [])
            s.expunge_all()
        for g in segs:
            if g.segment_id in keep:
                continue
            _delete_object(store, g.object_key)
            with Session(engine) as s:
                s.exec(delete(SegmentScore).where(SegmentScore.segment_id == g.segment_id))
                s.commit()
            report.segments_deleted += 1


def cleanup(
    store, engine: Engine, cfg: RetentionSettings | None = None, *, now: datetime | None = None,  # noqa: ANN001
    max_batches: int | None = None,
) -> CleanupReport:
    """One retention pass. ``max_batches`` bounds the work of one call (None = until done)."""
    cfg = cfg or RetentionSettings()
    now = as_utc(now or utcnow())
    report = CleanupReport()
    report.resumed = _finish_marked(store, engine, report, limit=10**9)  # an earlier run's leftovers first
    batches = 0
    while max_batches is None or batches < max_batches:
        batches += 1
        if _mark_expired(engine, cfg, now, cfg.batch_size) == 0:
            break
        _finish_marked(store, engine, report, limit=cfg.batch_size)
    _purge_segments(store, engine, cfg, now, report, max_batches)
    log.info("retention: %d events (%d objects), %d segments deleted; %d resumed",
             report.events_deleted, report.event_objects_deleted, report.segments_deleted, report.resumed)
    return report


class RetentionSchedule:
    """``cleanup`` every ``cfg.every_s`` in a thread, as `vigil up` runs it (on Kubernetes a
    CronJob does). A failed pass is logged and retried at the next tick: retention is
    idempotent, so a pass that died half-way is finished by the next."""

    def __init__(self, store, engine: Engine, cfg: RetentionSettings) -> None:  # noqa: ANN001
        self.store, self.engine, self.cfg = store, engine, cfg
        self.stop = threading.Event()
        self.passes = 0
        self.last: CleanupReport | None = None
        self.thread = threading.Thread(target=self._run, name="retention", daemon=True)

    def start(self) -> RetentionSchedule:
        if self.cfg.every_s > 0:
            self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(self.cfg.every_s):
            try:
                self.last = cleanup(self.store, self.engine, self.cfg)
                self.passes += 1
                log.info("retention pass: %s", self.last)
            except Exception as exc:  # noqa: BLE001  the store or database away: next tick
                log.warning("retention pass failed (%s: %s); retrying in %.0f s", type(exc).__name__, exc,
                            self.cfg.every_s)

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(30)
