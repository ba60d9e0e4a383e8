"""Camera source URLs sealed at rest: ``cameras.source_uri`` may carry credentials
(``rtsp://user:pass@...``), so SQL holds it encrypted (Fernet: AES-128-CBC + HMAC-SHA256).

The API seals what it stores; ingest opens it. The key is ``security.source_key`` (a secret);
in development, when it is empty, a key file ``<state_dir>/source.key`` (mode 0600) is made on
first use, shared by the processes of one machine. In production without a key nothing can
be sealed, and saying so is the error. A row written before sealing existed (no prefix) is
read as it is and sealed by the API at its start (:func:`seal_plaintext_rows`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.engine import Engine
from sqlmodel import select

from vigil.config import Settings
from vigil.db import session_scope
from vigil.models import Camera

log = logging.getLogger(__name__)

PREFIX = "fernet:"


class SourceKeyError(RuntimeError):
    """No key to seal or open a source URL with, or the wrong one (the message says which)."""


class SourceSeal:
    def __init__(self, key: bytes | None, *, where: str) -> None:
        self.where = where  # the key's origin, for errors: never the key
        try:
            self._fernet = Fernet(key) if key else None
        except ValueError as exc:
            raise SourceKeyError(f"{where} is not a Fernet key (urlsafe base64 of 32 bytes; make one with "
                                 "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key()"
                                 ".decode())'`)") from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceSeal:
        key = settings.security.source_key
        if key is not None and key.get_secret_value():
            return cls(key.get_secret_value().encode(), where="security.source_key")
        if settings.environment != "development":
            return cls(None, where="security.source_key (empty)")
        path = Path(settings.state_dir) / "source.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
            log.warning("environment: development: camera source URLs sealed with a key made in %s", path)
        return cls(path.read_bytes().strip(), where=str(path))

    def seal(self, uri: str | None) -> str | None:
        if not uri:
            return uri
        if self._fernet is None:
            raise SourceKeyError("a camera source URL cannot be stored without a key: set security.source_key "
                                 "(VIGIL_SECURITY__SOURCE_KEY, from a secret)")
        return PREFIX + self._fernet.encrypt(uri.encode()).decode()

    def open(self, stored: str | None) -> str | None:
        if not stored or not stored.startswith(PREFIX):
            return stored  # empty, or written before sealing (sealed at the API's next start)
        if self._fernet is None:
            raise SourceKeyError("the camera's source URL is sealed and no key is set: set security.source_key "
                                 "to the key the API seals with")
        try:
            return self._fernet.decrypt(stored[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise SourceKeyError(f"the camera's source URL was sealed with another key than {self.where}") from None


def seal_plaintext_rows(engine: Engine, seal: SourceSeal) -> int:
    """Seal every source URL still stored in plain text; returns how many."""
    n = 0
    with session_scope(engine) as db:
        for cam in db.exec(select(Camera).where(Camera.source_uri.is_not(None))):
            if cam.source_uri and not cam.source_uri.startswith(PREFIX):
                cam.source_uri = seal.seal(cam.source_uri)
                db.add(cam)
                n += 1
    if n:
        log.info("sealed the source URLs of %d camera(s) stored in plain text", n)
    return n
