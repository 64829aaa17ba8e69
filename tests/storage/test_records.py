from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.records.schema import (
    RECORD_SCHEMA,
    Record,
    assign_offsets,
    batch_from_records,
    batch_to_records,
    binary_array,
    make_batch,
    stamp_missing_timestamps,
)
from tests.strategies import maybe_bytes


@given(st.lists(maybe_bytes, max_size=50))
def test_binary_array_matches_pyarrow(values: list[bytes | None]) -> None:
    built = binary_array(values)
    built.validate(full=True)
    assert built.equals(pa.array(values, type=pa.binary()))


def test_null_and_empty_are_different() -> None:
    batch = make_batch([None, b""], keys=[b"", None])
    assert batch.column("value").to_pylist() == [None, b""]
    assert batch.column("key").to_pylist() == [b"", None]
    assert batch.column("value").null_count == 1


def test_make_batch_schema_offsets_and_headers() -> None:
    batch = make_batch([b"a", b"b", b"c"], timestamps=[5, 1, 3], headers=[None, [("é", b"v")], []], base_offset=7)
    assert batch.schema.equals(RECORD_SCHEMA)
    assert batch.column("offset").to_pylist() == [7, 8, 9]
    assert batch.column("timestamp").to_pylist() == [5, 1, 3]
    assert batch.column("headers").to_pylist() == [None, [{"key": "é", "value": b"v"}], []]


def test_length_mismatches_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match="keys has 1 entries for 2 values"):
        make_batch([b"a", b"b"], keys=[b"k"])
    with pytest.raises(InvalidInputError, match="timestamps"):
        make_batch([b"a"], timestamps=[1, 2])
    with pytest.raises(InvalidInputError, match="headers"):
        make_batch([b"a"], headers=[])


def test_records_round_trip_through_batch() -> None:
    records = [
        Record(value=b"v1", key=b"k1", timestamp=10, headers=(("h", b"x"),)),
        Record(value=None, key=None, timestamp=20),
    ]
    batch = assign_offsets(batch_from_records(records), 100)
    back = batch_to_records(batch)
    assert [r.offset for r in back] == [100, 101]
    assert [(r.key, r.value, r.timestamp, r.headers) for r in back] == [
        (b"k1", b"v1", 10, (("h", b"x"),)),
        (None, None, 20, ()),
    ]


def test_stamp_missing_timestamps_only_fills_unset() -> None:
    batch = make_batch([b"a", b"b"], timestamps=[0, 42])
    assert stamp_missing_timestamps(batch, 1000).column("timestamp").to_pylist() == [1000, 42]


@settings(max_examples=50)
@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=2**40))
def test_assign_offsets_is_contiguous(n: int, base: int) -> None:
    batch = assign_offsets(make_batch([b"x"] * n), base)
    assert np.array_equal(batch.column("offset").to_numpy(), np.arange(base, base + n))
