from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamhouse.storage.errors import CorruptDataError
from streamhouse.storage.records.codec import HEADER_SIZE, decode_batch, encode_batch
from streamhouse.storage.records.schema import make_batch
from tests.strategies import record_batches


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record_batches())
def test_round_trip(batch: pa.RecordBatch) -> None:
    assert decode_batch(encode_batch(batch)).equals(batch)


def test_table_with_several_chunks_round_trips_as_one_batch() -> None:
    table = pa.Table.from_batches([make_batch([b"a"]), make_batch([b"b", None], base_offset=1)])
    decoded = decode_batch(encode_batch(table))
    assert decoded.column("value").to_pylist() == [b"a", b"b", None]


_FRAME = encode_batch(make_batch([b"hello", None, b""], keys=[b"k", b"", None], timestamps=[3, 1, 2]))


@settings(max_examples=2000, deadline=None)
@given(st.integers(min_value=0, max_value=len(_FRAME) - 1), st.integers(min_value=1, max_value=255))
def test_any_flipped_byte_is_a_corrupt_data_error(position: int, xor: int) -> None:
    damaged = bytearray(_FRAME)
    damaged[position] ^= xor
    with pytest.raises(CorruptDataError) as info:
        decode_batch(bytes(damaged), source="produce request")
    assert "produce request" in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(_FRAME) - 1))
def test_truncation_is_a_corrupt_data_error(cut: int) -> None:
    with pytest.raises(CorruptDataError):
        decode_batch(_FRAME[:cut])


def test_garbage_with_a_valid_crc_is_still_rejected() -> None:
    from streamhouse.storage.checksum import crc32c
    from streamhouse.storage.records.codec import _HEADER, MAGIC

    body = b"\xff" * 64
    with pytest.raises(CorruptDataError, match=r"Arrow IPC|schema"):
        decode_batch(_HEADER.pack(MAGIC, crc32c(body), len(body)) + body)


def test_wrong_schema_is_rejected() -> None:
    other = pa.RecordBatch.from_pydict({"x": pa.array([1, 2])})
    with pytest.raises(CorruptDataError, match="schema"):
        decode_batch(encode_batch(other))


def test_header_size_is_twelve_bytes() -> None:
    assert HEADER_SIZE == 12


def test_uncompressed_frames_decode_the_same() -> None:
    """Fetch responses skip LZ4 by default; the decoder needs no flag to read them."""
    batch = make_batch([b"v" * 5000, None, b""], keys=[b"k", None, b"k2"], timestamps=[1, 2, 3])
    plain = encode_batch(batch, compress=False)
    assert decode_batch(plain).equals(batch)
    assert len(plain) > len(encode_batch(batch))
