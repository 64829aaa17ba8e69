"""Compacted segments from a partition's cleanable segments (docs/DESIGN.md §4); pure, IO-free.

The engine's compactor (engine/agent/compactor.py) downloads the segments of one pass and runs
this in the IO pool: every row group verified and decoded (segment/decode.py), the survivors
chosen over the whole range at once by the kernel (segment/compact.py), then per run (the
segments one swap replaces) one segment covering the run's offset range with its survivors,
gaps and all (format.encode_segment `covers=`), footer and CRCs computed anew.

A run none of whose records survive cannot become a segment (a segment holds at least one
record, and dropping its rows from the metadata would leave a hole in the offsets). It keeps
its last record instead; that record may be an old value of a key whose newest record is an
expired tombstone, so that tombstone is kept in this pass too (else the old value would be
the key's latest again). Both go at a later pass, once the run has something else to keep.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.storage.errors import SegmentMergeError
from streamhouse.storage.records.control import record_keys
from streamhouse.storage.segment.compact import CleanHistory, CompactionCounts, keep_offsets, surviving_offsets
from streamhouse.storage.segment.decode import Chunk, decode_segment
from streamhouse.storage.segment.footer import SegmentFooter
from streamhouse.storage.segment.format import DEFAULT_ROW_GROUP_BYTES, EncodedSegment, encode_segment
from streamhouse.storage.values.json_decode import JSON_ERRORS_KEY

__all__ = ["CompactedPass", "compact_segments"]


@dataclass(frozen=True)
class CompactedPass:
    """One segment per run (in run order) and what the pass dropped."""

    segments: tuple[EncodedSegment, ...]
    counts: CompactionCounts
    bytes_in: int


def compact_segments(
    inputs: Sequence[tuple[SegmentFooter, Chunk]],
    runs: Sequence[Sequence[int]],
    *,
    now_ms: int,
    delete_retention_ms: int,
    row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
) -> CompactedPass:
    """Compact `inputs` (verified footer, the object's whole bytes; neighbours of one partition
    from its first segment on, in offset order), cut into `runs` (indices into `inputs`: each
    run consecutive, of one epoch and one set of columns, together every input once).
    CorruptDataError for a damaged input; SegmentMergeError if the inputs do not fit together."""
    _check(inputs, runs)
    tables = [decode_segment(footer, data, use_threads=False) for footer, data in inputs]
    offsets = pa.chunked_array([t.column("offset").combine_chunks() for t in tables])
    # Kafka transaction markers (storage/records/control.py) count as keyless, so compaction drops
    # them: their 4-byte control key must never stand for (or tombstone) a record's key.
    keys = pa.chunked_array([record_keys(t) for t in tables])
    tombstone = pa.chunked_array([pc.is_null(t.column("value").combine_chunks()) for t in tables])
    history = CleanHistory.merged(p for footer, _ in inputs for p in CleanHistory.from_footer(footer.key_values))
    footers = [footer for footer, _ in inputs]

    def survivors(pinned: pa.Array[Any] | None) -> tuple[np.ndarray[Any, np.dtype[np.int64]], CompactionCounts]:
        return surviving_offsets(
            offsets,
            keys,
            tombstone,
            now_ms=now_ms,
            delete_retention_ms=delete_retention_ms,
            history=history,
            keep_tombstones_of=pinned,
        )

    kept, counts = survivors(None)
    # Runs left empty keep their last record (module docstring), and its key its tombstone.
    pins = [
        i for i, run in enumerate(runs) if not _any_in(kept, footers[run[0]].base_offset, footers[run[-1]].end_offset)
    ]
    if pins:
        last = [tables[runs[i][-1]].slice(tables[runs[i][-1]].num_rows - 1) for i in pins]
        kept, counts = survivors(pa.concat_arrays([t.column("key").combine_chunks() for t in last]))
        pinned = np.array([t.column("offset")[0].as_py() for t in last], dtype=np.int64)
        kept = np.union1d(kept, pinned)
        counts = _with_pins(counts, len(kept))
    after = history.then(footers[-1].end_offset, now_ms)
    out: list[EncodedSegment] = []
    for run in runs:
        base, end = footers[run[0]].base_offset, footers[run[-1]].end_offset
        table = keep_offsets(pa.concat_tables([tables[i] for i in run]), kept)
        out.append(
            encode_segment(
                table,
                topic=footers[run[0]].topic,
                partition=footers[run[0]].partition,
                epoch=footers[run[0]].epoch,
                row_group_bytes=row_group_bytes,
                extra_metadata={
                    **after.for_range(base, end),
                    **_json_errors([footers[i].key_values for i in run], table.column("offset")),
                },
                covers=(base, end),
            )
        )
    return CompactedPass(tuple(out), counts, sum(f.size_bytes for f in footers))


def _any_in(kept: np.ndarray[Any, np.dtype[np.int64]], base: int, end: int) -> bool:
    return bool(np.searchsorted(kept, end, side="left") > np.searchsorted(kept, base, side="left"))


def _with_pins(counts: CompactionCounts, out: int) -> CompactionCounts:
    extra = out - counts.records_out  # pinned records counted as superseded by the kernel
    return CompactionCounts(
        counts.records_in, out, counts.superseded - extra, counts.tombstones_dropped, counts.keyless
    )


def _check(inputs: Sequence[tuple[SegmentFooter, Chunk]], runs: Sequence[Sequence[int]]) -> None:
    if not inputs:
        raise SegmentMergeError("nothing to compact: no segments given")
    flat = [i for run in runs for i in run]
    if flat != list(range(len(inputs))) or any(not run for run in runs):
        raise SegmentMergeError(f"runs {runs} do not cover the {len(inputs)} segments once each, in order")
    first = inputs[0][0]
    for (before, _), (after, _) in itertools.pairwise(inputs):
        if (after.topic, after.partition) != (first.topic, first.partition) or after.base_offset != before.end_offset:
            raise SegmentMergeError(
                f"{after.source} does not follow {before.source} in {first.topic}/{first.partition}"
            )
    for run in runs:
        head = inputs[run[0]][0]
        for i in run[1:]:
            other = inputs[i][0]
            if other.epoch != head.epoch or not other.schema.remove_metadata().equals(head.schema.remove_metadata()):
                raise SegmentMergeError(f"{other.source}: other epoch or columns than {head.source} in one run")


def _json_errors(metadatas: Sequence[Mapping[bytes, bytes] | None], kept: pa.ChunkedArray[Any]) -> dict[str, str]:
    """The runs' records of values that did not match the declared columns, for the records
    kept: a known bad offset no longer present stops counting; unknown ones (beyond the few
    a footer explains) keep counting, so a query is never told less than is there."""
    count = 0
    offsets: list[int] = []
    errors: list[Any] = []
    for metadata in metadatas:
        raw = (metadata or {}).get(JSON_ERRORS_KEY.encode())
        if raw is None:
            continue
        doc = json.loads(raw)
        known = [int(o) for o in doc["offsets"]]  # a few (json_decode bounds them)
        found = pc.is_in(pa.array(known, pa.int64()), value_set=kept.combine_chunks()).to_pylist()
        present = {o for o, there in zip(known, found, strict=True) if there}
        count += int(doc["count"]) - (len(known) - len(present))
        offsets += [o for o in known if o in present]
        errors += [e for e in doc.get("errors", []) if int(e["offset"]) in present]
    if not count:
        return {}
    return {JSON_ERRORS_KEY: json.dumps({"count": count, "offsets": offsets[:10], "errors": errors[:10]})}
