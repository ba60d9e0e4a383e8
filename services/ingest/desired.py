"""What the cameras table asks ingest to run: one :class:`CameraConfig` per enabled camera.

SQL is the source of truth for cameras. A row seeded from the configuration (``from_config``)
keeps its source and params in the YAML settings (its URL may hold credentials and is never
copied into SQL); the row decides whether it runs, its name and its context. A camera added
through the API or the dashboard carries its own source: ``source_type`` and the write-only
``source_uri`` (sealed at rest: see vigil.source_seal), read here as

- ``file``: a video path (or ``file://`` URL); ``?loop=true`` plays it in a loop,
  ``?realtime=false`` reads it as fast as scoring takes it (default: at its own fps);
- ``frames``: a folder of images (``?fps=10`` their frame rate; ``loop``, and ``realtime``
  default false);
- ``rtsp`` / ``http``: the stream URL itself.

Its params are the configuration's camera defaults with the row's context. A row ingest cannot
run (no source, an unknown type) is reported once per reason and skipped, never fatal: the
other cameras keep streaming.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import select

from vigil.config import CameraConfig, FileSource, FramesSource, Settings, StreamSource
from vigil.db import session_scope
from vigil.models import Camera
from vigil.source_seal import SourceKeyError, SourceSeal

log = logging.getLogger(__name__)


class UnusableCamera(ValueError):
    """A cameras row ingest cannot turn into a source (the message says what to fix)."""


def _truthy(q: dict[str, list[str]], key: str, default: str = "false") -> bool:
    return (q.get(key) or [default])[-1].lower() in ("1", "true", "yes")


def source_from_row(row: Camera, seal: SourceSeal | None = None):
    """The capture source a row added through the API describes (its URL opened with ``seal``)."""
    try:
        uri = ((seal.open(row.source_uri) if seal is not None else row.source_uri) or "").strip()
    except SourceKeyError as exc:
        raise UnusableCamera(f"camera {row.id}: {exc}") from None
    if not uri:
        raise UnusableCamera(f"camera {row.id}: no source_uri set; PATCH /cameras/{row.id} with one")
    kind = row.source_type
    if kind in ("rtsp", "http"):
        return StreamSource(type=kind, url=uri)
    if kind in ("file", "frames"):
        parts = urlsplit(uri)
        path = Path(parts.path if parts.scheme == "file" else uri.split("?", 1)[0])
        q = parse_qs(parts.query)
        if kind == "file":
            return FileSource(path=path, loop=_truthy(q, "loop"), realtime=_truthy(q, "realtime", "true"))
        return FramesSource(path=path, fps=(q.get("fps") or ["10"])[-1], loop=_truthy(q, "loop"),
                            realtime=_truthy(q, "realtime"))
    raise UnusableCamera(f"camera {row.id}: source_type {kind!r} cannot be ingested from the cameras table; "
                         "use file, frames, rtsp or http")


def camera_from_row(row: Camera, settings: Settings, seal: SourceSeal | None = None) -> CameraConfig:
    """The camera a row asks for, merged with the configuration it may come from."""
    configured = next((c for c in settings.cameras if c.id == row.id), None)
    if row.from_config and configured is not None:
        source, params = configured.source, configured.params
    else:
        source, params = source_from_row(row, seal), settings.camera_defaults
    return CameraConfig(id=row.id, name=row.name, enabled=bool(row.enabled), source=source,
                        params=params.model_copy(update={"context": row.context}))


class DesiredCameras:
    """Reads the cameras table: the enabled cameras this process runs (its configured ones, and
    its ``settings.ingest.shard`` of those added through the API); remembers which unusable rows
    it already reported."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine, self.settings = engine, settings
        self.seal = SourceSeal.from_settings(settings)
        self._reported: dict[str, str] = {}

    def _mine(self, row: Camera) -> bool:
        """A configured camera runs in the process whose configuration holds its source (a
        cluster's camera group); a camera added through the API runs in the shard its id hashes to."""
        if row.from_config:
            return any(c.id == row.id for c in self.settings.cameras)
        return self.settings.ingest.runs(row.id)

    def read(self) -> list[CameraConfig]:
        with session_scope(self.engine) as db:
            rows = list(db.exec(select(Camera).order_by(Camera.id)))
            out = []
            for row in rows:
                if not row.enabled or not self._mine(row):
                    continue
                try:
                    out.append(camera_from_row(row, self.settings, self.seal))
                    self._reported.pop(row.id, None)
                except (UnusableCamera, ValidationError) as exc:
                    reason = str(exc) if isinstance(exc, UnusableCamera) else _describe(row.id, exc)
                    if self._reported.get(row.id) != reason:
                        log.error("%s", reason)
                        self._reported[row.id] = reason
        return out


def _describe(camera_id: str, exc: ValidationError) -> str:
    """A validation error without its input values (a stream URL may hold credentials)."""
    what = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'source'}: {e['msg']}" for e in exc.errors())
    return f"camera {camera_id}: its source is invalid ({what}); fix it with PATCH /cameras/{camera_id}"
