"""The configuration's cameras seed the ``cameras`` table, which is the source of truth.

At start every camera of ``settings.cameras`` that has no row gets one, marked
``from_config``. A camera that already has a row keeps it as it is, including an analyst's
edits, so seeding can run at every start. The source URL is not copied: it may hold
credentials, and the configuration stays its home for these cameras.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.engine import Engine

from vigil.config import CameraConfig
from vigil.db import session_scope
from vigil.models import Camera

log = logging.getLogger(__name__)


def seed_cameras(engine: Engine, cameras: Sequence[CameraConfig]) -> list[str]:
    """Insert the configured cameras that have no row yet; returns the ids inserted."""
    added = []
    with session_scope(engine) as db:
        for cam in cameras:
            if db.get(Camera, cam.id) is not None:
                continue
            db.add(Camera(id=cam.id, name=cam.name, source_type=cam.source.type, context=cam.params.context,
                          enabled=cam.enabled, from_config=True))
            added.append(cam.id)
    if added:
        log.info("cameras from the configuration added to the cameras table: %s", ", ".join(added))
    return added
