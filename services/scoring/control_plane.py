"""The scorer follows SQL: model versions, prompt sets and camera contexts, applied live.

SQL is the source of truth for what scores each camera. Every ``every_s`` the reconciler reads

- the model versions the registry marks active (the heads, each camera's normality version),
  through the ``read_serving`` callable the caller composes (the registry's
  ``serving_user_config``): an "Activate" in the dashboard or the API flips only the SQL flag;
- the newest version of every prompt set edited in the dashboard (``prompt_sets`` table,
  tombstones excluded), keyed ``<context>/<name>``;
- each camera's context (``cameras`` table), which selects its prompt set, its masks (regions
  removed from detection) and its threshold tuning.

When Score's ``user_config`` this implies differs from the one applied last, it is applied
(``apply``: a redeploy with only the user_config changed, so Serve calls ``Score.reconfigure``
on the live replicas: no restart, requests keep flowing). The worker asks
:meth:`ServingReconciler.prompt_set_for` which set a camera's next segment is scored with,
:meth:`~ServingReconciler.params_for` its thresholds and :meth:`~ServingReconciler.masks_for`
what to paint out of its frames.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlmodel import select

from vigil.config import CameraParams, CameraTuning, Settings
from vigil.db import session_scope
from vigil.models import Camera, PromptSetRow
from vigil.regions import Mask, Zone

log = logging.getLogger(__name__)


def prompt_key(context: str, name: str) -> str:
    """Score's name for a prompt set edited in SQL (the packaged sets keep their bare names)."""
    return f"{context}/{name}"


@dataclass(frozen=True)
class ServingSnapshot:
    user_config: dict[str, Any]
    contexts: dict[str, str] = field(default_factory=dict)  # camera id -> context
    prompt_versions: dict[str, int] = field(default_factory=dict)  # prompt_key -> version
    masks: dict[str, list[Mask]] = field(default_factory=dict)  # camera id -> its masks
    zones: dict[str, list[Zone]] = field(default_factory=dict)  # camera id -> its zones
    tuning: dict[str, CameraTuning] = field(default_factory=dict)  # camera id -> its thresholds


def read_prompt_sets(engine: Engine) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """The newest live version of every SQL prompt set, as Score's ``prompt_sets`` entries."""
    newest: dict[tuple[str, str], PromptSetRow] = {}
    with session_scope(engine) as db:
        for row in db.exec(select(PromptSetRow).order_by(PromptSetRow.context, PromptSetRow.name,
                                                         PromptSetRow.version)):
            newest[(row.context, row.name)] = row
        sets = {prompt_key(c, n): {"name": n, "context": c, "normal": list(r.normal), "abnormal": list(r.abnormal),
                                   "scene": list(r.scene), "template": r.template}
                for (c, n), r in newest.items() if not r.deleted}
        versions = {prompt_key(c, n): r.version for (c, n), r in newest.items() if not r.deleted}
    return sets, versions


def read_snapshot(engine: Engine, read_serving: Callable[[], dict[str, Any]]) -> ServingSnapshot:
    uc = dict(read_serving())
    sets, versions = read_prompt_sets(engine)
    uc["prompt_sets"] = {**(uc.get("prompt_sets") or {}), **sets}
    contexts: dict[str, str] = {}
    masks: dict[str, list[Mask]] = {}
    tuning: dict[str, CameraTuning] = {}
    zones: dict[str, list[Zone]] = {}
    with session_scope(engine) as db:
        for cam in db.exec(select(Camera)):
            contexts[cam.id] = cam.context
            try:  # the API validated them; a row edited by hand must not stop every camera
                if cam.masks:
                    masks[cam.id] = [Mask.model_validate(m) for m in cam.masks]
                if cam.zones:
                    zones[cam.id] = [Zone.model_validate(z) for z in cam.zones]
                if cam.tuning:
                    tuning[cam.id] = CameraTuning.model_validate(cam.tuning)
            except ValueError as exc:
                log.error("camera %s: its masks, zones or tuning in SQL are invalid (%s); scored without them",
                          cam.id, exc)
    return ServingSnapshot(uc, contexts, versions, masks, zones, tuning)


