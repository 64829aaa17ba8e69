"""Values of a typed topic are decoded once: the produce-time check's columns are kept beside
the buffered batch and written into the segment as they are, so the segment writer does not
parse the same JSON again (and writes the same columns it would have decoded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import streamhouse
from streamhouse.storage.partition import roll as partition_writer


def _rows(sh: Any) -> list[dict[str, Any]]:
    return list(sh.sql("SELECT _offset, id, amt, ts FROM money ORDER BY _offset").to_pylist())


# One timestamp form per batch: a batch mixing epoch and ISO strings decodes in several runs,
# and such a batch is decoded by the segment writer (tested below with a lenient topic).
VALUES = [
    {"id": 1, "amt": 12.34, "ts": 1_700_000_000_000},
    {"id": 2, "amt": None, "ts": 1_700_000_000_001},
    {"id": None, "amt": 0.5},
]


def _fill(path: Path) -> list[dict[str, Any]]:
    with streamhouse.open(path) as sh:
        sh.sql("CREATE TOPIC money (id BIGINT, amt DECIMAL(10, 2), ts TIMESTAMP(3)) WITH (partitions = 1)")
        sh.produce_batch("money", VALUES, partition=0)
        sh.produce_batch("money", [{"id": 4, "amt": 1, "ts": 5}], partition=0)
    with streamhouse.open(path) as sh:  # reopened: everything is read back from segments
        state = sh.describe("money").partitions[0]
        assert (state.durable_end_offset, state.segments >= 1) == (4, True), "the close did not flush"
        return _rows(sh)


def test_produce_decoded_columns_are_written_without_a_second_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _fill(tmp_path / "reference")  # the writer decodes (nothing kept from produce)

    def refuse(*args: object) -> tuple[pa.Table, dict[str, str]]:
        raise AssertionError("the segment writer decoded JSON that produce had already decoded")

    monkeypatch.setattr(partition_writer, "with_declared_columns", refuse)
    assert _fill(tmp_path / "reused") == expected
    assert [r["id"] for r in expected] == [1, 2, None, 4]


def test_without_produce_columns_the_writer_still_decodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lenient topic skips the produce check, so its batches reach the writer undecoded."""
    calls: list[int] = []
    real = partition_writer.with_declared_columns

    def counting(table: pa.Table, schema: Any) -> tuple[pa.Table, dict[str, str]]:
        calls.append(table.num_rows)
        return real(table, schema)

    monkeypatch.setattr(partition_writer, "with_declared_columns", counting)
    with streamhouse.open(tmp_path / "data") as sh:
        sh.sql("CREATE TOPIC lax (id BIGINT) WITH (partitions = 1, 'json.ignore-errors' = 'true')")
        sh.produce_batch("lax", [{"id": 1}, {"id": "x"}], partition=0)
    with streamhouse.open(tmp_path / "data") as sh:
        assert sh.sql("SELECT id FROM lax ORDER BY _offset").column("id").to_pylist() == [1, None]
    assert sum(calls) == 2
