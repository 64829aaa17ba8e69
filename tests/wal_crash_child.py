"""Crash-test child: `python -m tests.wal_crash_child DIR`.

Opens the WAL with fsync=always, replays it to find the next offset, prints `ready`, then four
concurrent appenders write entries forever, each printing `<base> <count>` once its append has
returned (acknowledged). The parent SIGKILLs this process at a random moment.
"""

from __future__ import annotations

import asyncio
import random
import sys

from streamhouse.storage.wal.log import WriteAheadLog

TOPIC_ID = 42
PARTITION = 3
EPOCH = 1
FILE_BYTES = 256 * 1024
APPENDERS = 4


def payload_for(base_offset: int, record_count: int) -> bytes:
    """Deterministic from the offsets, so the parent can check every byte it replays."""
    rng = random.Random(base_offset * 1_000_003 + record_count)
    return rng.randbytes(rng.randrange(0, 16_384))


async def main(directory: str) -> None:
    wal = await WriteAheadLog.open(directory, fsync="always", file_bytes=FILE_BYTES)
    replay = await wal.replay()
    next_offset = replay.end_offsets.get((TOPIC_ID, PARTITION), 0)
    print(f"ready {next_offset} {replay.torn_bytes}", flush=True)
    rng = random.Random()

    async def appender() -> None:
        nonlocal next_offset
        while True:
            # Offsets are assigned and the append enters the WAL's FIFO lock in the same step,
            # so entries reach the file in offset order (as under the agent's partition lock).
            count = rng.randint(1, 5)
            base = next_offset
            next_offset += count
            await wal.append(TOPIC_ID, PARTITION, EPOCH, base, count, payload_for(base, count))
            sys.stdout.write(f"{base} {count}\n")
            sys.stdout.flush()

    await asyncio.gather(*(appender() for _ in range(APPENDERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