class CameraControl(Protocol):
    """What the worker asks before scoring a camera's segment."""

    def prompt_set_for(self, camera_id: str, params: CameraParams) -> str: ...

    def params_for(self, camera_id: str) -> CameraParams: ...

    def masks_for(self, camera_id: str) -> list[Mask]: ...

    def zones_for(self, camera_id: str) -> list[Zone]: ...


class ConfiguredControl:
    """What scores each camera when nothing follows SQL: the configuration alone (a benchmark,
    an evaluation, a worker started without the control plane)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def prompt_set_for(self, camera_id: str, params: CameraParams) -> str:
        return params.prompt_set or self.settings.model.prompt_set

    def params_for(self, camera_id: str) -> CameraParams:
        return self.settings.params_for(camera_id)

    def masks_for(self, camera_id: str) -> list[Mask]:
        return []

    def zones_for(self, camera_id: str) -> list[Zone]:
        return []


class ServingReconciler:
    """Keeps the Score replicas on what SQL says (see the module docstring)."""

    def __init__(self, settings: Settings, engine: Engine, read_serving: Callable[[], dict[str, Any]],
                 apply: Callable[[dict[str, Any]], Any], *, applied: dict[str, Any] | None = None,
                 every_s: float = 5.0) -> None:
        self.settings, self.engine, self.read_serving, self.apply = settings, engine, read_serving, apply
        self.every_s = every_s
        self.applied = applied  # the user_config the running app was deployed with, when known
        self.snapshot = ServingSnapshot(dict(applied or {}))
        self.stop = threading.Event()
        self.errors = 0
        self._thread: threading.Thread | None = None

    def poll(self) -> bool:
        """Read SQL once; apply a changed config. True when one was applied."""
        snap = read_snapshot(self.engine, self.read_serving)
        changed = snap.user_config != self.applied
        if changed:
            self.apply(snap.user_config)
            log.info("scoring app reconfigured from SQL: heads %s, %d normality version(s), %d SQL prompt set(s)",
                     snap.user_config.get("heads") or "zero-shot", len(snap.user_config.get("normality") or {}),
                     len(snap.prompt_versions))
            self.applied = snap.user_config
        self.snapshot = snap  # only once applied: a camera never names a set the replicas lack
        return changed

    def _run(self) -> None:
        while not self.stop.wait(self.every_s):
            try:
                self.poll()
                self.errors = 0
            except Exception as exc:  # noqa: BLE001  SQL or Serve unreachable: keep serving what runs
                self.errors += 1
                if self.errors == 1:
                    log.warning("scoring control plane not applied (%s); retrying every %.0f s", exc, self.every_s)

    def start(self) -> ServingReconciler:
        self._thread = threading.Thread(target=self._run, name="serving-reconciler", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def prompt_set_for(self, camera_id: str, params: CameraParams) -> str:
        """The set a camera's segment is scored with: its own ``prompt_set`` (or the default
        name) within its context when that set was edited in SQL, else the packaged set."""
        name = params.prompt_set or self.settings.model.prompt_set
        snap = self.snapshot
        key = prompt_key(snap.contexts.get(camera_id, params.context), name)
        return key if key in (snap.user_config.get("prompt_sets") or {}) else name

    def prompt_version(self, camera_id: str, params: CameraParams) -> int | None:
        """The SQL version of the set :meth:`prompt_set_for` names (None: a packaged set)."""
        return self.snapshot.prompt_versions.get(self.prompt_set_for(camera_id, params))

    def params_for(self, camera_id: str) -> CameraParams:
        """The configuration's params for the camera with its SQL context and threshold tuning."""
        params = self.settings.params_for(camera_id)
        snap = self.snapshot
        if camera_id in snap.contexts and snap.contexts[camera_id] != params.context:
            params = params.model_copy(update={"context": snap.contexts[camera_id]})
        tuning = snap.tuning.get(camera_id)
        if tuning is None:
            return params
        try:
            return tuning.applied_to(params)
        except ValueError as exc:  # e.g. a release above the configured threshold
            log.error("camera %s: its tuning does not fit its configuration (%s); using the configured thresholds",
                      camera_id, exc)
            return params

    def masks_for(self, camera_id: str) -> list[Mask]:
        return self.snapshot.masks.get(camera_id, [])

    def zones_for(self, camera_id: str) -> list[Zone]:
        return self.snapshot.zones.get(camera_id, [])
