"""Avro arrays, maps and unions of several types as Arrow list, map and struct columns, for the
columnar decoder (storage/schemas/avro_arrow.py). IO-free; numpy, no Python loop per record or
per item.

Arrays and maps are written as blocks: a count varint (negative: its absolute value, then a
byte-size varint), that many items, and a 0 count at the end. Records' items do not start at
known offsets (items have variable widths), so the decoder walks item *positions*: step j reads
item j of every record that still has one, all those records' cursors together (the same
wavefront as fields); a record whose block ran out reads its next block count in the same step.
The loop runs max(items per record) times, each step numpy over the records, and the items come
back in (record, position) order with one stable sort. Counts are checked against the bytes
left (an item takes at least `least_bytes` of them), so garbage cannot make the decoder allocate
or loop without bound.

A union of several non-null types becomes a ROW with one nullable field per branch, named after
the branch: the primitive type's name (`int`, `string`, ...; a logical type keeps its base name),
`array`/`map`, or a record's, enum's or fixed's simple name (full name if two share it). That is
what Kafka Connect's and ksqlDB's Avro converters show, so `u['int']` and `u['Payment']` read as
the schema does; Spark's member0.. names force a look at the branch order. Exactly one field is
set per row; a row whose branch is null is a null ROW."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from streamhouse.storage.schemas.avro_cursor import Cursor
from streamhouse.storage.schemas.avro_runs import RunReader, run_reader
from streamhouse.storage.schemas.errors import UnsupportedAvroSchemaError
from streamhouse.storage.schemas.wire import Array

Reader = Callable[[Any, Cursor, Array, dict[str, Any], str], "pa.Array[Any]"]

# An item that can take no bytes (null, a record of nulls) is not bounded by the payload's size;
# more of them than this per record is garbage, not data (fastavro would loop forever too).
MAX_EMPTY_ITEMS = 1 << 12
# Item positions cost a step each, cheap per record when many records share it, so a few long
# arrays (a step per item for one record) are read a whole block at a time instead
# (avro_runs.py; primitive items only): once at most FEW records are left with LONG_BLOCK items.
LONG_BLOCK = 256
FEW = 1024
_WIDTHS = {"null": 0, "boolean": 1, "int": 1, "long": 1, "float": 4, "double": 8, "bytes": 1, "string": 1}


def least_bytes(schema: Any, names: dict[str, Any], depth: int = 0) -> int:
    """The fewest bytes a value of `schema` takes (0 if unknown: a bound, never too high)."""
    if depth > 32:
        return 0
    if isinstance(schema, str):
        if schema in _WIDTHS:
            return _WIDTHS[schema]
        return least_bytes(names[schema], names, depth + 1) if schema in names else 0
    if isinstance(schema, list):
        return 1  # the branch index
    kind = schema.get("type")
    if kind == "record":
        return sum(least_bytes(f["type"], names, depth + 1) for f in schema.get("fields", []))
    if kind == "fixed":
        return int(schema.get("size", 0))
    if kind in ("array", "map", "enum"):
        return 1
    return least_bytes(kind, names, depth + 1)


def _blocks(
    cur: Cursor,
    live: Array,
    path: str,
    least: int,
    read_items: Callable[[Cursor], list[pa.Array[Any]]],
    read_run: RunReader | None = None,
) -> tuple[Array, list[pa.Array[Any]]]:
    """(items per entry, the items' columns in (entry, position) order) of an array or map;
    `read_run` (primitive items) reads every entry's whole block in one step when few are left."""
    n = len(live)
    left = np.zeros(n, dtype=np.int64)  # items left in each entry's current block
    counts = np.zeros(n, dtype=np.int64)
    none = np.zeros(0, dtype=np.int64)
    pieces = [(none, none, read_items(cur.subset(none)))]  # typed even when nothing is read
    open_ = np.flatnonzero(live)  # entries whose end (a 0 count) is not read yet; only shrinks
    while len(open_):
        need = open_[left[open_] == 0]  # their block ran out: the next count comes first
        if len(need):
            sub = cur.subset(need)
            left[need] = _block_counts(sub, path, least, counts[need])
            cur.pos[need] = sub.pos
            open_ = open_[left[open_] > 0]
        if not len(open_):
            break
        sub = cur.subset(open_)
        runs = left[open_]
        if read_run is not None and len(open_) <= FEW and int(runs.max()) >= LONG_BLOCK:
            columns = [read_run(sub, runs)]
            before = np.repeat(np.cumsum(runs) - runs - counts[open_], runs)
            pieces.append((np.repeat(open_, runs), np.arange(len(before), dtype=np.int64) - before, columns))
            counts[open_] += runs
            left[open_] = 0
        else:
            columns = read_items(sub)
            pieces.append((open_, counts[open_], columns))
            counts[open_] += 1
            left[open_] -= 1
        cur.pos[open_] = sub.pos
    # Item k of entry e belongs at starts[e] + k of the (entry, position)-ordered column: one
    # scatter builds the take indices (no sort).
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    where = starts[np.concatenate([p[0] for p in pieces])] + np.concatenate([p[1] for p in pieces])
    order = np.empty(len(where), dtype=np.int64)
    order[where] = np.arange(len(where), dtype=np.int64)
    picks = pa.array(order, type=pa.int64())
    columns = [pa.concat_arrays([p[2][c] for p in pieces]).take(picks) for c in range(len(pieces[0][2]))]
    return counts, columns


def _block_counts(sub: Cursor, path: str, least: int, seen: Array) -> Array:
    """The item count of the block at every entry of `sub` (its byte size skipped if given),
    checked against the bytes left: `least` bytes per item, or MAX_EMPTY_ITEMS in all (`seen`
    so far) for items that may take none."""
    every = np.ones(len(sub.pos), dtype=bool)
    count = sub.varints(every, f"{path} block count")
    sub.fail(count == np.iinfo(np.int64).min, f"a bad block count at {path}")
    sized = count < 0
    if sized.any():  # the block's byte size follows: only checked, the items are read anyway
        size = sub.varints(sized, f"{path} block size")
        room = sub.ends - sub.pos
        sub.fail(
            sized & ((size < 0) | (size > room)), _quote(f"a block of {{}} bytes at {path}, {{}} left", size, room)
        )
    count = np.abs(count)
    room = sub.ends - sub.pos
    cap = room // least if least else MAX_EMPTY_ITEMS - seen
    sub.fail(count > cap, _quote(f"a block of {{}} items at {path} cannot fit in the {{}} bytes left", count, room))
    return count


def _quote(template: str, *values: Array) -> Callable[[int], str]:
    """An error message quoting the failing entry's values."""
    return lambda k: template.format(*(int(v[k]) for v in values))


def _offsets(counts: Array, path: str) -> Any:  # an int32 array (the stubs want int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise UnsupportedAvroSchemaError(f"{path}: over 2**31 items in one batch")
    return pa.array(offsets.astype(np.int32))


def read_array(schema: Any, cur: Cursor, live: Array, names: dict[str, Any], path: str, read: Reader) -> pa.Array[Any]:
    items = schema["items"]
    what = f"{path}[]"

    def read_items(sub: Cursor) -> list[pa.Array[Any]]:
        return [read(items, sub, np.ones(len(sub.pos), dtype=bool), names, what)]

    counts, (values,) = _blocks(cur, live, path, least_bytes(items, names), read_items, run_reader(items, path))
    out: pa.Array[Any] = pa.ListArray.from_arrays(_offsets(counts, path), values, mask=pa.array(~live))
    return out


def read_map(schema: Any, cur: Cursor, live: Array, names: dict[str, Any], path: str, read: Reader) -> pa.Array[Any]:
    values_schema = schema["values"]
    what = f"{path}{{}}"

    def read_items(sub: Cursor) -> list[pa.Array[Any]]:
        every = np.ones(len(sub.pos), dtype=bool)
        return [read("string", sub, every, names, f"{path} key"), read(values_schema, sub, every, names, what)]

    least = 1 + least_bytes(values_schema, names)
    counts, (keys, values) = _blocks(cur, live, path, least, read_items)
    out: pa.Array[Any] = pa.MapArray.from_arrays(_offsets(counts, path), keys, values, mask=pa.array(~live))
    return out


def member_name(branch: Any, names: dict[str, Any]) -> str:
    """A union branch's field name: the type's name, or a named type's simple name."""
    if isinstance(branch, str):
        return branch.rsplit(".", 1)[-1]
    kind = branch.get("type")
    if kind in ("record", "enum", "fixed"):
        return str(branch["name"]).rsplit(".", 1)[-1]
    return member_name(kind, names) if isinstance(kind, (str, dict)) else "union"


def _full(branch: Any) -> str:
    if isinstance(branch, dict) and branch.get("type") in ("record", "enum", "fixed"):
        name, namespace = str(branch["name"]), branch.get("namespace")
        return f"{namespace}.{name}" if namespace and "." not in name else name
    return str(branch)


def read_union(
    branches: list[Any], cur: Cursor, live: Array, names: dict[str, Any], path: str, read: Reader
) -> pa.Array[Any]:
    branch = cur.varints(live, f"{path} union branch")
    cur.fail(live & ((branch < 0) | (branch >= len(branches))), lambda k: f"union branch {int(branch[k])} at {path}")
    others = [i for i, b in enumerate(branches) if b != "null" and b != {"type": "null"}]
    if len(others) == 1:
        return read(branches[others[0]], cur, live & (branch == others[0]), names, path)
    if not others:
        return pa.nulls(len(live))
    labels = [member_name(branches[i], names) for i in others]
    labels = [_full(branches[i]) if labels.count(label) > 1 else label for i, label in zip(others, labels, strict=True)]
    members = zip(others, labels, strict=True)
    children = [read(branches[i], cur, live & (branch == i), names, f"{path}.{label}") for i, label in members]
    present = live & np.isin(branch, others)
    return pa.StructArray.from_arrays(children, names=labels, mask=pa.array(~present))
