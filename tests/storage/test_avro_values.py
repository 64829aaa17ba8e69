"""Avro topics' declared columns (storage/values/avro_decode.py): columns from a record schema,
the whole-batch decode (tombstones, fields older writers lack, bad values named by record), and
the segment writer's decode of batches produce did not leave decoded (replayed from the WAL):
real embedded agent, SQLite metadata with the registry tables, segments read back by SQL."""

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
from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.model import partition_resource
from streamhouse.storage.object_store import open_object_store
from streamhouse.storage.partition import roll
from streamhouse.storage.partition import writer as partition_writer
from streamhouse.storage.partition.reader import PartitionReader
from streamhouse.storage.partition.scan import ScanBounds, scan_partition
from streamhouse.storage.partition.writer import PartitionWriter
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.schemas.errors import AvroValueError
from streamhouse.storage.schemas.registry import SchemaText
from streamhouse.storage.values.avro_decode import avro_columns, decode_avro_values
from streamhouse.storage.wal.log import WriteAheadLog

V1 = {
    "type": "record",
    "name": "Click",
    "fields": [
        {"name": "user", "type": "string"},
        {"name": "n", "type": "int"},
        {"name": "raw", "type": "bytes"},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    ],
}
V2 = {**V1, "fields": [*V1["fields"], {"name": "country", "type": ["null", "string"], "default": None}]}


def _framed(schema_id: int, schema: dict[str, Any], row: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), row)
    return out.getvalue()


def test_columns_from_a_record_schema() -> None:
    schema = avro_columns(json.dumps(V2), "s-value")
    # bytes is a BYTES column (records ROW, tests/storage/test_nested_*.py).
    assert [(c.name, c.sql_type) for c in schema.columns] == [
        ("user", "STRING"),
        ("n", "INT"),
        ("raw", "BYTES"),
        ("day", "DATE"),
        ("country", "STRING"),
    ]
    assert (schema.format, schema.subject) == ("avro", "s-value")
    assert type(schema).from_json(schema.to_json()) == schema


def test_decode_lines_up_ids_and_refuses_a_bad_record() -> None:
    schema = avro_columns(json.dumps(V2), "s-value")
    rows = [
        _framed(1, V1, {"user": "a", "n": 1, "raw": b"x", "day": 19000}),
        None,  # a tombstone: a row of nulls
        _framed(2, V2, {"user": "b", "n": 2, "raw": b"", "day": 19001, "country": "nl"}),
    ]
    table = decode_avro_values(pa.array(rows, pa.binary()), schema, {1: json.dumps(V1), 2: json.dumps(V2)})
    assert table.schema.names == ["v.user", "v.n", "v.raw", "v.day", "v.country"]
    assert table.column("v.raw").to_pylist() == [b"x", None, b""]
    assert table.column("v.user").to_pylist() == ["a", None, "b"]
    assert table.column("v.country").to_pylist() == [None, None, "nl"]  # v1 has no country: null
    bad = [rows[0], rows[0][:6]]
    with pytest.raises(AvroValueError, match="record 1") as caught:
        decode_avro_values(pa.array(bad, pa.binary()), schema, {1: json.dumps(V1)})
    assert caught.value.index == 1


