"""The outbox relay: event lifecycle messages from SQL to ``vigil.events.v1``.

The sink writes each event change's message into ``event_outbox`` in the transaction of the
segment that made it. The relay publishes unsent rows in order, keyed by event id, and marks
a row sent only after the broker acknowledged it. A broker outage or a killed relay loses
nothing: unsent rows are published when it is back. A message may be published twice (the
broker took it, the relay died before marking it), so consumers dedupe on (event id,
version); see :class:`Deduper`.

It also carries out the dead-letter replays asked for through the API (the API holds no
producer): a requested row's original payload goes back to its topic, keyed as before, and
``replayed_at`` is set after the acknowledgement.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from vigil import metrics
from vigil.clock import utcnow
from vigil.contracts import EventMessage
from vigil.models import DeadLetterRow, EventOutbox

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, engine: Engine, producer: Any, topic: str, *, batch: int = 200, idle_s: float = 0.2,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 10.0, ack_timeout_s: float = 30.0) -> None:
        self.engine, self.producer, self.topic = engine, producer, topic
        self.batch, self.idle_s, self.ack_timeout_s = batch, idle_s, ack_timeout_s
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.stop = threading.Event()
        self.published = 0
        self._failing = False
        self._thread: threading.Thread | None = None

    def publish_pending(self) -> int:
        """Publish the unsent rows (oldest first, one batch); returns how many the broker
        acknowledged. Each message waits for the previous one's acknowledgement, and the batch
        stops at the first refusal (raised after it is recorded on the row), so a later change
        of an event never reaches the topic before an earlier one: a consumer that keeps the
        newest version per event then drops only true duplicates. Events are few per second, so
        one round trip each costs nothing that matters."""
        with Session(self.engine) as db:
            rows = list(db.exec(select(EventOutbox).where(EventOutbox.sent_at.is_(None))
                                .order_by(EventOutbox.id).limit(self.batch)))
            pending = [(r.id, r.event_id, EventMessage.model_validate(r.payload).encode()) for r in rows]
        sent: list[int] = []
        for rid, eid, value in pending:
            try:
                self.producer.send(self.topic, key=eid.encode(), value=value).get(timeout=self.ack_timeout_s)
            except Exception as exc:
                self._mark(sent, rid, exc)
                raise
            sent.append(rid)
        self._mark(sent, None, None)
        return len(sent)

    def replay_requested(self) -> int:
        """Re-publish the dead letters whose replay was asked for; returns how many."""
        with Session(self.engine) as db:
            rows = list(db.exec(select(DeadLetterRow).where(DeadLetterRow.replay_requested_at.is_not(None),
                                                            DeadLetterRow.replayed_at.is_(None))
                                .order_by(DeadLetterRow.id).limit(self.batch)))
            todo = [(r.id, r.source_topic, r.key, base64.b64decode(r.payload_b64)) for r in rows]
        for rid, topic, key, payload in todo:
            self.producer.send(topic, key=key.encode() if key else None, value=payload).get(timeout=self.ack_timeout_s)
            with Session(self.engine) as db:
                db.exec(update(DeadLetterRow).where(DeadLetterRow.id == rid).values(replayed_at=utcnow()))
                db.commit()
            log.info("dead letter %d replayed to %s", rid, topic)
        return len(todo)

    def _mark(self, sent: list[int], failed: int | None, exc: BaseException | None) -> None:
        now = utcnow()
        with Session(self.engine) as db:
            if sent:
                db.exec(update(EventOutbox).where(EventOutbox.id.in_(sent)).values(sent_at=now))
            if failed is not None:
                db.exec(update(EventOutbox).where(EventOutbox.id == failed).values(
                    attempts=EventOutbox.attempts + 1, last_error=f"{type(exc).__name__}: {exc}"[:500]))
            db.commit()
        self.published += len(sent)
        if sent:
            metrics.OUTBOX_PUBLISHED.inc(len(sent))

    def backlog(self) -> int:
        with Session(self.engine) as db:
            return int(db.exec(select(func.count()).select_from(EventOutbox).where(EventOutbox.sent_at.is_(None))).one())

    def run(self) -> None:
        delay = self.backoff_initial_s
        while not self.stop.is_set():
            try:
                n = self.publish_pending()
                self.replay_requested()
            except Exception as exc:  # noqa: BLE001  broker or SQL away: back off, keep the rows
                if not self._failing:
                    log.warning("event outbox not published (%s); retrying with backoff up to %.0f s",
                                exc, self.backoff_max_s)
                    self._failing = True
                self.stop.wait(delay)
                delay = min(delay * 2, self.backoff_max_s)
                continue
            if self._failing:
                log.info("event outbox publishing again")
                self._failing = False
            delay = self.backoff_initial_s
            if n < self.batch:
                self.stop.wait(self.idle_s)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> OutboxRelay:
        self._thread = threading.Thread(target=self.run, name="outbox-relay", daemon=True)
        self._thread.start()
        return self

    def close(self, drain_s: float = 10.0) -> None:
        """Publish what is left (for up to ``drain_s``), then stop."""
        self.stop.set()
        if self._thread is not None:
            self._thread.join(10)
        t0 = time.monotonic()
        while time.monotonic() - t0 < drain_s:
            try:
                if self.publish_pending() < self.batch:
                    break
            except Exception as exc:  # noqa: BLE001
                log.warning("event outbox left unpublished at shutdown (%s); the next relay sends it", exc)
                break


class Deduper:
    """What a consumer of ``vigil.events.v1`` keeps: the newest version seen per event; a
    message at or below it is a duplicate (re-published) or stale (overtaken)."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.duplicates = 0

    def accept(self, msg: EventMessage) -> bool:
        if msg.version <= self.seen.get(msg.event_id, 0):
            self.duplicates += 1
            return False
        self.seen[msg.event_id] = msg.version
        return True
