"""SQL tables as SQLModel families (Base → Create/Public → table).

Schema changes go through Alembic (``shared/migrations``); never ``create_all`` in services.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator

from sqlalchemy import JSON, Column, DateTime, Index, Text
from sqlmodel import Field, SQLModel, select

from vigil.clock import as_utc, utcnow  # noqa: F401  (utcnow: re-exported for the services)


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


# ---------------------------------------------------------------- cameras


class CameraBase(SQLModel):
    name: str | None = Field(default=None, max_length=200)
    source_type: str = Field(max_length=32)
    context: str = Field(default="default", max_length=100)
    enabled: bool = True


class Camera(CameraBase, table=True):
    __tablename__ = "cameras"
    id: str = Field(primary_key=True, max_length=64)
    # May hold credentials (rtsp://user:pass@...): stored for ingest, never returned or logged.
    source_uri: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = _ts(nullable=False, default=utcnow)
    from_config: bool = Field(default=False, description="seeded from the YAML settings (0007)")
    # 0010: regions removed from detection (vigil.regions.Mask as dicts) and the camera's own
    # event thresholds (CameraTuning fields set for it; the rest come from the configuration)
    masks: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    tuning: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # 0011: regions scored on their own (vigil.regions.Zone as dicts)
    zones: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class CameraPublic(CameraBase):
    id: str
    created_at: datetime


# ---------------------------------------------------------------- segment scores


class SegmentScoreBase(SQLModel):
    camera_id: str = Field(max_length=64)
    seq: int
    score: float
    s_sem: float | None = None
    s_pred: float | None = None
    s_obj: float | None = Field(default=None, description="object-normality stream (0005)")
    gate: float | None = None
    model_version: str = Field(max_length=200)
    prompt_set: str | None = Field(default=None, max_length=200,
                                   description="prompt set that scored it, <name>@<content hash> (0008)")
    object_key: str = Field(max_length=500)
    zone: str | None = Field(default=None, max_length=32,
                             description="the zone of the camera this row scores; empty: the whole view (0011)")


class SegmentScore(SegmentScoreBase, table=True):
    __tablename__ = "segment_scores"
    __table_args__ = (Index("ix_segment_scores_camera_seq", "camera_id", "seq"),)
    segment_id: str = Field(primary_key=True, max_length=200)
    t_start: datetime = _ts(nullable=False, index=True)
    t_end: datetime = _ts(nullable=False)
    frame_scores: list[float] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    top_descriptions: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    scored_at: datetime = _ts(nullable=False, default=utcnow)
    # 0005: every stream's segment score by name (semantic, predictive, pred, mem, motion)
    streams: dict[str, float | None] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class SegmentScorePublic(SegmentScoreBase):
    segment_id: str
    t_start: datetime
    t_end: datetime
    frame_scores: list[float]
    top_descriptions: list[dict[str, Any]]
    streams: dict[str, float | None] | None = None


# ---------------------------------------------------------------- events


class EventBase(SQLModel):
    camera_id: str = Field(max_length=64)
    peak_score: float
    severity: str = Field(default="medium", max_length=16)
    status: str = Field(default="open", max_length=16, description="open | closed")
    model_version: str = Field(max_length=200)
    prompt_set: str | None = Field(default=None, max_length=200,
                                   description="prompt set of its peak segment, <name>@<content hash> (0008)")
    zone: str | None = Field(default=None, max_length=32, description="the zone it happened in; empty: the "
                             "camera's whole view (0011)")
    version: int = Field(default=0, description="changes so far (1 = opened); its outbox messages carry it (0012)")
    # 0013: the analyst's review: new -> acknowledged -> resolved (true_positive | false_positive | duplicate)
    review_status: str = Field(default="new", max_length=16, description="new | acknowledged | resolved")
    resolution: str | None = Field(default=None, max_length=16,
                                   description="true_positive | false_positive | duplicate (when resolved)")
    assignee: str | None = Field(default=None, max_length=200, description="the user reviewing it")
    reviewed_by: str | None = Field(default=None, max_length=200)
    review_note: str | None = Field(default=None, max_length=2000)
    thumbnail_key: str | None = Field(default=None, max_length=500)
    clip_key: str | None = Field(default=None, max_length=500)


class Event(EventBase, table=True):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_camera_start", "camera_id", "t_start"),
        Index("ix_events_start", "t_start"),
        Index("ix_events_peak", "peak_score"),
        Index("ix_events_status_start", "status", "t_start"),
        Index("ix_events_severity_start", "severity", "t_start"),
        Index("ix_events_end", "t_end"),
        # keyset pagination: (sort column, id), plus the other sort column so that a filter on it
        # is checked in the index, without a heap fetch per skipped row (0004)
        Index("ix_events_start_id_peak", "t_start", "id", "peak_score"),
        Index("ix_events_peak_id_start", "peak_score", "id", "t_start"),
        Index("ix_events_camera_zone", "camera_id", "zone"),  # 0011
        Index("ix_events_review_start", "review_status", "t_start"),  # 0013
    )
    # Deterministic id (camera + first segment): a replayed segment updates the same row.
    id: str = Field(primary_key=True, max_length=200)
    t_start: datetime = _ts(nullable=False)
    t_end: datetime = _ts(nullable=False)
    first_seq: int
    last_seq: int
    top_descriptions: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    segment_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts(nullable=False, default=utcnow)
    updated_at: datetime = _ts(nullable=False, default=utcnow)
    # added by 0002 (API): each stream's score at the peak, and the retention purge marker
    # (a row with purge_started_at set is being deleted; the API hides it).
    peak_s_sem: float | None = Field(default=None, description="semantic-stream score at the peak")
    peak_s_pred: float | None = Field(default=None, description="predictive-stream score at the peak")
    # 0005: the object-normality stream and every sub-stream at the peak
    peak_s_obj: float | None = Field(default=None, description="object-normality stream score at the peak")
    peak_streams: dict[str, float | None] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    purge_started_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    reviewed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))  # 0013


class EventPublic(EventBase):
    id: str
    t_start: datetime
    t_end: datetime
    top_descriptions: list[dict[str, Any]]
    segment_ids: list[str]


# ---------------------------------------------------------------- per-camera scoring state


class CameraState(SQLModel, table=True):
    """What the partition owner needs to continue a camera after a crash or rebalance.

    Written in the same transaction as the camera's latest score row, so state and rows
    never disagree.
    """

    __tablename__ = "camera_states"
    camera_id: str = Field(primary_key=True, max_length=100, description="a camera, or <camera>~<zone> (0011)")
    last_seq: int
    tracker: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    model_state: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = _ts(nullable=False, default=utcnow)


# ================================================================ API additions (issue 7)
#
# Added after the scoring tables; nothing above is renamed or removed. Events gain
# each stream's peak score and a purge marker used by the retention cleanup
# (a row whose ``purge_started_at`` is set is being deleted and is hidden by the API).


UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]  # SQLite's naive datetimes out as UTC



def _created() -> Any:
    """A timestamp column that defaults to now in Python too (so model_validate works)."""
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


def _ts_opt() -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))



class CameraCreate(CameraBase):
    id: str = Field(max_length=64, schema_extra={"pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"})
    source_uri: str | None = Field(
        default=None, max_length=2000, description="stream URL or path; write-only (may hold credentials)"
    )


class CameraUpdate(SQLModel):
    name: str | None = Field(default=None, max_length=200)
    source_type: str | None = Field(default=None, max_length=32)
    context: str | None = Field(default=None, max_length=100)
    enabled: bool | None = None
    source_uri: str | None = Field(default=None, max_length=2000, description="write-only")


class EventPublicFull(EventPublic):
    first_seq: int
    last_seq: int
    peak_s_sem: float | None = None
    peak_s_pred: float | None = None
    peak_s_obj: float | None = None
    peak_streams: dict[str, float | None] | None = None
    created_at: UtcDateTime | None = None
    updated_at: UtcDateTime | None = None
    reviewed_at: UtcDateTime | None = None


# ---------------------------------------------------------------- contexts (sites / camera groups)


class ContextBase(SQLModel):
    description: str | None = Field(default=None, max_length=1000)


class Context(ContextBase, table=True):
    __tablename__ = "contexts"
    name: str = Field(primary_key=True, max_length=100)
    created_at: datetime = _created()


class ContextCreate(ContextBase):
    name: str = Field(max_length=100, schema_extra={"pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"})


class ContextPublic(ContextBase):
    name: str
    created_at: UtcDateTime


# ---------------------------------------------------------------- prompt sets (versioned)


class PromptSetBase(SQLModel):
    normal: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    abnormal: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    scene: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    template: str = Field(default="{}", max_length=500)


class PromptSetRow(PromptSetBase, table=True):
    """One version of a prompt set; an edit inserts the next version, never updates a row."""

    __tablename__ = "prompt_sets"
    __table_args__ = (
        Index("ux_prompt_sets_ctx_name_version", "context", "name", "version", unique=True),
    )
    id: int | None = Field(default=None, primary_key=True)
    context: str = Field(max_length=100)
    name: str = Field(max_length=64)
    version: int = Field(ge=1)
    content_hash: str = Field(max_length=64)
    deleted: bool = Field(default=False, description="a tombstone version: the set was deleted")
    created_by: str = Field(max_length=200)
    created_at: datetime = _created()


class PromptSetPublic(PromptSetBase):
    id: int
    context: str
    name: str
    version: int
    content_hash: str
    created_by: str
    created_at: UtcDateTime


# ---------------------------------------------------------------- feedback


class FeedbackBase(SQLModel):
    label: str = Field(max_length=16, description="true_positive | false_positive")
    note: str | None = Field(default=None, max_length=2000)


class Feedback(FeedbackBase, table=True):
    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_event", "event_id"),)
    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=200)
    camera_id: str = Field(max_length=64)
    author: str = Field(max_length=200)
    created_at: datetime = _created()


class FeedbackPublic(FeedbackBase):
    id: int
    event_id: str
    camera_id: str
    author: str
    created_at: UtcDateTime


# ---------------------------------------------------------------- model versions and training runs


MODEL_KIND_HEADS = "heads"  # the zero-shot model's trained heads: one active version for every camera
MODEL_KIND_NORMALITY = "normality"  # one camera's object normality: one active version per camera


class ModelVersionBase(SQLModel):
    backbone: str = Field(max_length=200)
    kind: str = Field(default=MODEL_KIND_HEADS, max_length=16, description="heads | normality (0006)")
    camera_id: str | None = Field(default=None, max_length=64, description="the camera a normality version scores")
    description: str | None = Field(default=None, max_length=1000)
    checkpoint_key: str | None = Field(default=None, max_length=500)
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ModelVersion(ModelVersionBase, table=True):
    __tablename__ = "model_versions"
    __table_args__ = (Index("ix_model_versions_camera", "camera_id", "active"),)
    id: str = Field(primary_key=True, max_length=200)
    active: bool = Field(default=False)
    created_at: datetime = _created()
    activated_at: datetime | None = _ts_opt()


def active_peers(version: ModelVersion) -> Any:
    """What activating ``version`` deactivates: the other active heads versions, or the other
    active normality versions of the same camera (a select statement)."""
    q = select(ModelVersion).where(ModelVersion.active == True, ModelVersion.kind == version.kind,  # noqa: E712
                                   ModelVersion.id != version.id)
    if version.kind == MODEL_KIND_NORMALITY:
        q = q.where(ModelVersion.camera_id == version.camera_id)
    return q


class ModelVersionCreate(ModelVersionBase):
    id: str = Field(max_length=200, schema_extra={"pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,199}$"})


class ModelVersionPublic(ModelVersionBase):
    id: str
    active: bool
    created_at: UtcDateTime
    activated_at: UtcDateTime | None = None


class NormalPeriod(SQLModel, table=True):
    """A camera's normal period: its own live footage recorded into the object store to learn
    its normality from (``normal/<camera>/…``, kept out of retention), how long and which hours.

    ``status``: recording → complete (enough footage) → training → trained | failed. Each
    entry of ``clips`` is one recorded segment: ``{"key", "seq", "t_start", "seconds"}``.
    """

    __tablename__ = "normal_periods"
    camera_id: str = Field(primary_key=True, max_length=64)
    status: str = Field(default="recording", max_length=16)
    target_s: float = Field(description="seconds of footage the period needs")
    recorded_s: float = 0.0
    fps: float | None = None
    clips: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    hours: list[float] = Field(default_factory=lambda: [0.0] * 24, sa_column=Column(JSON, nullable=False),
                               description="recorded seconds per UTC hour of day")
    started_at: datetime = _created()
    ended_at: datetime | None = _ts_opt()
    run_id: str | None = Field(default=None, max_length=200)
    model_version: str | None = Field(default=None, max_length=200)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    updated_at: datetime = _created()


class TrainingRunBase(SQLModel):
    status: str = Field(default="pending", max_length=16, description="pending | running | succeeded | failed")
    base_model_version: str | None = Field(default=None, max_length=200)
    output_model_version: str | None = Field(default=None, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class TrainingRun(TrainingRunBase, table=True):
    __tablename__ = "training_runs"
    id: str = Field(primary_key=True, max_length=200)
    started_at: datetime = _created()
    finished_at: datetime | None = _ts_opt()


class TrainingRunPublic(TrainingRunBase):
    id: str
    started_at: UtcDateTime
    finished_at: UtcDateTime | None = None


# ---------------------------------------------------------------- users and API keys


class UserBase(SQLModel):
    name: str = Field(max_length=200)
    role: str = Field(default="viewer", max_length=16, description="viewer | analyst | admin")
    cameras: list[str] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True),
        description="camera ids this user may see; empty = all cameras",
    )


class User(UserBase, table=True):
    __tablename__ = "users"
    __table_args__ = (Index("ux_users_name", "name", unique=True),)
    id: int | None = Field(default=None, primary_key=True)
    disabled: bool = Field(default=False)
    created_at: datetime = _created()


class UserPublic(UserBase):
    id: int
    disabled: bool
    created_at: UtcDateTime


class ApiKey(SQLModel, table=True):
    """An API key or bearer token. Only its SHA-256 is stored; the key is shown once."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ux_api_keys_hash", "key_hash", unique=True),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id")
    key_hash: str = Field(max_length=64)
    prefix: str = Field(max_length=16, description="first characters, to tell keys apart")
    created_at: datetime = _created()
    expires_at: datetime | None = _ts_opt()
    revoked_at: datetime | None = _ts_opt()


