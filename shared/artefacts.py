"""Artefact references: where a model file lives, as data, parsed in one place.

A reference is ``s3://bucket/key`` (the object store: what the registry hands to Serve, so
a replica on any node finds it), ``package:vigil/model/weights/x.pt`` (a file shipped inside an
installed package: the same on every node that runs the image), ``file:/path`` or a plain path
(a file on this machine: ``vigil eval``, a checkpoint trained by hand). :func:`fetch` gives a local path: S3 objects
are downloaded once into a cache named by the object's content hash, so replicas on one
node share one copy and a changed object is never served from a stale cache.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ArtefactRef", "fetch", "parse_ref", "s3_uri"]


@dataclass(frozen=True)
class ArtefactRef:
    scheme: str  # "s3" | "package" | "file"
    bucket: str | None  # the bucket (s3) or the package (package)
    path: str  # the key (s3), the path inside the package, or the file path


def parse_ref(ref: str) -> ArtefactRef:
    ref = str(ref).strip()
    if not ref:
        raise ValueError("empty artefact reference")
    if ref.startswith("s3://"):
        bucket, _, key = ref[5:].partition("/")
        if not bucket or not key:
            raise ValueError(f"artefact reference {ref!r} is not s3://bucket/key")
        return ArtefactRef("s3", bucket, key)
    if ref.startswith("package:"):
        package, _, inner = ref[len("package:"):].partition("/")
        if not package or not inner:
            raise ValueError(f"artefact reference {ref!r} is not package:<package>/<path>")
        return ArtefactRef("package", package, inner)
    if "://" in ref:
        raise ValueError(f"artefact reference {ref!r}: unknown scheme (use s3://bucket/key, package:<package>/<path>, "
                         "file:/path or a path)")
    return ArtefactRef("file", None, ref.removeprefix("file:"))


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def _cache_dir() -> Path:
    return Path(os.environ.get("VIGIL_ARTEFACT_CACHE") or Path(tempfile.gettempdir()) / "vigil-artefacts")


def fetch(ref: str, s3: dict[str, Any] | Any | None = None) -> Path:
    """A local path holding the artefact ``ref``; ``s3``: the object store's settings (an
    :class:`~vigil.config.S3Settings` or its dict) for ``s3://`` references."""
    r = parse_ref(ref)
    if r.scheme == "package":
        from importlib.resources import files

        try:
            path = Path(str(files(r.bucket).joinpath(r.path)))
        except ModuleNotFoundError:
            raise FileNotFoundError(f"artefact {ref!r}: no installed package {r.bucket!r}") from None
        if not path.is_file():
            raise FileNotFoundError(f"artefact {ref!r}: package {r.bucket} has no file {r.path}")
        return path
    if r.scheme == "file":
        path = Path(r.path)
        if not path.is_file():
            raise FileNotFoundError(f"artefact {ref!r}: no such file")
        return path
    if s3 is None:
        raise ValueError(f"artefact {ref!r} is in the object store, but no object store settings were given")
    from vigil.config import S3Settings
    from vigil.objectstore import ObjectStore

    cfg = s3 if isinstance(s3, S3Settings) else S3Settings.in_worker(s3)
    if cfg.bucket != r.bucket:
        cfg = cfg.model_copy(update={"bucket": r.bucket})
    data = ObjectStore(cfg).get(r.path)  # ObjectMissing names the key
    digest = hashlib.sha256(data).hexdigest()
    path = _cache_dir() / digest / Path(r.path).name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # atomic: a concurrent replica reads a whole file or none
    return path
