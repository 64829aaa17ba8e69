"""Log compaction of a topic whose ROW column was widened by nested schema evolution (issue 13):
segments before and after the widening have the same column names but other types, so they are
compacted as separate runs (engine/agent/compactor.py cuts runs by column names and types), and
the changelog reads the same after the pass, old rows' new child NULL."""

from __future__ import annotations

import asyncio
import json
import uuid

from streamhouse.agent.partitions import PartitionManager
from streamhouse.storage.values.schema import Column, ValueSchema
from tests.engine.agent.test_compactor import compactor_of, env, latest_map, produce, rows_of

__all__ = ["env"]  # the fixture, shared with test_compactor

V1 = ValueSchema((Column("id", "BIGINT"), Column("stop", "ROW<city STRING>")))
V2 = ValueSchema((Column("id", "BIGINT"), Column("stop", "ROW<city STRING, zip BIGINT>")))


def test_segments_of_both_sides_of_a_nested_widening_compact_as_separate_runs(
    env: tuple[asyncio.AbstractEventLoop, PartitionManager],
) -> None:
    loop, manager = env

    async def check() -> None:
        config = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0", "delete.retention.ms": "0"}
        topic = await manager.metadata.create_topic(f"w{uuid.uuid4().hex[:8]}", 1, config, V1.to_json())
        old = [json.dumps({"id": i, "stop": {"city": f"c{i}"}}).encode() for i in range(4)]
        await produce(manager, topic, [(b"a", old[0]), (b"b", old[1])], 0)
        await produce(manager, topic, [(b"a", old[2]), (b"c", old[3])], 1)
        wide = await manager.metadata.swap_value_schema(topic.name, topic.value_schema, V2.to_json())
        (await manager.writer(wide, 0)).follow_value_schema(wide)
        new = [json.dumps({"id": 10 + i, "stop": {"city": f"n{i}", "zip": i}}).encode() for i in range(4)]
        await produce(manager, wide, [(b"b", new[0]), (b"d", new[1])], 2)
        await produce(manager, wide, [(b"d", new[2]), (b"e", new[3])], 3)
        footers = [
            await manager.reader.segments.footer(s.ref) for s in await manager.metadata.list_segments(topic.name, 0)
        ]
        assert [f.schema.field("v.stop").type.num_fields for f in footers] == [1, 1, 2, 2]
        before = rows_of(await manager.read(topic.name, 0, 0, 100))

        outcome = await compactor_of(manager, [1]).compact_partition(wide, 0)
        assert outcome is not None and outcome.swapped == 2  # [v1, v1] and [v2]: the newest is never compacted
        after = rows_of(await manager.read(topic.name, 0, 0, 100))
        assert latest_map(after) == latest_map(before)
        assert [r[1] for r in after] == [b"a", b"c", b"b", b"d", b"d", b"e"]

    loop.run_until_complete(check())
