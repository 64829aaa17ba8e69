"""Topics as Apache Iceberg tables (issue 16): a leased publisher appends each topic's committed
segments to the table `streamhouse.<topic>` of pyiceberg's SQL catalog in the metadata database,
as data files in place (no copy), and mirrors retention and compaction; the deferred deleter keeps
objects a live snapshot references. Needs the `iceberg` extra (pyiceberg).

`catalog(metadata_url, object_store_url, s3_endpoint)` opens that catalog for a reader."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamhouse.iceberg.tables import CatalogSettings, open_catalog

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog


def catalog(metadata_url: str, object_store_url: str, s3_endpoint: str = "") -> SqlCatalog:
    """pyiceberg's SQL catalog over an agent's metadata database and object store: the tables are
    `streamhouse.<topic>` (`catalog(...).load_table(("streamhouse", "bids")).scan(...)`)."""
    return open_catalog(CatalogSettings(metadata_url, object_store_url, s3_endpoint))


__all__ = ["CatalogSettings", "catalog"]
