"""Crash safety of a real agent process: kill -9 while producing.

- acks=leader with fsync=always on one data dir, 20 kill/restart cycles: every acknowledged
  record survives at exactly the partition and offset it was acknowledged at, each payload
  appears at most once, offsets stay dense, and each restart takes its partitions back at once.
- acks=durable on PostgreSQL + S3: the agent is killed and its whole data dir (WAL and agent
  id) deleted; a brand-new agent (another holder, which has to wait out the dead one's lease)
  still serves every acknowledged record, from segments alone.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import streamhouse
from streamhouse.storage.errors import StreamHouseError
from tests.agent_process import Acks, AgentLauncher, AgentProcess, Ledger, Producer, check_ledger, read_log, wait_until

CYCLES = 20
TOPIC = "crash"
PARTITIONS = 2


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[AgentLauncher]:
    """Agents of one test, killed at its end. Tests list it after pg_url/s3_url so it is torn
    down first: a database dropped under live agents only makes noise in their logs."""
    with AgentLauncher(tmp_path) as launcher:
        yield launcher


def producers(agent: AgentProcess, ledger: Ledger, acks: Acks, count: int) -> list[Producer]:
    """retries=False: a produce is either acknowledged (recorded) or failed, never silently
    sent twice, so a duplicate in the log can only be the agent's doing."""
    return [
        Producer(
            f"{agent.name}-p{i}", agent.address, ledger, topic=TOPIC, partitions=PARTITIONS, acks=acks, retries=False
        )
        for i in range(count)
    ]


def run_and_kill(agent: AgentProcess, ledger: Ledger, acks: Acks, *, count: int, kill_after_s: float) -> int:
    """Produce from `count` threads, SIGKILL the agent after `kill_after_s`, and return how
    many records were acknowledged in this run."""
    threads = producers(agent, ledger, acks, count)
    for t in threads:
        t.start()
    time.sleep(kill_after_s)  # the crash moment itself is the randomness under test
    agent.kill()
    for t in threads:
        t.join(30)
        assert not t.is_alive(), f"{t.name} still blocked 30 s after the agent died"
    return sum(t.acked_here for t in threads)


def test_kill_9_while_producing_acks_leader(agents: AgentLauncher, tmp_path: Path) -> None:
    # fsync=always: acks=leader then means "on the leader's disk", which kill -9 cannot undo.
    # The lease TTL is the 30 s default on purpose: a restarted agent must not wait it out.
    flags = ["--data-dir", str(tmp_path / "data"), "--fsync", "always", "--durable-flush-ms", "50"]
    rng = random.Random()
    ledger = Ledger()
    agent = agents.start(*flags)
    with streamhouse.connect(agent.address) as client:
        client.create_topic(TOPIC, PARTITIONS)
    acked_per_cycle = []
    for cycle in range(CYCLES):
        if cycle:
            agent = agents.start(*flags)
            with streamhouse.connect(agent.address, retries=False) as client:
                # Acknowledged before the crash = visible right after the restart, without
                # any produce first to make the agent take the partition back.
                ends = client.describe(TOPIC).end_offsets
                acked_ends = ledger.ends()
                assert all(ends[p] >= acked_ends.get(p, 0) for p in range(PARTITIONS)), (ends, acked_ends)
        acked_per_cycle.append(run_and_kill(agent, ledger, "leader", count=2, kill_after_s=rng.uniform(0.05, 0.3)))

    # Every restart took its partitions back at once (same agent id, new epoch): most cycles
    # acknowledged something before their kill.
    assert sum(1 for n in acked_per_cycle if n) >= CYCLES // 2, acked_per_cycle
    assert len(ledger.acked) >= 100, acked_per_cycle

    # One graceful cycle moves the recovered WAL into segments; the next agent reads them.
    agent = agents.start(*flags)
    assert agent.stop() == 0
    agent = agents.start(*flags)
    with streamhouse.connect(agent.address, retries=False) as client:
        described = client.describe(TOPIC)
        for state in described.partitions:
            assert state.durable_end_offset == state.end_offset and state.leader == "", state
        check_ledger(read_log(client, TOPIC), ledger)
    assert agent.stop() == 0


def test_durable_acks_survive_losing_the_whole_data_dir(
    tmp_path: Path, pg_url: str, s3_url: tuple[str, str], agents: AgentLauncher
) -> None:
    url, endpoint = s3_url
    shared = ["--metadata", pg_url, "--object-store", url, "--s3-endpoint", endpoint]
    # Short lease so the replacement's wait for the dead agent's lease is brief.
    lease = ["--lease-ttl-ms", "2000", "--renew-interval-ms", "500", "--durable-flush-ms", "50"]
    data = tmp_path / "doomed"
    agent = agents.start("--data-dir", str(data), *shared, *lease)
    with streamhouse.connect(agent.address) as client:
        client.create_topic(TOPIC, PARTITIONS)

    ledger = Ledger()
    threads = producers(agent, ledger, "durable", 3)
    for t in threads:
        t.start()
    # Kill mid-stream, once a fair number of durable acks are in (grouped flushes under way).
    wait_until(lambda: len(ledger.acked) >= 60, timeout_s=30, what="60 durable acks")
    with streamhouse.connect(agent.address) as client:
        old_epochs = {p.partition: p.leader_epoch for p in client.describe(TOPIC).partitions}
        assert all(old_epochs.values())
    time.sleep(random.uniform(0, 0.1))
    agent.kill()
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert len(ledger.acked) >= 60
    with streamhouse.connect(agent.address, retries=False, timeout_s=1) as client, pytest.raises(StreamHouseError):
        client.topics()  # really gone

    shutil.rmtree(data)  # WAL, agent id, everything local
    fresh = agents.start("--data-dir", str(tmp_path / "fresh"), *shared, *lease, name="fresh")
    with streamhouse.connect(fresh.address, retry_for_s=30) as client:
        # Committed segments are all a durable ack promised: readable at once, no lease needed.
        check_ledger(read_log(client, TOPIC), ledger)
        # Writing needs the dead agent's leases, which the newcomer only gets once they expire.
        results = client.produce_batch(TOPIC, [b"after-0", b"after-1"], partition=0, acks="durable")
        [after] = results
        described = client.describe(TOPIC)
        state = described.partitions[0]
        assert state.leader == fresh.address and state.leader_epoch > old_epochs[0]
        # The newcomer continues right after the last committed record: nothing is skipped
        # or overwritten.
        log = read_log(client, TOPIC)
        assert after.base_offset == len(log[0]) - 2
        ledger.attempted |= {b"after-0", b"after-1"}
        ledger.acked |= {b"after-0": (0, after.base_offset), b"after-1": (0, after.base_offset + 1)}
        check_ledger(log, ledger)
    assert fresh.stop() == 0
