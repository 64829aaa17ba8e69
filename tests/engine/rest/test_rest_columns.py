"""REST's column codecs without an agent: base64 of whole columns against the standard
library (any bytes, nulls, slices), and the front-end contract's static check over every
module of engine/rest/ (REST calls the agent through `front` alone)."""

from __future__ import annotations

import base64
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamhouse.rest import base64_columns
from streamhouse.rest.records import produce_batch, record_texts
from streamhouse.storage.errors import InvalidInputError
from tests.engine.server.test_front_end_contract import reach_ins

REST = Path(__file__).resolve().parents[3] / "engine" / "rest"
values = st.lists(st.one_of(st.none(), st.binary(max_size=40)), max_size=60)


@given(values, st.integers(0, 10), st.integers(0, 10))
def test_base64_columns_match_the_standard_library(items: list[bytes | None], start: int, cut: int) -> None:
    arr = pa.array(items, pa.binary()).slice(min(start, len(items)), max(len(items) - start - cut, 0))
    expected = [None if v is None else base64.b64encode(v).decode() for v in arr.to_pylist()]
    encoded = base64_columns.encode(arr)
    assert encoded.to_pylist() == expected
    assert base64_columns.decode(encoded, "values").to_pylist() == arr.to_pylist()
    assert base64_columns.decode(pa.array(expected, pa.string()), "values").to_pylist() == arr.to_pylist()


@pytest.mark.parametrize("text", ["YQ", "YQ=", "Y===", "YQ==YQ==", "YQ==\n", "-_8=", "YQ== ", "é"])
def test_base64_refuses_what_is_not_padded_standard_base64(text: str) -> None:
    with pytest.raises(InvalidInputError, match=r"values\[1\] is not base64"):
        base64_columns.decode(pa.array(["AAAA", text]), "values")


def test_records_round_trip_through_the_json_text() -> None:
    import json

    batch = produce_batch(
        [{"a": [1, "x"]}, "s", None, 1.5], ["k", None, 3, {"k": 1}], [5, 0, 7, 8], None, "JSON", "JSON"
    )
    texts = record_texts(pa.Table.from_batches([batch]), 2, "JSON", "JSON").to_pylist()
    rows = [json.loads(t) for t in texts]
    assert [r["value"] for r in rows] == [{"a": [1, "x"]}, "s", None, 1.5]
    assert [r["key"] for r in rows] == ["k", None, 3, {"k": 1}]
    assert [(r["partition_id"], r["offset"], r["timestamp"]) for r in rows[:2]] == [(2, 0, 5), (2, 1, 0)]
    # Stored bytes that are not JSON come back as a JSON string, never as broken JSON.
    odd = produce_batch(["e30=", "eyJh", "/w=="], None, None, None, "JSON", "BINARY")
    got = [json.loads(t)["value"] for t in record_texts(pa.Table.from_batches([odd]), 0, "JSON", "JSON").to_pylist()]
    assert got == [{}, '{"a', "\ufffd"]


@pytest.mark.parametrize("module", sorted(p.name for p in REST.glob("*.py")))
def test_rest_only_touches_the_contract(module: str) -> None:
    assert reach_ins((REST / module).read_text()) == []
