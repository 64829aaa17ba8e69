"""Topics as Iceberg tables end to end (issue 16), on PostgreSQL and SeaweedFS S3: Nexmark data
produced into an embedded engine whose publisher appends the segments to pyiceberg's SQL catalog
in the same database; then pyiceberg scans (with pushed filters and partition pruning), Daft's
Iceberg reader and DuckDB's own Iceberg reader (DuckDB 1.4.4, duckdb_iceberg.py) give the same
rows as our SQL; retention is mirrored while the removed objects stay readable from the older snapshot until
it expires; and publishing resumes exactly after a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import streamhouse
from streamhouse.bench.sql import fill_nexmark
from streamhouse.client.client import Client
from streamhouse.datagen.nexmark_queries import QUERIES
from streamhouse.iceberg import catalog
from streamhouse.iceberg.mirror import END_OFFSETS
from tests.engine.datagen.test_nexmark import assert_same_rows, result_rows
from tests.engine.iceberg.duckdb_iceberg import DUCKDB, WINDOWED, run_queries, s3_secret
from tests.services.postgres import _fresh_database

EVENTS = 3_000


def _wait(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Setup:
    def __init__(self, tmp: Path, pg_url: str, s3: tuple[str, str], server: Any) -> None:
        self.data_dir = tmp / "data"
        self.settings: dict[str, Any] = {
            "metadata_url": pg_url,
            "object_store_url": s3[0],
            "s3_endpoint": s3[1],
            "roll_age_ms": 150,
            "roll_bytes": 60_000,
            "iceberg_interval_ms": 200,
            "iceberg_snapshot_retention_ms": 3_600_000,  # expired by hand below
            "retention_check_interval_ms": 200,
            "merge_interval_ms": 0,
            "merge_grace_ms": 0,
            "query_timeout_s": 0,  # the deletion grace is then its floor, 5 s
            "snapshot_interval_ms": 0,
        }
        self.pg_url = pg_url
        self.s3_credentials = (server.endpoint, server.access_key, server.secret_key, server.region)
        self.catalog = catalog(pg_url, s3[0], s3[1])

    def open(self, **overrides: Any) -> Client:
        return streamhouse.open(self.data_dir, **{**self.settings, **overrides})

    def url(self, key: str) -> str:
        return f"{self.settings['object_store_url']}/{key}"

    def table(self, topic: str) -> Any:
        return self.catalog.load_table(("streamhouse", topic))

    def published(self, client: Client, topic: str) -> bool:
        """The table's current snapshot says it holds every record of the topic."""
        ends = {p.partition: p.end_offset for p in client.describe(topic).partitions}
        try:
            snapshot = self.table(topic).current_snapshot()
        except Exception:  # not created yet
            return False
        if snapshot is None:
            return False
        said = json.loads(snapshot.summary.additional_properties.get(END_OFFSETS, "{}"))
        return {int(p): e for p, e in said.items()} == {p: e for p, e in ends.items() if e > 0}


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: str, s3_server: Any, s3_bucket: str
) -> Iterator[Setup]:
    """One database and one S3 prefix for the module (pg_url and s3_url are per test)."""
    databases = _fresh_database(postgres_server)
    store = (f"s3://{s3_bucket}/{uuid.uuid4().hex[:16]}", s3_server.endpoint)
    yield Setup(tmp_path_factory.mktemp("iceberg"), next(databases), store, s3_server)
    next(databases, None)


def _sorted(table: pa.Table, columns: list[str]) -> list[tuple[Any, ...]]:
    return sorted(result_rows(table.select(columns)))


_DAFT_Q2 = """
import json, sys
import daft
from pyiceberg.table import StaticTable
location, properties = json.loads(sys.argv[1])
frame = daft.read_iceberg(StaticTable.from_metadata(location, properties))
frame = frame.where(daft.col("auction") % 123 == 0).select("auction", "price")
print(json.dumps(sorted(zip(*frame.to_pydict().values()))))
"""


