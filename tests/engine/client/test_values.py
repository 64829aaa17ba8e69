from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamhouse.api.values import batch_from_table, batch_from_values, to_bytes
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.records.schema import RECORD_SCHEMA, Record, batch_to_records, make_batch


def json_values(batch: pa.RecordBatch) -> list[Any]:
    return [json.loads(v) for v in batch.column(3).to_pylist()]


# ---------------------------------------------------------------------------------------
# to_bytes / batch_from_values


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"raw\x00", b"raw\x00"),
        (bytearray(b"ba"), b"ba"),
        (memoryview(b"mv"), b"mv"),
        ("héllo", "héllo".encode()),
        ("", b""),
        (None, None),
        ({"a": 1, "b": [1, 2.5, None], "c": "é"}, '{"a":1,"b":[1,2.5,null],"c":"é"}'.encode()),
        ([1, "x"], b'[1,"x"]'),
        (42, b"42"),
        (1.5, b"1.5"),
        (True, b"true"),
        ({"at": datetime(2024, 1, 2, 3, 4, 5)}, b'{"at":"2024-01-02T03:04:05"}'),
        ({"d": date(2024, 1, 2), "n": Decimal("1.10")}, b'{"d":"2024-01-02","n":"1.10"}'),
        ({"u": UUID(int=1)}, b'{"u":"00000000-0000-0000-0000-000000000001"}'),
        ({"np": np.int64(7), "arr": np.array([1, 2])}, b'{"np":7,"arr":[1,2]}'),
    ],
)
def test_to_bytes(value: object, expected: bytes | None) -> None:
    assert to_bytes(value) == expected


@pytest.mark.parametrize("value", [object(), {"x": object()}, {1, 2}, float("nan"), {"x": float("inf")}])
def test_to_bytes_refuses_what_json_cannot_carry(value: object) -> None:
    with pytest.raises(InvalidInputError) as err:
        to_bytes(value)
    assert type(value).__name__ in str(err.value)


def test_batch_from_values_round_trip() -> None:
    batch = batch_from_values(
        [b"\x00raw", "text", {"a": [1, None]}, None],
        keys=["k", b"kb", 7, None],
        headers=[{"h": "v", "n": None}, [("b", b"\xff"), ("b", "again")], None, {}],
        timestamps=[1700000000000, datetime(2024, 1, 1), None, datetime(2024, 1, 1, 1, tzinfo=UTC)],
    )
    batch.validate(full=True)
    assert batch.schema == RECORD_SCHEMA
    assert batch_to_records(batch) == [
        Record(b"\x00raw", b"k", 1700000000000, (("h", b"v"), ("n", None)), 0),
        Record(b"text", b"kb", 1704067200000, (("b", b"\xff"), ("b", b"again")), 1),
        Record(b'{"a":[1,null]}', b"7", 0, (), 2),
        Record(None, None, 1704070800000, (), 3),
    ]


def test_batch_from_values_defaults_leave_stamping_to_the_agent() -> None:
    batch = batch_from_values(["a", "b"])
    assert batch.column("timestamp").to_pylist() == [0, 0]
    assert batch.column("key").null_count == 2
    assert batch.column("headers").null_count == 2
    assert batch.equals(make_batch([b"a", b"b"]))


