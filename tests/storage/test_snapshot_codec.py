"""The metadata snapshot codec (storage/metadata/snapshot.py): tables ↔ bytes, pure."""

from __future__ import annotations

import pytest

from streamhouse.storage.errors import CorruptDataError, InvalidInputError
from streamhouse.storage.metadata.snapshot import (
    MetadataDump,
    Table,
    decode_snapshot,
    encode_snapshot,
    insert_order,
    latest_first,
    snapshot_key,
    snapshot_time,
)

DUMP = MetadataDump(
    taken_ms=1_767_225_600_123,
    schema_version=6,
    tables=(
        Table("topics", ("name", "topic_id", "config", "schema"), (("t", 1, "{}", None), ("ü", 2**62, "{}", "x"))),
        Table("partitions", ("topic", "partition_id", "end_offset", "ratio", "flag"), (("t", 0, 10, 0.5, True),)),
        Table("empty", ("a",), ()),
    ),
)


def test_round_trip_keeps_every_value_type_and_table_order() -> None:
    data = encode_snapshot(DUMP)
    assert decode_snapshot(data, source="k") == DUMP
    back = decode_snapshot(memoryview(data), source="k")
    assert back.table("topics") == DUMP.tables[0] and back.table("nope") is None
    assert back.row_counts() == {"topics": 2, "partitions": 1, "empty": 0}


@pytest.mark.parametrize("where", [0, 9, 14, 20, -1])
def test_any_damaged_byte_is_a_corrupt_data_error_naming_the_object(where: int) -> None:
    data = bytearray(encode_snapshot(DUMP))
    data[where] ^= 0x40
    with pytest.raises(CorruptDataError, match="_metadata/snapshots/x") as info:
        decode_snapshot(bytes(data), source="s3://b/p/_metadata/snapshots/x")
    assert info.value.source == "s3://b/p/_metadata/snapshots/x"


def test_truncated_and_empty_snapshots_are_corrupt() -> None:
    data = encode_snapshot(DUMP)
    for cut in (b"", data[:5], data[:-1], data + b"\0"):
        with pytest.raises(CorruptDataError, match="obj"):
            decode_snapshot(cut, source="obj")


def test_a_well_formed_document_of_another_shape_is_corrupt() -> None:
    import json
    import struct
    import zlib

    from streamhouse.storage.checksum import crc32c
    from streamhouse.storage.metadata.snapshot import MAGIC

    def framed(document: object) -> bytes:
        body = zlib.compress(json.dumps(document).encode())
        return MAGIC + struct.pack(">IQ", crc32c(body), len(body)) + body

    base = {"format": "streamhouse-metadata-snapshot", "format_version": 1, "schema_version": 6, "taken_ms": 5}
    with pytest.raises(CorruptDataError, match="format version 99"):
        decode_snapshot(framed({**base, "format_version": 99, "tables": []}), source="o")
    with pytest.raises(CorruptDataError, match="2 columns"):
        decode_snapshot(framed({**base, "tables": [{"name": "t", "columns": ["a", "b"], "rows": [[1]]}]}), source="o")
    with pytest.raises(CorruptDataError, match="not portable"):
        decode_snapshot(framed({**base, "tables": [{"name": "t", "columns": ["a"], "rows": [[[1]]]}]}), source="o")
    with pytest.raises(CorruptDataError, match="bad table or column name"):
        decode_snapshot(framed({**base, "tables": [{"name": "t; DROP", "columns": [], "rows": []}]}), source="o")
    assert decode_snapshot(framed({**base, "tables": []}), source="o") == MetadataDump(5, 6, ())


def test_values_that_would_not_come_back_equal_are_refused_when_encoding() -> None:
    with pytest.raises(InvalidInputError, match="bytes is not portable"):
        encode_snapshot(MetadataDump(1, 1, (Table("t", ("a",), ((b"raw",),)),)))
    with pytest.raises(InvalidInputError, match="repeats a column"):
        encode_snapshot(MetadataDump(1, 1, (Table("t", ("a", "a"), ()),)))


def test_keys_sort_by_time_and_other_keys_are_ignored() -> None:
    keys = [snapshot_key(5, "abcdef12"), snapshot_key(1_767_225_600_000, "0011aabb"), snapshot_key(40, "ffffffff")]
    assert snapshot_time(keys[1]) == 1_767_225_600_000
    assert latest_first([*keys, "_metadata/snapshots/junk", "topics/t/00000/x.parquet"]) == [keys[1], keys[2], keys[0]]
    with pytest.raises(InvalidInputError):
        snapshot_key(-1, "abcdef12")


def test_insert_order_puts_parents_first_and_refuses_a_cycle() -> None:
    parents = {"segments": {"partitions"}, "partitions": {"topics"}, "offsets": {"partitions", "x"}}
    assert insert_order(["offsets", "segments", "topics", "partitions", "jobs"], parents) == [
        "jobs",
        "topics",
        "partitions",
        "offsets",
        "segments",
    ]
    with pytest.raises(InvalidInputError, match="cycle"):
        insert_order(["a", "b"], {"a": {"b"}, "b": {"a"}})
