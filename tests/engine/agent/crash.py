"""What kill -9 leaves of an in-process PartitionManager, for tests that restart one."""

from __future__ import annotations

import asyncio
import contextlib

from streamhouse.agent.partitions import PartitionManager


async def crash(manager: PartitionManager) -> None:
    """What kill -9 leaves: no flush, no lease release; only the WAL lock is let go."""
    for task in manager._tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await manager.wal.close()
    await manager.metadata.close()
