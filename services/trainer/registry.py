"""Model registry: versions in SQL (``model_versions``) and their files in the object store.

A version's id is the model's own version string (``<backbone>+heads:<digest>``), the
value the scoring path writes into ``segment_scores.model_version``, so scores join to the
version that produced them. Its objects:

- ``models/<digest>/heads.pt`` — the heads file (:mod:`vigil.model.heads`);
- ``models/<digest>/lineage.json`` — data (training-set manifest, digest), configuration,
  metrics (candidate and the version it beat), parent version, training run.

A camera's object-normality version (``vigil train-normal --camera``) is a row of kind
``normality`` with its ``camera_id``; id ``normality:<digest>`` (the digest of its
checkpoint, the value Score writes into ``model_version`` after ``+normality:``); objects
``models/normality/<digest>/normality.pt`` and ``…/lineage.json``. At most one is active
per camera; Score replicas get them as ``s3://`` references and fetch them themselves.

The row's ``metrics`` carries the evaluation and, under ``lineage``, the parent, the data
digest and the lineage object's key. The zero-shot model (no heads) is the implicit root:
``parent = None``.

Activation marks one row active and swaps the heads of the running Serve app through
``Score.reconfigure(user_config)`` (:func:`services.scoring.deploy.reconfigure_scoring_app`):
the deployment's init arguments stay as the scoring worker deployed them, only
``user_config["heads"]`` changes, so Serve calls ``reconfigure`` on the live replica
(integration test: same replica before and after, every segment scored once).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from vigil.config import Settings
from vigil.db import session_scope
from vigil.artefacts import s3_uri
from vigil.models import MODEL_KIND_HEADS, MODEL_KIND_NORMALITY, AuditEntry, ModelVersion, active_peers, utcnow
from vigil.objectstore import ObjectStore

log = logging.getLogger(__name__)

MODELS_PREFIX = "models/"


def heads_key(digest: str) -> str:
    return f"{MODELS_PREFIX}{digest}/heads.pt"


def lineage_key(digest: str) -> str:
    return f"{MODELS_PREFIX}{digest}/lineage.json"


def digest_of(version_id: str) -> str:
    return version_id.rsplit("+heads:", 1)[-1]


@dataclass
class ActiveVersion:
    id: str
    checkpoint_key: str | None
    backbone: str | None = None  # the registry name its heads were trained on


def normality_key(digest: str) -> str:
    return f"{MODELS_PREFIX}normality/{digest}/normality.pt"


def normality_lineage_key(digest: str) -> str:
    return f"{MODELS_PREFIX}normality/{digest}/lineage.json"


def normality_version_id(digest: str) -> str:
    return f"normality:{digest}"


def active_version(engine: Engine) -> ActiveVersion | None:
    """The active heads version (one for every camera)."""
    with Session(engine) as db:
        row = db.exec(select(ModelVersion).where(ModelVersion.active == True, ModelVersion.kind == MODEL_KIND_HEADS)  # noqa: E712
                      .order_by(ModelVersion.activated_at.desc())).first()
        return ActiveVersion(row.id, row.checkpoint_key, row.backbone) if row else None


def register_version(
    engine: Engine, store: ObjectStore, *, version_id: str, backbone: str, heads_bytes: bytes,
    lineage: dict[str, Any], metrics: dict[str, Any], description: str | None = None,
) -> ModelVersion:
    """Store the heads and lineage objects, then insert the row (objects first: a row never
    points at a missing file). Registering the same version twice keeps the first row."""
    digest = digest_of(version_id)
    store.put(heads_key(digest), heads_bytes)
    store.put(lineage_key(digest), json.dumps({"version": version_id, **lineage}, indent=2, default=str).encode(),
              content_type="application/json")
    with session_scope(engine) as db:
        row = db.get(ModelVersion, version_id)
        if row is None:
            row = ModelVersion(
                id=version_id, backbone=backbone, description=description, checkpoint_key=heads_key(digest),
                metrics={**metrics, "lineage": {"parent": lineage.get("parent"), "data_digest": lineage.get("data", {}).get("digest"),
                                                "run_id": lineage.get("run_id"), "object": lineage_key(digest)}},
            )
            db.add(row)
        db.flush()
        db.expunge(row)
    return row


def active_normality(engine: Engine) -> dict[str, ModelVersion]:
    """Each camera's active object-normality version."""
    with Session(engine) as db:
        rows = db.exec(select(ModelVersion).where(ModelVersion.active == True,  # noqa: E712
                                                  ModelVersion.kind == MODEL_KIND_NORMALITY)).all()
        for r in rows:
            db.expunge(r)
    return {r.camera_id: r for r in rows if r.camera_id}


