"""Ingest's report of its camera sources to SQL, where the API's camera health reads it.

Every reconcile tick the process upserts one ``source_status`` row per camera it runs and
removes the rows of cameras it stopped; a camera another process took over is simply
overwritten. On a clean shutdown its rows say ``stopped``; after a crash they keep their last
``reported_at``, which the API shows as "ingest not reporting".
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import delete, select

from vigil.clock import utcnow
from vigil.db import session_scope
from vigil.models import SourceStatus

from .runner import SourceHealth


def _at(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def ingest_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class SourceStatusReporter:
    def __init__(self, engine: Engine, *, ingest: str | None = None) -> None:
        self.engine, self.ingest = engine, ingest or ingest_id()

    def report(self, healths: list[tuple[SourceHealth, float]]) -> None:
        """``healths``: each running camera's health with its nominal fps."""
        now = utcnow()
        with session_scope(self.engine) as db:
            running = {h.camera_id for h, _ in healths}
            gone = select(SourceStatus.camera_id).where(SourceStatus.ingest_id == self.ingest)
            stale = [cid for cid in db.exec(gone) if cid not in running]
            if stale:
                db.exec(delete(SourceStatus).where(SourceStatus.camera_id.in_(stale)))
            for h, fps in healths:
                row = db.get(SourceStatus, h.camera_id) or SourceStatus(camera_id=h.camera_id, ingest_id=self.ingest,
                                                                         state=h.state)
                row.ingest_id, row.state, row.connected = self.ingest, h.state, h.connected(nominal_fps=fps)
                measured = h.fps
                row.fps = None if measured is None else round(measured, 2)
                row.frames, row.segments, row.dropped, row.reconnects = h.frames, h.segments, h.dropped, h.reconnects
                row.last_frame_at, row.last_segment_at = _at(h.last_frame_at), _at(h.last_segment_at)
                row.last_error, row.started_at, row.reported_at = h.error, _at(h.started_at), now
                db.add(row)

    def close(self) -> None:
        """This process stops: its cameras are no longer connected."""
        with session_scope(self.engine) as db:
            for row in db.exec(select(SourceStatus).where(SourceStatus.ingest_id == self.ingest)):
                row.state, row.connected, row.reported_at = "stopped", False, utcnow()
                db.add(row)
