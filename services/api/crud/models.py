"""Model versions (exactly one active at a time) and training runs."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, select

from vigil.models import MODEL_KIND_HEADS, ModelVersion, ModelVersionCreate, TrainingRun, active_peers, utcnow


def list_model_versions(session: Session) -> Sequence[ModelVersion]:
    return session.exec(select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id)).all()


def get_model_version(session: Session, *, version_id: str) -> ModelVersion | None:
    return session.get(ModelVersion, version_id)


def active_model_version(session: Session) -> ModelVersion | None:
    return session.exec(select(ModelVersion).where(ModelVersion.active == True,  # noqa: E712
                                                  ModelVersion.kind == MODEL_KIND_HEADS)).first()


def create_model_version(session: Session, *, version_in: ModelVersionCreate) -> ModelVersion:
    row = ModelVersion.model_validate(version_in)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def activate_model_version(session: Session, *, version: ModelVersion) -> ModelVersion:
    """Deactivate its peers (the other heads versions, or the camera's other normality
    versions) and activate this one, in one transaction."""
    for peer in session.exec(active_peers(version)).all():
        peer.active = False
        session.add(peer)
    version.active = True
    version.activated_at = utcnow()
    session.add(version)
    session.commit()
    session.refresh(version)
    return version


def list_training_runs(session: Session, *, limit: int = 100) -> Sequence[TrainingRun]:
    return session.exec(select(TrainingRun).order_by(TrainingRun.started_at.desc()).limit(limit)).all()
