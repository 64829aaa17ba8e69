"""Protobuf and JSON Schema topics through the partition writer (issue 13): records produce had
decoded are re-buffered from the WAL after a restart without their columns; the writer decodes
them again from the registry's writer schemas (storage/values/registry_formats.py decode_stored),
so SQL over the unflushed tail and the segment the flush then writes hold the typed columns (rows
of the older schema id read the newer column as NULL), never the JSON-decoded nulls."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.model import partition_resource
from streamhouse.storage.object_store import open_object_store
from streamhouse.storage.partition.reader import PartitionReader
from streamhouse.storage.partition.scan import ScanBounds, scan_partition
from streamhouse.storage.partition.writer import PartitionWriter
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.schemas.registry import SchemaText
from streamhouse.storage.values.json_schema_decode import json_schema_columns
from streamhouse.storage.values.protobuf_decode import protobuf_columns
from streamhouse.storage.wal.log import WriteAheadLog

PROTO_V1 = 'syntax = "proto3";\nmessage Visit {\n  string page = 1;\n  int64 ms = 2;\n}\n'
PROTO_V2 = PROTO_V1.replace("  int64 ms = 2;\n", "  int64 ms = 2;\n  string country = 3;\n")
JSON_V1 = {"type": "object", "properties": {"page": {"type": "string"}, "ms": {"type": "integer"}}}
JSON_V2 = {**JSON_V1, "properties": {**JSON_V1["properties"], "country": {"type": "string"}}}


def _proto(schema_id: int, page: str, ms: int, country: str | None = None) -> bytes:
    body = bytes([0x0A, len(page)]) + page.encode() + bytes([0x10, ms])
    if country is not None:
        body += bytes([0x1A, len(country)]) + country.encode()
    return b"\x00" + struct.pack(">I", schema_id) + b"\x00" + body


def _json(schema_id: int, doc: dict[str, Any]) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + json.dumps(doc).encode()


@pytest.mark.parametrize("kind", ["PROTOBUF", "JSON"])
async def test_replayed_rows_keep_their_columns_in_the_buffer_and_the_segment(tmp_path: Path, kind: str) -> None:
    metadata = await open_metadata_store(f"sqlite:///{tmp_path / 'meta.db'}")
    store = open_object_store(f"file://{tmp_path / 'objects'}")
    if kind == "PROTOBUF":
        texts = (PROTO_V1, PROTO_V2)
        declared = protobuf_columns(PROTO_V2, "visits-value")
    else:
        texts = (json.dumps(JSON_V1), json.dumps(JSON_V2))
        declared = json_schema_columns(texts[1], "visits-value")
    v1 = await metadata.registry_register("visits-value", SchemaText(kind, texts[0]), None)
    v2 = await metadata.registry_register("visits-value", SchemaText(kind, texts[1]), 1)
    topic = await metadata.create_topic("visits", 1, {}, declared.to_json())
    if kind == "PROTOBUF":
        rows = [_proto(v1.schema_id, "/a", 1), _proto(v2.schema_id, "/b", 2, "nl")]
    else:
        rows = [
            _json(v1.schema_id, {"page": "/a", "ms": 1}),
            _json(v2.schema_id, {"page": "/b", "ms": 2, "country": "nl"}),
        ]
    wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    await wal.replay()
    lease = await metadata.acquire_lease(partition_resource("visits", 0), "agent-a", 30_000)
    writer = await PartitionWriter.recover(
        topic, 0, holder="agent-a", epoch=lease.epoch, metadata=metadata, store=store, wal=wal, replayed=[]
    )
    await writer.append(make_batch(rows))  # acknowledged, never flushed: the agent dies here
    await wal.close()

    wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    replayed = (await wal.replay()).entries
    lease = await metadata.acquire_lease(partition_resource("visits", 0), "agent-a", 30_000)
    writer = await PartitionWriter.recover(
        topic, 0, holder="agent-a", epoch=lease.epoch, metadata=metadata, store=store, wal=wal, replayed=replayed
    )
    columns = ["offset", "v.page", "v.ms", "v.country"]
    for flushed in (False, True):
        if flushed:
            assert await writer.flush() is not None
        table, stats = await scan_partition(PartitionReader(metadata, store), topic, 0, ScanBounds(), columns, writer)
        assert stats.json_errors == 0
        assert stats.buffered_rows == (0 if flushed else 2)
        assert table.column("v.page").to_pylist() == ["/a", "/b"]
        assert table.column("v.ms").to_pylist() == [1, 2]
        assert table.column("v.country").to_pylist() == [None, "nl"]
    await wal.close()
    await metadata.close()
