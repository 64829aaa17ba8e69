"""Fuzz of the Kafka RecordBatch v2 decoder (engine/kafka/record/: the C kernel, headers, every
compression codec): what a Produce request carries. Damaged batches, batches whose CRC and length
were recomputed over a damaged record section (so the kernel itself parses hostile bytes), and
damaged sections compressed with each codec decode to a valid RECORD_SCHEMA batch or raise
KafkaProtocolError (CORRUPT_MESSAGE and kin), never anything else."""

from __future__ import annotations

import crc32c
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from streamhouse.kafka.errors import KafkaProtocolError
from streamhouse.kafka.record.batch import HEADER, HEADER_SIZE, iter_batches
from streamhouse.kafka.record.compression import NAMES, compress
from streamhouse.kafka.record.encode import encode_batch
from streamhouse.storage.records.schema import RECORD_SCHEMA
from tests.fuzz.budget import bounded, fuzz
from tests.strategies import hostile, mutations, record_batches

LIMIT = 1 << 20  # max_uncompressed for the fuzz: bombs are refused early, not expanded
codecs = st.sampled_from(sorted(NAMES))
non_empty = record_batches(max_records=6, allow_big=False).filter(lambda b: b.num_rows > 0)
batches = st.builds(lambda b, c: encode_batch(b, compression=c), non_empty, codecs)
record_fields = st.lists(batches, min_size=1, max_size=3).map(b"".join)


def reassembled(header: bytes, section: bytes, codec: int | None = None) -> bytes:
    """A batch of `header`'s fields around `section` with its length and CRC32C recomputed (and
    its codec bits set to `codec` when given): only the record section can be refused."""
    fields = list(HEADER.unpack(header[:HEADER_SIZE]))
    if codec is not None:
        fields[5] = (fields[5] & ~0x07) | codec
    fields[1] = HEADER_SIZE - 12 + len(section)
    fields[4] = 0
    raw = bytearray(HEADER.pack(*fields) + section)
    raw[17:21] = crc32c.crc32c(bytes(raw[21:])).to_bytes(4, "big")
    return bytes(raw)


plain = st.builds(lambda b: encode_batch(b), non_empty)
# A damaged uncompressed section under a valid CRC: the C kernel parses it.
section_damage = st.builds(
    lambda valid, damaged: reassembled(valid, damaged),
    plain,
    mutations(plain.map(lambda b: b[HEADER_SIZE:]), max_ops=3),
)
# The same, compressed with each codec: decompression succeeds and the kernel parses the damage.
compressed_damage = st.builds(
    lambda valid, damaged, codec: reassembled(valid, compress(codec, damaged), codec),
    plain,
    mutations(plain.map(lambda b: b[HEADER_SIZE:]), max_ops=3),
    codecs,
)
# Header fields damaged (count, attributes, timestamps, codec bits) with the CRC recomputed.
header_damage = st.builds(
    lambda valid, header: reassembled(header + valid[HEADER_SIZE:], valid[HEADER_SIZE:]),
    plain,
    mutations(plain.map(lambda b: b[:HEADER_SIZE]), max_ops=2).filter(lambda h: len(h) == HEADER_SIZE),
)


def check(data: bytes) -> None:
    with bounded():
        try:
            decoded = list(iter_batches(data, max_uncompressed=LIMIT))
        except KafkaProtocolError:
            return
        for batch in decoded:
            assert batch.records.schema.equals(RECORD_SCHEMA)
            batch.records.validate(full=True)
            pa.Table.from_batches([batch.records]).to_pylist()


@fuzz(150)
@given(hostile(record_fields))
def test_damaged_record_batches_decode_or_raise_protocol_errors(data: bytes) -> None:
    check(data)


@fuzz(200)
@given(st.one_of(section_damage, header_damage))
def test_damaged_sections_under_a_valid_crc_decode_or_raise_protocol_errors(data: bytes) -> None:
    check(data)


@fuzz(100)
@given(compressed_damage)
def test_damaged_compressed_sections_decode_or_raise_protocol_errors(data: bytes) -> None:
    check(data)
