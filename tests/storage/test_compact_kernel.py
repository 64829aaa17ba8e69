"""The log compaction kernel (storage/segment/compact.py) and compacted segments
(storage/segment/compacted.py) against a brute-force latest-per-key written the obvious way."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.storage.errors import InvalidInputError, SegmentMergeError
from streamhouse.storage.records.schema import RECORD_SCHEMA, make_batch
from streamhouse.storage.segment.compact import (
    KEY_CLEAN_HISTORY,
    CleanHistory,
    KeyRequiredError,
    compact_records,
    require_keys,
)
from streamhouse.storage.segment.compacted import compact_segments
from streamhouse.storage.segment.format import decode_segment, encode_segment, parse_footer

Record = tuple[int, bytes | None, bytes | None]  # offset, key, value


def table_of(records: list[Record], *, timestamps: list[int] | None = None) -> pa.Table:
    keys = [k for _, k, _ in records]
    values = [v for _, _, v in records]
    headers = [[("o", str(o).encode())] for o, _, _ in records]
    ts = timestamps if timestamps is not None else [1_000 + o for o, _, _ in records]
    batch = make_batch(values, keys=keys, timestamps=ts, headers=headers)
    table = pa.Table.from_batches([batch], schema=RECORD_SCHEMA)
    return table.set_column(0, RECORD_SCHEMA.field(0), pa.array([o for o, _, _ in records], pa.int64()))


def brute_force(records: list[Record], now: int, retention: int, history: list[tuple[int, int]]) -> list[Record]:
    latest: dict[bytes, Record] = {}
    for record in records:  # ascending offsets: the last one seen wins
        if record[1] is not None:
            latest[record[1]] = record
    kept = []
    for offset, key, value in sorted(latest.values()):
        if value is None:
            cleaned = next((t for end, t in history if end > offset), now)
            if now - cleaned >= retention:
                continue
        kept.append((offset, key, value))
    return kept


records_strategy = st.lists(
    st.tuples(
        st.integers(1, 3),  # step to the next offset: gaps, as in an already compacted range
        st.sampled_from([None, b"a", b"b", b"c", b"", b"dd"]),
        st.sampled_from([None, b"x", b"y", b""]),
    ),
    max_size=60,
).map(lambda steps: [(int(o), k, v) for o, (_, k, v) in zip(np.cumsum([s for s, _, _ in steps]), steps, strict=True)])


@settings(max_examples=80, deadline=None)
@given(
    records=records_strategy,
    now=st.integers(10_000, 20_000),
    retention=st.integers(0, 12_000),
    history_steps=st.lists(st.tuples(st.integers(1, 40), st.integers(0, 3_000)), max_size=4),
)
def test_kernel_equals_brute_force(
    records: list[Record], now: int, retention: int, history_steps: list[tuple[int, int]]
) -> None:
    history = list(
        zip(
            np.cumsum([e for e, _ in history_steps]).tolist(),
            np.cumsum([t for _, t in history_steps]).tolist(),
            strict=True,
        )
    )
    table = table_of(records) if records else RECORD_SCHEMA.empty_table()
    out, counts = compact_records(
        table, now_ms=now, delete_retention_ms=retention, history=CleanHistory.merged(history)
    )
    expected = brute_force(records, now, retention, history)
    assert (
        list(
            zip(
                out.column("offset").to_pylist(),
                out.column("key").to_pylist(),
                out.column("value").to_pylist(),
                strict=True,
            )
        )
        == expected
    )
    # Timestamps and headers ride along untouched.
    assert out.column("timestamp").to_pylist() == [1_000 + o for o, _, _ in expected]
    assert [h[0]["value"] for h in out.column("headers").to_pylist()] == [str(o).encode() for o, _, _ in expected]
    assert counts.records_in == len(records) and counts.records_out == len(expected)
    assert counts.keyless == sum(1 for _, k, _ in records if k is None)


def test_tombstone_expiry_follows_the_first_pass_that_cleaned_it() -> None:
    records: list[Record] = [(0, b"a", b"1"), (1, b"a", None), (5, b"b", None)]
    table = table_of(records)
    # Never cleaned: a first pass keeps both tombstones (cleaned now), unless the retention is 0.
    kept, _ = compact_records(table, now_ms=100, delete_retention_ms=50)
    assert kept.column("offset").to_pylist() == [1, 5]
    kept, counts = compact_records(table, now_ms=100, delete_retention_ms=0)
    assert kept.num_rows == 0 and counts.tombstones_dropped == 2
    # Offsets below 3 were cleaned at 60, the rest at 90: at 120 with 50 ms only offset 1 goes.
    history = CleanHistory.merged([(3, 60), (6, 90)])
    kept, counts = compact_records(table, now_ms=120, delete_retention_ms=50, history=history)
    assert kept.column("offset").to_pylist() == [5] and counts.tombstones_dropped == 1


def test_clean_history_for_a_range_keeps_only_what_the_range_needs() -> None:
    history = CleanHistory.merged([(10, 1), (20, 2), (30, 3)]).then(40, 4)
    assert history.ends == (10, 20, 30, 40) and history.times == (1, 2, 3, 4)
    assert history.then(35, 9) is history  # an older end changes nothing
    assert history.for_range(12, 25) == {KEY_CLEAN_HISTORY: "[[20,2],[30,3]]"}
    assert history.for_range(0, 10) == {KEY_CLEAN_HISTORY: "[[10,1]]"}
    assert CleanHistory.merged([(10, 5), (10, 3), (20, 1)]).times == (3, 3)  # time never goes back


def test_records_without_a_key_are_refused_for_compacted_topics() -> None:
    require_keys("t", pa.array([b"a", b""], pa.binary()))  # an empty key is a key
    with pytest.raises(KeyRequiredError, match="record 2 has no key") as info:
        require_keys("t", pa.array([b"a", b"b", None, None], pa.binary()))
    assert info.value.index == 2 and isinstance(info.value, InvalidInputError)


def _segment(records: list[Record], covers: tuple[int, int] | None = None, epoch: int = 1) -> tuple[Any, bytes]:
    encoded = encode_segment(table_of(records), topic="t", partition=0, epoch=epoch, covers=covers, row_group_bytes=64)
    tail = encoded.data[-encoded.footer_length :]
    return parse_footer(tail, size_bytes=encoded.size_bytes, footer_crc=encoded.footer_crc, source="s"), encoded.data


@settings(max_examples=25, deadline=None)
@given(records=records_strategy.filter(lambda r: len(r) > 0), cut=st.integers(0, 100), now=st.integers(0, 100))
def test_compacted_segments_cover_their_runs_and_keep_the_survivors(records: list[Record], cut: int, now: int) -> None:
    dense = [(i, k, v) for i, (_, k, v) in enumerate(records)]
    split = cut % len(dense) if len(dense) > 1 else 0
    pieces = [dense[:split], dense[split:]] if split else [dense]
    inputs = [_segment(p) for p in pieces]
    runs = [[i] for i in range(len(inputs))]
    done = compact_segments(inputs, runs, now_ms=now, delete_retention_ms=50)
    expected = brute_force(dense, now, 50, [])
    got: list[Record] = []
    for (footer, _), encoded in zip(inputs, done.segments, strict=True):
        assert (encoded.base_offset, encoded.end_offset) == (footer.base_offset, footer.end_offset)
        again = parse_footer(
            encoded.data[-encoded.footer_length :],
            size_bytes=encoded.size_bytes,
            footer_crc=encoded.footer_crc,
            source="c",
        )
        # The footer says which pass cleaned the range (the next pass ages tombstones by it).
        assert CleanHistory.from_footer(again.metadata.metadata) == [(dense[-1][0] + 1, now)]
        rows = decode_segment(again, encoded.data)
        got += list(
            zip(
                rows.column("offset").to_pylist(),
                rows.column("key").to_pylist(),
                rows.column("value").to_pylist(),
                strict=True,
            )
        )
    # An emptied run keeps its last record: the rest is exactly latest-per-key.
    assert set(expected) <= set(got) and len(got) - len(expected) <= len(runs)
    assert done.counts.records_in == len(dense)


def test_compact_segments_refuses_inputs_that_do_not_fit() -> None:
    a = _segment([(0, b"a", b"1"), (1, b"b", b"2")])
    c = _segment([(5, b"a", b"1")])
    with pytest.raises(SegmentMergeError, match="does not follow"):
        compact_segments([a, c], [[0], [1]], now_ms=0, delete_retention_ms=0)
    b = _segment([(2, b"a", b"3")], epoch=2)
    with pytest.raises(SegmentMergeError, match="other epoch"):
        compact_segments([a, b], [[0, 1]], now_ms=0, delete_retention_ms=0)
    with pytest.raises(SegmentMergeError, match="once each"):
        compact_segments([a, b], [[0]], now_ms=0, delete_retention_ms=0)
