"""A topic's Iceberg table (issue 16): the catalog, the table's schema and partition spec, and
where its files are.

The catalog is pyiceberg's SQL catalog in the agent's own metadata database (PostgreSQL or
SQLite), in its own tables (`iceberg_tables`, `iceberg_namespace_properties`, created on first
use). Every topic published is the table `streamhouse.<topic>`; its Iceberg metadata (JSON,
manifest lists, manifests) lives under the object store's `iceberg/<topic>-<topic id>/` prefix,
beside `topics/` (which the orphan reconciler walks; it never looks here), and its data files
ARE the segment objects, named by the URL another engine opens: `s3://bucket/prefix/topics/…`
or `file:///root/topics/…`.

The schema is storage/segment/field_ids.py's: the segments carry Parquet field ids and the table
must use the very same ids, so the table is not made with `create_table` (pyiceberg gives a new
table fresh ids in its own order) but its first metadata file is written here and registered.
The partition spec is identity on `_partition` (field id 1), a value every data file states.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.segment.field_ids import PARTITION_COLUMN, SYSTEM_IDS, topic_arrow_schema
from streamhouse.storage.values.schema import parse_value_schema

if TYPE_CHECKING:  # pyiceberg is the optional `iceberg` extra: imported only where a table is used
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table

NAMESPACE = "streamhouse"
CATALOG_NAME = "streamhouse"
PREFIX = "iceberg"  # object store prefix of the tables' own metadata files
TOPIC_ID = "streamhouse.topic-id"  # table property: the topic the table mirrors (a recreated topic differs)
PARTITION_FIELD_ID = 1000  # Iceberg's first partition field id
_NO_STATS = ("_key", "_value", "_headers.element.key", "_headers.element.value")


@dataclass(frozen=True)
class CatalogSettings:
    """Where the catalog and the files are: the agent's metadata URL, object store URL and S3
    endpoint (empty: AWS). Credentials come from the environment, as for the agent's own store."""

    metadata_url: str
    object_store_url: str
    s3_endpoint: str = ""

    def sqlalchemy_url(self) -> str:
        """The metadata URL as SQLAlchemy spells it (psycopg2 for PostgreSQL)."""
        parsed = urlparse(self.metadata_url)
        if parsed.scheme in ("postgresql", "postgres"):
            return "postgresql+psycopg2://" + self.metadata_url.split("://", 1)[1]
        if parsed.scheme == "sqlite":
            return self.metadata_url
        raise InvalidInputError(
            f"Iceberg tables need a sqlite:/// or postgresql:// metadata URL, got {self.metadata_url!r}"
        )

    def base_url(self) -> str:
        """The object store's root as a URL other engines open (no trailing slash)."""
        parsed = urlparse(self.object_store_url)
        if parsed.scheme in ("s3", "file"):
            return self.object_store_url.rstrip("/")
        if parsed.scheme == "":  # a plain path: the local store
            return "file://" + self.object_store_url.rstrip("/")
        raise InvalidInputError(f"Iceberg tables need an s3:// or file:// object store, got {self.object_store_url!r}")

    def object_url(self, key: str) -> str:
        return f"{self.base_url()}/{key}"

    def object_key(self, url: str) -> str | None:
        """The store key of a data file URL (None: not one of this store's objects)."""
        base = self.base_url() + "/"
        return url[len(base) :] if url.startswith(base) else None

    def properties(self) -> dict[str, str]:
        """The catalog's properties: the database, and the S3 endpoint its file IO uses."""
        props = {"uri": self.sqlalchemy_url(), "init_catalog_tables": "true"}
        props["warehouse"] = f"{self.base_url()}/{PREFIX}"
        if self.s3_endpoint:
            props["s3.endpoint"] = self.s3_endpoint
            props["s3.region"] = "us-east-1"  # what the agent's own S3 client defaults to
            props["s3.force-virtual-addressing"] = "false"
        return props


def open_catalog(settings: CatalogSettings) -> SqlCatalog:
    """pyiceberg's SQL catalog in the metadata database (its tables created if missing), with
    the namespace `streamhouse`. Blocking: call it in a thread from async code."""
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog(CATALOG_NAME, **settings.properties())
    catalog.create_namespace_if_not_exists(NAMESPACE)
    return catalog


def identifier(topic: str) -> tuple[str, str]:
    return (NAMESPACE, topic)


def iceberg_schema(info: TopicInfo) -> Schema:
    """The topic's newest segment schema as an Iceberg schema, with the segments' field ids."""
    from pyiceberg.io.pyarrow import pyarrow_to_schema

    return pyarrow_to_schema(topic_arrow_schema(parse_value_schema(info.value_schema)))


