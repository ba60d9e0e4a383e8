"""Message contracts: one versioned pydantic model per Kafka topic.

Services depend on these records, never on each other. Pixels never ride Kafka: a
``SegmentRef`` is a claim check pointing at the segment object in the object store.

Wire format: UTF-8 JSON with a ``schema_version`` field. :func:`decode` refuses an unknown
version or an undecodable payload with :class:`ContractError`; the scoring worker sends
such a message to the dead-letter topic with the reason and the original bytes.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vigil.clock import utcnow

SEGMENTS_TOPIC = "vigil.segments.v1"
EVENTS_TOPIC = "vigil.events.v1"
DLQ_TOPIC = "vigil.segments.dlq"


class ContractError(ValueError):
    """A message that cannot be decoded into its contract."""


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    SCHEMA_VERSION: ClassVar[int] = 1

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


class SegmentRef(_Contract):
    """One camera segment of ``n_frames`` sampled frames stored at ``object_key``."""

    schema_version: Literal[1] = 1
    segment_id: str = Field(min_length=1, max_length=200)
    camera_id: str = Field(min_length=1, max_length=64)
    seq: int = Field(ge=0, description="segment number within the camera's stream")
    t_start: datetime
    t_end: datetime
    fps: float = Field(gt=0)
    n_frames: int = Field(ge=1)
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    object_key: str = Field(min_length=1)
    ingested_at: datetime = Field(default_factory=utcnow)


class DescriptionScore(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str
    prob: float
    abnormal: bool
    stream: str | None = Field(None, description="the stream it explains: semantic (a prompt), or an object "
                               "stream (place_speed, motion, attr, mem, pred, size)")


class ScoreRecord(_Contract):
    """The scorer's verdict on one segment (what the sink upserts by ``segment_id``)."""

    schema_version: Literal[1] = 1
    segment_id: str
    camera_id: str
    seq: int
    t_start: datetime
    t_end: datetime
    score: float = Field(description="fused anomaly score in [0, 1]")
    s_sem: float | None = None
    s_pred: float | None = None
    gate: float | None = None
    frame_scores: list[float] = Field(default_factory=list)
    top_descriptions: list[DescriptionScore] = Field(default_factory=list)
    model_version: str


class EventMessage(_Contract):
    """Lifecycle of an anomaly event on ``vigil.events.v1``."""

    schema_version: Literal[1] = 1
    event_id: str
    kind: Literal["new", "update", "end"]
    camera_id: str
    zone: str | None = None  # the zone of the camera it happened in; None: the whole view
    version: int = Field(0, ge=0, description="the event's changes so far (1 = new): dedupe on (event_id, version)")
    t_start: datetime
    t_end: datetime
    peak_score: float
    top_descriptions: list[DescriptionScore] = Field(default_factory=list)
    segment_ids: list[str] = Field(default_factory=list)
    model_version: str
    severity: str | None = None  # low / medium / high / critical, as the event row's
    superseded: bool = Field(False, description="an end because re-scoring no longer finds the event "
                             "(vigil rescore); its row stays, status superseded")


class DeadLetter(_Contract):
    """A message the scoring path could not process, kept with its reason."""

    schema_version: Literal[1] = 1
    reason: str
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    attempts: int | None = Field(None, description="how often it was tried before it was given up")
    payload_b64: str = Field(description="the original message bytes, base64")
    at: datetime = Field(default_factory=utcnow)

    @classmethod
    def wrap(cls, payload: bytes, reason: str, **where: object) -> DeadLetter:
        return cls(reason=reason, payload_b64=base64.b64encode(payload).decode(), **where)

    @property
    def payload(self) -> bytes:
        return base64.b64decode(self.payload_b64)


C = TypeVar("C", bound=_Contract)


def decode(contract: type[C], raw: bytes | None) -> C:
    """Bytes → contract, or :class:`ContractError` saying why (never another exception)."""
    if raw is None:
        raise ContractError("empty message (tombstone)")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ContractError(f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != contract.SCHEMA_VERSION:
        raise ContractError(
            f"unknown {contract.__name__} schema_version {version!r} (this build reads {contract.SCHEMA_VERSION})"
        )
    try:
        return contract.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ContractError(f"invalid {contract.__name__}: {where}: {first['msg']}") from None
