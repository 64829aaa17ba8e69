"""Disaster recovery's rules (issue 14 item 5): the latest metadata snapshot plus the segment
objects found in the object store → the tables to import into an empty database. Pure, IO-free
(engine/agent/recovery.py lists the objects, reads their footers and imports the result).

Per partition the recovered log is one contiguous chain of segments, never two segments over
one offset:

1. The snapshot's rows come first. The objects a snapshot row or a deferred deletion names are
   known; any other segment object under `topics/` is a candidate, read from its Parquet footer
   (topic, partition, offsets, epoch, timestamps; a compacted segment's range end), if it was
   last modified after the snapshot minus SKEW_MS (older unreferenced objects are leftovers of
   deleted topics, merges or fenced uploads the snapshot already did without).
2. The chain starts at the partition's first snapshot row and is extended one segment at a time
   from its end `pos`. The options are the segments starting exactly at `pos`: snapshot rows
   whose object exists and candidates. The newest epoch wins: a fenced leader's upload loses to
   its successor's committed segments, whatever their length (at one base offset, only the
   latest leadership can have written after the others). Among one epoch's options (a merged or
   compacted segment keeps its pieces' epoch), the one from which the chain reaches farthest over
   existing objects wins, then the snapshot's row, then the largest range. So a merge done after
   the snapshot whose old objects were deleted meanwhile is followed through its merged object,
   and segments written after the snapshot extend the log from the snapshot's end, contiguous.
3. A snapshot row whose object is missing and that no candidate replaces is kept when later
   rows follow (the orphan reconciler reports it, reads of it fail loudly: dropping it would hide
   lost records), but a run of such rows at the very start is dropped and the log start moved
   past it (retention removed those objects after the snapshot).
4. Topics created after the snapshot are recovered from their segments alone, as RAW topics:
   partitions = the highest partition seen + 1, no declared columns, no settings (a note says
   so). Segments of a partition the snapshot does not have (ADD PARTITIONS after it) grow the
   topic. A continuous query's output (and dead-letter) topic is never extended past the
   snapshot: the job's checkpoint (source offsets and output, committed together) is the
   snapshot's, and the job writes that output again from there.
5. Leases are not recovered: every snapshot lease is restored expired, and every epoch (also
   those seen in segment objects) continues EPOCH_GAP higher, above any leadership the WAL or the
   object store may still hold; counters (topic, job, producer and schema ids) continue
   COUNTER_GAP above the snapshot's value, so an id handed out after the snapshot is never
   handed out again. Consumer group offsets, jobs, checkpoints, producer states and the schema
   registry are as of the snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from streamhouse.storage.metadata import rows as r
from streamhouse.storage.metadata.snapshot import MetadataDump, Table, Value
from streamhouse.storage.model import SegmentInfo, partition_resource

SKEW_MS = 10 * 60_000
EPOCH_GAP = 1_000
COUNTER_GAP = 1_000
RECOVERED_HOLDER = "recovered"
SEGMENT_COLUMNS = tuple(c.strip() for c in r.SEGMENT_COLUMNS.split(","))
TOPIC_COLUMNS = ("name", "topic_id", "partitions", "config", "value_schema", "created_at_ms")

Key = tuple[str, int]


@dataclass(frozen=True)
class FoundSegment:
    """A segment object no snapshot row names, as its footer describes it."""

    segment: SegmentInfo
    modified_ms: int | None = None


@dataclass(frozen=True)
class RecoveryReport:
    snapshot_key: str | None
    snapshot_ms: int | None
    topics: int
    raw_topics: tuple[str, ...] = ()
    added_segments: int = 0
    added_records: int = 0
    replaced_rows: int = 0  # snapshot rows replaced by a segment covering them (merged later)
    dropped_rows: tuple[str, ...] = ()  # leading rows whose objects are gone
    missing_rows: tuple[str, ...] = ()  # rows kept although their object is missing
    held_back: tuple[str, ...] = ()  # job output topics kept as of the snapshot
    unused_objects: int = 0  # candidates no chain took
    partitions: Mapping[Key, tuple[int, int]] = field(default_factory=dict)  # (log start, end)

    def lines(self) -> list[str]:
        where = f"snapshot {self.snapshot_key} (taken at {self.snapshot_ms} ms)" if self.snapshot_key else "no snapshot"
        out = [
            f"recovered from {where}: {self.topics} topics, {self.added_segments} segments "
            f"({self.added_records} offsets) added from the object store"
        ]
        if self.raw_topics:
            out.append(
                "topics created after the snapshot, recovered from their segments as raw topics "
                "(declared columns and settings unknown: re-declare the settings with ALTER TOPIC): "
                + ", ".join(self.raw_topics)
            )
        if self.replaced_rows:
            out.append(f"{self.replaced_rows} snapshot segment rows replaced by later merged segments covering them")
        if self.dropped_rows:
            out.append(f"{len(self.dropped_rows)} leading segments whose objects are gone dropped (log start moved)")
        if self.missing_rows:
            out.append(
                f"{len(self.missing_rows)} segment rows kept although their objects are missing "
                f"(e.g. {self.missing_rows[0]}): reads of those offsets fail until they are restored"
            )
        if self.held_back:
            out.append(f"continuous-query output topics kept as of the snapshot: {', '.join(self.held_back)}")
        if self.unused_objects:
            out.append(
                f"{self.unused_objects} segment objects not used (overlapping or unreachable; "
                "the orphan reconciler removes them)"
            )
        return out


@dataclass(frozen=True)
class RecoveryPlan:
    tables: tuple[Table, ...]
    report: RecoveryReport


def plan_recover(
    dump: MetadataDump | None,
    found: Iterable[FoundSegment],
    present: Iterable[str],
    *,
    now_ms: int,
    snapshot_key: str | None = None,
) -> RecoveryPlan:
    """`found`: footers of the segment objects no snapshot row names; `present`: every segment
    object key listed (to tell which snapshot rows still have their object)."""
    base = dump or MetadataDump(taken_ms=0, schema_version=0)
    keys = set(present)
    rows = _by_name(base)
    segment_rows = [r.segment_from_row(d) for d in rows["segments"]]
    known = {s.object_key for s in segment_rows} | {str(d["object_key"]) for d in rows["deferred_deletions"]}
    cutoff = None if dump is None else dump.taken_ms - SKEW_MS
    candidates: dict[Key, list[SegmentInfo]] = {}
    epochs: dict[Key, int] = {}
    for item in found:
        s = item.segment
        key = (s.topic, s.partition)
        epochs[key] = max(epochs.get(key, 0), s.epoch)
        if s.object_key in known or (cutoff is not None and item.modified_ms is not None and item.modified_ms < cutoff):
            continue
        candidates.setdefault(key, []).append(s)
    snapshot: dict[Key, list[SegmentInfo]] = {}
    for s in segment_rows:
        snapshot.setdefault((s.topic, s.partition), []).append(s)
        epochs[(s.topic, s.partition)] = max(epochs.get((s.topic, s.partition), 0), s.epoch)
    bounds_before = {
        (str(d["topic"]), _int(d["partition_id"])): (_int(d.get("log_start_offset")), _int(d["end_offset"]))
        for d in rows["partitions"]
    }

    topics = {str(d["name"]): d for d in rows["topics"]}
    outputs = {str(d["output_topic"]) for d in rows["jobs"]} | _dead_letter_topics(rows["jobs"])
    sizes = {name: _int(d["partitions"]) for name, d in topics.items()}
    for topic, partition in candidates:
        sizes[topic] = max(sizes.get(topic, 0), partition + 1)

    chains: dict[Key, list[SegmentInfo]] = {}
    bounds: dict[Key, tuple[int, int]] = {}
    dropped: list[str] = []
    held: set[str] = set()
    for topic, count in sorted(sizes.items()):
        for partition in range(count):
            key = (topic, partition)
            snap = sorted(snapshot.get(key, []), key=lambda s: s.base_offset)
            start, end = bounds_before.get(key, (0, 0))
            extra = candidates.get(key, [])
            if topic in outputs:  # rule 4: the job writes it again from its checkpoint
                held.update(topic for c in extra if c.end_offset > end)
                extra = [c for c in extra if c.end_offset <= end]
            first = snap[0].base_offset if snap else (end if key in bounds_before else None)
            chain, moved, gone = _chain(first, snap, keys, extra)
            dropped.extend(gone)
            chains[key] = chain
            if key not in bounds_before:
                start = chain[0].base_offset if chain else 0
            bounds[key] = (max(start, moved) if gone else start, max([end] + [s.end_offset for s in chain]))

    chosen = {s.object_key for chain in chains.values() for s in chain}
    added = [s for chain in chains.values() for s in chain if s.object_key not in known]
    kept_rows = sum(1 for s in segment_rows if s.object_key in chosen)
    report = RecoveryReport(
        snapshot_key=snapshot_key,
        snapshot_ms=None if dump is None else dump.taken_ms,
        topics=len(sizes),
        raw_topics=tuple(sorted(set(sizes) - set(topics))),
        added_segments=len(added),
        added_records=sum(s.end_offset - s.base_offset for s in added),
        replaced_rows=len(segment_rows) - kept_rows - len(dropped),
        dropped_rows=tuple(dropped),
        missing_rows=tuple(s.object_key for chain in chains.values() for s in chain if s.object_key not in keys),
        held_back=tuple(sorted(held)),
        unused_objects=sum(len(v) for v in candidates.values()) - len(added),
        partitions=bounds,
    )
    return RecoveryPlan(_tables(base, rows, chosen, added, sizes, report, epochs, now_ms), report)


def _dead_letter_topics(jobs: list[dict[str, Value]]) -> set[str]:
    """The jobs' dead-letter topics (option 'dead-letter'): their checkpoints write them too."""
    out: set[str] = set()
    for job in jobs:
        try:
            options = json.loads(str(job.get("options") or "{}"))
        except ValueError:
            continue
        if isinstance(options, dict) and options.get("dead-letter"):
            out.add(str(options["dead-letter"]))
    return out


