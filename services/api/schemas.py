"""Response and request bodies that are not a table family of ``vigil.models``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_serializer

from vigil.clock import as_utc
from vigil.models import EventPublicFull, FeedbackPublic, SegmentScorePublic, UtcDateTime
from vigil.regions import Mask, Zone


def _utc(v: datetime | None) -> datetime | None:
    return None if v is None else as_utc(v)


class EventOut(EventPublicFull):
    """An event as the API returns it (times always in UTC with an offset)."""

    @field_serializer("t_start", "t_end", "created_at", "updated_at", "reviewed_at")
    def _ser_ts(self, v: datetime | None) -> str | None:
        v = _utc(v)
        return v.isoformat() if v is not None else None


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page; null on the last page")


class EventDetail(EventOut):
    clip_url: str | None = Field(None, description="short-lived presigned URL of the evidence clip")
    thumbnail_url: str | None = Field(None, description="short-lived presigned URL of the thumbnail")
    urls_expire_in_s: int | None = None
    feedback: list[FeedbackPublic] = Field(default_factory=list)


class FeedbackIn(BaseModel):
    label: Literal["true_positive", "false_positive"]
    note: str | None = Field(None, max_length=2000)


class ReviewIn(BaseModel):
    """A step of an event's review: acknowledge it, (re)assign it, resolve it."""

    status: Literal["acknowledged", "resolved"]
    resolution: Literal["true_positive", "false_positive", "duplicate"] | None = Field(
        None, description="required when resolved; true and false positives become training feedback")
    assignee: str | None = Field(None, max_length=200, description="a user's name; empty: unchanged, '' unassigns")
    note: str | None = Field(None, max_length=2000)


class Problem(BaseModel):
    detail: str


Role = Literal["viewer", "analyst", "admin"]
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,199}$"
_CAMERA = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class UserCreate(BaseModel):
    name: str = Field(pattern=_NAME, max_length=200)
    role: Role = "viewer"
    cameras: list[Annotated[str, Field(pattern=_CAMERA)]] | None = Field(
        None, max_length=1000, description="camera ids the user may see; null = all"
    )


class UserUpdate(BaseModel):
    role: Role | None = None
    cameras: list[Annotated[str, Field(pattern=_CAMERA)]] | None = Field(None, max_length=1000)
    disabled: bool | None = None


class KeyCreate(BaseModel):
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class KeyCreated(BaseModel):
    id: int
    user_id: int
    prefix: str
    key: str = Field(description="the key itself: shown once, store it now (only its hash is kept)")
    expires_at: UtcDateTime | None = None


class Me(BaseModel):
    name: str
    role: Role
    cameras: list[str] | None


class CameraOut(BaseModel):
    """A camera as returned: the source URL (may hold credentials) is never included."""

    id: str
    name: str | None
    source_type: str
    context: str
    enabled: bool
    has_source_uri: bool
    created_at: UtcDateTime
    from_config: bool = Field(False, description="seeded from the YAML settings at start")
    masks: list[Mask] = Field(default_factory=list, description="regions removed from detection")
    zones: list[Zone] = Field(default_factory=list, description="regions scored on their own")
    tuning: dict[str, Any] = Field(default_factory=dict, description="the camera's own event thresholds")


class ZonesIn(BaseModel):
    zones: list[Zone] = Field(max_length=16, description="[] removes all")


class MasksIn(BaseModel):
    masks: list[Mask] = Field(max_length=32, description="polygons in fractions of the frame; [] removes all")


class PromptSetIn(BaseModel):
    normal: list[str] = Field(min_length=1, max_length=500)
    abnormal: list[str] = Field(min_length=1, max_length=500)
    scene: list[str] = Field(default_factory=list, max_length=500)
    template: str = Field("{}", max_length=500)


class ScoreOut(SegmentScorePublic):
    t_start: UtcDateTime
    t_end: UtcDateTime


class ScoresPage(BaseModel):
    items: list[ScoreOut] = Field(description="segment scores, oldest first")
    threshold: float | None = Field(None, description="the camera's event threshold from the configuration")


class SourceHealthOut(BaseModel):
    """The camera's source as the ingest process running it last reported it (never its URL)."""

    state: str = Field(description="starting | streaming | reconnecting | finished | failed | stopped")
    connected: bool = Field(description="frames arrived recently and its ingest is still reporting")
    reporting: bool = Field(description="its ingest reported within three reconcile periods")
    fps: float | None = Field(None, description="frames per second sampled into segments, measured")
    frames: int
    segments: int = Field(description="segments stored and announced")
    dropped: int = Field(description="segments dropped because the upload buffer was full")
    reconnects: int
    last_frame_at: UtcDateTime | None = None
    last_segment_at: UtcDateTime | None = Field(None, description="when its newest segment was announced")
    last_error: str | None = None
    ingest_id: str = Field(description="host:pid of the ingest process")
    started_at: UtcDateTime
    reported_at: UtcDateTime


class CameraHealth(BaseModel):
    camera_id: str
    state: Literal["running", "stalled", "unknown"] = Field(
        description="running: a segment was scored within stall_after_s; stalled: not since; unknown: never")
    last_segment_at: UtcDateTime | None = Field(None, description="end time of the newest scored segment")
    last_seq: int | None = None
    scored_at: UtcDateTime | None = Field(None, description="when the scoring state was last written")
    stall_after_s: float
    scored_by: str = Field(
        "zero-shot defaults", description="which model scores the camera: its own normality version, or the "
        "zero-shot defaults until it has one")
    normality_version: str | None = Field(None, description="the camera's active object-normality version")
    last_model_version: str | None = Field(None, description="the model version that scored its newest segment")
    normal_period: dict[str, Any] | None = Field(
        None, description="the camera's normal period: status (recording | complete | training | trained | failed), "
        "recorded_s, target_s, hours (seconds per UTC hour), error")
    source: SourceHealthOut | None = Field(
        None, description="the ingest side: connected, measured fps, last segment, reconnects, last error; "
        "none while no ingest process runs the camera")
