"""What the job tests share: an embedded engine whose leases move quickly (a 2 s lease renewed
every 200 ms, so a job is placed and re-placed within a test's patience), and polling a view
until it holds what a test expects."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import streamhouse
from streamhouse.client.client import Client


def open_engine(tmp_path: Path) -> AbstractContextManager[Client]:
    return streamhouse.open(tmp_path / "data", renew_interval_ms=200, lease_ttl_ms=2_000)


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def rows(sh: Client, sql: str) -> list[tuple[object, ...]]:
    """The query's rows as sorted tuples: a view's order is not its content."""
    return sorted(tuple(r.values()) for r in sh.sql(sql).to_pylist())
