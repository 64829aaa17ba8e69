"""Disaster recovery end to end (issue 14 item 5) on PostgreSQL + SeaweedFS with a real agent
process: acks=durable producers and a consumer group commit, a metadata snapshot written by the
agent, more produces, then the whole database dropped and re-created under the running
workload; the agent stopped, `streamhouse recover` run, the agent started again — and every
acknowledged durable record is back at its offset, the group's offsets as of the snapshot."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg

import streamhouse
from streamhouse.cli.main import main
from streamhouse.storage.metadata.snapshot import SNAPSHOT_PREFIX, MetadataDump, decode_snapshot, latest_first
from streamhouse.storage.object_store import open_object_store
from tests.agent_process import AgentLauncher, Ledger, Producer, check_ledger, read_log, wait_until

TOPIC = "events"
PARTITIONS = 3


def latest_snapshot(url: str, endpoint: str) -> tuple[str, MetadataDump] | None:
    async def read() -> tuple[str, MetadataDump] | None:
        store = open_object_store(url, s3_endpoint=endpoint)
        try:
            keys = latest_first(info.key for info in await store.list(SNAPSHOT_PREFIX))
            return (keys[0], decode_snapshot(await store.get(keys[0]), source=keys[0])) if keys else None
        finally:
            await store.close()

    return asyncio.run(read())


def group_rows(dump: MetadataDump) -> dict[int, int]:
    table = dump.table("consumer_offsets")
    assert table is not None
    return {int(d["partition_id"]): int(d["next_offset"]) for d in table.dicts() if d["group_id"] == "billing"}  # type: ignore[arg-type]


def recreate_database(server: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]

    async def run() -> None:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(run())


def test_the_whole_database_lost_under_load_comes_back_from_the_object_store(
    tmp_path: Path, pg_url: str, postgres_server: str, s3_url: tuple[str, str]
) -> None:
    url, endpoint = s3_url
    flags = ("--data-dir", str(tmp_path / "a"), "--metadata", pg_url, "--object-store", url, "--s3-endpoint", endpoint)
    flags += ("--snapshot-interval-ms", "300")
    ledger = Ledger()
    with AgentLauncher(tmp_path) as launcher:
        agent = launcher.start(*flags)
        with streamhouse.connect(agent.address) as client:
            client.create_topic(TOPIC, partitions=PARTITIONS)
            producers = [
                Producer(
                    f"p{i}", agent.address, ledger, topic=TOPIC, partitions=PARTITIONS, acks="durable", retries=False
                )
                for i in range(2)
            ]
            for producer in producers:
                producer.start()
            wait_until(lambda: len(ledger.acked) >= 30, timeout_s=20, what="durable acknowledgements")
            committed = {p: end // 2 for p, end in ledger.ends().items()}
            client.commit("billing", TOPIC, committed)
            # A snapshot with the group's commit; then the workload keeps going past it.
            found = wait_until(
                lambda: (s := latest_snapshot(url, endpoint)) and group_rows(s[1]) == committed and s,
                timeout_s=20,
                what="a snapshot holding the group commit",
            )
            acked_at_snapshot = len(ledger.acked)
            wait_until(lambda: len(ledger.acked) >= acked_at_snapshot + 15, timeout_s=20, what="more acks")
            recreate_database(postgres_server, pg_url)
            time.sleep(0.5)  # the workload goes on against the empty database: nothing is acknowledged
            agent.kill()
            for producer in producers:  # each stops at its first failed produce
                producer.join(30)
                assert not producer.is_alive() and producer.failure is not None

        key, dump = latest_snapshot(url, endpoint) or found
        started = time.monotonic()
        assert main(["recover", "--from", url, "--s3-endpoint", endpoint, "--metadata", pg_url]) == 0
        recover_s = time.monotonic() - started
        # A second recovery into the now filled database is refused, changing nothing.
        assert main(["recover", "--from", url, "--s3-endpoint", endpoint, "--metadata", pg_url]) == 1

        agent = launcher.start(*flags)
        with streamhouse.connect(agent.address) as client:
            log = read_log(client, TOPIC)
            in_flight = frozenset(b for p in producers for b in p.in_flight)
            check_ledger(log, ledger, may_repeat=in_flight)
            assert len(ledger.acked) > acked_at_snapshot  # records acknowledged after the snapshot came back too
            offsets = {g.partition: g.committed_offset for g in client.committed("billing", TOPIC)}
            assert {p: o for p, o in offsets.items() if o >= 0} == group_rows(dump) == committed
            # The recovered log takes new records at its end.
            [result] = client.produce_batch(TOPIC, [b"after"], partition=0, acks="durable")
            assert result.base_offset == len(log[0])
    assert recover_s < 10, f"recover took {recover_s:.1f}s ({key})"