def test_datetime_timestamps() -> None:
    plus_two = timezone(timedelta(hours=2))
    batch = batch_from_values(
        ["a"] * 4,
        timestamps=[
            datetime(1970, 1, 1, 0, 0, 1, 999999),  # naive is UTC; sub-ms truncated
            datetime(1970, 1, 1, 2, tzinfo=plus_two),
            datetime(1969, 12, 31, 23, 59, 59, 999500),  # pre-epoch floors, not truncates toward 0
            np.int64(5),
        ],
    )
    assert batch.column("timestamp").to_pylist() == [1999, 0, -1, 5]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"keys": [b"a"]},
        {"headers": [None, None, None]},
        {"timestamps": []},
        {"keys": "ab"},
        {"timestamps": ["2024-01-01", 0]},
        {"timestamps": [True, 0]},
        {"headers": [{"k": 1}, None]},
        {"headers": [[("k",)], None]},
        {"headers": [{1: b"x"}, None]},
    ],
)
def test_batch_from_values_rejects_bad_input(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        batch_from_values(["a", "b"], **kwargs)


def test_values_must_be_a_sequence_of_values() -> None:
    with pytest.raises(InvalidInputError):
        batch_from_values("abc")


# ---------------------------------------------------------------------------------------
# batch_from_table: JSON values


TRICKY_FLOATS = [0.1, 1.2345678901234567e-10, 0.30000000000000004, 1.2345678901234568e17, 5e-324, -0.0, 3.0, 1e300]


def test_arrow_rows_become_json_objects() -> None:
    rows = [
        {
            "i": 1,
            "f": 0.5,
            "s": 'line\nbreak "quoted" \\ \t\x01 é 🎉',
            "b": True,
            "l": [1, 2],
            "st": {"x": 1, "y": "z"},
        },
        {"i": None, "f": None, "s": None, "b": None, "l": None, "st": None},
        {"i": -(2**63), "f": 2.0, "s": "", "b": False, "l": [], "st": {"x": None, "y": "q"}},
    ]
    table = pa.Table.from_pylist(rows)
    batch = batch_from_table(table)
    batch.validate(full=True)
    assert batch.schema == RECORD_SCHEMA
    assert json_values(batch) == rows
    assert batch.column("offset").to_pylist() == [0, 1, 2]
    assert batch.column("timestamp").to_pylist() == [0, 0, 0]
    assert batch.column("key").null_count == 3
    assert batch.column("headers").null_count == 3
    # Compact: no spaces between tokens.
    assert (
        batch.column(3)[2].as_py()
        == b'{"i":-9223372036854775808,"f":2.0,"s":"","b":false,"l":[],"st":{"x":null,"y":"q"}}'
    )


def test_json_number_fidelity() -> None:
    table = pa.table(
        {
            "f": pa.array([*TRICKY_FLOATS, math.nan, math.inf, -math.inf]),
            "i": pa.array([2**62 + 1, 2**53 + 1, None, 0, 1, 2, 3, 4, 5, 6, 7], pa.int64()),
            "u": pa.array([2**64 - 1, *range(10)], pa.uint64()),
            "h": pa.array([0.5] * 11, pa.float32()),
            "d": pa.array([Decimal("1.50")] * 11),
        }
    )
    values = json_values(batch_from_table(table))
    assert [v["f"] for v in values] == [*TRICKY_FLOATS, None, None, None]
    assert all(isinstance(v["f"], float) for v in values[: len(TRICKY_FLOATS)])  # 3.0 stays a float
    assert math.copysign(1, values[5]["f"]) == -1
    assert [v["i"] for v in values[:3]] == [2**62 + 1, 2**53 + 1, None]
    assert values[0]["u"] == 2**64 - 1
    assert values[0]["h"] == 0.5
    assert values[0]["d"] == 1.5


def test_json_temporal_and_nested_types() -> None:
    ts = datetime(2024, 1, 2, 3, 4, 5, 678901)
    table = pa.table(
        {
            "naive": pa.array([ts, None], pa.timestamp("us")),
            "aware": pa.array([ts, None], pa.timestamp("ms", tz="UTC")).cast(pa.timestamp("ms", tz="Asia/Tokyo")),
            "secs": pa.array([ts.replace(microsecond=0), None], pa.timestamp("s")),
            "day": pa.array([date(2024, 1, 2), None]),
            "m": pa.array([[("a", 1), ("b", 2)], None], pa.map_(pa.string(), pa.int64())),
            "ls": pa.array([[{"x": [1.5]}, None], [None]]),
            "fixed": pa.array([[1, 2], None], pa.list_(pa.int64(), 2)),
            "cat": pa.array(["red", None]).dictionary_encode(),
            "nothing": pa.nulls(2),
            "text": pa.array([b"utf8 bytes", None], pa.binary()),
        }
    )
    values = json_values(batch_from_table(table))
    assert values[0] == {
        "naive": "2024-01-02T03:04:05.678901",
        "aware": "2024-01-02T03:04:05.678Z",  # the instant in UTC, whatever the display tz
        "secs": "2024-01-02T03:04:05",
        "day": "2024-01-02",
        "m": {"a": 1, "b": 2},
        "ls": [{"x": [1.5]}, None],
        "fixed": [1, 2],
        "cat": "red",
        "nothing": None,
        "text": "utf8 bytes",
    }
    assert values[1] == dict.fromkeys(values[0]) | {"ls": [None]}
    assert datetime.fromisoformat(values[0]["aware"]) == datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


@given(st.lists(st.text(), min_size=1, max_size=20), st.lists(st.floats(), min_size=1, max_size=20))
def test_json_strings_and_floats_round_trip(texts: list[str], floats: list[float]) -> None:
    n = min(len(texts), len(floats))
    table = pa.table({"s": pa.array(texts[:n], pa.string()), "f": pa.array(floats[:n], pa.float64())})
    batch = batch_from_table(table)
    raw = batch.column(3).to_pylist()
    assert all(b"\n" not in r for r in raw)  # one record is one line of JSON
    for parsed, text, f in zip(json_values(batch), texts, floats, strict=False):
        assert parsed["s"] == text
        assert parsed["f"] == (None if not math.isfinite(f) else f)


def test_sliced_and_chunked_tables() -> None:
    rows = [{"l": [i, i + 1] if i % 3 else None, "s": {"v": i} if i % 4 else None, "n": str(i)} for i in range(12)]
    table = pa.Table.from_pylist(rows)
    assert json_values(batch_from_table(table.slice(5, 4))) == rows[5:9]
    chunked = pa.concat_tables([table.slice(0, 5), table.slice(5)])
    assert chunked.column(0).num_chunks == 2
    assert json_values(batch_from_table(chunked)) == rows
    assert json_values(batch_from_table(table.to_batches()[0].slice(7))) == rows[7:]


def test_pandas_rows_become_json_objects() -> None:
    df = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "score": [1.5, np.nan, 0.1],
            "name": ["a\nb", None, 'q"uote'],
            "tags": [["x"], [], ["y", "z"]],
            "meta": [{"k": 1}, {"k": 2}, None],
            "at": pd.to_datetime(["2024-01-01T00:00:00Z", None, "2024-06-01T12:30:00Z"]).tz_convert("Europe/Paris"),
        },
        index=[10, 20, 30],
    )
    values = json_values(batch_from_table(df))
    # ISO 8601 in UTC ("Z"); the fraction's width follows the column's unit.
    at = [v.pop("at") for v in values]
    assert at[0].endswith("Z")
    assert [None if a is None else datetime.fromisoformat(a) for a in at] == [
        datetime(2024, 1, 1, tzinfo=UTC),
        None,
        datetime(2024, 6, 1, 12, 30, tzinfo=UTC),
    ]
    assert values == [
        {"id": 1, "score": 1.5, "name": "a\nb", "tags": ["x"], "meta": {"k": 1}},
        {"id": 2, "score": None, "name": None, "tags": [], "meta": {"k": 2}},
        {"id": 3, "score": 0.1, "name": 'q"uote', "tags": ["y", "z"], "meta": None},
    ]
    assert isinstance(values[0]["id"], int)


