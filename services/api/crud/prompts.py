"""Contexts and versioned prompt sets: an edit inserts version n+1, rows are never updated."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func
from sqlmodel import Session, select

from vigil.models import Context, ContextCreate, PromptSetRow


def list_contexts(session: Session) -> Sequence[Context]:
    return session.exec(select(Context).order_by(Context.name)).all()


def get_context(session: Session, *, name: str) -> Context | None:
    return session.get(Context, name)


def create_context(session: Session, *, context_in: ContextCreate) -> Context:
    row = Context.model_validate(context_in)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def latest_version(session: Session, *, context: str, name: str) -> PromptSetRow | None:
    """The newest version of a set (a tombstone too; callers check ``deleted``)."""
    return session.exec(
        select(PromptSetRow)
        .where(PromptSetRow.context == context, PromptSetRow.name == name)
        .order_by(PromptSetRow.version.desc())
        .limit(1)
    ).first()


def list_latest(session: Session, *, context: str) -> list[PromptSetRow]:
    """The newest live version of every set of a context."""
    newest = (
        select(PromptSetRow.name, func.max(PromptSetRow.version).label("v"))
        .where(PromptSetRow.context == context)
        .group_by(PromptSetRow.name)
        .subquery()
    )
    rows = session.exec(
        select(PromptSetRow)
        .join(newest, (PromptSetRow.name == newest.c.name) & (PromptSetRow.version == newest.c.v))
        .where(PromptSetRow.context == context)
        .order_by(PromptSetRow.name)
    ).all()
    return [r for r in rows if not r.deleted]


def list_versions(session: Session, *, context: str, name: str) -> Sequence[PromptSetRow]:
    return session.exec(
        select(PromptSetRow)
        .where(PromptSetRow.context == context, PromptSetRow.name == name)
        .order_by(PromptSetRow.version)
    ).all()


def get_version(session: Session, *, context: str, name: str, version: int) -> PromptSetRow | None:
    return session.exec(
        select(PromptSetRow).where(
            PromptSetRow.context == context, PromptSetRow.name == name, PromptSetRow.version == version
        )
    ).first()


def add_version(
    session: Session, *, context: str, name: str, normal: list[str], abnormal: list[str], scene: list[str],
    template: str, content_hash: str, author: str, deleted: bool = False,
) -> PromptSetRow:
    """Insert the next version. Two concurrent edits collide on the unique index
    (context, name, version): the loser gets an IntegrityError and nothing is overwritten."""
    last = latest_version(session, context=context, name=name)
    row = PromptSetRow(
        context=context, name=name, version=(last.version + 1) if last else 1, normal=normal, abnormal=abnormal,
        scene=scene, template=template, content_hash=content_hash, deleted=deleted, created_by=author,
    )
    session.add(row)
    session.commit()
    session.refresh(row)
    return row
