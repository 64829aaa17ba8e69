"""Fuzz of JSON topic values (storage/values/json_decode.py): what produce checks against a
topic's declared columns and what the segment writer decodes. Damaged values (bytes flipped,
truncated, JSON nodes replaced by other JSON) fail the produce check with InvalidValueError naming
the record, or pass it; decoding for the segment never raises and gives one row per value."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from hypothesis import example, given
from hypothesis import strategies as st

from streamhouse.sql.statements.ddl import CreateTopic, parse_statement
from streamhouse.storage.errors import InvalidValueError
from streamhouse.storage.values.json_decode import check_values, decode_json_values
from streamhouse.storage.values.schema import ValueSchema
from tests.fuzz.budget import bounded, fuzz
from tests.strategies import json_mutations, mutations

_DDL = parse_statement(
    "CREATE TOPIC ev (id BIGINT, n INT, price DOUBLE, ok BOOLEAN, name STRING, ts TIMESTAMP(3), d DATE, "
    "amount DECIMAL(10, 2), raw BYTES, tags ARRAY<STRING>, attrs MAP<STRING, BIGINT>, "
    "at ROW<x DOUBLE, y ARRAY<ROW<z BIGINT>>>)"
)
assert isinstance(_DDL, CreateTopic) and _DDL.schema is not None
SCHEMA: ValueSchema = _DDL.schema
ROWS: list[Any] = [
    {"id": 1, "n": -5, "price": 1.5, "ok": True, "name": "ü", "ts": 1_700_000_000_000, "d": "2024-02-29",
     "amount": "12.34", "raw": "aGk=", "tags": ["a", None], "attrs": {"k": 2}, "at": {"x": 0.5, "y": [{"z": 1}]}},
    {"id": -(2**63), "ts": "2024-01-01T00:00:00.123Z", "attrs": [{"key": "a", "value": None}], "at": None},
    {},
]  # fmt: skip
valid = st.sampled_from(ROWS)
values = st.one_of(
    st.none(),
    valid.map(lambda r: json.dumps(r).encode()),
    valid.flatmap(json_mutations).map(lambda r: json.dumps(r).encode()),
    mutations(valid.map(lambda r: json.dumps(r).encode()), max_ops=3),
)


# Found by this fuzz: invalid UTF-8 inside an ARRAY<STRING> item or a MAP key (entries spelling)
# passed the produce check and decoded into strings Parquet and SQL cannot read.
@example([b'{"tags": ["\xff"]}'])
@example([b'{"attrs": [{"key": "\xfe", "value": 1}]}', None])
# Found by this fuzz: a MAP<STRING, BIGINT> object whose value is an array of nulls made pyarrow's
# inferring JSON reader build a struct whose flatten() raised ArrowIndexError out of the check.
@example([
    b'{"id": 1, "n": -5, "price": 1.5, "ok": true, "name": "\\u00fc", "ts": 1700000000000, "d": "2024-02-29", '
    b'"amount": "12.34", "raw": "aGk=", "tags": ["a", null], "attrs": {"": [null, null]}, '
    b'"at": {"x": 0.5, "y": [{"z": 1}]}}'
])  # fmt: skip
@fuzz(100)
@given(st.lists(values, min_size=1, max_size=5))
def test_damaged_json_values_are_checked_with_invalid_value_errors_only(batch: list[bytes | None]) -> None:
    column = pa.array(batch, pa.binary())
    with bounded():
        try:
            checked = check_values(column, SCHEMA)
        except InvalidValueError as exc:
            assert 0 <= exc.index < len(batch)
        else:
            assert checked is None or checked.num_rows == len(batch)
        decoded = decode_json_values(column, SCHEMA)
    assert decoded.table.num_rows == len(batch)
    decoded.table.validate(full=True)
