"""Produce-time checks of values against declared columns (issue 10, item 1): a value that
does not fit is refused with its index in the caller's batch, the column and why, nothing of
the request is stored and no offset is taken; json.ignore-errors topics store it as nulls;
untyped topics take anything. The decoder the check shares with the segment writer never
fails on what produce let through. Both SDK transports: embedded, and remote against a real
agent process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamhouse
from streamhouse.client.client import Client
from streamhouse.storage.errors import InvalidInputError, InvalidValueError
from streamhouse.storage.values.json_decode import check_values, decode_json_values
from streamhouse.storage.values.schema import Column, ValueSchema
from tests.agent_process import AgentLauncher

ALL_TYPES = ValueSchema(
    (
        Column("id", "BIGINT"),
        Column("n", "INT"),
        Column("small", "TINYINT"),
        Column("amt", "DECIMAL(10, 2)"),
        Column("f", "FLOAT"),
        Column("d", "DOUBLE"),
        Column("s", "STRING"),
        Column("b", "BOOLEAN"),
        Column("day", "DATE"),
        Column("ts", "TIMESTAMP(3)"),
    )
)


@pytest.mark.parametrize(
    ("value", "column", "fragment"),
    [
        (b'{"amt": 12.345}', "amt", "scale: 12.345 has 3 decimal places"),
        (b'{"amt": 123456789012}', "amt", "out of range"),
        (b'{"amt": 1e20}', "amt", "out of range"),
        (b'{"amt": "abc"}', "amt", "wrong type"),
        (b'{"id": 9223372036854775808}', "id", "out of range"),
        (b'{"id": 1e400}', None, "out of range"),
        (b'{"n": 3000000000}', "n", "out of range: 3000000000 does not fit INT"),
        (b'{"small": -129}', "small", "out of range"),
        (b'{"id": "x"}', "id", "wrong type: a string"),
        (b'{"id": 1.5}', "id", "wrong type"),
        (b'{"id": true}', "id", "wrong type: a boolean"),
        (b'{"id": {"nested": 1}}', "id", "wrong type: an object"),
        (b'{"s": {"nested": 1}}', "s", "wrong type: an object"),
        (b'{"s": [1, 2]}', "s", "wrong type: an array"),
        (b'{"s": 5}', "s", "wrong type: a number"),
        (b'{"b": 1}', "b", "wrong type"),
        (b'{"f": 1e300}', "f", "out of range"),
        (b'{"ts": 253402300800000}', "ts", "out of range"),
        (b'{"ts": "99999-01-01T00:00:00"}', "ts", "not a timestamp"),
        (b'{"ts": true}', "ts", "wrong type"),
        (b'{"ts": "9999-12-31T23:00:00-05:00"}', "ts", "within years 1..9999 UTC"),
        (b'{"day": "2024-13-01"}', "day", "not a date"),
        (b"not json", None, "not JSON"),
        (b"", None, "not JSON"),
        (b'{"id": 1}{"id": 2}', None, "not JSON"),
        (b'{"id": 1, "id": 2}', None, "given twice"),
        (b'{"s": "\xff"}', None, "not UTF-8"),
        (b"[1, 2]", None, "not a JSON object"),
        (b"7", None, "not a JSON object"),
    ],
)
def test_a_value_that_does_not_fit_is_named_with_index_column_and_reason(
    value: bytes, column: str | None, fragment: str
) -> None:
    good = b'{"id": 1, "amt": 1.5, "ts": "2026-01-01T00:00:00Z"}'
    with pytest.raises(InvalidValueError) as info:
        check_values(pa.array([good, good, value, good], pa.binary()), ALL_TYPES)
    assert (info.value.index, info.value.column) == (2, column)
    assert fragment in info.value.reason, info.value.reason
    assert "record 2 of the batch" in str(info.value)
    # The segment writer, given the same batch anyway (a lenient topic), nulls exactly that row.
    decoded = decode_json_values(pa.array([good, value, good], pa.binary()), ALL_TYPES)
    assert decoded.bad_rows.tolist() == [1]
    assert decoded.table.column("id").to_pylist() == [1, None, 1]


def test_values_that_fit_pass_including_edge_cases() -> None:
    fine = [
        b'{"id": -9223372036854775808, "n": 2147483647, "small": -128}',
        b'{"amt": 99999999.99, "f": 3.4e38, "d": 1e308}',
        b'{"amt": "12.34", "d": NaN}',  # NaN: Python's json writes it; DOUBLE keeps it
        b'{"ts": 253402300799999, "day": "9999-12-31"}',
        b'{"ts": -62135596800000}',
        b"null",  # a JSON null is a row of nulls, like a null value
        None,
        b'{"b": false, "s": "\xc3\xa9", "extra": {"any": [1, "thing"]}}',
        b'{\n  "id": 5\n}',
    ]
    check_values(pa.array(fine, pa.binary()), ALL_TYPES)
    decoded = decode_json_values(pa.array(fine, pa.binary()), ALL_TYPES)
    assert len(decoded.bad_rows) == 0
    assert decoded.table.column("id").to_pylist() == [-(2**63), None, None, None, None, None, None, None, 5]


def test_timestamp_kinds_mixed_within_a_batch_or_across_columns_pass() -> None:
    two = ValueSchema((Column("a", "TIMESTAMP(3)"), Column("b", "TIMESTAMP(3)")))
    values = pa.array(
        [b'{"a": 0, "b": "2026-01-01T00:00:00"}', b'{"a": "2026-01-01T00:00:00Z", "b": 5}', b'{"a": 7}'],
        pa.binary(),
    )
    check_values(values, two)
    decoded = decode_json_values(values, two)
    assert len(decoded.bad_rows) == 0
    assert [v is not None for v in decoded.table.column("a").to_pylist()] == [True, True, True]


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=6)
    | st.sampled_from(["2026-01-01", "2026-01-01T00:00:00.5Z", "x", "1.25"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["id", "amt", "ts", "s"]), inner),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.dictionaries(st.sampled_from(["id", "amt", "ts", "s", "b"]), _JSON), _JSON), max_size=12))
def test_the_segment_writer_is_total_and_agrees_with_the_produce_check(docs: list[Any]) -> None:
    """Whatever the values, decoding never raises; a batch the check passes decodes without a
    bad row; a bad row found by the decoder is refused by the check on its own."""
    schema = ValueSchema((Column("id", "BIGINT"), Column("amt", "DECIMAL(6, 2)"), Column("ts", "TIMESTAMP(3)"),
                          Column("s", "STRING"), Column("b", "BOOLEAN")))  # fmt: skip
    values = pa.array([json.dumps(d).encode() for d in docs], pa.binary())
    decoded = decode_json_values(values, schema)
    assert decoded.table.num_rows == len(docs)
    try:
        check_values(values, schema)
    except InvalidValueError as exc:
        assert exc.index in decoded.bad_rows.tolist()
    else:
        assert len(decoded.bad_rows) == 0
    for row in decoded.bad_rows.tolist():
        with pytest.raises(InvalidValueError):
            check_values(values.slice(row, 1), schema)


# -- through the SDK, both transports ------------------------------------------------------------
@pytest.fixture(params=["embedded", "remote"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    if request.param == "embedded":
        with streamhouse.open(tmp_path / "data") as c:
            yield c
        return
    with AgentLauncher(tmp_path) as launcher:
        agent = launcher.start("--data-dir", str(tmp_path / "agent"))
        with streamhouse.connect(agent.address) as c:
            yield c


def _count(client: Client, topic: str) -> int:
    """Records the topic holds (its end offsets: every acknowledged record, flushed or not)."""
    return sum(client.describe(topic).end_offsets.values())


def test_produce_refuses_a_value_that_does_not_fit_and_stores_nothing(client: Client) -> None:
    client.sql("CREATE TOPIC money (id BIGINT, amt DECIMAL(10, 2))")
    with pytest.raises(InvalidValueError) as info:
        client.produce_batch("money", [{"id": 1, "amt": 1.5}, {"id": 2, "amt": 12.345}], partition=0)
    assert isinstance(info.value, InvalidInputError)  # INVALID_ARGUMENT over gRPC
    assert (info.value.index, info.value.column) == (1, "amt")
    assert "scale" in info.value.reason and "record 1 of the batch, column 'amt'" in str(info.value)
    assert _count(client, "money") == 0
    # No offset was taken: the next good batch starts at 0, and acks=durable is acknowledged
    # (before the fix the flush of the poison value failed forever and durable acks hung).
    [result] = client.produce_batch("money", [{"id": 1, "amt": 12.34}], partition=0, acks="durable")
    assert result.base_offset == 0
    assert client.sql("SELECT id, CAST(amt AS VARCHAR) AS amt FROM money").to_pylist() == [{"id": 1, "amt": "12.34"}]
    with pytest.raises(InvalidValueError, match="record 0 of the batch, the value: not JSON"):
        client.produce("money", b"{oops", partition=0)
    assert _count(client, "money") == 1


def test_the_index_is_the_callers_when_the_sdk_splits_the_batch_by_partition(client: Client) -> None:
    client.sql("CREATE TOPIC spread (id BIGINT) WITH (partitions = 4)")
    values: list[object] = [{"id": i} for i in range(40)]
    values[29] = {"id": "twenty-nine"}
    with pytest.raises(InvalidValueError) as info:
        client.produce_batch("spread", values, keys=[f"k{i}" for i in range(40)])
    assert (info.value.index, info.value.column) == (29, "id")
    assert "wrong type" in info.value.reason


def test_lenient_and_untyped_topics_take_any_value(client: Client) -> None:
    client.sql("CREATE TOPIC lenient (id BIGINT) WITH ('json.ignore-errors' = 'true')")
    client.produce_batch("lenient", [{"id": 1}, {"id": "x"}, b"not json"], partition=0, acks="durable")
    rows = client.sql("SELECT id FROM lenient ORDER BY _offset").to_pylist()
    assert rows == [{"id": 1}, {"id": None}, {"id": None}]
    client.create_topic("raw")
    client.produce_batch("raw", [b"not json", b"\xff", {"id": "x"}], partition=0, acks="durable")
    assert _count(client, "raw") == 3


def test_a_record_timestamp_past_year_9999_is_refused_on_any_topic(client: Client) -> None:
    client.create_topic("raw")
    late = 253_402_300_800_000  # 10000-01-01
    with pytest.raises(InvalidInputError, match=rf"record 1 of the batch has timestamp {late}, after year 9999"):
        client.produce_batch("raw", [b"a", b"b"], timestamps=[1_700_000_000_000, late], partition=0)
    assert _count(client, "raw") == 0
    client.produce_batch("raw", [b"a"], timestamps=[late - 1], partition=0, acks="durable")
    assert client.sql("SELECT _timestamp FROM raw").column("_timestamp")[0].as_py().year == 9999
