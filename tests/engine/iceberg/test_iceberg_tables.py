"""A topic's Iceberg table without an agent (engine/iceberg/tables.py, data_files.py, mirror.py):
the catalog in a SQLite metadata file, a table keeping the segments' own field ids, data file
entries built from a Parquet footer with the partition stated, a schema grown with the topic's
columns, and the URL ↔ key mapping; fast, on layout-2 files written here with field_ids.py."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamhouse.iceberg.data_files import has_field_ids
from streamhouse.iceberg.mirror import END_OFFSETS, TableMirror
from streamhouse.iceberg.tables import CatalogSettings, iceberg_schema, open_catalog
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.model import SegmentInfo, TopicInfo
from streamhouse.storage.segment.field_ids import topic_arrow_schema
from streamhouse.storage.values.schema import parse_value_schema

SCHEMA_V1 = json.dumps({"columns": [{"name": "price", "type": "BIGINT"}]})
SCHEMA_V2 = json.dumps({"columns": [{"name": "price", "type": "BIGINT"}, {"name": "item", "type": "VARCHAR"}]})


def _segment_file(root: Path, info: TopicInfo, partition: int, base: int, prices: list[int]) -> SegmentInfo:
    """A layout-2 Parquet file as the segment writer lays it out (field ids from field_ids.py)."""
    schema = topic_arrow_schema(parse_value_schema(info.value_schema))
    n = len(prices)
    columns = {
        "_partition": pa.array([partition] * n, pa.int32()),
        "_offset": pa.array(range(base, base + n), pa.int64()),
        "_timestamp": pa.array([1_700_000_000_000 + i for i in range(n)], pa.timestamp("ms", tz="UTC")),
        "_key": pa.nulls(n, pa.binary()),
        "_value": pa.nulls(n, pa.binary()),
        "_headers": pa.nulls(n, schema.field("_headers").type),
        "price": pa.array(prices, pa.int64()),
    }
    table = pa.table([columns[f.name] for f in schema], schema=schema)
    key = f"topics/{info.name}/{partition}/{base:020d}-e1.parquet"
    path = root / "objects" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    size = path.stat().st_size
    return SegmentInfo(info.name, partition, base, base + n, 0, 0, size, key, 1, 0, 0)


def test_a_table_keeps_the_segment_ids_states_partitions_and_grows_columns(tmp_path: Path) -> None:
    settings = CatalogSettings(f"sqlite:///{tmp_path / 'meta.db'}", f"file://{tmp_path / 'objects'}")
    info = TopicInfo("bids", 7, 2, {}, SCHEMA_V1)
    mirror = TableMirror(open_catalog(settings), settings)
    assert mirror.load(info) == set()
    segments = [_segment_file(tmp_path, info, 0, 0, [5, 50]), _segment_file(tmp_path, info, 1, 0, [500])]
    add = [(s, pq.read_metadata(tmp_path / "objects" / s.object_key)) for s in segments]
    assert all(has_field_ids(meta) for _, meta in add)
    outcome = mirror.commit(info, add, [], segments)
    assert (outcome.added, outcome.removed, dict(outcome.end_offsets)) == (2, 0, {0: 2, 1: 1})

    table = open_catalog(settings).load_table(("streamhouse", "bids"))
    assert table.schema().find_field("price").field_id == 1000  # the segments' id, not a fresh one
    assert json.loads(table.current_snapshot().summary[END_OFFSETS]) == {"0": 2, "1": 1}
    files = list(table.scan(row_filter="_partition == 1").plan_files())
    assert [f.file.partition[0] for f in files] == [1]
    assert table.scan(row_filter="price > 10").to_arrow()["price"].to_pylist() in ([50, 500], [500, 50])

    # The topic gains a column: the table's schema grows with its segment id; old files read nulls.
    grown = TopicInfo("bids", 7, 2, {}, SCHEMA_V2)
    assert mirror.load(grown) == {settings.object_url(s.object_key) for s in segments}
    table = open_catalog(settings).load_table(("streamhouse", "bids"))
    assert table.schema().find_field("item").field_id == 1001
    assert table.scan().to_arrow()["item"].null_count == 3
    # The first file goes (retention), in one overwrite snapshot.
    assert mirror.commit(grown, [], [settings.object_url(segments[0].object_key)], segments[1:]).removed == 1
    assert open_catalog(settings).load_table(("streamhouse", "bids")).scan().to_arrow().num_rows == 1

    # A recreated topic (another id) gets a new, empty table.
    assert TableMirror(open_catalog(settings), settings).load(TopicInfo("bids", 8, 1, {}, SCHEMA_V1)) == set()


def test_files_without_field_ids_are_not_published(tmp_path: Path) -> None:
    pq.write_table(pa.table({"offset": [1], "v.price": [2]}), tmp_path / "old.parquet")
    assert not has_field_ids(pq.read_metadata(tmp_path / "old.parquet"))
    assert iceberg_schema(TopicInfo("raw", 1, 1)).find_field("_value").field_id == 5


def test_urls_and_database_urls() -> None:
    s3 = CatalogSettings("postgresql://u@h:5/db", "s3://bucket/pre", "http://127.0.0.1:9000")
    assert s3.sqlalchemy_url() == "postgresql+psycopg2://u@h:5/db"
    assert s3.object_url("topics/t/0/x.parquet") == "s3://bucket/pre/topics/t/0/x.parquet"
    assert s3.object_key("s3://bucket/pre/topics/t/0/x.parquet") == "topics/t/0/x.parquet"
    assert s3.object_key("s3://other/pre/topics/x") is None
    assert s3.properties()["s3.endpoint"] == "http://127.0.0.1:9000"
    assert CatalogSettings("sqlite:///a.db", "/data/objects").object_url("k") == "file:///data/objects/k"
    with pytest.raises(InvalidInputError, match="metadata URL"):
        CatalogSettings("mysql://x", "s3://b").sqlalchemy_url()
    with pytest.raises(InvalidInputError, match="object store"):
        CatalogSettings("sqlite:///a.db", "gs://b").base_url()
