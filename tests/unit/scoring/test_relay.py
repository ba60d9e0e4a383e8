"""The event outbox: written with the rows, published by the relay only once the broker acknowledges."""

from __future__ import annotations

import pytest
from kafka.errors import KafkaError
from sqlmodel import Session, select

from fakes import FakeConsumer, FakeProducer, FakeScorer, FakeStore, put_segment
from services.scoring.relay import Deduper, OutboxRelay
from services.scoring.sink import Sink
from services.scoring.worker import ScoringWorker
from vigil.contracts import EventMessage, decode
from vigil.models import Event, EventOutbox

from test_worker import _run_until


def _score(settings, engine, n=6, level=200):
    """Camera 'a' above the fixed 0.5 threshold for ``n`` segments, then one below: new, updates, end."""
    consumer, store = FakeConsumer(1), FakeStore()
    for i in range(n):
        put_segment(consumer, store, "a", i, level)
    put_segment(consumer, store, "a", n, 10)
    w = ScoringWorker(settings, score_fn=FakeScorer(), sink=Sink(engine), store=store, producer=FakeProducer(),
                      consumer=consumer)
    _run_until(w, consumer.all_committed)
    return w


def _outbox(engine) -> list[EventOutbox]:
    with Session(engine) as s:
        return list(s.exec(select(EventOutbox).order_by(EventOutbox.id)))


def test_the_sink_writes_each_event_change_to_the_outbox_with_a_version(settings, engine):
    w = _score(settings, engine)
    assert not w.producer.on(settings.kafka.events_topic), "the worker no longer publishes events itself"
    rows = _outbox(engine)
    with Session(engine) as s:
        (ev,) = s.exec(select(Event)).all()
    assert [r.kind for r in rows] == ["new"] + ["update"] * 5 + ["end"]
    assert [r.version for r in rows] == list(range(1, 8)) and ev.version == 7
    assert all(r.event_id == ev.id and r.sent_at is None for r in rows)
    assert EventMessage.model_validate(rows[-1].payload).kind == "end"


def test_the_relay_publishes_in_order_keyed_by_event_and_marks_rows_sent(settings, engine):
    _score(settings, engine)
    producer = FakeProducer()
    relay = OutboxRelay(engine, producer, settings.kafka.events_topic, batch=3)
    assert relay.backlog() == 7
    assert [relay.publish_pending() for _ in range(4)] == [3, 3, 1, 0]
    msgs = [decode(EventMessage, v) for v in producer.on(settings.kafka.events_topic)]
    assert [m.version for m in msgs] == list(range(1, 8))
    assert {k for _, k, _ in producer.sent} == {msgs[0].event_id.encode()}
    assert relay.backlog() == 0 and all(r.sent_at is not None for r in _outbox(engine))


def test_a_broker_that_refuses_or_loses_acks_keeps_the_rows_until_it_takes_them(settings, engine):
    _score(settings, engine)
    producer = FakeProducer()
    relay = OutboxRelay(engine, producer, settings.kafka.events_topic)
    producer.fail_next = 1
    with pytest.raises(KafkaError):
        relay.publish_pending()
    assert relay.backlog() == 7 and _outbox(engine)[0].attempts == 1 and "no broker" in _outbox(engine)[0].last_error
    producer.unacked_next = 2  # v1 reaches the topic twice but neither acknowledgement comes back
    for _ in range(2):
        with pytest.raises(KafkaError):
            relay.publish_pending()
    assert relay.backlog() == 7 and _outbox(engine)[0].attempts == 3
    assert relay.publish_pending() == 7 and relay.backlog() == 0
    msgs = [decode(EventMessage, v) for v in producer.on(settings.kafka.events_topic)]
    assert [m.version for m in msgs] == [1, 1, *range(1, 8)]  # never a later version before an earlier one
    dedupe = Deduper()
    assert [m.version for m in msgs if dedupe.accept(m)] == list(range(1, 8)) and dedupe.duplicates == 2


def test_a_relay_killed_before_marking_republishes_and_the_consumer_dedupes(settings, engine, monkeypatch):
    _score(settings, engine)
    producer = FakeProducer()
    relay = OutboxRelay(engine, producer, settings.kafka.events_topic)

    def killed(*_a, **_k):
        raise SystemExit("relay killed after the broker took the batch")

    monkeypatch.setattr(relay, "_mark", killed)
    with pytest.raises(SystemExit):
        relay.publish_pending()
    assert len(producer.sent) == 7 and OutboxRelay(engine, producer, "x").backlog() == 7
    fresh = OutboxRelay(engine, producer, settings.kafka.events_topic)  # the restarted relay
    assert fresh.publish_pending() == 7
    dedupe = Deduper()
    delivered = [m for m in (decode(EventMessage, v) for v in producer.on(settings.kafka.events_topic))
                 if dedupe.accept(m)]
    assert [m.version for m in delivered] == list(range(1, 8)) and dedupe.duplicates == 7


def test_a_redelivered_segment_writes_no_second_message(settings, engine):
    consumer, store = FakeConsumer(1), FakeStore()
    for i in range(3):
        put_segment(consumer, store, "a", i, 200)
    put_segment(consumer, store, "a", 1, 200)  # delivered again
    w = ScoringWorker(settings, score_fn=FakeScorer(), sink=Sink(engine), store=store, producer=FakeProducer(),
                      consumer=consumer)
    _run_until(w, consumer.all_committed)
    assert [r.version for r in _outbox(engine)] == [1, 2, 3]
