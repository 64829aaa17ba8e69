"""Rows of migration 0015: an idempotent producer's committed batches its leader could not
answer (engine/kafka/unacked.py, issue 19 finding 6). SQL in `?` style for both backends, and
the row conversions; IO-free."""

from __future__ import annotations

from collections.abc import Iterable

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata.producer_state import SEQUENCE_SPAN, ProducerBatch
from streamhouse.storage.metadata.rows import Row

SELECT = (
    "SELECT producer_id, producer_epoch, first_sequence, last_sequence, base_offset, record_count"
    " FROM kafka_unanswered WHERE topic = ? AND partition_id = ? ORDER BY producer_id, base_offset"
)
INSERT = (
    "INSERT INTO kafka_unanswered (topic, partition_id, producer_id, producer_epoch, first_sequence, last_sequence,"
    " base_offset, record_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
DELETE = (
    "DELETE FROM kafka_unanswered WHERE topic = ? AND partition_id = ? AND producer_id = ? AND producer_epoch = ?"
    " AND first_sequence = ?"
)


def validate(batches: Iterable[ProducerBatch]) -> list[ProducerBatch]:
    """`batches` as a list, each checked: a row must describe a real batch at real offsets."""
    out = list(batches)
    for b in out:
        if (
            b.producer_id < 0
            or not 0 <= b.producer_epoch < 1 << 15
            or not 0 <= b.first_sequence < SEQUENCE_SPAN
            or not 0 <= b.last_sequence < SEQUENCE_SPAN
            or b.base_offset < 0
            or b.record_count < 1
        ):
            raise InvalidInputError(f"not a written producer batch: {b}")
    return out


def insert_rows(topic: str, partition: int, batches: Iterable[ProducerBatch]) -> list[tuple[object, ...]]:
    return [(topic, partition, b.producer_id, b.producer_epoch, b.first_sequence, b.last_sequence, b.base_offset,
             b.record_count) for b in batches]  # fmt: skip


def delete_rows(topic: str, partition: int, batches: Iterable[ProducerBatch]) -> list[tuple[object, ...]]:
    return [(topic, partition, b.producer_id, b.producer_epoch, b.first_sequence) for b in batches]


def batch_from_row(row: Row) -> ProducerBatch:
    return ProducerBatch(
        int(row["producer_id"]),
        int(row["producer_epoch"]),
        int(row["first_sequence"]),
        int(row["last_sequence"]),
        int(row["base_offset"]),
        int(row["record_count"]),
    )
