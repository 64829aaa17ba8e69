"""Declared value columns: the schema rules and the whole-buffer JSON decoder (docs/DESIGN.md §7)."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.values.json_decode import decode_json_values, json_errors, with_declared_columns
from streamhouse.storage.values.schema import Column, ValueSchema, Watermark, arrow_type

SCHEMA = ValueSchema(
    (
        Column("auction", "BIGINT"),
        Column("price", "DECIMAL(10, 2)"),
        Column("ratio", "DOUBLE"),
        Column("item", "VARCHAR(32)"),
        Column("ok", "BOOLEAN"),
        Column("day", "DATE"),
        Column("ts", "TIMESTAMP(3)"),
    ),
    Watermark("ts", 3_000),
)


def values(*docs: object) -> pa.Array:
    return pa.array([d if isinstance(d, bytes) or d is None else json.dumps(d).encode() for d in docs], pa.binary())


def test_types_map_to_arrow_and_bad_ones_are_named() -> None:
    assert arrow_type("bigint") == pa.int64()
    assert arrow_type("DECIMAL(10,2)") == pa.decimal128(10, 2)
    assert arrow_type("timestamp(3)") == pa.timestamp("ms")
    assert arrow_type("double precision") == pa.float64()
    with pytest.raises(InvalidInputError, match="GEOMETRY"):
        arrow_type("GEOMETRY")
    with pytest.raises(InvalidInputError, match="millisecond"):
        arrow_type("TIMESTAMP(6)")


def test_schema_rules() -> None:
    with pytest.raises(InvalidInputError, match="twice"):
        ValueSchema((Column("a", "INT"), Column("A", "INT")))
    with pytest.raises(InvalidInputError, match="system"):
        ValueSchema((Column("_offset", "INT"),))
    with pytest.raises(InvalidInputError, match="WATERMARK FOR a"):
        ValueSchema((Column("a", "INT"),), Watermark("a", 0))
    assert ValueSchema.from_json(SCHEMA.to_json()) == SCHEMA
    with pytest.raises(InvalidInputError, match="bad value schema"):
        ValueSchema.from_json("{nope")


def test_every_type_decodes_from_one_buffer() -> None:
    decoded = decode_json_values(
        values(
            {
                "auction": 7,
                "price": 12.5,
                "ratio": 0.25,
                "item": "a\nb",
                "ok": True,
                "day": "2026-01-02",
                "ts": "2026-01-01T00:00:01.5Z",
                "extra": [1, 2],
            },
            None,
            {"auction": 8},
        ),
        SCHEMA,
    )
    assert len(decoded.bad_rows) == 0
    assert decoded.table.to_pylist() == [
        {
            "auction": 7,
            "price": Decimal("12.50"),
            "ratio": 0.25,
            "item": "a\nb",
            "ok": True,
            "day": date(2026, 1, 2),
            "ts": datetime(2026, 1, 1, 0, 0, 1, 500000),
        },
        dict.fromkeys(SCHEMA.arrow_schema().names),
        {**dict.fromkeys(SCHEMA.arrow_schema().names), "auction": 8},
    ]


def test_timestamps_accept_epoch_milliseconds_or_iso_strings_even_mixed() -> None:
    ms = decode_json_values(values({"ts": 1_700_000_000_123}), SCHEMA).table.column("ts")
    assert ms.to_pylist() == [datetime(2023, 11, 14, 22, 13, 20, 123000)]
    mixed = decode_json_values(values({"ts": 1_700_000_000_000}, {"ts": "2026-01-01 00:00:00"}), SCHEMA)
    assert len(mixed.bad_rows) == 0  # the per-record path takes over, row by row
    assert mixed.table.column("ts").to_pylist() == [datetime(2023, 11, 14, 22, 13, 20), datetime(2026, 1, 1)]


def test_microsecond_iso_strings_take_the_whole_buffer_path_and_truncate_to_milliseconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What pandas timestamps become in produce_table: six fractional digits.
    import streamhouse.storage.values.json_decode as jv

    def no_per_row_path(*args: object) -> None:
        raise AssertionError("the per-record path ran")

    monkeypatch.setattr(jv, "_slow", no_per_row_path)
    stamps = ["2026-01-01T00:00:00.123456", "2026-01-01T00:00:01", "2026-01-01T00:00:02.999999Z", None]
    decoded = decode_json_values(values(*({"ts": s} for s in stamps)), SCHEMA)
    assert decoded.table.column("ts").to_pylist() == [
        datetime(2026, 1, 1, 0, 0, 0, 123000),
        datetime(2026, 1, 1, 0, 0, 1),
        datetime(2026, 1, 1, 0, 0, 2, 999000),
        None,
    ]


def test_a_value_pretty_printed_over_lines_is_one_row() -> None:
    decoded = decode_json_values(values(b'{\n  "auction": 1\n}', b'{"auction": 2}'), SCHEMA)
    assert decoded.table.column("auction").to_pylist() == [1, 2]


def test_bad_rows_become_nulls_and_are_reported_by_index() -> None:
    decoded = decode_json_values(
        values({"auction": 1}, b"not json", b"", {"auction": "x"}, b"[1, 2]", {"auction": 2.5}, {"auction": 3}),
        SCHEMA,
    )
    assert decoded.bad_rows.tolist() == [1, 2, 3, 4, 5]
    assert decoded.table.column("auction").to_pylist() == [1, None, None, None, None, None, 3]


def test_segments_carry_the_decoded_columns_and_name_bad_offsets() -> None:
    batch = make_batch([b'{"auction": 1}', b"oops", b'{"auction": 2}'], base_offset=40)
    table, metadata = with_declared_columns(pa.Table.from_batches([batch]), SCHEMA)
    assert table.column_names[5:] == [f"v.{c.name}" for c in SCHEMA.columns]
    assert table.column("v.auction").to_pylist() == [1, None, 2]
    assert json_errors({k.encode(): v.encode() for k, v in metadata.items()}) == (1, [41])
    assert json_errors(None) == (0, [])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "auction": st.integers(-(2**53), 2**53),
                    "ratio": st.floats(allow_nan=False, allow_infinity=False),
                    "item": st.text(max_size=8),
                    "ok": st.booleans(),
                    "ts": st.integers(0, 4_000_000_000_000),
                },
            ),
        ),
        max_size=30,
    ),
    st.booleans(),
)
def test_fast_and_per_record_paths_agree(docs: list[dict[str, object] | None], spoil: bool) -> None:
    """Whatever path decodes a buffer, good rows come out the same (a spoilt row forces the
    per-record path for the whole buffer)."""
    raw = [None if d is None else json.dumps(d).encode() for d in docs]
    clean = decode_json_values(pa.array(raw, pa.binary()), SCHEMA)
    assert len(clean.bad_rows) == 0
    if spoil:
        spoilt = decode_json_values(pa.array([*raw, b"{broken"], pa.binary()), SCHEMA)
        assert spoilt.bad_rows.tolist() == [len(raw)]
        assert spoilt.table.slice(0, len(raw)).equals(clean.table)