class ApiKeyPublic(SQLModel):
    id: int
    user_id: int
    prefix: str
    created_at: UtcDateTime
    expires_at: UtcDateTime | None = None
    revoked_at: UtcDateTime | None = None


# ---------------------------------------------------------------- camera sources, as ingest sees them


class SourceStatus(SQLModel, table=True):
    """A camera source's health, reported by the ingest process that runs it (0009).

    Written every reconcile tick; a row whose ``reported_at`` is old means its ingest stopped
    reporting. Never holds the source URL: ``last_error`` is scrubbed of it before it is stored.
    """

    __tablename__ = "source_status"
    camera_id: str = Field(primary_key=True, max_length=64)
    ingest_id: str = Field(max_length=200, description="host:pid of the ingest process running the camera")
    state: str = Field(max_length=16, description="starting | streaming | reconnecting | finished | failed")
    connected: bool = False
    fps: float | None = Field(default=None, description="frames per second sampled into segments, measured")
    frames: int = 0
    segments: int = 0
    dropped: int = 0
    reconnects: int = 0
    last_frame_at: datetime | None = _ts_opt()
    last_segment_at: datetime | None = _ts_opt()
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    started_at: datetime = _created()
    reported_at: datetime = _created()


# ---------------------------------------------------------------- audit log