def register_normality(
    engine: Engine, store: ObjectStore, *, camera_id: str, digest: str, backbone: str, checkpoint: bytes,
    lineage: dict[str, Any], metrics: dict[str, Any], description: str | None = None,
) -> ModelVersion:
    """Store a camera's normality checkpoint and lineage, then its row (objects first)."""
    version_id = normality_version_id(digest)
    store.put(normality_key(digest), checkpoint)
    store.put(normality_lineage_key(digest), json.dumps({"version": version_id, "camera_id": camera_id, **lineage},
                                                        indent=2, default=str).encode(), content_type="application/json")
    with session_scope(engine) as db:
        row = db.get(ModelVersion, version_id)
        if row is None:
            row = ModelVersion(
                id=version_id, kind=MODEL_KIND_NORMALITY, camera_id=camera_id, backbone=backbone,
                description=description, checkpoint_key=normality_key(digest),
                metrics={**metrics, "lineage": {"parent": lineage.get("parent"), "data_digest": lineage.get("data", {}).get("digest"),
                                                "run_id": lineage.get("run_id"), "object": normality_lineage_key(digest)}},
            )
            db.add(row)
        db.flush()
        db.expunge(row)
    return row


def read_lineage(store: ObjectStore, version_id: str) -> dict[str, Any]:
    if version_id.startswith("normality:"):
        return json.loads(store.get(normality_lineage_key(version_id.split(":", 1)[1])))
    return json.loads(store.get(lineage_key(digest_of(version_id))))


def heads_ref(settings: Settings, version_id: str) -> str:
    """The version's heads as an artefact reference (``s3://``): what Serve is given, so a
    replica on any node fetches it itself (vigil.artefacts, cached by content hash)."""
    return s3_uri(settings.s3.bucket, heads_key(digest_of(version_id)))


def local_heads(settings: Settings, store: ObjectStore, version_id: str) -> Path:
    """The version's heads file on this machine (``<state_dir>/models/<digest>/heads.pt``)."""
    digest = digest_of(version_id)
    path = Path(settings.state_dir).resolve() / "models" / digest / "heads.pt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(store.get(heads_key(digest)))
        tmp.replace(path)
    return path


def serving_user_config(settings: Settings, engine: Engine, store: ObjectStore,
                        base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Score deployment's ``user_config`` for what the registry says is served (``base``
    kept otherwise): the active heads, each camera's active normality version (as ``s3://``
    references the replicas fetch themselves, with the object store's settings). What a
    (re)deploy or reconfigure of the scoring app passes, so every replica serves the table."""
    uc = dict(base or {})
    act = active_version(engine)
    if act is not None:
        uc["heads"] = heads_ref(settings, act.id)
        uc["object_store"] = settings.s3.for_workers()
    normality = {cam: s3_uri(store.bucket, row.checkpoint_key) for cam, row in active_normality(engine).items()}
    if normality:
        uc["normality"] = {**(uc.get("normality") or {}), **normality}
        uc["object_store"] = settings.s3.for_workers()
    return uc


def _set_active(engine: Engine, version_id: str) -> None:
    """Mark ``version_id`` active and its peers inactive: every heads version, or the other
    normality versions of the same camera; audited as the trainer's change."""
    with session_scope(engine) as db:
        row = db.get(ModelVersion, version_id)
        peers = db.exec(active_peers(row)).all()
        db.add(AuditEntry(actor="vigil-trainer", actor_role="system", action="model.activate",
                          target=f"model:{row.kind}" + (f":{row.camera_id}" if row.camera_id else ""),
                          before={"active": [p.id for p in peers]}, after={"active": [row.id]}))
        for peer in peers:
            peer.active = False
            db.add(peer)
        row.active, row.activated_at = True, utcnow()
        db.add(row)


def activate(settings: Settings, engine: Engine, store: ObjectStore, version_id: str, *, serve: bool = True,
             user_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Make ``version_id`` the active version (of its camera, for a normality version); with
    ``serve``, reconfigure the running Serve app.

    Returns the ``user_config`` applied. The SQL flag moves only after Serve accepted the
    new config, so the table never names a version that is not being served.
    """
    with Session(engine) as db:
        row = db.get(ModelVersion, version_id)
        if row is None:
            raise KeyError(f"no model version {version_id!r}")
        kind, camera = row.kind, row.camera_id
    uc = serving_user_config(settings, engine, store, user_config)
    if kind == MODEL_KIND_NORMALITY:
        uc["normality"] = {**(uc.get("normality") or {}), camera: s3_uri(store.bucket, normality_key(version_id.split(":", 1)[1]))}
        uc["object_store"] = settings.s3.for_workers()
    else:
        uc["heads"] = heads_ref(settings, version_id)
        uc["object_store"] = settings.s3.for_workers()
    if serve:
        from services.scoring.deploy import reconfigure_scoring_app

        reconfigure_scoring_app(settings, uc)
    _set_active(engine, version_id)
    log.info("activated %s%s", version_id, f" for camera {camera}" if camera else "")
    return uc
