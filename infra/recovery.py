"""What the platform redoes when an embedded part comes back.

The embedded broker keeps topics in memory: after a restart its topics, their records and the
scoring group's offsets are gone. Segments are stored before they are announced (claim check),
so nothing is lost: :func:`reannounce_unscored` re-creates the topics and announces again every
stored segment that has no score row; the scoring group, with no committed offset, starts from
the new topics' beginning, and the idempotent sink keeps each segment's row once (a segment
announced twice, by this and by ingest's own retry, is skipped the second time).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from vigil.bus import ensure_topics
from vigil.config import Settings
from vigil.contracts import SegmentRef
from vigil.models import SegmentScore
from vigil.objectstore import ObjectStore
from vigil.segments import SegmentDecodeError, decode_segment

log = logging.getLogger(__name__)


def unscored_segments(engine: Engine, store: ObjectStore) -> list[str]:
    """Object keys of stored segments without a (whole-view) score row, oldest key first."""
    with Session(engine) as s:
        scored = set(s.exec(select(SegmentScore.object_key).where(SegmentScore.zone.is_(None))))
    return sorted(k for k in store.list("segments/") if k.endswith(".npz") and k not in scored)


def reannounce_unscored(settings: Settings, engine: Engine, store: ObjectStore, producer: Any) -> dict[str, int]:
    ensure_topics(settings.kafka)
    n = bad = 0
    for key in unscored_segments(engine, store):
        try:
            ref = SegmentRef.model_validate(decode_segment(store.get(key)).meta)
        except (SegmentDecodeError, ValueError) as exc:  # not ours to fix here: the worker would dead-letter it
            log.warning("stored segment %s not re-announced: %s", key, exc)
            bad += 1
            continue
        producer.send(settings.kafka.segments_topic, key=ref.camera_id.encode(), value=ref.encode()).get(timeout=30)
        n += 1
    producer.flush(30)
    log.info("broker back: topics re-created, %d unscored segment(s) re-announced", n)
    return {"reannounced": n, "not_reannounced": bad}


def republish_recent_events(engine: Engine, minutes: float = 30.0) -> dict[str, int]:
    """Mark the outbox's messages of the last ``minutes`` unsent, so the relay publishes them
    again: the broker that took them is gone with its memory, and a consumer (``vigil notify``)
    may not have read them yet. Consumers dedupe on (event id, version)."""
    from datetime import timedelta

    from sqlalchemy import update

    from vigil.clock import utcnow
    from vigil.models import EventOutbox

    with Session(engine) as s:
        n = s.exec(update(EventOutbox).where(EventOutbox.sent_at >= utcnow() - timedelta(minutes=minutes))
                   .values(sent_at=None)).rowcount
        s.commit()
    return {"events_republished": int(n or 0)}


def after_broker_restart(settings: Settings) -> Any:
    """The embedded broker's ``after_restart``: topics, unscored segments, recent event messages."""
    from vigil.bus import make_producer
    from vigil.db import make_engine

    def recover() -> dict[str, int]:
        engine, store = make_engine(settings.database_url), ObjectStore(settings.s3)
        producer = make_producer(settings.kafka, "vigil-recovery")
        try:
            return {**reannounce_unscored(settings, engine, store, producer), **republish_recent_events(engine)}
        finally:
            producer.close(5)
            engine.dispose()

    return recover
