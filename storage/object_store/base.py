"""The ObjectStore contract. Every backend passes tests/storage/test_object_store_contract.py."""

from __future__ import annotations

import builtins
from typing import Protocol, runtime_checkable

from streamhouse.storage.model import ObjectInfo


@runtime_checkable
class ObjectStore(Protocol):
    """Flat key → immutable bytes. Keys are relative to the store's URL prefix, '/'-separated."""

    @property
    def url(self) -> str: ...

    async def put(self, key: str, data: bytes, *, if_absent: bool = True) -> None:
        """Store `data` under `key`. With `if_absent` (the default) an existing key raises
        ObjectExistsError and leaves the old object untouched."""
        ...

    async def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes | memoryview:
        """Bytes [start, end) of the object (whole object when both are None; `end` past
        the object's size is clamped). ObjectNotFoundError if missing. A backend may return
        a read-only memoryview (the local store maps large files instead of copying them)."""
        ...

    async def head(self, key: str) -> ObjectInfo:
        """Size of an object; ObjectNotFoundError if missing."""
        ...

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Objects whose key starts with `prefix`, sorted by key."""
        ...

    async def list_page(self, prefix: str = "", *, after: str = "", limit: int = 1000) -> builtins.list[ObjectInfo]:
        """At most `limit` objects whose key starts with `prefix` and comes after `after` (a key
        this listing returned; "" to start), in the store's listing order: a walk over a large
        prefix with bounded memory (the orphan reconciler). Walking page after page from the
        last key returned visits every object once. The order is UTF-8 byte order on S3 and the
        local store; S3-compatible servers that walk directories (SeaweedFS) may list `a/…`
        before `a-c`, but every order keeps the keys of one directory together and sorted."""
        ...

    async def delete(self, key: str) -> None:
        """Remove an object; deleting a missing key is not an error."""
        ...

    async def close(self) -> None: ...