def test_json_that_has_no_form_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="'blob'"):
        batch_from_table(pa.table({"blob": pa.array([b"\xff\xfe"], pa.binary())}))
    with pytest.raises(InvalidInputError, match="'dur'"):
        batch_from_table(pa.table({"dur": pa.array([timedelta(seconds=1)])}))
    with pytest.raises(InvalidInputError):
        batch_from_table(pd.DataFrame({"mixed": [1, "a"]}))


def test_key_and_timestamp_columns_stay_in_the_json_value() -> None:
    """Events keep their fields: SQL over the topic reads them from the value."""
    batch = batch_from_table(pa.table({"k": ["a", "b"], "t": [1, 2]}), key_column="k", timestamp_column="t")
    assert batch.column(3).to_pylist() == [b'{"k":"a","t":1}', b'{"k":"b","t":2}']
    assert batch.column(2).to_pylist() == [b"a", b"b"]


# ---------------------------------------------------------------------------------------
# batch_from_table: value, key and timestamp columns


def test_value_column_path_matches_make_batch() -> None:
    table = pa.table({"payload": pa.array([b"\x00a", None, b""]), "k": ["x", None, "z"], "other": [1, 2, 3]})
    batch = batch_from_table(table, key_column="k", value_column="payload")
    assert batch.equals(make_batch([b"\x00a", None, b""], keys=[b"x", None, b"z"]))


def test_value_column_of_strings_and_auto_detected_value_column() -> None:
    table = pa.table({"value": pa.array(["é", None], pa.large_string()), "extra": [1, 2]})
    assert batch_from_table(table).column(3).to_pylist() == ["é".encode(), None]
    # A "value" column that is not bytes or text is just another JSON field.
    assert json_values(batch_from_table(pa.table({"value": [1, 2]}))) == [{"value": 1}, {"value": 2}]
    with pytest.raises(InvalidInputError):
        batch_from_table(pa.table({"v": [1]}), value_column="v")


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (pa.array(["a", None, "é"]), [b"a", None, "é".encode()]),
        (pa.array([b"\x00", None, b""], pa.large_binary()), [b"\x00", None, b""]),
        (pa.array([7, None, -3], pa.int32()), [b"7", None, b"-3"]),
        (pa.array([7.0, None, 12.0]), [b"7", None, b"12"]),  # pandas' int-with-NaN floats
        (pa.array(["a", None, "a"]).dictionary_encode(), [b"a", None, b"a"]),
        (pa.nulls(3), [None, None, None]),
    ],
)
def test_key_column(column: pa.Array[Any], expected: list[bytes | None]) -> None:
    batch = batch_from_table(pa.table({"k": column, "value": [b"1", b"2", b"3"]}), key_column="k")
    assert batch.column("key").to_pylist() == expected
    assert batch.column("key").type == pa.binary()


