"""Fuzz of the batch codec (storage/records/codec.py): framed Arrow IPC as the gRPC wire and the
WAL carry it. Damaged frames (and frames whose CRC was recomputed over a damaged IPC body, so the
Arrow reader itself sees hostile bytes) decode to a valid batch of the record schema or raise
CorruptDataError, never anything else."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from streamhouse.storage.checksum import crc32c
from streamhouse.storage.errors import CorruptDataError
from streamhouse.storage.records.codec import _HEADER, HEADER_SIZE, MAGIC, decode_batch, encode_batch
from streamhouse.storage.records.schema import RECORD_SCHEMA
from tests.fuzz.budget import bounded, fuzz
from tests.strategies import hostile, mutations, record_batches


def reframed(body: bytes) -> bytes:
    """`body` in a frame whose magic, length and CRC all hold: only the IPC reader can refuse it."""
    return _HEADER.pack(MAGIC, crc32c(body), len(body)) + body


small_batches = record_batches(max_records=8, allow_big=False)
frames = st.builds(lambda b, c: encode_batch(b, compress=c), small_batches, st.booleans())
# Damage inside the IPC stream with a CRC that matches it.
ipc_damage = mutations(frames.map(lambda f: f[HEADER_SIZE:]), max_ops=3).map(reframed)


def check_decode(data: bytes) -> None:
    with bounded():
        try:
            batch = decode_batch(data, source="fuzz")
        except CorruptDataError as exc:
            assert exc.source == "fuzz"
            return
        assert batch.schema.equals(RECORD_SCHEMA)
        batch.validate(full=True)
        # What every consumer of a decoded batch does next: it must not crash either.
        pa.Table.from_batches([batch]).combine_chunks().to_pylist()


@fuzz(150)
@given(hostile(frames))
def test_damaged_frames_decode_or_raise_corrupt_data(data: bytes) -> None:
    check_decode(data)


@fuzz(250)
@given(ipc_damage)
def test_damaged_ipc_bodies_under_a_valid_crc_decode_or_raise_corrupt_data(data: bytes) -> None:
    check_decode(data)
