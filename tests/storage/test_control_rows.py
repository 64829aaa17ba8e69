"""Kafka transaction markers in the log (issue 18, storage/records/control.py): a control row
occupies its own offset through the leader's append path (WAL, buffer, segment, WAL takeover),
segments list it in their footer, the fetch read path returns it (Kafka Fetch encodes it as a
control batch), and SQL/job scans never show it, in committed segments or the leader's buffer.
Real SQLite store, local objects, a real WAL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.model import partition_resource
from streamhouse.storage.object_store import open_object_store
from streamhouse.storage.partition.reader import PartitionReader
from streamhouse.storage.partition.scan import ScanBounds, plan_partition, scan_partition
from streamhouse.storage.partition.writer import PartitionWriter
from streamhouse.storage.records import control
from streamhouse.storage.records.schema import assign_offsets, make_batch
from streamhouse.storage.segment.compacted import compact_segments
from streamhouse.storage.segment.format import decode_segment, encode_segment, parse_footer
from streamhouse.storage.segment.merge import merge_segments
from streamhouse.storage.wal.log import WriteAheadLog


def _data(n: int, start: int = 0) -> pa.RecordBatch:
    return make_batch([b"v%d" % i for i in range(start, start + n)], timestamps=1000, headers=[[("h", b"x")]] * n)


async def test_markers_take_offsets_and_scans_skip_them(tmp_path: Path) -> None:
    metadata = await open_metadata_store(f"sqlite:///{tmp_path / 'meta.db'}")
    store = open_object_store(f"file://{tmp_path / 'objects'}")
    topic = await metadata.create_topic("t", 1)
    wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    await wal.replay()
    lease = await metadata.acquire_lease(partition_resource("t", 0), "a", 30_000)
    writer = await PartitionWriter.recover(
        topic, 0, holder="a", epoch=lease.epoch, metadata=metadata, store=store, wal=wal, replayed=[]
    )
    commit, abort = control.Marker(7, 1, True), control.Marker(7, 1, False, 3)
    assert await writer.append(_data(3)) == 0
    assert await writer.append(control.marker_batch(commit, 1000)) == 3  # the marker's own offset
    assert await writer.append(_data(2, 4)) == 4
    await writer.flush()  # offsets 0-5 in a segment, the marker at 3
    assert await writer.append(control.marker_batch(abort, 1000)) == 6  # in the leader's buffer
    assert await writer.append(_data(1, 7)) == 7

    reader = PartitionReader(metadata, store)
    fetched = await reader.read("t", 0, 0, writer=writer)  # the fetch path keeps markers (Kafka encodes them)
    assert fetched.column("offset").to_pylist() == list(range(8))
    assert control.control_offsets(fetched).tolist() == [3, 6]
    rows = fetched.to_pylist()
    assert control.marker_of(rows[6]["key"], rows[6]["headers"][0]["value"]) == abort
    assert control.without_control(fetched).column("offset").to_pylist() == [0, 1, 2, 4, 5, 7]

    for columns in (["value"], ["offset", "headers"], []):
        table, _ = await scan_partition(reader, topic, 0, ScanBounds(), columns, writer)
        assert table.column("offset").to_pylist() == [0, 1, 2, 4, 5, 7], columns
    plan = await plan_partition(reader, topic, 0, ScanBounds(), [], writer)
    assert [c.controls for c in plan.chunks] == [(3,)]
    assert all(c.rows is None for c in plan.chunks)  # count(*) may not take the footer's row count

    # A new leader takes the WAL over: the buffered marker is still a marker at its offset.
    await wal.close()
    wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    replayed = (await wal.replay()).entries
    await metadata.release_lease(partition_resource("t", 0), "a", lease.epoch)
    lease = await metadata.acquire_lease(partition_resource("t", 0), "b", 30_000)
    writer = await PartitionWriter.recover(
        topic, 0, holder="b", epoch=lease.epoch, metadata=metadata, store=store, wal=wal, replayed=replayed
    )
    await writer.flush()
    table, _ = await scan_partition(PartitionReader(metadata, store), topic, 0, ScanBounds(), ["value"], None)
    assert table.column("offset").to_pylist() == [0, 1, 2, 4, 5, 7]
    again = await PartitionReader(metadata, store).read("t", 0, 0)
    assert control.control_offsets(again).tolist() == [3, 6]
    await wal.close()
    await store.close()
    await metadata.close()


def test_reserved_header_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="reserved"):
        control.refuse_reserved(make_batch([b"x"], headers=[[(control.CONTROL_HEADER, b"")]]), "t")
    control.refuse_reserved(_data(2), "t")
    control.refuse_reserved(control.marker_batch(control.Marker(1, 0, False), 0), "t")  # a forwarded marker
    valued = make_batch([b"x"], keys=[bytes(4)], headers=[[(control.CONTROL_HEADER, bytes(14))]])
    with pytest.raises(InvalidInputError, match="reserved"):  # a marker's header on a record with a value
        control.refuse_reserved(valued, "t")
    control.refuse_reserved(make_batch([b"x"]), "t")


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["plain", "headers", "empty", "marker"]), min_size=1, max_size=30), st.integers(0, 5))
def test_control_mask_matches_rows(kinds: list[str], cut: int) -> None:
    """The vectorised mask against the rows themselves, over chunked and sliced columns and
    through a segment's footer (old segments: no footer key, no markers)."""
    batches = []
    for i, kind in enumerate(kinds):
        if kind == "marker":
            b = control.marker_batch(control.Marker(i, 0, i % 2 == 0), 5)
        else:
            hdrs = {"plain": None, "headers": [("k", b"v"), (control.CONTROL_HEADER, b"")], "empty": []}[kind]
            b = make_batch([b"x"], headers=[hdrs])
        batches.append(assign_offsets(b, i))
    table = pa.Table.from_batches(batches)
    expected = [i for i, k in enumerate(kinds) if k == "marker"]
    assert control.control_offsets(table).tolist() == expected
    sliced = table.combine_chunks().slice(min(cut, len(kinds) - 1))
    assert control.control_offsets(sliced).tolist() == [o for o in expected if o >= min(cut, len(kinds) - 1)]
    seg = encode_segment(table, topic="t", partition=0, epoch=1)
    footer = parse_footer(
        seg.data[-seg.footer_length :], size_bytes=len(seg.data), footer_crc=seg.footer_crc, source="t"
    )
    assert control.footer_controls(footer.metadata.metadata).tolist() == expected
    assert np.array_equal(control.footer_controls(None), np.zeros(0, dtype=np.int64))


