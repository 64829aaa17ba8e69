"""Metadata stores chosen by URL scheme; backends are imported only when used."""

from __future__ import annotations

from urllib.parse import urlparse

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata.base import MetadataStore

__all__ = ["MetadataStore", "open_metadata_store"]


async def open_metadata_store(url: str) -> MetadataStore:
    """`sqlite:///path/to/db` (or `sqlite://:memory:`) → SQLite; `postgresql://…` → PostgreSQL.

    Migrations run on open, so the returned store is ready to use."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        from streamhouse.storage.metadata.sqlite import SqliteMetadataStore

        return await SqliteMetadataStore.open(url)
    if scheme in ("postgresql", "postgres"):
        from streamhouse.storage.metadata.postgres import PostgresMetadataStore

        return await PostgresMetadataStore.open(url)
    raise InvalidInputError(f"unsupported metadata URL {url!r}: use sqlite:/// or postgresql://")
