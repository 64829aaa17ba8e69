"""What a query's answer covers, and how much of a topic it reads at a time.

A query reads each partition's committed segments and, on the partition's leader only, the
records not yet in a segment (the leader's buffer; another agent cannot see it). Rather than
fetch other leaders' tails, every answer says which offsets it covers, in its Arrow schema
metadata under COVERAGE_KEY (JSON: topic → one entry per partition read):

    {"bid": [{"partition": 0, "start": 0, "end": 81920, "unflushed_included": false}, …]}

`end` is exclusive. `unflushed_included` false: records the leader acknowledged but has not yet
written to a segment (at most its roll age, 10 s by default) are not in the answer; run the
query on the leader, or again after a roll, to see them. `unflushed_included` true: the answer
read past the high watermark (the durable end), which fetches and jobs never do: a leader
killed or paused past its lease loses those records (acks=leader ones come back later at other
offsets), so the same query may then count differently. The SDK's Client.sql returns the table
with this metadata (gRPC carries it in the Arrow IPC schema), read it with `coverage(table)`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

__all__ = ["COVERAGE_KEY", "coverage", "read_chunk_bytes", "with_coverage"]

COVERAGE_KEY = b"streamhouse.coverage"
# A scan decodes at most about this much (uncompressed, by the segment footers) per chunk: a
# sixteenth of the statement's memory cap, between 1 MiB and 64 MiB (a whole default segment).
_MIN_CHUNK = 1 << 20
_MAX_CHUNK = 64 << 20


def read_chunk_bytes(memory_bytes: int) -> int:
    """The chunk size of a statement's topic scans under its memory cap."""
    return max(_MIN_CHUNK, min(_MAX_CHUNK, memory_bytes // 16))


def with_coverage(result: pa.Table, covered: Mapping[str, list[dict[str, Any]]]) -> pa.Table:
    """`result` with the offsets each topic's partitions were read over in its metadata."""
    if not covered:
        return result
    metadata = dict(result.schema.metadata or {})
    metadata[COVERAGE_KEY] = json.dumps(covered, separators=(",", ":")).encode()
    return result.replace_schema_metadata(metadata)


def coverage(result: pa.Table) -> dict[str, list[dict[str, Any]]]:
    """The coverage a query answer carries ({} for statements that read no topic)."""
    raw = (result.schema.metadata or {}).get(COVERAGE_KEY)
    return dict(json.loads(raw)) if raw else {}
