"""Users and their API keys (stored as SHA-256 hashes only)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, select

from services.api.security import Principal, hash_key, new_key
from vigil.models import ApiKey, User, UserBase, utcnow


def principal_for_key(session: Session, *, key: str, now: datetime | None = None) -> Principal | None:
    """The principal owning a valid (known, unrevoked, unexpired, enabled-user) key, else None."""
    row = session.exec(
        select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.key_hash == hash_key(key))
    ).first()
    if row is None:
        return None
    api_key, user = row
    now = now or utcnow()
    if api_key.revoked_at is not None or user.disabled:
        return None
    if api_key.expires_at is not None:
        exp = api_key.expires_at if api_key.expires_at.tzinfo else api_key.expires_at.replace(tzinfo=now.tzinfo)
        if exp <= now:
            return None
    cams = frozenset(user.cameras) if user.cameras else None
    return Principal(name=user.name, role=user.role, cameras=cams, user_id=user.id)


def create_user(session: Session, *, user_in: UserBase) -> User:
    user = User.model_validate(user_in)
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def get_user(session: Session, *, user_id: int) -> User | None:
    return session.get(User, user_id)


def get_user_by_name(session: Session, *, name: str) -> User | None:
    return session.exec(select(User).where(User.name == name)).first()


def list_users(session: Session) -> Sequence[User]:
    return session.exec(select(User).order_by(User.id)).all()


def update_user(session: Session, *, user: User, changes: dict) -> User:
    for k, v in changes.items():
        setattr(user, k, v)
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def create_key(session: Session, *, user: User, expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """A new key for ``user``: the row (hash only) and the plaintext, which is never stored."""
    key = new_key()
    row = ApiKey(user_id=user.id, key_hash=hash_key(key), prefix=key[:12], expires_at=expires_at)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row, key


def list_keys(session: Session, *, user_id: int) -> Sequence[ApiKey]:
    return session.exec(select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id)).all()


def revoke_key(session: Session, *, key_id: int) -> ApiKey | None:
    row = session.get(ApiKey, key_id)
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        session.commit()
        session.refresh(row)
    return row
