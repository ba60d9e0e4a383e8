"""A lease in SQL: one holder at a time for a job that every replica could run.

``Lease(engine, "evidence", holder).hold()`` is True while this process holds it: it takes a
free or expired lease, and renews its own, in one conditional UPDATE (or the INSERT that
creates it), so two replicas never both win — in SQLite and PostgreSQL alike. A holder that
dies stops renewing, and another takes over once ``ttl_s`` has passed.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from vigil.clock import utcnow
from vigil.models import LeaseRow

log = logging.getLogger(__name__)


def default_holder() -> str:
    """host:pid:random, unique per process (a pod's host name is its name)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    def __init__(self, engine: Engine, name: str, holder: str | None = None, ttl_s: float = 30.0) -> None:
        self.engine, self.name, self.ttl_s = engine, name, ttl_s
        self.holder = holder or default_holder()
        self.held = False

    def hold(self) -> bool:
        """Take or renew the lease; True while this holder has it."""
        now = utcnow()
        until = now + timedelta(seconds=self.ttl_s)
        with Session(self.engine) as s:
            won = s.execute(
                update(LeaseRow).where(LeaseRow.name == self.name,
                                       or_(LeaseRow.holder == self.holder, LeaseRow.expires_at < now))
                .values(holder=self.holder, expires_at=until)
            ).rowcount == 1
            if not won and s.get(LeaseRow, self.name) is None:
                s.add(LeaseRow(name=self.name, holder=self.holder, expires_at=until))
                try:
                    s.flush()
                    won = True
                except IntegrityError:  # another replica created it first
                    s.rollback()
            s.commit()
        if won != self.held:
            log.info("lease %s: %s by %s", self.name, "taken" if won else "lost", self.holder)
        self.held = won
        return won

    def release(self) -> None:
        """Give it up now (a clean stop), so another replica need not wait for it to expire."""
        if not self.held:
            return
        with Session(self.engine) as s:
            s.execute(update(LeaseRow).where(LeaseRow.name == self.name, LeaseRow.holder == self.holder)
                      .values(expires_at=utcnow() - timedelta(seconds=1)))
            s.commit()
        self.held = False
