"""The notifier: event messages in, deliveries recorded in SQL, each sent until it lands.

Two loops. **Intake** polls ``vigil.events.v1`` (its own consumer group), routes each message
by the rules and writes one ``deliveries`` row per channel, unique on (event id, version,
channel), then commits the offsets: a message re-published by the relay or re-read after a
crash finds its rows and adds nothing (the dedupe), and none is lost between the topic and
SQL. **Dispatch** sends pending rows, oldest first, only the lowest pending version of each
(event, channel) so a channel sees an event's changes in order; a failure is retried with
exponential backoff (``notify.backoff_initial_s`` doubling up to ``backoff_max_s``), and after
``notify.attempts`` the row becomes a dead letter (listed by the API, which can retry it).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from services.notify.channels import DeliveryError, Sender, idempotency_key, notification_body
from services.notify.rules import route
from vigil import metrics
from vigil.clock import as_utc, utcnow
from vigil.config import NotifySettings
from vigil.contracts import ContractError, EventMessage, decode
from vigil.models import Delivery, Event

log = logging.getLogger(__name__)

PENDING, DELIVERED, SUPPRESSED, DEAD = "pending", "delivered", "suppressed", "dead_letter"


class Notifier:
    def __init__(self, settings: NotifySettings, engine: Engine, senders: dict[str, Sender], *,
                 consumer: Any = None, store: Any = None, clock: Callable[[], datetime] = utcnow,
                 batch: int = 200, idle_s: float = 0.2) -> None:
        self.settings, self.engine, self.senders = settings, engine, senders
        self.consumer, self.store, self.clock = consumer, store, clock
        self.batch, self.idle_s = batch, idle_s
        self.stop = threading.Event()
        self.malformed = 0
        self._down: set[str] = set()  # channels whose last delivery failed: one log line per change
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------ intake
    def intake(self, messages: list[EventMessage]) -> int:
        """Record the deliveries of these messages; returns how many rows were new."""
        now, added = self.clock(), 0
        with Session(self.engine) as db:
            for msg in messages:
                for r in route(self.settings.rules, msg, now):
                    row = Delivery(event_id=msg.event_id, version=msg.version, kind=msg.kind, camera_id=msg.camera_id,
                                   channel=r.channel, rule=r.rule, status=SUPPRESSED if r.suppressed else PENDING,
                                   message=msg.model_dump(mode="json"), created_at=now)
                    db.add(row)
                    try:
                        db.commit()  # one row a transaction: a duplicate refuses only itself
                    except IntegrityError:  # this version already reached this channel's list
                        db.rollback()
                        metrics.NOTIFY_DUPLICATES.inc()
                        continue
                    added += 1
        return added

    def consume_once(self, timeout_ms: int = 500) -> int:
        polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.batch)
        msgs = []
        for recs in polled.values():
            for rec in recs:
                try:
                    msgs.append(decode(EventMessage, rec.value))
                except ContractError as exc:
                    self.malformed += 1
                    log.warning("skipped a malformed event message at %s[%s]@%s: %s", rec.topic, rec.partition,
                                rec.offset, exc)
        n = self.intake(msgs) if msgs else 0
        if polled:
            self.consumer.commit()  # after the rows are in SQL
        return n

    # ------------------------------------------------------------ dispatch
    def _due(self) -> list[Delivery]:
        with Session(self.engine) as db:
            # oldest first: an event's versions were recorded in order, so the first pending row of an
            # (event, channel) is its lowest version, and no event waits behind newer ones
            rows = list(db.exec(select(Delivery).where(Delivery.status == PENDING)
                                .order_by(Delivery.id).limit(self.batch * 5)))
        now, first, due = self.clock(), set(), []
        for r in rows:
            k = (r.event_id, r.channel)
            if k in first:
                continue  # a lower version of this event waits on this channel
            first.add(k)
            if r.next_attempt_at is None or as_utc(r.next_attempt_at) <= now:
                due.append(r)
        return due[: self.batch]

    def _evidence_url(self, event_id: str) -> str | None:
        if self.store is None:
            return None
        with Session(self.engine) as db:
            ev = db.get(Event, event_id)
            key = ev.clip_key if ev is not None else None
        if not key:
            return None
        try:
            return self.store.presigned_get(key, expires_s=self.settings.evidence_link_ttl_s)
        except Exception as exc:  # noqa: BLE001  a notification without its link beats none
            log.warning("no evidence link for %s: %s", event_id, exc)
            return None

    def _backoff(self, attempts: int) -> timedelta:
        s = self.settings
        return timedelta(seconds=min(s.backoff_max_s, s.backoff_initial_s * 2 ** max(0, attempts - 1)))

    def deliver(self, row: Delivery) -> bool:
        sender = self.senders.get(row.channel)
        msg = EventMessage.model_validate(row.message)
        key = idempotency_key(row.event_id, row.version, row.channel)
        attempts = row.attempts + 1
        try:
            if sender is None:
                raise DeliveryError(f"channel {row.channel!r} is no longer configured")
            sender.send(notification_body(msg, key=key, evidence_url=self._evidence_url(row.event_id)),
                        key=key, camera_id=row.camera_id)
        except Exception as exc:  # noqa: BLE001  every failure counts against the budget
            err = f"{type(exc).__name__}: {exc}"[:500]
            dead = attempts >= self.settings.attempts
            values: dict[str, Any] = {"attempts": attempts, "last_error": err,
                                      "next_attempt_at": self.clock() + self._backoff(attempts)}
            if dead:
                values["status"] = DEAD
                log.warning("notification %s dead-lettered after %d attempts: %s", key, attempts, err)
            elif row.channel not in self._down:
                log.warning("channel %s: delivery failed (%s); retrying with backoff", row.channel, err)
            self._down.add(row.channel)
            self._update(row.id, values)
            metrics.NOTIFY_DELIVERIES.labels(row.channel, DEAD if dead else "failed").inc()
            return False
        now = self.clock()
        latency = (now - as_utc(msg.t_end)).total_seconds()
        self._update(row.id, {"status": DELIVERED, "attempts": attempts, "delivered_at": now, "latency_s": latency,
                              "next_attempt_at": None})
        if row.channel in self._down:
            log.info("channel %s: delivering again", row.channel)
            self._down.discard(row.channel)
        metrics.NOTIFY_DELIVERIES.labels(row.channel, DELIVERED).inc()
        metrics.NOTIFY_LATENCY.labels(row.channel).observe(max(0.0, latency))
        return True

    def _update(self, rid: int | None, values: dict[str, Any]) -> None:
        with Session(self.engine) as db:
            db.exec(update(Delivery).where(Delivery.id == rid).values(**values))
            db.commit()

    def dispatch_once(self) -> int:
        """Try every due delivery once; returns how many landed. A channel that failed in this
        round is not tried again in it (its other rows wait for their own backoff)."""
        failed: set[str] = set()
        ok = 0
        for row in self._due():
            if row.channel in failed:
                continue
            if self.deliver(row):
                ok += 1
            else:
                failed.add(row.channel)
        return ok

    # ------------------------------------------------------------ loops
    def _loop(self, step: Callable[[], int], name: str, sleep_when_idle: bool) -> None:
        while not self.stop.is_set():
            try:
                n = step()
            except Exception as exc:  # noqa: BLE001  broker or SQL away: keep going
                log.warning("notify %s: %s; retrying", name, exc)
                self.stop.wait(1.0)
                continue
            if sleep_when_idle and n == 0:
                self.stop.wait(self.idle_s)

    def start(self) -> Notifier:
        if self.consumer is not None:
            self._threads.append(threading.Thread(target=self._loop, args=(self.consume_once, "intake", False),
                                                  name="notify-intake", daemon=True))
        self._threads.append(threading.Thread(target=self._loop, args=(self.dispatch_once, "dispatch", True),
                                              name="notify-dispatch", daemon=True))
        for t in self._threads:
            t.start()
        return self

    def close(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(15)
        for s in self.senders.values():
            s.close()
        if self.consumer is not None:
            self.consumer.close()
