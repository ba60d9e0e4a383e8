"""API keys and bearer tokens: generation, hashing, roles.

A key is a random 256-bit token; only its SHA-256 is stored (a fast hash is right for
high-entropy secrets: there is nothing to brute-force). The same token works as
``X-API-Key: <key>`` or ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

ROLES = ("viewer", "analyst", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}
KEY_PREFIX = "vgl_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class Principal:
    """Who is calling: a name for audit fields, a role, and the cameras it may see (None = all)."""

    name: str
    role: str
    cameras: frozenset[str] | None = None
    user_id: int | None = None

    def has_role(self, role: str) -> bool:
        return _RANK[self.role] >= _RANK[role]

    def may_see(self, camera_id: str) -> bool:
        return self.cameras is None or camera_id in self.cameras
