"""What a new leader does with one partition's WAL entries (docs/DESIGN.md §3): pure, IO-free.

One agent's WAL can hold several leaderships of the same partition (it led, was taken over,
led again), so two entries may hold different records at the same offsets. Each entry carries
the lease epoch it was written under, and the plan sorts every acknowledged record into:

- committed: a segment of its own leadership covers it (nothing to do);
- tail: it continues the log at the committed end under the latest leadership that wrote
  those offsets: re-buffered at its own offsets, as before a crash;
- orphan: acknowledged, in no committed segment, and its offsets now belong to another
  leadership (a newer entry of this WAL, or a segment another holder committed): appended
  again at the partition's end, byte for byte (original timestamps and headers), so an
  acknowledged record is never silently discarded (at-least-once for those records);
- expired: below the committed end where no segment is left. Segments are contiguous from the
  log start, so such offsets are below it: retention removed them (engine/agent/retention.py).
  Whether this leadership committed them or another did, records at those offsets are past the
  topic's retention limit, and appending them again would duplicate records the topic has
  already let go of; they are dropped like the segments (an agent down for longer than
  retention.ms no longer brings its old records back at the end).

Forwarded: when another live agent leads the partition, this agent produces the records to
that leader instead and writes a marker entry (epoch FORWARDED_EPOCH, identical payload): a
marker carries its records over like a later leadership would, and is never itself replayed.

Carrying over: a new leader writes every record it takes over from the WAL (tail or orphan)
into the WAL again under its own epoch with the identical payload. An entry whose payload
and record count reappear under a later epoch is therefore already carried over and is
skipped, which makes recovery idempotent across repeated crashes. The price: two genuinely
distinct batches with byte-identical payloads (same keys, values, headers and timestamps) in
different leaderships count as one.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from streamhouse.storage.errors import CorruptDataError
from streamhouse.storage.model import SegmentInfo
from streamhouse.storage.records.codec import decode_batch, encode_batch
from streamhouse.storage.wal.format import FORWARDED_EPOCH, WalEntry


@dataclass(frozen=True, slots=True)
class Piece:
    """Records [start, end) of one WAL entry."""

    entry: WalEntry
    start: int
    end: int

    @property
    def records(self) -> int:
        return self.end - self.start

    @property
    def whole(self) -> bool:
        return self.start == self.entry.base_offset and self.end == self.entry.end_offset


@dataclass(frozen=True, slots=True)
class RecoveryPlan:
    # Contiguous from the committed end, in offset order: re-buffered at their own offsets.
    tail: tuple[Piece, ...]
    # Oldest leadership first: appended again after the tail.
    orphans: tuple[Piece, ...]
    committed: int  # records already in segments of their own leadership
    carried: int  # records a later leadership of this WAL already carried over
    expired: int = 0  # records below the log start: retention removed their offsets' segments

    @property
    def idle(self) -> bool:
        """Nothing to re-buffer or re-append: the entries may be released."""
        return not self.tail and not self.orphans

    @property
    def orphan_records(self) -> int:
        return sum(p.records for p in self.orphans)

    @property
    def tail_records(self) -> int:
        return sum(p.records for p in self.tail)


def plan_recovery(entries: Iterable[WalEntry], committed_end: int, segments: Sequence[SegmentInfo]) -> RecoveryPlan:
    """`entries`: one partition's WAL entries (any order, any epochs); `segments`: the committed
    segments overlapping them, ending at `committed_end`."""
    survivors, lineage, carried = _drop_carried(list(entries))
    segs = sorted(segments, key=lambda s: s.base_offset)
    seg_bases = [s.base_offset for s in segs]
    # Entries older than the leadership of the last committed segment cannot continue the log
    # at its end: another holder (or a later leadership) has written since.
    floor_epoch = segs[-1].epoch if segs and segs[-1].end_offset == committed_end else 0
    lost: list[Piece] = []
    candidates: list[Piece] = []
    committed = 0
    expired = 0
    claims: list[tuple[int, int]] = []  # offsets written by a later leadership, sorted, disjoint
    by_epoch: dict[int, list[WalEntry]] = {}
    for e in survivors:
        if e.epoch != FORWARDED_EPOCH:  # a marker: its records live on in another agent's log
            by_epoch.setdefault(e.epoch, []).append(e)
    for epoch in sorted(by_epoch, reverse=True):
        batch = sorted(by_epoch[epoch], key=lambda e: e.base_offset)
        for entry in batch:
            free, taken = _split(entry.base_offset, entry.end_offset, claims)
            lost.extend(Piece(entry, lo, hi) for lo, hi in taken)  # a later leadership reused them
            for lo, hi in free:
                if lo < committed_end:
                    top = min(hi, committed_end)
                    done, missing, gone = _covered(lo, top, segs, seg_bases, lineage[id(entry)])
                    committed += done
                    expired += gone
                    lost.extend(Piece(entry, a, b) for a, b in missing)
                    lo = top
                if lo < hi:
                    (candidates if epoch >= floor_epoch else lost).append(Piece(entry, lo, hi))
        claims = _merge(claims, [(e.base_offset, e.end_offset) for e in batch])
    tail: list[Piece] = []
    at = committed_end
    for piece in sorted(candidates, key=lambda p: p.start):
        if piece.start == at:
            tail.append(piece)
            at = piece.end
        else:
            lost.append(piece)  # after a gap: acknowledged, but not placeable at its offsets
    return RecoveryPlan(tuple(tail), _joined(lost), committed, carried, expired)


def piece_payload(piece: Piece) -> bytes:
    """The payload to write for `piece`: the entry's own bytes when whole (what carrying over
    is recognised by), else the slice re-encoded."""
    if piece.whole:
        return piece.entry.payload
    source = f"WAL entry at {piece.entry.base_offset}"
    batch = decode_batch(piece.entry.payload, source=source)
    if batch.num_rows != piece.entry.record_count:
        # Slicing would silently write fewer records than the offsets the piece stands for.
        raise CorruptDataError(
            f"WAL entry header says {piece.entry.record_count} records, its payload holds {batch.num_rows}",
            source=source,
        )
    part = batch.slice(piece.start - piece.entry.base_offset, piece.records)
    # Without its schema metadata: an idempotent producer's tag (docs/DESIGN.md §10) names the
    # whole batch's sequences, which a slice does not hold.
    return encode_batch(part.replace_schema_metadata(None))


def piece_batch(payload: bytes, piece: Piece, source: str) -> pa.RecordBatch:
    """`payload` (piece_payload's) decoded, holding exactly the piece's records: a whole entry
    whose payload disagrees with its header would re-buffer other records than the offsets
    the piece advances."""
    batch = decode_batch(payload, source=source)
    if batch.num_rows != piece.records:
        raise CorruptDataError(
            f"WAL entry holds {batch.num_rows} records, its header says {piece.records}", source=source
        )
    return batch


def _joined(pieces: list[Piece]) -> tuple[Piece, ...]:
    """Adjacent pieces of one entry as one piece, oldest leadership first: an entry lost whole
    is written again with its own payload (what recognises it as carried over next time)."""
    out: list[Piece] = []
    for p in sorted(pieces, key=lambda p: (p.entry.epoch, p.entry.base_offset, id(p.entry), p.start)):
        last = out[-1] if out else None
        if last is not None and last.entry is p.entry and last.end == p.start:
            out[-1] = Piece(p.entry, last.start, p.end)
        else:
            out.append(p)
    return tuple(out)


def _drop_carried(entries: list[WalEntry]) -> tuple[list[WalEntry], dict[int, set[int]], int]:
    """Entries whose identical payload reappears under a later epoch are carried over: only the
    latest copies survive, each remembering every epoch its records were written under."""
    groups: dict[tuple[int, bytes], list[WalEntry]] = {}
    for e in entries:
        groups.setdefault((e.record_count, e.payload), []).append(e)
    survivors: list[WalEntry] = []
    lineage: dict[int, set[int]] = {}
    carried = 0
    for group in groups.values():
        top = max(e.epoch for e in group)
        epochs = {e.epoch for e in group}
        for e in group:
            if e.epoch == top:
                survivors.append(e)
                lineage[id(e)] = epochs
            else:
                carried += e.record_count
    return survivors, lineage, carried


def _split(lo: int, hi: int, claims: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """[lo, hi) cut into the parts outside and inside `claims`."""
    free: list[tuple[int, int]] = []
    taken: list[tuple[int, int]] = []
    i = max(0, bisect.bisect_right(claims, (lo, lo)) - 1)
    at = lo
    while at < hi and i < len(claims):
        c_lo, c_hi = claims[i]
        if c_hi <= at:
            i += 1
            continue
        if c_lo >= hi:
            break
        if c_lo > at:
            free.append((at, c_lo))
        taken.append((max(at, c_lo), min(hi, c_hi)))
        at = min(hi, c_hi)
        i += 1
    if at < hi:
        free.append((at, hi))
    return free, taken


def _merge(claims: list[tuple[int, int]], new: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(claims + new):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _covered(
    lo: int, hi: int, segs: list[SegmentInfo], bases: list[int], epochs: set[int]
) -> tuple[int, list[tuple[int, int]], int]:
    """Of [lo, hi) (below the committed end): how many records segments of one of `epochs`
    hold (this entry's own leadership), the ranges some other leadership committed, and how
    many offsets no segment holds any more (below the log start: see `expired` above)."""
    done = 0
    gone = 0
    missing: list[tuple[int, int]] = []
    at = lo
    i = max(0, bisect.bisect_right(bases, lo) - 1)
    while at < hi:
        seg = segs[i] if i < len(segs) else None
        if seg is None or seg.base_offset > at:
            stop = hi if seg is None else min(hi, seg.base_offset)
            gone += stop - at  # no segment here: below the log start (retention removed it)
            at = stop
            continue
        stop = min(hi, seg.end_offset)
        if stop > at:
            if seg.epoch in epochs:
                done += stop - at
            else:
                missing.append((at, stop))
            at = stop
        i += 1
    return done, missing, gone
