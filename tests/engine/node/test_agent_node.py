"""One agent node (engine/node/agent_node.py): the agent service and its jobs wired in one place,
on a real SQLite metadata store and a file object store, as the embedded engine runs them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from streamhouse.agent.config import AgentConfig
from streamhouse.agent.forward import cannot_forward
from streamhouse.agent.partitions import PartitionManager
from streamhouse.node import AgentNode
from streamhouse.storage.errors import StreamHouseError
from streamhouse.storage.records.schema import make_batch

TOPIC = "CREATE TOPIC bids (auction BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)"
VIEW = (
    "CREATE MATERIALIZED VIEW per_window AS SELECT window_start, window_end, count(*) AS n "
    "FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end"
)


async def _never(address: str, topic: str, partition: int, batch: pa.RecordBatch) -> int:
    raise AssertionError("no partition is led elsewhere in this test")


async def _until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_the_agents_sql_reaches_the_nodes_jobs_and_close_stops_them(tmp_path: Path) -> None:
    node = await AgentNode.start(AgentConfig(data_dir=str(tmp_path)), forward=_never)
    try:
        assert node.service.jobs is node.jobs  # CREATE JOB through SQL lands in this node's manager
        await node.service.sql(TOPIC)
        await node.service.sql(VIEW)
        await _until(lambda: "per_window" in node.jobs.running)
        shown = (await node.service.sql("SHOW JOBS")).to_pylist()
        assert [(j["job"], j["state"]) for j in shown] == [("per_window", "running here")]
    finally:
        await node.close()
    assert node.jobs.running == {}  # stopped before the partitions closed


async def test_the_forwarder_is_the_one_the_node_was_given(tmp_path: Path) -> None:
    node = await AgentNode.start(AgentConfig(data_dir=str(tmp_path)), forward=_never)
    try:
        assert node.service.manager.takeover.forward is _never
    finally:
        await node.close()


async def test_a_manager_without_a_forwarder_keeps_records_waiting_with_a_clear_error(tmp_path: Path) -> None:
    manager = await PartitionManager.start(AgentConfig(data_dir=str(tmp_path)))
    try:
        assert manager.takeover.forward is cannot_forward
        batch = make_batch([b"v"], keys=[b"k"])
        with pytest.raises(StreamHouseError, match=r"bids/0: cannot hand 1 WAL records to the leader at b:1"):
            await manager.takeover.forward("b:1", "bids", 0, batch)
    finally:
        await manager.close()
