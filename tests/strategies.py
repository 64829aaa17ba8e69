"""Hypothesis strategies for records, shared by the batch, WAL and segment tests."""

from __future__ import annotations

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