def test_bad_key_columns() -> None:
    with pytest.raises(InvalidInputError):
        batch_from_table(pa.table({"k": [1.5]}), key_column="k")
    with pytest.raises(InvalidInputError):
        batch_from_table(pa.table({"k": [[1]]}), key_column="k")


def test_key_bytes_match_batch_from_values() -> None:
    table = pa.table({"k": pa.array([42, None]), "value": ["a", "b"]})
    assert batch_from_table(table, key_column="k").equals(batch_from_values(["a", "b"], keys=[42, None]))


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (pa.array([1700000000123, None, -5], pa.int64()), [1700000000123, 0, -5]),
        (pa.array([1, 2, 3], pa.int32()), [1, 2, 3]),
        (pa.array([1700000000, None, -1], pa.timestamp("s")), [1700000000000, 0, -1000]),
        (pa.array([1700000000123, None, -1], pa.timestamp("ms", tz="UTC")), [1700000000123, 0, -1]),
        (pa.array([1700000000123456, None, -1], pa.timestamp("us", tz="America/New_York")), [1700000000123, 0, -1]),
        (pa.array([1700000000123456789, None, -1], pa.timestamp("ns")), [1700000000123, 0, -1]),
        (pa.array([date(1970, 1, 2), None, date(1969, 12, 31)]), [86400000, 0, -86400000]),
    ],
)
def test_timestamp_column(column: pa.Array[Any], expected: list[int]) -> None:
    batch = batch_from_table(pa.table({"t": column, "value": ["a", "b", "c"]}), timestamp_column="t")
    assert batch.column("timestamp").to_pylist() == expected


def test_pandas_key_and_timestamp_columns() -> None:
    df = pd.DataFrame(
        {
            "user": ["u1", None, "u3"],
            "n": pd.array([1, None, 3], dtype="Int64"),
            "when": pd.to_datetime(
                ["2024-01-01 01:00", None, "1970-01-01 00:59:59.9995"], format="ISO8601"
            ).tz_localize("Europe/Paris"),
        }
    )
    batch = batch_from_table(df, key_column="user", timestamp_column="when")
    assert batch.column("key").to_pylist() == [b"u1", None, b"u3"]
    assert batch.column("timestamp").to_pylist() == [1704067200000, 0, -1]
    assert [{"n": v["n"], "user": v["user"]} for v in json_values(batch)] == [
        {"n": 1, "user": "u1"},
        {"n": None, "user": None},
        {"n": 3, "user": "u3"},
    ]


def test_record_batch_input_and_empty_tables() -> None:
    rb = pa.record_batch({"value": pa.array([b"x"]), "k": ["a"]})
    assert batch_from_table(rb, key_column="k").equals(make_batch([b"x"], keys=[b"a"]))
    for empty in (pa.table({"a": pa.array([], pa.int64())}), pd.DataFrame({"a": []}), rb.slice(0, 0)):
        batch = batch_from_table(empty)
        assert batch.num_rows == 0
        assert batch.schema == RECORD_SCHEMA


@pytest.mark.parametrize("kwargs", [{"key_column": "nope"}, {"timestamp_column": "nope"}, {"value_column": "nope"}])
def test_missing_columns_are_named(kwargs: dict[str, str]) -> None:
    with pytest.raises(InvalidInputError, match="'nope'"):
        batch_from_table(pa.table({"a": [1]}), **kwargs)
    with pytest.raises(InvalidInputError, match="'nope'"):
        batch_from_table(pa.table({"a": pa.array([], pa.int64())}), **kwargs)


def test_bad_timestamp_column_and_input_type() -> None:
    with pytest.raises(InvalidInputError):
        batch_from_table(pa.table({"t": ["2024-01-01"]}), timestamp_column="t")
    with pytest.raises(InvalidInputError):
        batch_from_table([{"a": 1}])  # type: ignore[arg-type]
