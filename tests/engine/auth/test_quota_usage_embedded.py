"""SHOW USAGE in embedded mode (issue 15): no gate and no authentication, so one row for the
process ("" org) with its committed storage and partitions, no rates and no limits."""

from __future__ import annotations

from pathlib import Path

from streamhouse.client.client import open_embedded


def test_show_usage_embedded(tmp_path: Path) -> None:
    with open_embedded(str(tmp_path)) as client:
        client.create_topic("t", partitions=3)
        client.produce("t", {"n": 1}, partition=0, acks="durable")
        rows = client.sql("SHOW USAGE").to_pylist()
    assert len(rows) == 1
    row = rows[0]
    assert (row["org"], row["partitions"], row["requests"]) == ("", 3, 0)
    assert row["storage_bytes"] > 0  # the committed segment
    assert row["quota_storage_bytes"] is None and row["quota_requests_per_s"] is None
