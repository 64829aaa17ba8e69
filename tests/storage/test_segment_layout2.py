"""Segment layout 2 (issue 16, storage/segment/field_ids.py): plain Parquet with field ids that
DuckDB and pyiceberg read natively, decoded to exactly what layout 1 decodes to, layout 1
segments still read, merges and compactions written as layout 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streamhouse.storage.checksum import crc32c
from streamhouse.storage.errors import CorruptDataError
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.segment import footer as f
from streamhouse.storage.segment.compacted import compact_segments
from streamhouse.storage.segment.field_ids import (
    DECLARED_BASE,
    FIELD_ID_KEY,
    NESTED_BASE,
    field_id,
    topic_arrow_schema,
)
from streamhouse.storage.segment.format import (
    SegmentFooter,
    column_min_max,
    decode_row_groups,
    decode_segment,
    encode_segment,
)
from streamhouse.storage.segment.merge import merge_segments
from streamhouse.storage.values.json_decode import with_declared_columns
from streamhouse.storage.values.schema import Column, ValueSchema
from tests.storage.test_segment_format import assert_same, chunks_of, footer_of
from tests.strategies import record_batches

COLUMNS = (
    Column("auction", "BIGINT"),
    Column("price", "DOUBLE"),
    Column("ts", "TIMESTAMP(3)"),
    Column("bid", "ROW<who STRING, items ARRAY<ROW<sku STRING, qty INT>>>"),
    Column("attrs", "MAP<STRING, BIGINT>"),
)
SCHEMA = ValueSchema(COLUMNS)
# Schema evolution appends: a top-level column, a ROW child, a child of a ROW inside an ARRAY.
EVOLVED = ValueSchema(
    (
        *COLUMNS[:3],
        Column("bid", "ROW<who STRING, items ARRAY<ROW<sku STRING, qty INT, note STRING>>, tip DOUBLE>"),
        COLUMNS[4],
        Column("value", "STRING"),  # a declared name equal to a record column's
    )
)


def records(n: int = 400, base: int = 0, schema: ValueSchema = SCHEMA) -> pa.Table:
    values = [
        json.dumps(
            {
                "auction": i,
                "price": i / 4,
                "ts": 1_700_000_000_000 + i,
                "bid": {"who": f"u{i % 5}", "items": [{"sku": f"s{i}", "qty": i % 3, "note": "n"}], "tip": 0.5},
                "attrs": {"a": i},
                "value": "v",
            }
        ).encode()
        if i % 7
        else None
        for i in range(n)
    ]
    batch = make_batch(values, keys=[str(i % 3).encode() for i in range(n)], timestamps=[5 * i for i in range(n)])
    rebased = pa.Table.from_batches([batch]).set_column(0, "offset", pa.array(range(base, base + n), pa.int64()))
    return with_declared_columns(rebased.cast(pa.Table.from_batches([batch]).schema), schema)[0]


def encoded(table: pa.Table, layout: int, **kw: Any) -> tuple[SegmentFooter, bytes]:
    seg = encode_segment(table, topic="bids", partition=7, epoch=1, row_group_bytes=4096, layout=layout, **kw)
    return footer_of(seg, source=f"layout{layout}"), seg.data


def walk(fields: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], int | None]:
    """Every field (nested too) by name path → its field id."""
    out: dict[tuple[str, ...], int | None] = {}
    for field in fields:
        here = (*path, field.name)
        out[here] = field_id(field)
        t = field.type
        if pa.types.is_struct(t):
            out.update(walk([t.field(i) for i in range(t.num_fields)], here))
        elif pa.types.is_map(t):
            out.update(walk([t.key_field, t.item_field], here))
        elif pa.types.is_list(t):
            out.update(walk([t.value_field], here))
    return out


def test_both_layouts_decode_to_the_same_records_and_footer_facts() -> None:
    table = records()
    (old, old_data), (new, new_data) = encoded(table, 1), encoded(table, 2)
    assert (old.layout, new.layout) == (1, 2)
    assert (old.metadata.metadata or {})[f.KEY_FORMAT_VERSION.encode()] == b"1"
    assert (new.metadata.metadata or {})[f.KEY_FORMAT_VERSION.encode()] == b"3"
    assert new.schema.equals(old.schema, check_metadata=True)
    assert len(new.row_groups) > 3
    same = ["base_offset", "end_offset", "first_offset", "last_offset", "min_timestamp", "max_timestamp", "num_rows"]
    for a, b in zip(old.row_groups, new.row_groups, strict=True):
        assert [getattr(a, k) for k in same] == [getattr(b, k) for k in same]
    for footer, data in ((old, old_data), (new, new_data)):
        assert_same(decode_segment(footer, data), table)
        assert_same(decode_segment(footer, data, row_groups=[1, 3]), decode_segment(old, old_data, row_groups=[1, 3]))
        picked = decode_row_groups(footer, chunks_of(footer, data, [0, 2]), columns=["v.bid", "timestamp", "v.attrs"])
        assert_same(picked, decode_row_groups(old, chunks_of(old, old_data, [0, 2]), ["v.bid", "timestamp", "v.attrs"]))
    assert_same(decode_row_groups(new, {}, columns=["v.ts"]), decode_row_groups(old, {}, columns=["v.ts"]))
    for column in ("offset", "timestamp", "v.ts", "v.auction"):  # what scans prune row groups by
        stats = [[column_min_max(x, i, column) for i in range(len(x.row_groups))] for x in (old, new)]
        assert stats[0] == stats[1] and None not in stats[0]
    assert column_min_max(new, 0, "value") is None and column_min_max(new, 0, "v.bid") is None


@given(batch=record_batches(), row_group_bytes=st.integers(min_value=64, max_value=1 << 16))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_any_records_decode_alike_from_both_layouts(batch: pa.RecordBatch, row_group_bytes: int) -> None:
    assume(batch.num_rows > 0)
    table = pa.Table.from_batches([batch])
    outs = []
    for layout in (1, 2):
        seg = encode_segment(table, topic="t", partition=0, epoch=1, row_group_bytes=row_group_bytes, layout=layout)
        footer = footer_of(seg)
        outs.append((decode_segment(footer, seg.data), [(g.min_timestamp, g.max_timestamp) for g in footer.row_groups]))
    assert_same(outs[1][0], table)
    assert_same(outs[0][0], outs[1][0])
    assert outs[0][1] == outs[1][1]  # time pruning reads the same statistics


def test_layout_2_is_plain_parquet_with_field_ids(tmp_path: Path) -> None:
    table = records(n=50)
    _, data = encoded(table, 2)
    path = tmp_path / "seg.parquet"
    path.write_bytes(data)
    stored = pq.read_schema(path)
    want = topic_arrow_schema(SCHEMA)
    assert stored.names == [
        "_partition",
        "_offset",
        "_timestamp",
        "_key",
        "_value",
        "_headers",
        *SCHEMA.arrow_schema().names,
    ]
    ids = walk(stored)
    assert None not in ids.values() and len(set(ids.values())) == len(ids)  # every field, nested too, unique
    assert ids == walk(want)  # the writer and topic_arrow_schema (the Iceberg schema's source) agree
    assert ids[("_offset",)] == 2 and ids[("auction",)] == DECLARED_BASE and ids[("attrs",)] == DECLARED_BASE + 4
    assert all(v >= NESTED_BASE for k, v in ids.items() if len(k) > 1 and k[0] == "bid")
    assert stored.field("_timestamp").type == pa.timestamp("ms", tz="UTC")
    parquet_ids = pq.ParquetFile(path).schema  # the ids are in the Parquet schema itself, not only Arrow's
    assert "field_id=3 _timestamp" in str(parquet_ids) and "isAdjustedToUTC=true" in str(parquet_ids)
    read = pq.read_table(path)
    assert read.column("_partition").to_pylist() == [7] * 50
    assert read.column("_timestamp").cast(pa.int64()).equals(table.column("timestamp"))
    assert read.column("bid").cast(table.schema.field("v.bid").type).equals(table.column("v.bid"))


def test_duckdb_reads_plain_names_and_a_utc_timestamp(tmp_path: Path) -> None:
    table = records(n=60)
    _, data = encoded(table, 2)
    path = tmp_path / "seg.parquet"
    path.write_bytes(data)
    con = duckdb.connect()
    described = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '{path}')").fetchall())
    assert described["_timestamp"] == "TIMESTAMP WITH TIME ZONE" and described["ts"] == "TIMESTAMP"
    assert described["_offset"] == "BIGINT" and described["bid"].startswith("STRUCT(who VARCHAR, items STRUCT(")
    con.execute("SET TimeZone = 'UTC'")
    rows = con.execute(
        f"SELECT _offset, epoch_ms(_timestamp), auction, bid.items[1].sku FROM read_parquet('{path}') "
        "WHERE _timestamp >= TIMESTAMPTZ '1970-01-01 00:00:00.250+00' AND _partition = 7 ORDER BY _offset"
    ).fetchall()
    want = [(o, 5 * o, None if o % 7 == 0 else o, None if o % 7 == 0 else f"s{o}") for o in range(50, 60)]
    assert rows == want


def test_field_ids_survive_schema_evolution() -> None:
    before, after = walk(topic_arrow_schema(SCHEMA)), walk(topic_arrow_schema(EVOLVED))
    assert {k: after[k] for k in before} == before  # every old field keeps its id
    assert set(after) - set(before) == {
        ("bid", "items", "element", "note"),
        ("bid", "tip"),
        ("value",),
    }
    assert after[("value",)] == DECLARED_BASE + 5 and len(set(after.values())) == len(after)
    # A segment written before the evolution carries the same ids for what it has.
    _, data = encoded(records(n=10), 2)
    old_file = walk(pq.read_schema(pa.BufferReader(data)))
    assert {k: after[k] for k in old_file} == old_file
    _, data = encoded(records(n=10, schema=EVOLVED), 2)
    assert walk(pq.read_schema(pa.BufferReader(data))) == after


def test_merges_and_compactions_of_layout_1_segments_are_written_as_layout_2() -> None:
    first, second = records(n=30), records(n=20, base=30)
    inputs = [encoded(first, 1), encoded(second, 2)]  # an upgrade: old and new neighbours
    merged = merge_segments(inputs, epoch=2)
    footer = footer_of(merged, source="merged")
    assert footer.layout == 2 and footer.metadata.metadata[f.KEY_FORMAT_VERSION.encode()] == b"3"  # type: ignore[index]
    assert_same(decode_segment(footer, merged.data), pa.concat_tables([first, second]))
    passes = [
        compact_segments(
            [encoded(first, layout), encoded(second, layout)], [[0], [1]], now_ms=10**13, delete_retention_ms=0
        )
        for layout in (1, 2)
    ]
    assert passes[0].counts == passes[1].counts and passes[0].counts.records_out < 50
    for old, new in zip(passes[0].segments, passes[1].segments, strict=True):
        a, b = footer_of(old, source="from-layout-1"), footer_of(new, source="from-layout-2")
        assert a.layout == b.layout == 2 and not a.dense  # gapped, and version 3 all the same
        assert_same(decode_segment(a, old.data), decode_segment(b, new.data))


def test_a_layout_2_footer_whose_columns_do_not_match_its_schema_is_corrupt() -> None:
    footer, data = encoded(records(n=10), 2)
    kv = dict(footer.metadata.metadata or {})
    physical = pq.read_table(pa.BufferReader(data))
    liar = physical.rename_columns([n if n != "price" else "cost" for n in physical.column_names])
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, liar.schema, store_schema=False) as writer:
        writer.write_table(liar)
        writer.add_key_value_metadata({k.decode(): v.decode() for k, v in kv.items()})
    raw = sink.getvalue().to_pybytes()
    tail = raw[-(int.from_bytes(raw[-8:-4], "little") + 8) :]
    with pytest.raises(CorruptDataError, match="layout 2 columns"):
        f.parse_footer(tail, size_bytes=len(raw), footer_crc=crc32c(tail), source="liar")
    assert FIELD_ID_KEY == b"PARQUET:field_id"
