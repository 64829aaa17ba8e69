from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamhouse.api.partitioner import murmur2, partition_for_keys, split_by_partition
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.records.schema import batch_to_records, make_batch


def murmur2_reference(data: bytes) -> int:
    """A line-by-line transcription of Kafka's `Utils.murmur2`, in 32-bit arithmetic."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length & ~3
    tail = length % 4
    if tail >= 3:
        h ^= data[rest + 2] << 16
    if tail >= 2:
        h ^= data[rest + 1] << 8
    if tail >= 1:
        h ^= data[rest]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


# From Kafka's UtilsTest.testMurmur2 (signed Java ints).
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "expected"), KAFKA_VECTORS)
def test_reference_matches_kafka(key: bytes, expected: int) -> None:
    assert murmur2_reference(key) == expected


@pytest.mark.parametrize("arrow_type", [pa.binary(), pa.large_binary(), pa.string(), pa.large_string()])
def test_kafka_vectors(arrow_type: pa.DataType) -> None:
    # Strings hash their UTF-8 bytes, so casting the same keys must not change the hashes.
    arr = pa.array([k for k, _ in KAFKA_VECTORS], type=pa.binary()).cast(arrow_type)
    got = murmur2(arr)
    assert got.dtype == np.int32
    assert got.tolist() == [v for _, v in KAFKA_VECTORS]


def test_chunked_and_sliced_input() -> None:
    keys = [k for k, _ in KAFKA_VECTORS]
    chunked = pa.chunked_array([pa.array(keys[:2], pa.binary()), pa.array(keys[2:], pa.binary())])
    assert murmur2(chunked).tolist() == [v for _, v in KAFKA_VECTORS]
    assert murmur2(pa.array(keys, pa.binary())[2:5]).tolist() == [v for _, v in KAFKA_VECTORS[2:5]]


def test_empty_inputs() -> None:
    assert murmur2(pa.array([], pa.binary())).tolist() == []
    assert murmur2(pa.array([b""], pa.binary())).tolist() == [murmur2_reference(b"")]
    assert partition_for_keys(pa.array([], pa.binary()), 3).tolist() == []


def test_non_bytes_keys_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        murmur2(pa.array([1, 2]))


@given(
    st.lists(st.binary(min_size=0, max_size=40), max_size=60),
    st.integers(min_value=0, max_value=60),
    st.integers(min_value=0, max_value=60),
    st.sampled_from([pa.binary(), pa.large_binary()]),
)
def test_vectorised_matches_reference(keys: list[bytes], a: int, b: int, arrow_type: pa.DataType) -> None:
    arr = pa.array(keys, type=arrow_type)
    assert murmur2(arr).tolist() == [murmur2_reference(k) for k in keys]
    lo, hi = sorted((min(a, len(keys)), min(b, len(keys))))
    assert murmur2(arr[lo:hi]).tolist() == [murmur2_reference(k) for k in keys[lo:hi]]


@given(st.lists(st.one_of(st.none(), st.binary(max_size=20)), max_size=50), st.integers(1, 50), st.integers(0, 1000))
def test_partitions_match_kafka_and_nulls_round_robin(keys: list[bytes | None], partitions: int, start: int) -> None:
    got = partition_for_keys(pa.array(keys, pa.binary()), partitions, start=start)
    assert got.dtype == np.int32
    nulls_seen = 0
    for key, p in zip(keys, got.tolist(), strict=True):
        if key is None:
            assert p == (start + nulls_seen) % partitions
            nulls_seen += 1
        else:
            assert p == (murmur2_reference(key) & 0x7FFFFFFF) % partitions


def test_null_keys_round_robin_over_null_rows_only() -> None:
    keys = pa.array([None, b"foobar", None, None, b"abc", None], pa.binary())
    got = partition_for_keys(keys, 3, start=2).tolist()
    assert [got[i] for i in (0, 2, 3, 5)] == [2, 0, 1, 2]
    assert got[1] == (murmur2_reference(b"foobar") & 0x7FFFFFFF) % 3
    assert partition_for_keys(pa.nulls(4, pa.null()), 4, start=3).tolist() == [3, 0, 1, 2]
    assert partition_for_keys(pa.nulls(3, pa.binary()), 2).tolist() == [0, 1, 0]


def test_partitions_must_be_positive() -> None:
    with pytest.raises(InvalidInputError):
        partition_for_keys(pa.array([b"a"]), 0)


def test_split_by_partition_keeps_order_and_omits_empty() -> None:
    values = [f"v{i}".encode() for i in range(8)]
    batch = make_batch(values, keys=[b"k"] * 8, timestamps=list(range(8)))
    ids = np.array([2, 0, 2, 2, 0, 3, 0, 2], dtype=np.int32)
    parts = split_by_partition(batch, ids, 5)
    assert sorted(parts) == [0, 2, 3]
    for p, part in parts.items():
        assert part.schema == batch.schema
        expected = [values[i] for i in np.flatnonzero(ids == p)]
        assert [r.value for r in batch_to_records(part)] == expected
        # Timestamps travel with their rows (the whole row is taken, not just the value).
        assert [r.timestamp for r in batch_to_records(part)] == np.flatnonzero(ids == p).tolist()


def test_split_by_partition_edge_cases() -> None:
    assert split_by_partition(make_batch([]), np.zeros(0, dtype=np.int32), 3) == {}
    batch = make_batch([b"a", b"b"])
    with pytest.raises(InvalidInputError):
        split_by_partition(batch, np.array([0]), 2)
    with pytest.raises(InvalidInputError):
        split_by_partition(batch, np.array([0, 2]), 2)
    with pytest.raises(InvalidInputError):
        split_by_partition(batch, np.array([-1, 0]), 2)


def test_partition_then_split_round_trip() -> None:
    keys = [None if i % 5 == 0 else f"key-{i % 7}".encode() for i in range(100)]
    batch = make_batch([str(i).encode() for i in range(100)], keys=keys)
    ids = partition_for_keys(batch.column(2), 4)
    parts = split_by_partition(batch, ids, 4)
    assert sum(p.num_rows for p in parts.values()) == 100
    for records in (batch_to_records(p) for p in parts.values()):
        # Within a partition the produce order is kept.
        assert [int(r.value or b"") for r in records] == sorted(int(r.value or b"") for r in records)
    # Every record of one key is in one partition.
    homes: dict[bytes, set[int]] = {}
    for p, part in parts.items():
        for r in batch_to_records(part):
            if r.key is not None:
                homes.setdefault(r.key, set()).add(p)
    assert all(len(h) == 1 for h in homes.values())
