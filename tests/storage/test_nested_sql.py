"""SQL over a JSON topic's declared ROW / ARRAY / MAP / BYTES / DECIMAL columns on the embedded
engine: rows from segments and from the unflushed buffer, field access both spellings, array
elements and length, unnest, map lookup."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

import streamhouse
from streamhouse.client.client import Client

ORDERS = (
    "CREATE TOPIC orders (id BIGINT, customer ROW<name STRING, address ROW<city STRING, zip INT>>, "
    "items ARRAY<ROW<sku STRING, qty INT>>, tags ARRAY<STRING>, attrs MAP<STRING, STRING>, blob BYTES, "
    "amount DECIMAL(10, 2)) WITH (partitions = 1)"
)


@pytest.fixture
def sh(tmp_path: Path) -> Iterator[Client]:
    with streamhouse.open(tmp_path / "data") as client:
        client.sql(ORDERS)
        first = {
            "id": 1,
            "customer": {"name": "ann", "address": {"city": "Oslo", "zip": 150}},
            "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}],
            "tags": ["x", "y"],
            "attrs": [{"key": "k", "value": "v"}],
            "blob": "hi",
            "amount": "12.50",
        }
        client.produce_batch("orders", [first], partition=0, acks="durable")  # a segment
        client.produce("orders", {"id": 2, "customer": {"name": "bob", "address": None}, "items": []}, partition=0)
        yield client


def test_struct_field_access_both_spellings(sh: Client) -> None:
    rows = sh.sql(
        "SELECT id, customer['name'] AS name, customer.name AS name2, customer['address']['city'] AS city "
        "FROM orders ORDER BY id"
    ).to_pylist()
    assert rows == [
        {"id": 1, "name": "ann", "name2": "ann", "city": "Oslo"},
        {"id": 2, "name": "bob", "name2": "bob", "city": None},  # from the unflushed buffer
    ]


def test_arrays_elements_length_and_unnest(sh: Client) -> None:
    rows = sh.sql(
        "SELECT id, array_length(tags) AS n, tags[1] AS first, items[1]['sku'] AS sku FROM orders ORDER BY id"
    ).to_pylist()
    assert rows == [{"id": 1, "n": 2, "first": "x", "sku": "a"}, {"id": 2, "n": None, "first": None, "sku": None}]
    items = sh.sql("SELECT id, unnest(items) AS item FROM orders ORDER BY id").to_pylist()
    assert items == [{"id": 1, "item": {"sku": "a", "qty": 2}}, {"id": 1, "item": {"sku": "b", "qty": 1}}]
    total = sh.sql("SELECT sum(i['qty']) AS q FROM (SELECT unnest(items) AS i FROM orders)").to_pylist()
    assert total == [{"q": 3}]


def test_map_lookup_bytes_and_decimal(sh: Client) -> None:
    rows = sh.sql("SELECT id, attrs['k'] AS k, blob, amount FROM orders ORDER BY id").to_pylist()
    assert rows == [
        {"id": 1, "k": "v", "blob": b"hi", "amount": Decimal("12.50")},
        {"id": 2, "k": None, "blob": None, "amount": None},
    ]
    described = {r["column"]: r["type"] for r in sh.sql("DESCRIBE orders").to_pylist()}
    assert described["items"] == "ARRAY<ROW<sku STRING, qty INT>>"  # as declared
    assert described["attrs"] == "MAP<STRING, STRING>"
