"""WAL framing: round trips, strict decoding, skipping damage, resync and torn tails, in memory."""

from __future__ import annotations

import functools
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.storage.errors import CorruptDataError, InvalidInputError
from streamhouse.storage.wal.format import (
    HEADER_SIZE,
    MAGIC,
    WalEntry,
    decode_entry,
    encode_entry,
    encode_header,
    scan,
)

SOURCE = "mem://wal"

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
offsets = st.integers(0, 2**63 - 1)


@st.composite
def payloads(draw: st.DrawFn, max_size: int = 1 << 20) -> bytes:
    # Drawing a size and a seed keeps megabyte payloads cheap; small ones are drawn byte by byte
    # so hypothesis can shrink and hit edge values.
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))
    size = draw(st.integers(0, max_size))
    return random.Random(draw(st.integers(0, 2**32))).randbytes(size)


@st.composite
def entries(draw: st.DrawFn, max_payload: int = 1 << 20) -> WalEntry:
    return WalEntry(draw(u64), draw(u32), draw(u64), draw(offsets), draw(u32), draw(payloads(max_payload)))


def encode(entry: WalEntry) -> bytes:
    return encode_entry(
        entry.topic_id, entry.partition, entry.epoch, entry.base_offset, entry.record_count, entry.payload
    )


def small_entries(n: int, seed: int = 0) -> list[WalEntry]:
    rng = random.Random(seed)
    return [WalEntry(7, i % 3, 2, i * 10, 10, rng.randbytes(rng.randrange(0, 200))) for i in range(n)]


@functools.cache
def framed(n: int, seed: int) -> tuple[list[WalEntry], list[bytes]]:
    items = small_entries(n, seed)
    return items, [encode(e) for e in items]


@settings(max_examples=200, deadline=None)
@given(entries())
def test_round_trip(entry: WalEntry) -> None:
    frame = encode(entry)
    assert len(frame) == entry.encoded_size == HEADER_SIZE + len(entry.payload)
    assert decode_entry(frame, SOURCE) == entry
    assert decode_entry(memoryview(frame), SOURCE) == entry
    result = scan(frame, SOURCE)
    assert result.entries == (entry,)
    assert (result.errors, result.valid_end, result.torn_bytes) == ((), len(frame), 0)


@settings(max_examples=50, deadline=None)
@given(st.lists(entries(max_payload=4096), max_size=20))
def test_scan_many(items: list[WalEntry]) -> None:
    buf = b"".join(encode(e) for e in items)
    result = scan(buf, SOURCE)
    assert list(result.entries) == items
    assert (result.skipped, result.valid_end, result.torn_bytes) == (0, len(buf), 0)


def test_header_layout_is_stable() -> None:
    frame = encode_entry(1, 2, 3, 4, 5, b"abc")
    assert frame[:4] == MAGIC
    assert struct.unpack_from("<IQIQqI", frame, 4) == (3, 1, 2, 3, 4, 5)
    assert frame[HEADER_SIZE:] == b"abc"
    assert encode_header(1, 2, 3, 4, 5, b"abc") == frame[:HEADER_SIZE]
    assert WalEntry(1, 2, 3, 4, 5, b"abc").end_offset == 9


@pytest.mark.parametrize(
    "fields",
    [(-1, 0, 0, 0, 0), (0, -1, 0, 0, 0), (0, 0, 2**64, 0, 0), (0, 0, 0, -1, 0), (0, 0, 0, 0, 2**32)],
)
def test_encode_rejects_out_of_range(fields: tuple[int, int, int, int, int]) -> None:
    with pytest.raises(InvalidInputError):
        encode_entry(*fields, b"")