def _int(value: Value) -> int:
    return 0 if value is None else int(value)


def _chain(
    first: int | None, snap: list[SegmentInfo], present: set[str], extra: list[SegmentInfo]
) -> tuple[list[SegmentInfo], int, list[str]]:
    """(the partition's chain from `first` (None: its lowest candidate), where it starts after
    dropped leading rows, keys of those rows); see rules 2 and 3."""
    options: dict[int, list[tuple[SegmentInfo, bool]]] = {}
    for s in snap:
        if s.object_key in present:
            options.setdefault(s.base_offset, []).append((s, True))
    for s in extra:
        options.setdefault(s.base_offset, []).append((s, False))
    gone = {s.base_offset: s for s in snap if s.object_key not in present}
    reach: dict[int, int] = {}
    for at in sorted(options, reverse=True):  # every option ends after its start: ends first
        reach[at] = max(reach.get(s.end_offset, s.end_offset) for s, _ in options[at])
    if first is None:
        if not options:
            return [], 0, []
        first = min(options)
    pos = first
    dropped: list[str] = []
    while pos not in options and pos in gone:  # rule 3: gone from the front
        dropped.append(gone[pos].object_key)
        pos = gone[pos].end_offset
    start = pos
    chain: list[SegmentInfo] = []
    while True:  # ends: every step moves `pos` strictly forward
        here = options.get(pos)
        if here:
            best, _ = max(
                here, key=lambda o: (o[0].epoch, reach.get(o[0].end_offset, o[0].end_offset), o[1], o[0].end_offset)
            )
        elif pos in gone:
            best = gone[pos]
        else:
            break
        chain.append(best)
        pos = best.end_offset
    return chain, start, dropped


