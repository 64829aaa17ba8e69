"""Schema evolution of Avro topics (issue 13, storage/values/avro_evolve.py): a value whose writer
schema has fields the topic lacks grows the topic's declared columns (appended, stored once in
the metadata store); segments written before read the new column as nulls (storage/partition/
scan.py, storage/segment/decode.py with_null_columns), and so do buffered rows decoded before;
a field retyped incompatibly is refused and nothing is stored. Real embedded agent, SQLite
metadata with the registry tables, segments on the local object store."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pytest

import streamhouse
from streamhouse.storage.errors import StreamHouseError
from streamhouse.storage.schemas.registry import SchemaText
from streamhouse.storage.segment.decode import with_null_columns
from streamhouse.storage.values.avro_decode import avro_columns
from streamhouse.storage.values.avro_evolve import ColumnEvolutionError, extends, grown

V1 = {
    "type": "record",
    "name": "Click",
    "fields": [{"name": "user", "type": "string"}, {"name": "n", "type": "int"}],
}
V2 = {**V1, "fields": [*V1["fields"], {"name": "country", "type": ["null", "string"], "default": None}]}
# Avro promotes int to long (BACKWARD compatible), but the declared column n is INT: refused.
V3 = {**V2, "fields": [V2["fields"][0], {"name": "n", "type": "long"}, V2["fields"][2]]}


def _framed(schema_id: int, schema: dict[str, Any], row: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), row)
    return out.getvalue()


def test_growth_appends_and_never_retypes() -> None:
    v1 = avro_columns(json.dumps(V1), "s-value")
    assert grown(v1, json.dumps(V1), topic="t", schema_id=1, index=0) is None
    v2 = grown(v1, json.dumps(V2), topic="t", schema_id=2, index=0)
    assert v2 is not None and [c.name for c in v2.columns] == ["user", "n", "country"]
    assert extends(v1, v2) and not extends(v2, v1)
    assert grown(v2, json.dumps(V1), topic="t", schema_id=1, index=0) is None  # an older writer adds nothing
    with pytest.raises(ColumnEvolutionError, match="'n' is BIGINT, but the topic's column 'n' is INT") as caught:
        grown(v2, json.dumps(V3), topic="t", schema_id=3, index=4)
    assert caught.value.index == 4
    # The other way round (declared BIGINT, an older writer's int) widens losslessly: accepted.
    wide = avro_columns(json.dumps(V3), "s-value")
    assert grown(wide, json.dumps(V2), topic="t", schema_id=2, index=0) is None


def test_missing_columns_read_as_typed_nulls() -> None:
    table = pa.table({"offset": pa.array([1, 2], pa.int64()), "v.user": ["a", "b"]})
    want = pa.schema([("offset", pa.int64()), ("v.user", pa.string()), ("v.country", pa.string())])
    out = with_null_columns(table, want)
    assert out.schema.equals(want)
    assert out.column("v.country").to_pylist() == [None, None]
    assert with_null_columns(table, pa.schema([("v.user", pa.string())])).column_names == ["v.user"]


def test_old_segments_and_buffered_rows_read_an_added_column_as_null(tmp_path: Path) -> None:
    with streamhouse.open(tmp_path) as sh:
        transport: Any = sh.transport
        metadata = transport.service.metadata
        v1 = transport._run(metadata.registry_register("clicks-value", SchemaText("AVRO", json.dumps(V1)), None))
        sh.sql("CREATE TOPIC clicks WITH (format = 'avro', partitions = 1)")
        # Flushed before the evolution: a segment without v.country.
        sh.produce_batch("clicks", [_framed(v1.schema_id, V1, {"user": "a", "n": 1})], partition=0, acks="durable")
        assert sh.describe("clicks").partitions[0].segments == 1
        # Buffered before the evolution: decoded into the old columns.
        sh.produce_batch("clicks", [_framed(v1.schema_id, V1, {"user": "b", "n": 2})], partition=0)
        v2 = transport._run(metadata.registry_register("clicks-value", SchemaText("AVRO", json.dumps(V2)), 1))
        values = [
            _framed(v2.schema_id, V2, {"user": "c", "n": 3, "country": "nl"}),
            _framed(v1.schema_id, V1, {"user": "d", "n": 4}),
        ]
        sh.produce_batch("clicks", values, partition=0)
        expected = [
            {"user": "a", "n": 1, "country": None},
            {"user": "b", "n": 2, "country": None},
            {"user": "c", "n": 3, "country": "nl"},
            {"user": "d", "n": 4, "country": None},
        ]
        assert sh.sql("SELECT user, n, country FROM clicks ORDER BY _offset").to_pylist() == expected
        described = sh.sql("DESCRIBE clicks").to_pylist()
        assert "country" in json.dumps(described)
        stored = transport._run(metadata.get_topic("clicks")).value_schema
        assert [c["name"] for c in json.loads(stored)["columns"]] == ["user", "n", "country"]
        assert json.loads(stored)["version"] == 2  # the subject version the columns now follow

        # A retyped field is refused, nothing stored, the columns unchanged.
        v3 = transport._run(metadata.registry_register("clicks-value", SchemaText("AVRO", json.dumps(V3)), 2))
        with pytest.raises(StreamHouseError, match="never retyped"):
            sh.produce_batch("clicks", [_framed(v3.schema_id, V3, {"user": "e", "n": 5, "country": "x"})], partition=0)
        assert transport._run(metadata.get_topic("clicks")).value_schema == stored
    with streamhouse.open(tmp_path) as sh:  # reopened: every row read back from segments
        assert sh.describe("clicks").partitions[0].segments >= 2
        assert sh.sql("SELECT user, n, country FROM clicks ORDER BY _offset").to_pylist() == expected
        assert sh.sql("SELECT count(*) AS c FROM clicks WHERE country IS NULL").column("c").to_pylist() == [3]


def test_an_older_version_than_the_columns_adds_nothing(tmp_path: Path) -> None:
    """Created from v2, which dropped v1's `legacy`: rows an old producer still writes with v1
    do not bring `legacy` back as a column (only newer versions grow the columns)."""
    legacy = {**V1, "fields": [*V1["fields"], {"name": "legacy", "type": "string", "default": ""}]}
    with streamhouse.open(tmp_path) as sh:
        transport: Any = sh.transport
        metadata = transport.service.metadata
        old = transport._run(metadata.registry_register("c-value", SchemaText("AVRO", json.dumps(legacy)), None))
        transport._run(metadata.registry_register("c-value", SchemaText("AVRO", json.dumps(V1)), 1))
        sh.sql("CREATE TOPIC c WITH (format = 'avro', partitions = 1)")
        before = transport._run(metadata.get_topic("c")).value_schema
        assert json.loads(before)["version"] == 2
        sh.produce_batch("c", [_framed(old.schema_id, legacy, {"user": "a", "n": 1, "legacy": "x"})], partition=0)
        assert transport._run(metadata.get_topic("c")).value_schema == before
        assert sh.sql("SELECT user, n FROM c").to_pylist() == [{"user": "a", "n": 1}]