def test_nexmark_through_pyiceberg_daft_and_duckdb(setup: Setup) -> None:
    from pyiceberg.expressions import And, EqualTo, GreaterThan

    with setup.open() as client:
        fill_nexmark(client, EVENTS, partitions=2, chunk=1_000, seed=3, events_per_second=200)
        for topic in ("person", "auction", "bid"):
            client.sql(f"ALTER TOPIC {topic} SET ('iceberg.enabled' = 'true')")
        for topic in ("person", "auction", "bid"):
            _wait(f"{topic} published", lambda t=topic: setup.published(client, t))  # type: ignore[misc]

        bid = setup.table("bid")
        assert bid.spec().fields[0].name == "_partition"
        # A filter pyiceberg pushes down, and partition pruning by the stated partition values.
        scan = bid.scan(row_filter=And(GreaterThan("price", 1_000_000), EqualTo("_partition", 1)))
        assert {task.file.partition[0] for task in scan.plan_files()} == {1}
        got = _sorted(scan.to_arrow(), ["auction", "bidder", "price", "date_time"])
        ours = client.sql("SELECT auction, bidder, price, date_time FROM bid WHERE price > 1000000 AND _partition = 1")
        assert got == sorted(result_rows(ours)) and got

        # Nexmark q0..q3 over the three tables as pyiceberg reads them, by DataFusion.
        import datafusion

        ctx = datafusion.SessionContext()
        for topic in ("person", "auction", "bid"):
            ctx.register_record_batches(topic, [setup.table(topic).scan().to_arrow().to_batches()])
        for query in ("q0", "q1", "q2", "q3"):
            expected = result_rows(client.sql(QUERIES[query]))
            assert result_rows(ctx.sql(QUERIES[query]).to_arrow_table()) == expected and expected, query

        # Daft's own Iceberg reader (its S3 client, the catalog's endpoint): q2. In a fresh process:
        # Daft keeps one runner per process, and the Daft tests in this worker want Ray's.
        args = json.dumps([bid.metadata_location, dict(setup.catalog.properties)])
        done = subprocess.run([sys.executable, "-c", _DAFT_Q2, args], capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        q2 = result_rows(client.sql(QUERIES["q2"]))
        assert sorted(tuple(row) for row in json.loads(done.stdout)) == q2

        # DuckDB's own Iceberg reader (DuckDB 1.4.4 and its iceberg extension, in an interpreter of
        # their own: duckdb_iceberg.py says why) over the tables' current metadata files: every
        # Nexmark query it expresses gives our rows.
        s3 = setup.s3_credentials
        tables = {t: setup.table(t).metadata_location for t in ("person", "auction", "bid")}
        queries = {q: QUERIES[q] for q in ("q0", "q1", "q2", "q3")} | WINDOWED
        results, versions = run_queries(tables, queries, (s3_secret(*s3),))
        assert versions["duckdb"] == DUCKDB, versions
        for query, result in results.items():
            assert_same_rows(query, sorted(result_rows(result)), result_rows(client.sql(QUERIES[query])))


def _deletions(pg_url: str) -> dict[str, int]:
    """Recorded deferred deletions: object key → due time (database clock, ms)."""
    import asyncio

    from streamhouse.storage.metadata import open_metadata_store

    async def read() -> dict[str, int]:
        store = await open_metadata_store(pg_url)
        try:
            return {d.object_key: d.delete_after_ms for d in await store.list_deletions()}
        finally:
            await store.close()

    return asyncio.run(read())


def _exists(s3_admin: Any, url: str) -> bool:
    bucket, key = url.removeprefix("s3://").split("/", 1)
    try:
        s3_admin.head_object(Bucket=bucket, Key=key)
    except s3_admin.exceptions.ClientError:
        return False
    return True


def test_merges_and_retention_are_mirrored_and_referenced_objects_stay_until_expiry(
    setup: Setup, s3_admin: Any
) -> None:
    old = int(time.time() * 1000) - 7_200_000
    with setup.open() as client:
        client.create_topic("clicks", 1, config={"iceberg.enabled": "true"})
        for batch in range(3):  # small segments of two-hour-old records
            client.produce_batch("clicks", [b"old-%d" % i for i in range(50)], timestamps=[old + batch] * 50)
            _wait("a roll", lambda b=batch: client.describe("clicks").partitions[0].segments == b + 1)  # type: ignore[misc]
        _wait("clicks published", lambda: setup.published(client, "clicks"))
    # Now the merger replaces the first two (never a partition's last segment) by one.
    with setup.open(merge_interval_ms=200, merge_min_segments=2) as client:
        _wait("the merge", lambda: client.describe("clicks").partitions[0].segments == 2)
        _wait("the merge mirrored", lambda: _files(setup) == 2)
    table = setup.table("clicks")
    merged = [s.summary for s in table.snapshots() if s.summary.get("deleted-data-files")]
    assert merged and (merged[-1]["deleted-data-files"], merged[-1]["added-data-files"]) == ("2", "1"), merged
    assert table.scan().to_arrow().num_rows == 150
    everything = {
        task.file.file_path for s in table.snapshots() for task in table.scan(snapshot_id=s.snapshot_id).plan_files()
    }
    assert len(everything) == 4

    with setup.open() as client:
        # Retention removes the old segment once a newer one exists; the table follows.
        client.produce_batch("clicks", [b"new-%d" % i for i in range(10)])
        _wait("the new segment", lambda: client.describe("clicks").partitions[0].segments == 3)
        # Published after two restarts: every offset exactly once (nothing appended twice).
        _wait("clicks published after the restarts", lambda: setup.published(client, "clicks"))
        offsets = setup.table("clicks").scan(selected_fields=("_offset",)).to_arrow()["_offset"].to_pylist()
        assert sorted(offsets) == list(range(160))
        client.sql("ALTER TOPIC clicks SET ('retention.ms' = '3600000')")
        _wait("retention", lambda: client.describe("clicks").partitions[0].segments == 1)
        _wait("retention mirrored", lambda: setup.table("clicks").scan().to_arrow().num_rows == 10)
        got = setup.table("clicks").scan(selected_fields=("_offset", "_value")).to_arrow()
        ours = sorted(result_rows(client.sql("SELECT _offset, _value FROM clicks")))
        assert sorted(result_rows(got)) == ours
        # DuckDB's Iceberg reader honours the overwrite snapshots too (merge, retention).
        clicks = {"clicks": setup.table("clicks").metadata_location}
        secret = (s3_secret(*setup.s3_credentials),)
        duck, _ = run_queries(clicks, {"all": "SELECT _offset, _value FROM clicks"}, secret)
        assert sorted(result_rows(duck["all"])) == ours

        # Every replaced object is recorded for deletion; once that falls due the deleter keeps
        # them, as snapshots still reference them: the old snapshots read all their records.
        recorded = _deletions(setup.pg_url)
        assert everything <= {setup.url(k) for k in recorded}
        due = max(recorded.values())
        _wait("the deletions due", lambda: int(time.time() * 1000) > due + 1_500)
        assert everything <= {setup.url(k) for k in _deletions(setup.pg_url)}
        assert all(_exists(s3_admin, url) for url in everything)
        table = setup.table("clicks")
        counts = [table.scan(snapshot_id=s.snapshot_id).to_arrow().num_rows for s in table.snapshots()]
        # Appends (a round may take several segments), the merge, the new batch, retention.
        assert counts[-3:] == [150, 160, 10] and set(counts[:-3]) <= {50, 100, 150}, counts

        old_lists = [s.manifest_list for s in table.snapshots()[:-1]]

    # The publisher expires the old snapshots (and their manifest lists); nothing references the
    # replaced objects any more: deleted and forgotten.
    with setup.open(iceberg_snapshot_retention_ms=1) as client:
        _wait("the expiry", lambda: len(setup.table("clicks").snapshots()) == 1)
        _wait("the deletions", lambda: not any(_exists(s3_admin, url) for url in everything))
        _wait("the records forgotten", lambda: not everything & {setup.url(k) for k in _deletions(setup.pg_url)})
        assert not any(_exists(s3_admin, url) for url in old_lists)
        assert setup.table("clicks").scan().to_arrow().num_rows == 10

        # No longer published: the table goes (nothing would expire its snapshots again).
        client.sql("ALTER TOPIC clicks SET ('iceberg.enabled' = 'false')")
        _wait("the table dropped", lambda: ("streamhouse", "clicks") not in setup.catalog.list_tables("streamhouse"))


def _files(setup: Setup) -> int:
    return len(list(setup.table("clicks").scan().plan_files()))
