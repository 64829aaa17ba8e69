"""Hypothesis strategies for records, shared by the batch, WAL and segment tests."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from hypothesis import strategies as st

from streamhouse.storage.records.schema import Headers, make_batch

maybe_bytes = st.one_of(st.none(), st.just(b""), st.binary(max_size=64))
big_value = st.integers(min_value=0, max_value=1 << 20).map(lambda n: b"\xab" * n)
header_lists = st.one_of(
    st.none(),
    st.lists(st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=8))), max_size=3),
)


@st.composite
def record_batches(draw: st.DrawFn, max_records: int = 40, allow_big: bool = True) -> pa.RecordBatch:
    """Batches with null vs empty keys and values, headers, non-ASCII header keys,
    occasional values up to 1 MiB and non-monotonic timestamps."""
    n = draw(st.integers(min_value=0, max_value=max_records))
    value_strategy = st.one_of(maybe_bytes, big_value) if allow_big else maybe_bytes
    values = draw(st.lists(value_strategy, min_size=n, max_size=n))
    if allow_big and sum(len(v) for v in values if v) > 3 << 20:
        values = [v[:1024] if v else v for v in values]
    keys = draw(st.lists(maybe_bytes, min_size=n, max_size=n))
    timestamps = draw(st.lists(st.integers(min_value=0, max_value=2**50), min_size=n, max_size=n))
    headers: list[Headers | None] = draw(st.lists(header_lists, min_size=n, max_size=n))
    base = draw(st.integers(min_value=0, max_value=2**40))
    return make_batch(values, keys=keys, timestamps=timestamps, headers=headers, base_offset=base)


# --- mutation-based fuzzing (tests/fuzz/): valid encodings with bytes flipped, overwritten,
# truncated, extended, deleted or duplicated; purely random bytes rarely pass a decoder's first check.
_BOUNDARY_INTS = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1)


@st.composite
def _mutate(draw: st.DrawFn, data: bytes, max_ops: int) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(("flip", "byte", "int", "truncate", "extend", "insert", "delete", "duplicate")))
        at = draw(st.integers(0, max(0, len(buf) - 1)))
        if op == "flip" and buf:
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and buf:
            buf[at] = draw(st.sampled_from((0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)) | st.integers(0, 255))
        elif op == "int" and buf:
            # A length, count or offset field overwritten with a boundary value, either byte order.
            width = draw(st.sampled_from((1, 2, 4, 8)))
            value = draw(st.sampled_from(_BOUNDARY_INTS)) % (1 << (8 * width))
            raw = value.to_bytes(width, draw(st.sampled_from(("big", "little"))))
            buf[at : at + width] = raw[: max(0, len(buf) - at)]
        elif op == "truncate":
            del buf[at:]
        elif op == "extend":
            buf += draw(st.binary(min_size=1, max_size=32))
        elif op == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete" and buf:
            del buf[at : at + draw(st.integers(1, 16))]
        elif op == "duplicate" and buf:
            buf[at:at] = buf[at : at + draw(st.integers(1, 64))]
    return bytes(buf)


def mutations(valid: st.SearchStrategy[bytes], max_ops: int = 4) -> st.SearchStrategy[bytes]:
    """Valid encodings drawn from `valid`, damaged by 1..max_ops mutations."""
    return valid.flatmap(lambda data: _mutate(data, max_ops))


def hostile(valid: st.SearchStrategy[bytes], max_ops: int = 4, max_random: int = 512) -> st.SearchStrategy[bytes]:
    """What a decoder of outside bytes must survive: mutated valid encodings (mostly), the valid
    encodings themselves, and random bytes."""
    return st.one_of(mutations(valid, max_ops), valid, st.binary(max_size=max_random))


# --- JSON bodies and values mutated as JSON (a node replaced, a key dropped or added).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def json_mutations(draw: st.DrawFn, body: Any) -> Any:
    """`body` with one node replaced, or a key dropped or added, anywhere in it."""
    if isinstance(body, dict) and body and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(body)))
        op = draw(st.sampled_from(("replace", "drop", "add", "descend")))
        out = dict(body)
        if op == "replace":
            out[key] = draw(json_values)
        elif op == "drop":
            del out[key]
        elif op == "add":
            out[draw(st.text(max_size=8))] = draw(json_values)
        else:
            out[key] = draw(json_mutations(body[key]))
        return out
    if isinstance(body, list) and body and draw(st.booleans()):
        at = draw(st.integers(0, len(body) - 1))
        out_list = list(body)
        out_list[at] = draw(json_mutations(body[at]))
        return out_list
    return draw(json_values)