def _by_name(dump: MetadataDump) -> dict[str, list[dict[str, Value]]]:
    out: dict[str, list[dict[str, Value]]] = {
        n: [] for n in ("topics", "partitions", "segments", "leases", "counters", "jobs", "deferred_deletions")
    }
    for table in dump.tables:
        out.setdefault(table.name, []).extend(table.dicts())
    return out


def _tables(
    dump: MetadataDump,
    rows: Mapping[str, list[dict[str, Value]]],
    chosen: set[str],
    added: Sequence[SegmentInfo],
    sizes: Mapping[str, int],
    report: RecoveryReport,
    epochs: Mapping[Key, int],
    now_ms: int,
) -> tuple[Table, ...]:
    """The snapshot's tables edited per the rules, plus the rows recovery adds."""
    ends = report.partitions
    # Rule 5: every counter continues COUNTER_GAP above the snapshot; new raw topics take the
    # first topic ids past that.
    counters = {str(d["name"]): _int(d["value"]) + COUNTER_GAP for d in rows["counters"]}
    next_topic_id = max(
        [counters.get("topic_id", COUNTER_GAP)] + [_int(d["topic_id"]) + COUNTER_GAP for d in rows["topics"]]
    )
    new_topics: list[tuple[Value, ...]] = []
    for name in report.raw_topics:
        next_topic_id += 1
        new_topics.append((name, next_topic_id, sizes[name], "{}", None, now_ms))
    counters["topic_id"] = next_topic_id
    out: list[Table] = []
    seen_partitions: set[Key] = set()
    for table in dump.tables:
        if table.name == "segments":
            i = table.column("object_key")
            out.append(replace(table, rows=tuple(row for row in table.rows if row[i] in chosen)))
        elif table.name == "topics":
            i, n = table.column("name"), table.column("partitions")
            out.append(replace(table, rows=tuple(_set(row, n, sizes[str(row[i])]) for row in table.rows)))
        elif table.name == "partitions":
            out.append(_partitions(table, ends, seen_partitions))
        elif table.name in ("leases", "counters"):
            continue  # rebuilt below
        else:
            out.append(table)
    if new_topics:
        out.append(Table("topics", TOPIC_COLUMNS, tuple(new_topics)))
    fresh = sorted(k for k in ends if k not in seen_partitions)
    if fresh:
        columns = ("topic", "partition_id", "end_offset", "log_start_offset")
        out.append(Table("partitions", columns, tuple((t, p, ends[(t, p)][1], ends[(t, p)][0]) for t, p in fresh)))
    if added:
        out.append(Table("segments", SEGMENT_COLUMNS, tuple((*r.segment_values(s), now_ms) for s in added)))
    out.append(_leases(rows["leases"], epochs))
    out.append(Table("counters", ("name", "value"), tuple(sorted(counters.items()))))
    return tuple(out)


