"""Merging neighbouring segments into one (docs/DESIGN.md §4); pure, synchronous, IO-free.

acks=durable rolls a segment per group commit, so a partition fed by small durable produces
collects many tiny segments and every read pays per segment (a footer, a request). Merging
rewrites a run of neighbouring segments as one: the same offsets and the same bytes per record
(every column the segments carry — the record columns and any typed columns decoded from JSON —
is decoded from the verified row groups and written again unchanged), with row groups, the
footer and every CRC32C computed anew by the one encoder (format.encode_segment).

Whole-batch Arrow: each input is decoded as one table, the tables are concatenated, and the
encoder cuts the row groups; no Python runs per record.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from streamhouse.storage.errors import SegmentMergeError
from streamhouse.storage.records.control import KEY_CONTROL_OFFSETS
from streamhouse.storage.segment import footer as f
from streamhouse.storage.segment.column_crcs import KEY_COLUMN_CRCS
from streamhouse.storage.segment.compact import KEY_CLEAN_HISTORY, CleanHistory
from streamhouse.storage.segment.decode import Chunk, decode_segment
from streamhouse.storage.segment.footer import SegmentFooter
from streamhouse.storage.segment.format import DEFAULT_ROW_GROUP_BYTES, EncodedSegment, encode_segment
from streamhouse.storage.values.json_decode import JSON_ERRORS_KEY

__all__ = ["merge_segments", "merged_key"]

# Footer keys a merge knows how to carry over: the encoder writes the format's own anew, and
# _json_errors combines the decode errors. A key not listed here would be silently lost, so a
# segment carrying one is refused until this module learns to merge it.
_KNOWN_KEYS = frozenset(
    k.encode()
    for k in (
        f.KEY_FORMAT_VERSION,
        f.KEY_TOPIC,
        f.KEY_PARTITION,
        f.KEY_BASE_OFFSET,
        f.KEY_LAST_OFFSET,
        f.KEY_END_OFFSET,
        f.KEY_ROW_GROUP_OFFSETS,
        f.KEY_EPOCH,
        f.KEY_MIN_TIMESTAMP,
        f.KEY_MAX_TIMESTAMP,
        f.KEY_ROW_GROUPS,
        f.KEY_SCHEMA,
        JSON_ERRORS_KEY,
        KEY_CLEAN_HISTORY,
        KEY_COLUMN_CRCS,  # recomputed for the merged output by encode_segment
        KEY_CONTROL_OFFSETS,  # likewise, from the Kafka transaction markers among the rows
    )
)
_OURS = b"streamhouse."

# How many bad values a merged footer keeps explained: the same bound the encoder applies to
# one segment (json_decode._REPORTED_OFFSETS), so a merged footer stays as small as one.
_REPORTED = 10


def merged_key(topic: str, partition: int, base_offset: int, end_offset: int, epoch: int, token: str) -> str:
    """The object key of a merged segment. Never a key a writer could use (writers name theirs
    `<base>-<epoch>.parquet`, partition/writer.segment_key) and unique per attempt (`token`), so
    an upload never overwrites anything and a crashed attempt's object is only an orphan."""
    return f"topics/{topic}/{partition:05d}/{base_offset:020d}-{epoch}-merged-{end_offset:020d}-{token}.parquet"


def merge_segments(
    inputs: Sequence[tuple[SegmentFooter, Chunk]],
    *,
    epoch: int,
    row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
) -> EncodedSegment:
    """One segment holding the records of `inputs` (verified footer, the object's whole bytes),
    which must be neighbours of one partition in offset order with the same columns.
    Every row group is verified against its footer before it is decoded (CorruptDataError
    otherwise); SegmentMergeError if the inputs do not fit together."""
    _check(inputs)
    tables = [decode_segment(footer, data, use_threads=False) for footer, data in inputs]
    table = pa.concat_tables(tables)
    first, last = inputs[0][0], inputs[-1][0]
    # Compacted inputs have gaps: the merged segment covers their whole range, gaps included.
    gapped = not all(footer.dense for footer, _ in inputs)
    return encode_segment(
        table,
        topic=first.topic,
        partition=first.partition,
        epoch=epoch,
        row_group_bytes=row_group_bytes,
        extra_metadata={
            **_json_errors([footer for footer, _ in inputs]),
            **_clean_history([footer for footer, _ in inputs], first.base_offset, last.end_offset),
        },
        covers=(first.base_offset, last.end_offset) if gapped else None,
    )


def _check(inputs: Sequence[tuple[SegmentFooter, Chunk]]) -> None:
    if not inputs:
        raise SegmentMergeError("nothing to merge: no segments given")
    first = inputs[0][0]
    for (before, _), (after, _) in itertools.pairwise(inputs):
        where = f"{after.source} after {before.source}"
        if (after.topic, after.partition) != (first.topic, first.partition):
            raise SegmentMergeError(
                f"{where}: segments of {first.topic}/{first.partition} and {after.topic}/{after.partition}"
            )
        if after.base_offset != before.end_offset:
            raise SegmentMergeError(
                f"{where}: not neighbours (offsets [{before.base_offset}, {before.end_offset}) then "
                f"[{after.base_offset}, {after.end_offset}))"
            )
        if not after.schema.remove_metadata().equals(first.schema.remove_metadata()):
            raise SegmentMergeError(f"{where}: other columns ({after.schema.names} vs {first.schema.names})")
    for footer, data in inputs:
        unknown = [k for k in footer.key_values if k.startswith(_OURS) and k not in _KNOWN_KEYS]
        if unknown:
            raise SegmentMergeError(f"{footer.source}: footer keys {unknown} would be lost by a merge")
        if len(data) != footer.size_bytes:
            raise SegmentMergeError(f"{footer.source}: {len(data)} bytes given, the segment has {footer.size_bytes}")


def _clean_history(footers: Sequence[SegmentFooter], base: int, end: int) -> dict[str, str]:
    """When compaction passes cleaned the inputs' offsets (segment/compact.py): kept by offset
    range, so tombstones of a compacted input age on after the merge, and a dirty input's
    offsets stay uncleaned."""
    pairs = [pair for footer in footers for pair in CleanHistory.from_footer(footer.key_values)]
    return CleanHistory.merged(pairs).for_range(base, end) if pairs else {}


def _json_errors(footers: Sequence[SegmentFooter]) -> dict[str, str]:
    """The footers' records of values that did not match the declared columns, combined: the
    total count, and the first offsets explained (queries name them without reading values)."""
    count = 0
    offsets: list[int] = []
    errors: list[Any] = []
    for footer in footers:
        raw = footer.key_values.get(JSON_ERRORS_KEY.encode())
        if raw is None:
            continue
        doc = json.loads(raw)
        count += int(doc["count"])
        offsets.extend(int(o) for o in doc["offsets"])
        errors.extend(doc.get("errors", []))
    if not count:
        return {}
    doc = {"count": count, "offsets": offsets[:_REPORTED], "errors": errors[:_REPORTED]}
    return {JSON_ERRORS_KEY: json.dumps(doc)}
