"""The Spark data source's parts without a Spark session (no JVM): options refused by name,
read limits shared over partitions, fetched records as the exact Arrow batches pyspark expects,
the sink's marker headers, and `import streamhouse` staying free of pyspark."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows
from pyspark.sql.types import StructType

from streamhouse.api.values import batch_from_values
from streamhouse.spark.options import parse_options
from streamhouse.spark.reader import SPLIT_OFFSETS, OffsetRange, limited, ranges
from streamhouse.spark.schema import arrow_target, projection, readable, to_spark_batch, topic_struct
from streamhouse.spark.sink_state import _holds, marker, marker_headers
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.records.schema import HEADERS_TYPE
from streamhouse.storage.values.schema import Column, ValueSchema

COLUMNS = (Column("auction", "BIGINT"), Column("price", "DOUBLE"), Column("ts", "TIMESTAMP(3)"))
BIDS = TopicInfo("bid", 1, 2, value_schema=ValueSchema(COLUMNS).to_json())


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"topic": "bid"}, "'bootstrap'"),
        ({"bootstrap": "h:1"}, "'topic'"),
        ({"bootstrap": "h:1", "topic": "t", "startingOffsets": "first"}, "'startingOffsets'"),
        ({"bootstrap": "h:1", "topic": "t", "startingOffsets": '{"a": 1}'}, "partition number"),
        ({"bootstrap": "h:1", "topic": "t", "startingOffsets": '{"0": -1}'}, "offset >= 0"),
        ({"bootstrap": "h:1", "topic": "t", "maxRecordsPerTrigger": "0"}, "'maxRecordsPerTrigger'"),
        ({"bootstrap": "h:1", "topic": "t", "fetchRecords": "many"}, "'fetchRecords'"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, str], says: str) -> None:
    with pytest.raises(InvalidInputError, match=says):
        parse_options(options)


def test_options_read_case_insensitively_and_the_path_names_the_topic() -> None:
    parsed = parse_options({"BOOTSTRAP": "a:1,b:2", "path": "bid", "startingoffsets": '{"1": 7}', "SinkId": "s"})
    assert (parsed.bootstrap, parsed.topic, parsed.starting, parsed.sink_id) == ("a:1,b:2", "bid", {1: 7}, "s")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1_000), st.integers(0, 1_000)), min_size=1, max_size=6),
    st.integers(1, 3_000),
)
def test_a_row_limit_takes_at_most_that_many_and_all_when_fewer(pairs: list[tuple[int, int]], budget: int) -> None:
    start = {p: lo for p, (lo, _) in enumerate(pairs)}
    ends = {p: lo + extra for p, (lo, extra) in enumerate(pairs)}
    end = limited(start, ends, ReadMaxRows(budget))
    taken = [end[p] - start[p] for p in start]
    assert all(0 <= t <= ends[p] - start[p] for p, t in zip(start, taken, strict=True))
    assert sum(taken) == min(budget, sum(ends[p] - start[p] for p in start))
    assert limited(start, ends, ReadAllAvailable()) == ends


def test_ranges_split_a_backlog_and_skip_partitions_without_news() -> None:
    pieces = ranges({0: 5, 1: 9}, {0: 5 + SPLIT_OFFSETS + 1, 1: 9})
    assert [(r.partition, r.start, r.end) for r in pieces] == [
        (0, 5, 5 + SPLIT_OFFSETS),
        (0, 5 + SPLIT_OFFSETS, 5 + SPLIT_OFFSETS + 1),
    ]
    assert isinstance(pieces[0], OffsetRange) and pieces[0].value == (0, 5, 5 + SPLIT_OFFSETS)


def test_fetched_records_become_the_batch_pyspark_expects() -> None:
    struct = topic_struct(BIDS)
    assert struct.fieldNames() == ["_partition", "_offset", "_timestamp", "_key", "auction", "price", "ts"]
    target = arrow_target(struct)
    values = [{"auction": 7, "price": 1.5, "ts": "2026-01-02T03:04:05.678"}, b"not json", None]
    records = pa.Table.from_batches(
        [batch_from_values(values, keys=[b"k", None, b"z"], timestamps=[1_000, 2_000, 3_000])]
    )
    records = records.set_column(0, "offset", pa.array([10, 11, 12], pa.int64()))
    batch = to_spark_batch(records, 1, BIDS, target)
    assert batch.schema.equals(target)  # what pyspark's reader checks
    assert batch.to_pylist()[0] == {
        "_partition": 1,
        "_offset": 10,
        "_timestamp": datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
        "_key": b"k",
        "auction": 7,
        "price": 1.5,
        "ts": datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC),
    }
    assert [r["auction"] for r in batch.to_pylist()] == [7, None, None]  # a bad value reads as nulls
    whole = topic_struct(BIDS)
    chosen = arrow_target(StructType([whole["_offset"], whole["price"]]))
    assert to_spark_batch(records, 0, BIDS, chosen).column(1).to_pylist() == [1.5, None, None]


def test_a_schema_may_select_columns_but_not_invent_them() -> None:
    assert projection(BIDS, ["price", "_offset"]) == ["price", "_offset"]
    with pytest.raises(InvalidInputError, match=r"no column.*bidder"):
        projection(BIDS, ["price", "bidder"])


def test_registry_format_topics_are_refused_with_what_to_use_instead() -> None:
    avro = ValueSchema((Column("a", "BIGINT"),), format="avro", subject="s-value").to_json()
    with pytest.raises(InvalidInputError, match=r"avro values.*streamhouse SQL or a Kafka client"):
        readable(TopicInfo("t", 1, 1, value_schema=avro))


def test_marker_headers_are_record_headers_and_are_found_only_for_their_batch() -> None:
    headers = marker_headers(marker("s", 4, 1), 3)
    assert headers.type == HEADERS_TYPE and len(headers) == 3
    assert headers[2].as_py() == [{"key": "streamhouse.spark.sink", "value": b"s:4:1"}]
    assert _holds(headers, b"s:4:1")
    assert not _holds(headers, b"s:4:0") and not _holds(headers, b"s:14:1")
    assert not _holds(pa.nulls(2, HEADERS_TYPE), b"s:4:1")


def test_importing_streamhouse_does_not_import_pyspark() -> None:
    code = "import sys, streamhouse; sys.exit('pyspark' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