def test_writer_decodes_replayed_avro_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no produce-time columns (as after a WAL replay) the writer looks the writer schemas
    up and decodes; it must never JSON-decode Avro values."""

    def refuse(*args: object) -> object:
        raise AssertionError("the segment writer JSON-decoded an Avro topic")

    monkeypatch.setattr(roll, "with_declared_columns", refuse)
    monkeypatch.setattr(partition_writer.PartitionWriter, "_decoded_for", lambda self, batches, schema: None)
    with streamhouse.open(tmp_path) as sh:
        transport: Any = sh.transport
        metadata = transport.service.metadata
        v1 = transport._run(metadata.registry_register("clicks-value", SchemaText("AVRO", json.dumps(V1)), None))
        v2 = transport._run(metadata.registry_register("clicks-value", SchemaText("AVRO", json.dumps(V2)), 1))
        sh.sql("CREATE TOPIC clicks WITH (format = 'avro', partitions = 1)")
        values = [
            _framed(v1.schema_id, V1, {"user": "a", "n": 1, "raw": b"", "day": 1}),
            _framed(v2.schema_id, V2, {"user": "b", "n": 2, "raw": b"", "day": 2, "country": "nl"}),
        ]
        sh.produce_batch("clicks", values, partition=0)
    with streamhouse.open(tmp_path) as sh:  # reopened: read back from the segment
        assert sh.describe("clicks").partitions[0].segments >= 1
        rows = sh.sql("SELECT user, n, country FROM clicks ORDER BY _offset").to_pylist()
    assert rows == [{"user": "a", "n": 1, "country": None}, {"user": "b", "n": 2, "country": "nl"}]


def test_produce_decoded_avro_columns_are_written_as_they_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Produce decodes once; the writer stores those columns without a second decode. The
    watermark of an Avro topic names a field of the subject's schema (timestamp-millis)."""

    def refuse(*args: object) -> object:
        raise AssertionError("the segment writer decoded values produce had already decoded")

    monkeypatch.setattr(partition_writer, "decode_stored", refuse)
    monkeypatch.setattr(roll, "with_declared_columns", refuse)
    timed = {
        "type": "record",
        "name": "Tick",
        "fields": [
            {"name": "sym", "type": "string"},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
    with streamhouse.open(tmp_path) as sh:
        transport: Any = sh.transport
        stored = transport._run(
            transport.service.metadata.registry_register("ticks-v", SchemaText("AVRO", json.dumps(timed)), None)
        )
        with pytest.raises(StreamHouseError, match="WATERMARK FOR nope"):
            sh.sql("CREATE TOPIC bad (WATERMARK FOR nope AS nope) WITH (format = 'avro', subject = 'ticks-v')")
        sh.sql(
            "CREATE TOPIC ticks (WATERMARK FOR at AS at - INTERVAL '1' SECOND) "
            "WITH (format = 'avro', subject = 'ticks-v', partitions = 1)"
        )
        rows = [{"sym": "a", "at": 1_000}, {"sym": "b", "at": 2_000}]
        sh.produce_batch("ticks", [_framed(stored.schema_id, timed, r) for r in rows], partition=0)
    with streamhouse.open(tmp_path) as sh:
        assert sh.describe("ticks").partitions[0].segments >= 1
        got = sh.sql("SELECT sym, CAST(at AS BIGINT) AS ms FROM ticks ORDER BY _offset").to_pylist()
    assert got == [{"sym": "a", "ms": 1_000}, {"sym": "b", "ms": 2_000}]


async def test_unflushed_avro_rows_replayed_from_the_wal_keep_their_columns(tmp_path: Path) -> None:
    """After a restart the WAL re-buffers records produce had decoded; SQL over that unflushed
    tail (storage/partition/scan.py) must read their typed columns, not JSON-decode Avro
    values into nulls: recovery decodes them from the registry's writer schemas."""
    metadata = await open_metadata_store(f"sqlite:///{tmp_path / 'meta.db'}")
    store = open_object_store(f"file://{tmp_path / 'objects'}")
    v1 = await metadata.registry_register("clicks-value", SchemaText("AVRO", json.dumps(V1)), None)
    v2 = await metadata.registry_register("clicks-value", SchemaText("AVRO", json.dumps(V2)), 1)
    declared = avro_columns(json.dumps(V2), "clicks-value")
    topic = await metadata.create_topic("clicks", 1, {}, declared.to_json())
    rows = [
        _framed(v1.schema_id, V1, {"user": "a", "n": 1, "raw": b"", "day": 1}),
        _framed(v2.schema_id, V2, {"user": "b", "n": 2, "raw": b"", "day": 2, "country": "nl"}),
    ]
    wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    await wal.replay()
    lease = await metadata.acquire_lease(partition_resource("clicks", 0), "agent-a", 30_000)
    writer = await PartitionWriter.recover(
        topic, 0, holder="agent-a", epoch=lease.epoch, metadata=metadata, store=store, wal=wal, replayed=[]
    )
    await writer.append(make_batch(rows))  # acknowledged at the leader, never flushed
    await wal.close()  # the agent dies here

    wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    replayed = (await wal.replay()).entries
    lease = await metadata.acquire_lease(partition_resource("clicks", 0), "agent-a", 30_000)
    writer = await PartitionWriter.recover(
        topic, 0, holder="agent-a", epoch=lease.epoch, metadata=metadata, store=store, wal=wal, replayed=replayed
    )
    assert writer.next_offset == 2 and writer.durable_end == 0  # served from the buffer
    table, stats = await scan_partition(
        PartitionReader(metadata, store), topic, 0, ScanBounds(), ["offset", "v.user", "v.n", "v.country"], writer
    )
    assert stats.buffered_rows == 2 and stats.json_errors == 0
    assert table.column("v.user").to_pylist() == ["a", "b"]
    assert table.column("v.n").to_pylist() == [1, 2]
    assert table.column("v.country").to_pylist() == [None, "nl"]
    await wal.close()
    await metadata.close()
