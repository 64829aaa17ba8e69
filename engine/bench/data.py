"""Synthetic records for benchmarks, built column-wise with Arrow compute (no per-record Python)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc

from streamhouse.storage.records.schema import RECORD_SCHEMA, null_headers, offsets_array

# pyarrow-stubs type variadic compute kernels too narrowly (scalars vs arrays); the kernels
# themselves check their arguments at run time.
pc: Any = _pc


def _digits(values: np.ndarray[Any, Any], width: int) -> pa.Array[Any]:
    return pc.utf8_lpad(pc.cast(pa.array(values), pa.string()), width, "0")  # type: ignore[no-any-return]


def json_bid_batch(n: int, *, key_bytes: int = 16, base_offset: int = 0, seed: int = 7) -> pa.RecordBatch:
    """`n` records with `key_bytes`-byte keys and ~100-byte JSON bid values."""
    rng = np.random.default_rng(seed)
    auction = rng.integers(1000, 1_000_000, n)
    price = rng.integers(1, 100_000_000, n)
    bidder = rng.integers(1000, 10_000_000, n)
    channels = pa.array(["Google", "Facebook", "Baidu", "Apple"])
    channel = pc.take(channels, pa.array(rng.integers(0, 4, n)))
    value = pc.binary_join_element_wise(
        '{"auction":',
        _digits(auction, 7),
        ',"bidder":',
        _digits(bidder, 8),
        ',"price":',
        _digits(price, 9),
        ',"channel":"',
        channel,
        '","url":"https://www.nexmark.com/item"}',
        "",
    )
    key = pc.utf8_lpad(pc.cast(pa.array(np.arange(base_offset, base_offset + n)), pa.string()), key_bytes, "k")
    timestamps = 1_700_000_000_000 + np.arange(n, dtype=np.int64) // 10
    return pa.RecordBatch.from_arrays(
        [
            offsets_array(base_offset, n),
            pa.array(timestamps, type=pa.int64()),
            pc.cast(key, pa.binary()),
            pc.cast(value, pa.binary()),
            null_headers(n),
        ],
        schema=RECORD_SCHEMA,
    )
