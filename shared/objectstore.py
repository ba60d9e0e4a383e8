"""Object store (MinIO or any S3, SeaweedFS in the embedded stack) through the ``minio`` client.

Transient failures (connection refused, timeouts, 5xx) are retried with exponential
backoff up to ``retry_for_s``; a missing object is :class:`ObjectMissing` at once.
"""

from __future__ import annotations

import io
import logging
import time
from datetime import timedelta

import urllib3
from minio import Minio
from minio.error import S3Error

from vigil.config import S3Settings

log = logging.getLogger(__name__)


class ObjectStoreError(RuntimeError):
    """The object store could not be reached or refused the request."""


class ObjectMissing(KeyError):
    """The named object does not exist."""


_MISSING_CODES = {"NoSuchKey", "NoSuchObject", "NoSuchBucket"}


class ObjectStore:
    def __init__(self, cfg: S3Settings, *, retry_for_s: float = 30.0) -> None:
        if not cfg.endpoint:
            raise ObjectStoreError("s3.endpoint is not set (start `vigil up` or configure MinIO/S3)")
        self.bucket = cfg.bucket
        self.endpoint = cfg.endpoint
        self.retry_for_s = retry_for_s
        # Short connect timeout and no urllib3 retries: our own loop decides how long to try.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=2.0, read=30.0), retries=False, maxsize=16
        )
        self.client = Minio(
            cfg.endpoint,
            access_key=cfg.access_key,
            secret_key=cfg.secret_key.get_secret_value(),
            secure=cfg.secure,
            region=cfg.region,
            http_client=http,
        )
        # presigning is computed locally (the region is set): a client for the name browsers use
        # signs URLs for that host, which the internal endpoint (minio:9000, 127.0.0.1) is not
        self.public_client = self.client if not cfg.public_endpoint else Minio(
            cfg.public_endpoint, access_key=cfg.access_key, secret_key=cfg.secret_key.get_secret_value(),
            secure=cfg.secure if cfg.public_secure is None else cfg.public_secure, region=cfg.region)

    def _retry(self, what: str, fn):  # noqa: ANN001, ANN202
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.2
        while True:
            try:
                return fn()
            except S3Error as exc:
                if exc.code in _MISSING_CODES:
                    raise ObjectMissing(f"{what}: {exc.code}") from None
                if exc.code in {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId"}:
                    raise ObjectStoreError(f"{what}: {exc.code} (check s3.access_key / s3.secret_key)") from None
                err: Exception = exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                err = exc
            if time.monotonic() + delay > deadline:
                raise ObjectStoreError(f"{what}: object store {self.endpoint} unavailable: {err}") from None
            log.warning("%s failed (%s); retrying in %.1fs", what, type(err).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def ensure_bucket(self) -> None:
        def go() -> None:
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)

        self._retry(f"create bucket {self.bucket}", go)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._retry(
            f"put {key}",
            lambda: self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type),
        )

    def get(self, key: str) -> bytes:
        def go() -> bytes:
            resp = self.client.get_object(self.bucket, key)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return self._retry(f"get {key}", go)

    def copy(self, src: str, dst: str) -> None:
        """Server-side copy inside the bucket (the bytes never pass through this process)."""
        from minio.commonconfig import CopySource

        self._retry(f"copy {src} -> {dst}", lambda: self.client.copy_object(self.bucket, dst, CopySource(self.bucket, src)))

    def exists(self, key: str) -> bool:
        try:
            self._retry(f"stat {key}", lambda: self.client.stat_object(self.bucket, key))
            return True
        except ObjectMissing:
            return False

    def delete(self, key: str) -> None:
        self._retry(f"delete {key}", lambda: self.client.remove_object(self.bucket, key))

    def list(self, prefix: str) -> list[str]:
        return self._retry(
            f"list {prefix}",
            lambda: [o.object_name for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)],
        )

    def presigned_get(self, key: str, expires_s: int = 300) -> str:
        """A URL a browser can fetch the object with for ``expires_s`` (signed for ``s3.public_endpoint``)."""
        return self.public_client.presigned_get_object(self.bucket, key, expires=timedelta(seconds=expires_s))
