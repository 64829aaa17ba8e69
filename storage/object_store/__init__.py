"""Object stores chosen by URL scheme; backends are imported only when used."""

from __future__ import annotations

from urllib.parse import urlparse

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.object_store.base import ObjectStore

__all__ = ["ObjectStore", "open_object_store"]


def open_object_store(url: str, *, s3_endpoint: str | None = None) -> ObjectStore:
    """`file:///abs/path` (or a plain path) → LocalObjectStore; `s3://bucket/prefix` → S3ObjectStore."""
    scheme = urlparse(url).scheme
    if scheme in ("", "file"):
        from streamhouse.storage.object_store.local import LocalObjectStore

        return LocalObjectStore(url)
    if scheme == "s3":
        from streamhouse.storage.object_store.s3 import S3ObjectStore

        return S3ObjectStore(url, endpoint_url=s3_endpoint)
    raise InvalidInputError(f"unsupported object store URL {url!r}: use file:// or s3://")