def _set(row: tuple[Value, ...], index: int, value: Value) -> tuple[Value, ...]:
    return (*row[:index], value, *row[index + 1 :])


def _partitions(table: Table, ends: Mapping[Key, tuple[int, int]], seen: set[Key]) -> Table:
    """The snapshot's partition rows with their recovered end and log start (the column is
    added for a snapshot written before migration 0006 had it)."""
    t, p, e = table.column("topic"), table.column("partition_id"), table.column("end_offset")
    columns = table.columns if "log_start_offset" in table.columns else (*table.columns, "log_start_offset")
    s = columns.index("log_start_offset")
    out: list[tuple[Value, ...]] = []
    for row in table.rows:
        key = (str(row[t]), _int(row[p]))
        seen.add(key)
        start, end = ends[key]
        values = row if len(columns) == len(row) else (*row, 0)
        out.append(_set(_set(values, e, end), s, start))
    return Table(table.name, columns, tuple(out))


def _leases(rows: list[dict[str, Value]], epochs: Mapping[Key, int]) -> Table:
    """Every lease expired, every epoch EPOCH_GAP above the highest the snapshot or an object
    shows (rule 5)."""
    epoch = {str(d["resource"]): _int(d["epoch"]) for d in rows}
    holder = {str(d["resource"]): str(d["holder"]) for d in rows}
    for (topic, partition), e in epochs.items():
        resource = partition_resource(topic, partition)
        epoch[resource] = max(epoch.get(resource, 0), e)
    columns = tuple(c.strip() for c in r.LEASE_COLUMNS.split(","))
    return Table(
        "leases",
        columns,
        tuple((res, holder.get(res, RECOVERED_HOLDER), e + EPOCH_GAP, 0) for res, e in sorted(epoch.items())),
    )


__all__ = [
    "COUNTER_GAP",
    "EPOCH_GAP",
    "SKEW_MS",
    "FoundSegment",
    "RecoveryPlan",
    "RecoveryReport",
    "plan_recover",
]
