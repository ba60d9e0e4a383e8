"""Evidence maintainer: gives every closed event its thumbnail and browser-playable clip.

A sweep, not a hook: it looks for closed events without a clip whose post-roll has been
stored (a later segment of the camera exists, or the post-roll time has passed) and builds
their evidence. Crash-safe by construction — after a restart the next sweep finds what the
last one missed — and off the scoring hot path (it runs on its own thread).

However many replicas run it (score workers on one box, `vigil evidence` pods in a cluster),
only the holder of the SQL lease ``evidence`` sweeps, so each camera's events are built by
one of them; another takes over within the lease's time when the holder dies.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from vigil.clock import utcnow
from vigil.config import Settings
from vigil.evidence import EvidenceError, build_evidence
from vigil.lease import Lease
from vigil.models import Event, SegmentScore

log = logging.getLogger(__name__)


def pending_events(engine: Engine, settings: Settings, *, limit: int = 20, now: datetime | None = None) -> list[str]:
    """Closed events without a clip whose post-roll footage is stored (or overdue)."""
    now = now or utcnow()
    out = []
    with Session(engine) as s:
        rows = s.exec(
            select(Event.id, Event.camera_id, Event.t_end)
            .where(Event.status == "closed", Event.clip_key.is_(None))
            .order_by(Event.t_end)
            .limit(limit)
        ).all()
        for event_id, camera_id, t_end in rows:
            t_end = t_end if t_end.tzinfo else t_end.replace(tzinfo=UTC)
            wanted = t_end + timedelta(seconds=settings.params_for(camera_id).post_roll_s)
            last = s.exec(select(func.max(SegmentScore.t_end)).where(SegmentScore.camera_id == camera_id)).one()
            last = last if last is None or last.tzinfo else last.replace(tzinfo=UTC)
            if (last is not None and last >= wanted) or now >= wanted + timedelta(seconds=60):
                out.append(event_id)
    return out


def sweep(store, engine: Engine, settings: Settings, *, now: datetime | None = None) -> int:  # noqa: ANN001
    """Build evidence for every pending event (as of ``now``); returns how many got a clip."""
    done = 0
    for event_id in pending_events(engine, settings, now=now):
        with Session(engine) as s:
            camera_id = s.get(Event, event_id).camera_id
        p = settings.params_for(camera_id)
        try:
            build_evidence(store, engine, event_id, pre_roll_s=p.pre_roll_s, post_roll_s=p.post_roll_s)
            done += 1
        except EvidenceError as exc:  # e.g. the segments were already purged: mark nothing, log once
            log.warning("no evidence for event %s: %s", event_id, exc)
            with Session(engine) as s:
                row = s.get(Event, event_id)
                row.clip_key = ""  # "" = tried and impossible; None = not yet tried
                s.add(row)
                s.commit()
    return done


class EvidenceMaintainer:
    def __init__(self, store, engine: Engine, settings: Settings, interval_s: float = 5.0) -> None:  # noqa: ANN001
        self.store, self.engine, self.settings, self.interval_s = store, engine, settings, interval_s
        self.lease = Lease(engine, "evidence", ttl_s=max(15.0, 4 * interval_s))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="evidence", daemon=True)
        self.built = 0

    def start(self) -> EvidenceMaintainer:
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(self.interval_s):
            try:
                if self.lease.hold():
                    self.built += sweep(self.store, self.engine, self.settings)
            except Exception:  # noqa: BLE001  a bad sweep must not end the maintainer
                log.exception("evidence sweep failed; retrying in %.0fs", self.interval_s)

    def close(self, timeout: float = 30.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        try:  # one last pass so a short run (demo, tests) leaves every closed event with a clip
            if self.lease.hold():
                self.built += sweep(self.store, self.engine, self.settings)
            self.lease.release()
        except Exception:  # noqa: BLE001
            log.exception("final evidence sweep failed")