@settings(max_examples=2000, deadline=None)
@given(
    n=st.integers(1, 5),
    seed=st.integers(0, 9),
    victim=st.integers(0, 4),
    index=st.integers(0, 2**20),
    xor=st.integers(1, 255),
)
def test_flipped_byte_is_detected_and_skipped(n: int, seed: int, victim: int, index: int, xor: int) -> None:
    # Flat strategies (reduced modulo the sizes) keep 2000 examples fast; st.data() costs 2x.
    items, frames = framed(n, seed)
    victim %= n
    damaged = bytearray(frames[victim])
    damaged[index % len(damaged)] ^= xor

    with pytest.raises(CorruptDataError) as excinfo:
        decode_entry(bytes(damaged), SOURCE)
    assert excinfo.value.source == SOURCE

    start = sum(len(f) for f in frames[:victim])
    buf = b"".join(frames[:victim]) + bytes(damaged) + b"".join(frames[victim + 1 :])
    result = scan(buf, SOURCE)
    assert list(result.entries) == items[:victim] + items[victim + 1 :]
    assert result.skipped == 1
    assert result.errors[0].position == start
    assert result.errors[0].source == SOURCE
    assert (result.valid_end, result.torn_bytes) == (len(buf), 0)


def test_damaged_length_resyncs_to_following_entries() -> None:
    items = small_entries(6)
    frames = [encode(e) for e in items]
    for new_length in (0, 1, 2**31, len(items[2].payload) + 300):
        damaged = bytearray(frames[2])
        struct.pack_into("<I", damaged, 4, new_length)
        buf = b"".join(frames[:2]) + bytes(damaged) + b"".join(frames[3:])
        result = scan(buf, SOURCE)
        assert list(result.entries) == items[:2] + items[3:]
        assert result.skipped == 1 and result.torn_bytes == 0
        assert result.errors[0].position == len(frames[0]) + len(frames[1])
        assert "skipped" in str(result.errors[0]) and SOURCE in str(result.errors[0])


def test_payload_containing_magic_does_not_confuse_resync() -> None:
    tricky = WalEntry(1, 0, 0, 0, 1, MAGIC * 50 + encode_header(9, 9, 9, 9, 9, b"x")[:40])
    items = [*small_entries(2), tricky, *small_entries(2, seed=3)]
    frames = [encode(e) for e in items]
    damaged = bytearray(frames[1])
    damaged[10] ^= 0xFF
    result = scan(frames[0] + bytes(damaged) + b"".join(frames[2:]), SOURCE)
    assert list(result.entries) == [items[0], *items[2:]]
    assert result.skipped == 1


def test_every_cut_inside_the_last_entry_is_a_torn_tail() -> None:
    items = small_entries(4)
    frames = [encode(e) for e in items]
    head = b"".join(frames[:-1])
    for cut in range(len(frames[-1])):
        result = scan(head + frames[-1][:cut], SOURCE)
        assert list(result.entries) == items[:-1]
        assert (result.skipped, result.valid_end, result.torn_bytes) == (0, len(head), cut)
        with pytest.raises(CorruptDataError):
            decode_entry(frames[-1][:cut], SOURCE)


def test_zero_filled_tail_is_torn_but_garbage_tail_is_damage() -> None:
    frame = encode(small_entries(1)[0])
    zeros = scan(frame + bytes(4096), SOURCE)
    assert (len(zeros.entries), zeros.skipped, zeros.valid_end, zeros.torn_bytes) == (1, 0, len(frame), 4096)
    # Non-zero bytes after the last entry were not produced by an interrupted append: report,
    # and keep them (valid_end at the end) so nothing is cut on a guess.
    garbage = scan(frame + b"\x01" * 100, SOURCE)
    assert (len(garbage.entries), garbage.skipped, garbage.valid_end, garbage.torn_bytes) == (
        1,
        1,
        len(frame) + 100,
        0,
    )
    assert garbage.errors[0].position == len(frame)


def test_decode_rejects_trailing_bytes_and_bad_magic() -> None:
    frame = encode(small_entries(1)[0])
    with pytest.raises(CorruptDataError, match="trailing"):
        decode_entry(frame + b"\0", SOURCE)
    with pytest.raises(CorruptDataError, match="magic"):
        decode_entry(b"X" + frame[1:], SOURCE)
    assert scan(b"", SOURCE) == scan(bytearray(), SOURCE)
    assert scan(b"", SOURCE).valid_end == 0


def test_wide_memoryview_payload_is_framed_by_bytes() -> None:
    wide = memoryview(bytearray(range(16))).cast("I")  # 4 items of 4 bytes
    frame = encode_entry(1, 0, 1, 0, 4, wide)
    assert decode_entry(frame, SOURCE).payload == bytes(range(16))
