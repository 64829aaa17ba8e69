"""The idempotent producer's state per partition (docs/DESIGN.md §10): values, the tag a batch
carries through the WAL, and the rows the metadata store keeps. Pure and IO-free.

A batch of an idempotent producer carries (producer id, epoch, first sequence) in its Arrow
schema metadata (`tag`): the WAL entry's payload is that batch's IPC stream, so the tag is
written with the records in the same entry, and whatever re-reads the entry (a new writer's
WAL recovery, the take-over that hands records to another agent's leader) gets it back with
them. The state of a producer on a partition is its epoch and its last `KEPT_BATCHES` batches
with their offsets, which is what deduplicating a retry needs; it is folded per batch, never
per record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa

from streamhouse.storage.errors import CorruptDataError, InvalidInputError

KEPT_BATCHES = 5  # Kafka's bound: max.in.flight.requests.per.connection with idempotence
SEQUENCE_SPAN = 1 << 31  # sequences are int32 and wrap to 0 after 2**31 - 1
TAG_KEY = b"streamhouse.producer"
# Kafka's producer.id.expiration.ms default: a producer silent this long is forgotten.
EXPIRY_MS = 24 * 3600 * 1000
# Producers a leader keeps in memory per partition; past it the longest silent ones go (each
# client session is a new producer id, so an idle partition must not collect them forever).
MAX_PRODUCERS = 10_000


@dataclass(frozen=True, slots=True)
class ProducerBatch:
    """One written batch of an idempotent producer: its sequences and where it landed."""

    producer_id: int
    producer_epoch: int
    first_sequence: int
    last_sequence: int
    base_offset: int
    record_count: int

    @property
    def end_offset(self) -> int:
        return self.base_offset + self.record_count


@dataclass(frozen=True, slots=True)
class ProducerState:
    """A producer on one partition: its epoch and last batches (oldest first, at most KEPT_BATCHES)."""

    producer_id: int
    producer_epoch: int
    batches: tuple[ProducerBatch, ...]

    @property
    def next_sequence(self) -> int:
        return (self.batches[-1].last_sequence + 1) % SEQUENCE_SPAN if self.batches else 0

    def find(self, epoch: int, first_sequence: int, last_sequence: int) -> ProducerBatch | None:
        """The written batch a retry with these sequences repeats, if it is still kept."""
        if epoch != self.producer_epoch:
            return None
        for b in self.batches:
            if b.first_sequence == first_sequence and b.last_sequence == last_sequence:
                return b
        return None

    def written_head(self, epoch: int, first_sequence: int, last_sequence: int) -> int:
        """How many leading messages of a batch of `epoch` over [first, last] to leave out as
        written already, when the batch straddles this producer's last written sequence (its
        head in the log, its tail not: the tail is new), or is a retry of such a batch (its
        tail is a kept batch of its own, which answers it); 0 otherwise. Within an epoch a
        partition takes sequences in order and without gaps, so every sequence up to the last
        written one is in the log exactly once."""
        if epoch != self.producer_epoch or not self.batches:
            return 0
        written = self.batches[-1].last_sequence
        behind = (written - first_sequence) % SEQUENCE_SPAN  # first is this many before it
        if behind >= SEQUENCE_SPAN // 2:
            return 0  # starts after it: nothing of it is written
        ahead = (last_sequence - written) % SEQUENCE_SPAN  # last is this many after it
        if 0 < ahead < SEQUENCE_SPAN // 2:
            return behind + 1
        size = (last_sequence - first_sequence) % SEQUENCE_SPAN + 1
        for b in self.batches:
            skip = (b.first_sequence - first_sequence) % SEQUENCE_SPAN
            if b.last_sequence == last_sequence and 0 < skip < size:
                return skip
        return 0

    def passed(self, epoch: int, last_sequence: int) -> bool:
        """Whether a batch of `epoch` ending at `last_sequence` is behind this producer's last
        written batch (so it was written before, or never will be: the producer went on)."""
        if epoch != self.producer_epoch or not self.batches:
            return False
        return (self.batches[-1].last_sequence - last_sequence) % SEQUENCE_SPAN < SEQUENCE_SPAN // 2

    def with_batch(self, batch: ProducerBatch) -> ProducerState:
        """The state after `batch` was written. A newer epoch starts over; an older epoch's
        batch or one behind the last (a late copy handed over from another agent's WAL) does
        not move the state back."""
        if batch.producer_epoch > self.producer_epoch:
            return ProducerState(self.producer_id, batch.producer_epoch, (batch,))
        if batch.producer_epoch < self.producer_epoch:
            return self
        if self.batches:
            behind = (self.batches[-1].first_sequence - batch.first_sequence) % SEQUENCE_SPAN
            if behind == 0 or behind < SEQUENCE_SPAN // 2:
                return self  # already here, or older than the last one
        return ProducerState(self.producer_id, self.producer_epoch, (*self.batches, batch)[-KEPT_BATCHES:])


def fold(states: Mapping[int, ProducerState], batches: Iterable[ProducerBatch]) -> dict[int, ProducerState]:
    """`states` (by producer id) after `batches`, in log order; only the producers they touch."""
    out: dict[int, ProducerState] = {}
    for b in batches:
        state = out.get(b.producer_id) or states.get(b.producer_id)
        if state is None:
            state = ProducerState(b.producer_id, b.producer_epoch, ())
        out[b.producer_id] = state.with_batch(b)
    return out


def newest(states: Mapping[int, ProducerState], keep: int) -> dict[int, ProducerState]:
    """The `keep` producers that wrote last (by their last batch's offset)."""
    order = sorted(states.values(), key=lambda s: s.batches[-1].base_offset if s.batches else -1, reverse=True)
    return {s.producer_id: s for s in order[:keep]}


# -- the tag a batch carries ----------------------------------------------------------------------
def tag(batch: pa.RecordBatch, producer_id: int, producer_epoch: int, first_sequence: int) -> pa.RecordBatch:
    """`batch` (zero-copy) marked as an idempotent producer's batch."""
    value = f"{producer_id}:{producer_epoch}:{first_sequence}".encode()
    return batch.replace_schema_metadata({TAG_KEY: value})


def tagged(batch: pa.RecordBatch, base_offset: int) -> ProducerBatch | None:
    """The producer batch `batch` is, written at `base_offset`; None for an untagged batch."""
    meta = batch.schema.metadata
    if not meta or TAG_KEY not in meta:
        return None
    try:
        pid, epoch, first = (int(x) for x in meta[TAG_KEY].split(b":"))
    except ValueError:
        raise InvalidInputError(f"bad producer tag {meta[TAG_KEY]!r} on a batch at offset {base_offset}") from None
    if pid < 0 or not 0 <= epoch < 1 << 15 or not 0 <= first < SEQUENCE_SPAN or batch.num_rows < 1:
        raise InvalidInputError(f"producer tag {meta[TAG_KEY]!r} out of range at offset {base_offset}")
    last = (first + batch.num_rows - 1) % SEQUENCE_SPAN
    return ProducerBatch(pid, epoch, first, last, base_offset, batch.num_rows)


def among(batch: pa.RecordBatch, base_offset: int, keys: set[tuple[int, int, int]]) -> bool:
    """True when `batch` is tagged as one of `keys` (producer id, epoch, first sequence)."""
    found = tagged(batch, base_offset) if batch.schema.metadata else None
    return found is not None and (found.producer_id, found.producer_epoch, found.first_sequence) in keys


def untagged(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` without the tag: buffered and served batches keep the plain record schema."""
    return batch.replace_schema_metadata(None) if batch.schema.metadata else batch


# -- rows -----------------------------------------------------------------------------------------
def encode_batches(state: ProducerState) -> str:
    return json.dumps([[b.first_sequence, b.last_sequence, b.base_offset, b.record_count] for b in state.batches])


def state_from_row(producer_id: int, epoch: int, batches: str, source: str) -> ProducerState:
    try:
        items = [tuple(int(x) for x in item) for item in json.loads(batches)]
        kept = tuple(ProducerBatch(producer_id, epoch, f, last, base, n) for f, last, base, n in items)
    except (ValueError, TypeError) as exc:
        reason = f"producer {producer_id}: bad batches column: {exc}"
        raise CorruptDataError(reason, source=source, position=0) from None
    return ProducerState(producer_id, epoch, kept)


def state_values(topic: str, partition: int, state: ProducerState) -> tuple[str, int, int, int, str]:
    """(topic, partition_id, producer_id, producer_epoch, batches) for the upsert."""
    return (topic, partition, state.producer_id, state.producer_epoch, encode_batches(state))
