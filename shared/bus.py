"""Kafka plumbing (kafka-python): topics, producer, consumer, with settings applied once."""

from __future__ import annotations

import logging
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from vigil.config import KafkaSettings

log = logging.getLogger(__name__)


class BusError(RuntimeError):
    pass


def _bootstrap(cfg: KafkaSettings) -> list[str]:
    if not cfg.bootstrap_servers:
        raise BusError("kafka.bootstrap_servers is not set (start `vigil up` or configure Kafka)")
    return [s.strip() for s in cfg.bootstrap_servers.split(",") if s.strip()]


def topic_specs(cfg: KafkaSettings) -> list[NewTopic]:
    """The topics Vigil creates, as configured (the chart's KafkaTopic resources say the same)."""
    rf = cfg.replication_factor
    return [
        NewTopic(cfg.segments_topic, num_partitions=cfg.partitions, replication_factor=rf),
        NewTopic(cfg.events_topic, num_partitions=cfg.events_partitions or cfg.partitions, replication_factor=rf),
        NewTopic(cfg.dlq_topic, num_partitions=cfg.dlq_partitions, replication_factor=rf),
    ]


def ensure_topics(cfg: KafkaSettings, timeout_s: float = 30.0) -> None:
    """Create the segments (partitioned), events and dead-letter topics if missing, with the
    configured partitions and replication factor (existing topics are left as they are)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=_bootstrap(cfg), client_id="vigil-admin",
                                     request_timeout_ms=10000)
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise BusError(f"no Kafka broker answers at {cfg.bootstrap_servers}") from None
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topic_specs(cfg) if t.name not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def make_producer(cfg: KafkaSettings, client_id: str = "vigil") -> KafkaProducer:
    try:
        return KafkaProducer(
            bootstrap_servers=_bootstrap(cfg),
            client_id=client_id,
            acks="all",
            linger_ms=5,
            retries=10,
            max_in_flight_requests_per_connection=1,  # keeps a camera's segments in order on retry
        )
    except KafkaError:
        raise BusError(f"no Kafka broker answers at {cfg.bootstrap_servers}") from None


def make_consumer(cfg: KafkaSettings, *topics: str, group: str | None = None, **extra) -> KafkaConsumer:
    try:
        return KafkaConsumer(
            *topics,
            bootstrap_servers=_bootstrap(cfg),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=cfg.heartbeat_interval_ms,
            max_poll_interval_ms=cfg.max_poll_interval_ms,
            **extra,
        )
    except KafkaError:
        raise BusError(f"no Kafka broker answers at {cfg.bootstrap_servers}") from None


__all__ = ["BusError", "KafkaError", "ensure_topics", "make_consumer", "make_producer"]
