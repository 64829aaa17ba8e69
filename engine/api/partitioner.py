"""Kafka-compatible key partitioning, vectorised over whole Arrow arrays.

A keyed record must land on the partition a Kafka producer would pick for the same key,
so topics mirrored from (or to) Kafka keep per-key order on the same partition numbers.
That means bit-exact `Utils.murmur2` and `toPositive(h) % partitions`. The hash runs over
the array's offsets and data buffers with numpy: one pass per 4-byte block position, never
one Python step per record.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from streamhouse.storage.errors import InvalidInputError

_SEED = np.uint32(0x9747B28C)
_M = np.uint32(0x5BD1E995)
_R = np.uint32(24)

_U32 = np.ndarray[Any, np.dtype[np.uint32]]


def _as_binary(keys: pa.Array[Any] | pa.ChunkedArray[Any]) -> pa.Array[Any]:
    """Bring any byte-ish array to binary/large_binary so its buffers are offsets + data."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    t = keys.type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return keys
    if pa.types.is_string(t):
        return keys.view(pa.binary())
    if pa.types.is_large_string(t):
        return keys.view(pa.large_binary())
    if pa.types.is_dictionary(t):
        return _as_binary(keys.dictionary_decode())  # type: ignore[attr-defined]
    if pa.types.is_binary_view(t) or pa.types.is_string_view(t) or pa.types.is_fixed_size_binary(t):
        return keys.cast(pa.large_binary())
    raise InvalidInputError(f"keys must be binary or string to hash, not {t}")


def _offsets_and_data(arr: pa.Array[Any]) -> tuple[np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, Any]]:
    """The n + 1 value offsets of `arr` (slice applied) and its data buffer as uint8."""
    n = len(arr)
    bufs = arr.buffers()
    width = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offsets_buf = bufs[1]
    if offsets_buf is None or n == 0:
        return np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    # The offsets buffer belongs to the unsliced parent; a slice starts `arr.offset` entries in.
    offsets = np.frombuffer(memoryview(offsets_buf), dtype=width)[arr.offset : arr.offset + n + 1].astype(np.int64)
    data_buf = bufs[2]
    data = np.zeros(0, dtype=np.uint8) if data_buf is None else np.frombuffer(memoryview(data_buf), dtype=np.uint8)
    return offsets, data


def murmur2(keys: pa.Array[Any] | pa.ChunkedArray[Any]) -> np.ndarray[Any, np.dtype[np.int32]]:
    """Kafka's `Utils.murmur2` of every key, as the signed 32-bit ints Java returns.

    `keys` is binary/large_binary/string (strings hash their UTF-8 bytes). Null rows are
    hashed as whatever bytes their slot spans (normally none); callers that care about
    nulls, like `partition_for_keys`, overwrite those rows.
    """
    arr = _as_binary(keys)
    starts, data = _offsets_and_data(arr)
    lengths = starts[1:] - starts[:-1]
    starts = starts[:-1]
    n = len(lengths)
    h: _U32 = _SEED ^ lengths.astype(np.uint32)
    nblocks = lengths // 4
    if n and int(nblocks.max()) > 0:
        # A little-endian uint32 view at every byte position (stride 1), so block j of a
        # key is one fancy-indexed read instead of four byte gathers and shifts.
        words = np.ndarray(shape=(max(len(data) - 3, 0),), dtype="<u4", buffer=data, strides=(1,))
        # Longest keys first: at block position j the keys still hashing are a prefix, so
        # each pass touches only them and one very long key costs one short pass per block.
        order = np.argsort(-nblocks, kind="stable")
        sorted_blocks = nblocks[order]
        sorted_starts = starts[order]
        hs = h[order]
        # active[j] = how many keys have more than j blocks (sorted_blocks is descending).
        active = np.searchsorted(-sorted_blocks, -np.arange(int(sorted_blocks[0])), side="left")
        for j, a in enumerate(active.tolist()):
            k = words[sorted_starts[:a] + 4 * j].astype(np.uint32)
            k *= _M
            k ^= k >> _R
            k *= _M
            head = hs[:a]
            head *= _M
            head ^= k
        h = np.empty_like(hs)
        h[order] = hs
    tail = lengths & 3
    tail_at = starts + (lengths & ~3)
    # Kafka's switch falls through: 3 bytes left mixes bytes 2, 1 and 0; 2 mixes 1 and 0.
    for byte, shift in ((2, 16), (1, 8), (0, 0)):
        rows = np.flatnonzero(tail > byte)
        if len(rows):
            h[rows] ^= data[tail_at[rows] + byte].astype(np.uint32) << np.uint32(shift)
    rows = np.flatnonzero(tail > 0)
    h[rows] *= _M
    h ^= h >> np.uint32(13)
    h *= _M
    h ^= h >> np.uint32(15)
    return h.view(np.int32)


def partition_for_keys(
    keys: pa.Array[Any] | pa.ChunkedArray[Any], partitions: int, *, start: int = 0
) -> np.ndarray[Any, np.dtype[np.int32]]:
    """The partition of every record: Kafka's `toPositive(murmur2(key)) % partitions`.

    Null keys are spread round-robin, `(start + i) % partitions` for the i-th null key;
    the caller advances its round-robin counter by the number of null keys it passed so
    the next batch continues where this one stopped.
    """
    if partitions < 1:
        raise InvalidInputError(f"partitions must be at least 1, not {partitions}")
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    n = len(keys)
    if pa.types.is_null(keys.type):
        null_rows = np.arange(n)
        out = np.zeros(n, dtype=np.int32)
    else:
        out = ((murmur2(keys) & np.int32(0x7FFFFFFF)) % np.int32(partitions)).astype(np.int32)
        if not keys.null_count:
            return out
        null_rows = np.flatnonzero(keys.is_null().to_numpy(zero_copy_only=False))
    if len(null_rows):
        out[null_rows] = (np.arange(len(null_rows), dtype=np.int64) + start) % partitions
    return out


def split_by_partition(
    batch: pa.RecordBatch, partition_ids: np.ndarray[Any, Any], partitions: int
) -> dict[int, pa.RecordBatch]:
    """Rows grouped by partition, in their original order within each; empty ones left out."""
    ids = np.asarray(partition_ids)
    if ids.shape != (batch.num_rows,):
        raise InvalidInputError(f"{ids.size} partition ids for {batch.num_rows} rows")
    if batch.num_rows == 0:
        return {}
    if int(ids.min()) < 0 or int(ids.max()) >= partitions:
        raise InvalidInputError(f"partition ids must be in 0..{partitions - 1}")
    # Stable, so rows of one partition keep their produce order (per-key ordering relies on it).
    order = np.argsort(ids, kind="stable")
    counts = np.bincount(ids, minlength=partitions)
    bounds = np.concatenate(([0], np.cumsum(counts)))
    out: dict[int, pa.RecordBatch] = {}
    for p in np.flatnonzero(counts).tolist():
        # `take`, not a slice of one reordered batch: each partition's batch then owns
        # compact buffers instead of dragging the whole batch into its IPC frame.
        out[p] = batch.take(order[bounds[p] : bounds[p + 1]])
    return out