def table_location(settings: CatalogSettings, info: TopicInfo) -> str:
    return f"{settings.base_url()}/{PREFIX}/{info.name}-{info.topic_id}"


def create_table(catalog: SqlCatalog, settings: CatalogSettings, info: TopicInfo) -> Table:
    """Write the table's first metadata file (our ids, identity spec on `_partition`) and
    register it. TableAlreadyExistsError if another holder registered it meanwhile."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.serializers import ToOutputFile
    from pyiceberg.table.metadata import TableMetadataV2
    from pyiceberg.table.sorting import UNSORTED_SORT_ORDER
    from pyiceberg.transforms import IdentityTransform

    schema = iceberg_schema(info)
    spec = PartitionSpec(
        PartitionField(
            source_id=SYSTEM_IDS[PARTITION_COLUMN],
            field_id=PARTITION_FIELD_ID,
            transform=IdentityTransform(),
            name=PARTITION_COLUMN,
        ),
        spec_id=0,
    )
    location = table_location(settings, info)
    metadata = TableMetadataV2.model_validate(
        {
            "location": location,
            "table-uuid": uuid.uuid4(),
            "last-updated-ms": 0,
            "last-column-id": schema.highest_field_id,
            "schemas": [schema],
            "current-schema-id": schema.schema_id,
            "partition-specs": [spec],
            "default-spec-id": 0,
            "last-partition-id": PARTITION_FIELD_ID,
            "sort-orders": [UNSORTED_SORT_ORDER],
            "default-sort-order-id": UNSORTED_SORT_ORDER.order_id,
            "properties": {
                TOPIC_ID: str(info.topic_id),
                # Old metadata JSON files go after commits; the segments are ours, never Iceberg's.
                "write.metadata.delete-after-commit.enabled": "true",
                "write.metadata.previous-versions-max": "10",
                # Segments keep no min/max statistics for keys, values and headers (opaque bytes):
                # no bounds for those columns, and no warning per file that they are missing.
                **{f"write.metadata.metrics.column.{c}": "none" for c in _NO_STATS},
            },
            "last-sequence-number": 0,
        }
    )
    path = f"{location}/metadata/00000-{uuid.uuid4()}.metadata.json"
    ToOutputFile.table_metadata(metadata, catalog._load_file_io(location=path).new_output(path))
    return catalog.register_table(identifier(info.name), path)


def load_or_create(catalog: SqlCatalog, settings: CatalogSettings, info: TopicInfo) -> Table:
    """The topic's table; created when missing, and made anew when it mirrors an earlier topic
    of the same name (a different topic id): the old table's files are that topic's, gone."""
    from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError

    try:
        table = catalog.load_table(identifier(info.name))
    except NoSuchTableError:
        try:
            return create_table(catalog, settings, info)
        except TableAlreadyExistsError:
            return catalog.load_table(identifier(info.name))
    if table.properties.get(TOPIC_ID) != str(info.topic_id):
        catalog.drop_table(identifier(info.name))
        return create_table(catalog, settings, info)
    return table


def drop_table(catalog: SqlCatalog, topic: str) -> bool:
    """Forget the topic's table (its metadata files stay under iceberg/; the data files are the
    segments, never Iceberg's to delete); False if it was gone already."""
    from pyiceberg.exceptions import NoSuchTableError

    try:
        catalog.drop_table(identifier(topic))
    except NoSuchTableError:
        return False
    return True


def evolve_schema(table: Table, info: TopicInfo) -> Table:
    """Add the columns the topic gained since the table's schema was set, with the segments'
    ids (pyiceberg's UpdateSchema would number them itself); the table as it is otherwise."""
    from pyiceberg.table.update import AddSchemaUpdate, AssertCurrentSchemaId, SetCurrentSchemaUpdate

    wanted = iceberg_schema(info)
    current = table.schema()
    if wanted.as_struct() == current.as_struct():
        return table
    wanted = wanted.model_copy(update={"schema_id": max(s.schema_id for s in table.schemas().values()) + 1})
    tx = table.transaction()
    tx._apply(
        (AddSchemaUpdate.model_validate({"schema": wanted}), SetCurrentSchemaUpdate.model_validate({"schema-id": -1})),
        (AssertCurrentSchemaId.model_validate({"current-schema-id": current.schema_id}),),
    )
    return tx.commit_transaction()


__all__ = [
    "NAMESPACE",
    "CatalogSettings",
    "create_table",
    "drop_table",
    "evolve_schema",
    "iceberg_schema",
    "identifier",
    "load_or_create",
    "open_catalog",
]
