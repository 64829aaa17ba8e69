"""The one SQL <-> Arrow type map (storage/values/types.py) and the one wall clock
(storage/clock.py) that every layer uses."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

from streamhouse.storage.clock import now_ms
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.values.types import SYSTEM_COLUMN_TYPES, TIMESTAMP, arrow_type, sql_type

DECLARABLE = [
    pa.int64(),
    pa.int32(),
    pa.int16(),
    pa.int8(),
    pa.float64(),
    pa.float32(),
    pa.bool_(),
    pa.string(),
    pa.date32(),
    TIMESTAMP,
    pa.decimal128(10, 2),
]


@pytest.mark.parametrize("arrow", DECLARABLE, ids=str)
def test_a_view_column_is_declared_as_the_type_it_came_from(arrow: pa.DataType) -> None:
    # A materialized view declares its columns with sql_type; CREATE TOPIC reads them back
    # with arrow_type: the two directions must agree, or a view's topic changes its types.
    assert arrow_type(sql_type(arrow)) == arrow


def test_types_without_a_declarable_twin_widen() -> None:
    assert sql_type(pa.uint64()) == "BIGINT"  # DataFusion's count()
    assert sql_type(pa.large_string()) == "STRING"
    assert sql_type(pa.timestamp("us", tz="UTC")) == "TIMESTAMP(3)"
    assert sql_type(pa.list_(pa.int64())) == "ARRAY<BIGINT>"  # composite types are declared (ROW, ARRAY, MAP)
    assert sql_type(pa.duration("s")) == "STRING"  # no SQL twin: kept as JSON text


def test_sql_synonyms_and_parameters() -> None:
    assert arrow_type("double  precision") == pa.float64()
    assert arrow_type("varchar(20)") == pa.string()
    assert arrow_type("TIMESTAMP(3)") == TIMESTAMP
    assert arrow_type("numeric(38, 0)") == pa.decimal128(38, 0)
    with pytest.raises(InvalidInputError, match="only millisecond precision"):
        arrow_type("TIMESTAMP(6)")
    with pytest.raises(InvalidInputError, match="unsupported column type 'JSONB'"):
        arrow_type("JSONB")


def test_describe_names_every_system_column() -> None:
    assert set(SYSTEM_COLUMN_TYPES) == {"_partition", "_offset", "_timestamp", "_key", "_value"}
    assert SYSTEM_COLUMN_TYPES["_timestamp"] == "TIMESTAMP(3) WITH TIME ZONE"


def test_now_ms_is_the_wall_clock_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    now = now_ms()
    after = time.time_ns() // 1_000_000
    assert isinstance(now, int) and before <= now <= after