class AuditEntry(SQLModel, table=True):
    """One change to the control plane: who, when, what, before and after (0010).

    Written in the same transaction as the change itself, so a change that did not happen
    is never logged and one that did always is. Source URLs never appear (only whether set).
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"), Index("ix_audit_log_target", "target"))
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _created()
    actor: str = Field(max_length=200, description="the caller's name")
    actor_role: str = Field(max_length=16)
    user_id: int | None = None
    action: str = Field(max_length=64, description="e.g. camera.create, camera.masks, prompt_set.save, model.activate")
    target: str = Field(max_length=300, description="what changed, e.g. camera:cam-01, prompt_set:campus/walkway")
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class AuditEntryPublic(SQLModel):
    id: int
    at: UtcDateTime
    actor: str
    actor_role: str
    user_id: int | None = None
    action: str
    target: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


# ---------------------------------------------------------------- event outbox


class EventOutbox(SQLModel, table=True):
    """An event lifecycle message waiting for the broker (0012).

    Written in the transaction that writes the event row and its segment's row, so a message
    exists exactly when its change does; the relay publishes it to ``vigil.events.v1`` and sets
    ``sent_at`` only after the broker acknowledged. ``version`` counts the event's changes
    (1 = new), so a consumer dedupes on (event id, version).
    """

    __tablename__ = "event_outbox"
    __table_args__ = (Index("ix_event_outbox_unsent", "sent_at", "id"),
                      Index("ux_event_outbox_event_version", "event_id", "version", unique=True))
    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=200)
    version: int
    kind: str = Field(max_length=8, description="new | update | end")
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False), description="the EventMessage")
    created_at: datetime = _created()
    sent_at: datetime | None = _ts_opt()
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


# ---------------------------------------------------------------- notifications and dead letters


class Delivery(SQLModel, table=True):
    """One event message's notification on one channel (0014), written by ``vigil notify``.

    The row is written once per (event id, version, channel) before the consumer's offset
    moves, so a re-delivered message finds it (the dedupe) and a crash loses none; the
    dispatcher then sends pending rows oldest first, one version of an event after another.
    ``status``: pending → delivered, or dead_letter once ``notify.attempts`` are spent;
    suppressed when the rule's quiet hours held it back.
    """

    __tablename__ = "deliveries"
    __table_args__ = (Index("ux_deliveries_event_version_channel", "event_id", "version", "channel", unique=True),
                      Index("ix_deliveries_status_due", "status", "next_attempt_at"))
    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=200, index=True)
    version: int
    kind: str = Field(max_length=8)
    camera_id: str = Field(max_length=100)
    channel: str = Field(max_length=100)
    rule: str = Field(max_length=100)
    status: str = Field("pending", max_length=16)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    message: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False), description="the EventMessage")
    created_at: datetime = _created()
    next_attempt_at: datetime | None = _ts_opt()
    delivered_at: datetime | None = _ts_opt()
    latency_s: float | None = Field(None, description="from the event's last segment end to delivery")


class DeliveryPublic(SQLModel):
    id: int
    event_id: str
    version: int
    kind: str
    camera_id: str
    channel: str
    rule: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    latency_s: float | None


class DeadLetterRow(SQLModel, table=True):
    """A segment message the scoring path gave up on (0014): the dead-letter topic's record,
    kept in SQL so the API can list it and ask for its replay; the outbox relay (which holds
    a producer, the API does not) re-publishes the payload to its topic and sets ``replayed_at``."""

    __tablename__ = "dead_letters"
    __table_args__ = (Index("ux_dead_letters_where", "source_topic", "partition", "offset", unique=True),)
    id: int | None = Field(default=None, primary_key=True)
    source_topic: str = Field(max_length=200)
    partition: int | None = None
    offset: int | None = None
    key: str | None = Field(default=None, max_length=200)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    attempts: int | None = None
    payload_b64: str = Field(sa_column=Column(Text, nullable=False))
    at: datetime = _created()
    replay_requested_at: datetime | None = _ts_opt()
    replay_requested_by: str | None = Field(default=None, max_length=200)
    replayed_at: datetime | None = _ts_opt()


class DeadLetterPublic(SQLModel):
    id: int
    source_topic: str
    partition: int | None
    offset: int | None
    key: str | None
    reason: str
    attempts: int | None
    payload_b64: str
    at: datetime
    replay_requested_at: datetime | None
    replay_requested_by: str | None
    replayed_at: datetime | None


class LeaseRow(SQLModel, table=True):
    """Who runs a job every replica could run, until when (0015; vigil.lease)."""

    __tablename__ = "leases"
    name: str = Field(primary_key=True, max_length=100)
    holder: str = Field(max_length=200)
    expires_at: datetime = _ts(nullable=False)
