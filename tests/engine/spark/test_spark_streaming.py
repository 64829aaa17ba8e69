"""The `streamhouse` Spark data source on `local[2]` against a real agent (issue 16 part 3): a batch
read equals our SQL; the Nexmark TUMBLE count/sum over bids as a Spark streaming query (its own
watermark) writes through the exactly-once sink the same windows as our continuous job and our
ad-hoc SQL; a micro-batch replayed after a crash (before Spark's commit, before or after ours)
writes nothing twice. One Spark session and one agent for the file; small data, 2 shuffle
partitions."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark import java_gateway
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

import streamhouse
from streamhouse.bench.sql import fill_nexmark
from streamhouse.client.client import Client
from streamhouse.devservices.agent import start_agent
from streamhouse.spark.sink_state import group

EVENTS = {"events": 10_000, "seed": 3, "events_per_second": 200}  # 9,200 bids over 50 s of event time
WINDOWS = (
    "SELECT window_start, window_end, count(*) AS bids, sum(price) AS volume "
    "FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY window_start, window_end"
)
RESULT_COLUMNS = "(window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT, volume BIGINT)"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Client]]:
    tmp = tmp_path_factory.mktemp("spark")
    with (
        start_agent(["--data-dir", str(tmp / "data")], log_path=tmp / "agent.log") as process,
        streamhouse.connect(process.address) as sh,
    ):
        fill_nexmark(sh, partitions=2, chunk=5_000, **EVENTS)
        sh.sql(f"CREATE MATERIALIZED VIEW bid_windows WITH ('checkpoint-interval' = '100ms') AS {WINDOWS}")
        yield process.address, sh


def _popen_without_preexec(command: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
    """PySpark starts its JVM with a `preexec_fn` (to ignore SIGINT there), which makes Popen
    fork and run Python in the child. gRPC's fork handlers (this process holds gRPC channels)
    then race Popen's closing of the child's descriptors, and now and then abort the child
    (epoll_wait: Bad file descriptor, SIGABRT): the JVM never answers and the session fails
    with "Connection refused". Without it Popen spawns the JVM with no Python in between."""
    kwargs.pop("preexec_fn", None)
    return subprocess.Popen(command, **kwargs)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    os.environ["PYSPARK_PYTHON"] = sys.executable  # Spark's Python workers: this interpreter
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(java_gateway, "Popen", _popen_without_preexec)
        session = (
            SparkSession.builder.master("local[2]")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
    session.sparkContext.setLogLevel("ERROR")
    from streamhouse.spark import register

    register(session)
    yield session
    session.stop()


def drain(query: Any) -> None:
    """Run micro-batches until the source has nothing new (no-data batches included: they move
    the watermark and emit closed windows), then stop."""
    try:
        query.processAllAvailable()
    finally:
        query.stop()


def forget_commit(checkpoint: Path, batch: int) -> None:
    """What a driver that died after the sink's write and before Spark's commit log leaves."""
    for name in (str(batch), f".{batch}.crc"):
        (checkpoint / "commits" / name).unlink(missing_ok=True)


def rows(sh: Client, sql: str) -> list[tuple[object, ...]]:
    return sorted(tuple(r.values()) for r in sh.sql(sql).to_pylist())


def test_a_batch_read_is_the_topic_as_sql_sees_it(agent: tuple[str, Client], spark: Any) -> None:
    address, sh = agent
    bids = spark.read.format("streamhouse").option("bootstrap", address).load("bid")
    assert bids.schema["_timestamp"].dataType.typeName() == "timestamp"
    assert bids.schema["date_time"].dataType.typeName() == "timestamp"  # withWatermark takes only these
    got = bids.groupBy("_partition").agg(F.count("*"), F.max("_offset"), F.sum("price"), F.countDistinct("_key"))
    expected = rows(
        sh, "SELECT _partition, count(*), max(_offset), sum(price), count(DISTINCT _key) FROM bid GROUP BY _partition"
    )
    assert sorted(tuple(r) for r in got.collect()) == expected


def test_the_windowed_query_on_spark_equals_our_job_and_adhoc_sql(
    agent: tuple[str, Client], spark: Any, tmp_path: Path
) -> None:
    address, sh = agent
    sh.sql(f"CREATE TOPIC spark_windows {RESULT_COLUMNS} WITH (partitions = 2)")
    windows = (
        spark.readStream.format("streamhouse")
        .option("bootstrap", address)
        .option("maxRecordsPerTrigger", "3000")  # several micro-batches, so windows close on the way
        .load("bid")
        .withWatermark("date_time", "4 seconds")  # the topic's WATERMARK (bench/sql.py ddl)
        .groupBy(F.window("date_time", "10 seconds"))
        .agg(F.count("*").alias("bids"), F.sum("price").alias("volume"))
        .select(F.col("window.start").alias("window_start"), F.col("window.end").alias("window_end"), "bids", "volume")
    )
    query = (
        windows.writeStream.format("streamhouse")
        .option("bootstrap", address)
        .option("topic", "spark_windows")
        .option("sinkId", "windows")
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .outputMode("append")
        .start()
    )
    drain(query)
    adhoc = rows(sh, WINDOWS)
    on_spark = rows(sh, "SELECT window_start, window_end, bids, volume FROM spark_windows")
    sh.wait_for_job("bid_windows")
    job = rows(sh, "SELECT window_start, window_end, bids, volume FROM bid_windows")
    assert len(adhoc) == 5
    # Append mode emits a window once the watermark passed its end: all but the newest one or two.
    assert 3 <= len(on_spark) <= len(adhoc) and on_spark == adhoc[: len(on_spark)]
    assert len(job) >= 3 and job == adhoc[: len(job)]


def test_a_replayed_batch_is_written_once(agent: tuple[str, Client], spark: Any, tmp_path: Path) -> None:
    """Spark's checkpoint loses its last commit (the driver died after the sink wrote): once with
    our commit done, once with it undone as well (died before the sink committed); each restart
    re-runs that batch, and the topic still holds every bid exactly once."""
    address, sh = agent
    sh.sql("CREATE TOPIC bid_copy (auction BIGINT, price BIGINT, date_time TIMESTAMP(3)) WITH (partitions = 2)")
    checkpoint = tmp_path / "checkpoint"

    def run() -> None:
        source = spark.readStream.format("streamhouse").option("bootstrap", address)
        query = (
            source.option("maxRecordsPerTrigger", "5000")
            .load("bid")
            .select("auction", "price", "date_time")
            .writeStream.format("streamhouse")
            .option("bootstrap", address)
            .option("topic", "bid_copy")
            .option("sinkId", "copy")
            .option("keyColumn", "auction")
            .option("checkpointLocation", str(checkpoint))
            .start()
        )
        drain(query)

    def copied() -> list[tuple[object, ...]]:
        return rows(sh, "SELECT auction, price, date_time, count(*) FROM bid_copy GROUP BY auction, price, date_time")

    run()
    expected = rows(sh, "SELECT auction, price, date_time, count(*) FROM bid GROUP BY auction, price, date_time")
    assert copied() == expected
    last = max(int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit())
    assert last >= 1  # 9,200 bids at 5,000 a batch
    forget_commit(checkpoint, last)  # our commit stands: the replay writes nothing
    run()
    assert (checkpoint / "commits" / str(last)).exists()  # Spark did run that batch again
    assert copied() == expected
    forget_commit(checkpoint, last)
    # Ours undone too (the batch id and the floors it moved; lower floors are always safe):
    # the replayed tasks find their marks.
    sh.commit(group("copy") + ".batch", "bid_copy", {0: last})
    sh.commit(group("copy"), "bid_copy", {0: 0, 1: 0})
    run()
    assert copied() == expected
    assert sh.committed(group("copy") + ".batch", "bid_copy")[0].committed_offset == last + 1