def test_compaction_drops_markers_not_records_of_their_key() -> None:
    """A COMMIT marker's key is b"\\0\\0\\0\\1" and its value null: to log compaction it would be a
    tombstone of that key. Markers count as keyless instead, so compaction drops them and a
    record of that key survives."""
    user = make_batch([b"kept", b"v"], keys=[control.Marker(1, 0, True).kafka_key, b"other"], timestamps=1000)
    marker = assign_offsets(control.marker_batch(control.Marker(9, 0, True), 1000), 2)
    seg = encode_segment(pa.Table.from_batches([user, marker]), topic="t", partition=0, epoch=1)
    footer = parse_footer(
        seg.data[-seg.footer_length :], size_bytes=len(seg.data), footer_crc=seg.footer_crc, source="t"
    )
    done = compact_segments([(footer, seg.data)], [[0]], now_ms=0, delete_retention_ms=0)
    assert done.counts.keyless == 1
    out = done.segments[0]
    again = parse_footer(
        out.data[-out.footer_length :], size_bytes=len(out.data), footer_crc=out.footer_crc, source="c"
    )
    table = decode_segment(again, out.data)
    assert table.column("value").to_pylist() == [b"kept", b"v"]
    assert control.footer_controls(again.metadata.metadata).tolist() == []


def test_merging_keeps_markers_and_their_footer_list() -> None:
    """Small-segment merging carries markers over: the merged footer lists their offsets again
    (encode_segment recomputes the key), so a segment holding a marker is not refused as one
    whose footer key a merge would lose."""
    first = encode_segment(pa.Table.from_batches([_data(2)]), topic="t", partition=0, epoch=1)
    marker = assign_offsets(control.marker_batch(control.Marker(9, 0, False), 1000), 2)
    second = encode_segment(
        pa.Table.from_batches([marker, assign_offsets(_data(1, 3), 3)]), topic="t", partition=0, epoch=1
    )
    footers = [
        (parse_footer(s.data[-s.footer_length :], size_bytes=len(s.data), footer_crc=s.footer_crc, source=n), s.data)
        for n, s in (("a", first), ("b", second))
    ]
    merged = merge_segments(footers, epoch=1)
    out = parse_footer(
        merged.data[-merged.footer_length :], size_bytes=len(merged.data), footer_crc=merged.footer_crc, source="m"
    )
    assert control.footer_controls(out.metadata.metadata).tolist() == [2]
    assert decode_segment(out, merged.data).column("offset").to_pylist() == [0, 1, 2, 3]
