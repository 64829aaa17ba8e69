"""The Confluent wire format split over whole Arrow columns (storage/schemas/wire.py), checked
against a plain per-record reading of the same bytes: ids, payloads, nulls, sliced and large
columns, Protobuf message indexes (incl. the single-0 shortcut), and the typed error naming the
first bad record."""

from __future__ import annotations

import random
import struct

import pyarrow as pa
import pytest

from streamhouse.storage.schemas.errors import WireFormatError
from streamhouse.storage.schemas.wire import split, split_message_indexes


def frame(schema_id: int, payload: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + payload


def zigzag(n: int) -> bytes:
    v = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        if v < 0x80:
            out.append(v)
            return bytes(out)
        out.append((v & 0x7F) | 0x80)
        v >>= 7


def indexes_bytes(indexes: list[int]) -> bytes:
    if indexes == [0]:
        return b"\x00"
    return zigzag(len(indexes)) + b"".join(zigzag(i) for i in indexes)


def sample(n: int, seed: int = 7) -> tuple[list[bytes | None], list[int | None], list[bytes | None]]:
    rng = random.Random(seed)
    values: list[bytes | None] = []
    ids: list[int | None] = []
    payloads: list[bytes | None] = []
    for i in range(n):
        if i % 7 == 3:
            values.append(None)
            ids.append(None)
            payloads.append(None)
            continue
        sid = rng.choice([1, 255, 256, 70_000, 2**31 - 1])
        payload = rng.randbytes(rng.randint(0, 40))
        values.append(frame(sid, payload))
        ids.append(sid)
        payloads.append(payload)
    return values, ids, payloads


@pytest.mark.parametrize("kind", [pa.binary(), pa.large_binary()])
def test_split_matches_a_plain_reading(kind: pa.DataType) -> None:
    values, ids, payloads = sample(500)
    framed = split(pa.array(values, type=kind))
    assert framed.schema_ids.to_pylist() == ids
    assert framed.payloads.to_pylist() == payloads
    # No nulls: every header the same size (the broadcast path).
    present = [(v, i, p) for v, i, p in zip(values, ids, payloads, strict=True) if v is not None]
    whole = split(pa.array([v for v, _, _ in present], type=kind))
    assert whole.schema_ids.to_pylist() == [i for _, i, _ in present]
    assert whole.payloads.to_pylist() == [p for _, _, p in present]
    # A slice (non-zero array offset) reads its own records.
    part = split(pa.array(values, type=kind).slice(100, 50))
    assert part.schema_ids.to_pylist() == ids[100:150]
    assert part.payloads.to_pylist() == payloads[100:150]


def test_edge_columns() -> None:
    assert split(pa.array([], type=pa.binary())).payloads.to_pylist() == []
    assert split(pa.array([None, None], type=pa.binary())).schema_ids.to_pylist() == [None, None]
    assert split(pa.array([frame(9, b"")])).payloads.to_pylist() == [b""]


def test_bad_values_name_the_first_bad_record() -> None:
    good = frame(1, b"x")
    with pytest.raises(WireFormatError, match="record 2: magic byte 123") as info:
        split(pa.array([good, None, b"{" + b"\x00" * 8, b"\x01abcd"]))
    assert info.value.index == 2
    with pytest.raises(WireFormatError, match="record 1: 3 bytes, too short") as info:
        split(pa.array([good, b"\x00\x00\x00", good]))
    assert info.value.index == 1
    with pytest.raises(TypeError):
        split(pa.array(["text"]))


def test_protobuf_message_indexes() -> None:
    rng = random.Random(3)
    cases: list[list[int] | None] = [[0], [1], [0, 2], [5, 300, 1], None, [2**20], [0]]
    cases += [[rng.randint(0, 500) for _ in range(rng.randint(1, 5))] for _ in range(200)]
    bodies = [None if c is None else rng.randbytes(rng.randint(0, 20)) for c in cases]
    values = [None if c is None else frame(4, indexes_bytes(c) + b) for c, b in zip(cases, bodies, strict=True)]
    indexed = split_message_indexes(split(pa.array(values)).payloads)
    assert indexed.indexes.to_pylist() == cases
    assert indexed.payloads.to_pylist() == bodies


def test_protobuf_indexes_running_past_the_value() -> None:
    with pytest.raises(WireFormatError, match="record 1") as info:
        split_message_indexes(pa.array([b"\x00rest", zigzag(3) + zigzag(1)]))
    assert info.value.index == 1
    with pytest.raises(WireFormatError, match="record 0"):
        split_message_indexes(pa.array([b"\xff" * 12]))
