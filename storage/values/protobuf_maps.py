"""A Protobuf map field's entries as an Arrow MAP column (issue 13), for a whole batch at once.

On the wire a `map<K, V>` is a repeated entry message (key = 1, value = 2); the decoder reads
the entries like any repeated message, row-major and in wire order. A key may appear more than
once in one map: protobuf keeps the last value (every parser does, and a MAP column needs
unique keys for `m['k']` to mean one thing), so each (row, key) keeps only its last entry: one
Arrow group-by over (row, key) for the whole batch, no Python loop per record or entry. An
entry's missing key or value already reads as its default (the entry's fields have no
presence, storage/schemas/protobuf_arrow.py)."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pyarrow as pa

from streamhouse.storage.schemas.wire import Array


def last_per_key(owner: Array, keys: pa.Array[Any]) -> Array:
    """Positions (ascending) of the entries to keep: for each (owner, key), the last one."""
    n = len(owner)
    if n == 0:
        return np.zeros(0, np.int64)
    table = pa.table({"owner": pa.array(owner, pa.int64()), "key": keys, "at": pa.array(np.arange(n), pa.int64())})
    grouped = table.group_by(["owner", "key"], use_threads=False).aggregate([("at", "max")])
    if grouped.num_rows == n:
        return np.arange(n)  # no key repeated (the usual case): keep everything
    return np.sort(np.asarray(grouped.column("at_max").to_numpy(), dtype=np.int64))


def entries_to_map(offsets: Array, entries: pa.Array[Any], null: Array, map_type: pa.DataType) -> pa.Array[Any]:
    """Rows of `entries` (row i's are offsets[i]:offsets[i + 1], struct<key, value>) as a MAP
    column of `map_type`; rows where `null` is True are null maps."""
    counts: Array = np.diff(offsets.astype(np.int64))
    owner = np.repeat(np.arange(len(counts)), counts)
    struct = cast(pa.StructArray, entries)
    keys, values = struct.field(0), struct.field(1)
    keep = last_per_key(owner, keys)
    if len(keep) != len(owner):
        picked = pa.array(keep, pa.int64())
        keys, values = keys.take(picked), values.take(picked)
        counts = np.bincount(owner[keep], minlength=len(counts))
    new_offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=new_offsets[1:])
    mask = pa.array(null) if null.any() else None
    build: Any = pa.MapArray.from_arrays  # the stubs' overloads miss keys + items + type
    return cast("pa.Array[Any]", build(pa.array(new_offsets, pa.int32()), keys, values, type=map_type, mask=mask))
