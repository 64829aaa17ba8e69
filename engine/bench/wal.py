"""WAL append throughput (`streamhouse bench storage`)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time

from streamhouse.storage.wal.log import FsyncPolicy, WriteAheadLog


async def bench_wal_append(
    directory: str | os.PathLike[str],
    records: int = 1_000_000,
    batch: int = 1000,
    payload_bytes: int = 100_000,
    fsync: FsyncPolicy = "interval",
    concurrency: int = 1,
) -> dict[str, float | int | str]:
    """Append `records` in entries of `batch` records (`payload_bytes` each) to a fresh WAL.

    `records_per_s` counts until the last append returned (what a producer waits for under the
    policy); `durable_records_per_s` also includes the final sync in close().
    """
    appends = -(-records // batch)
    payload = os.urandom(payload_bytes)  # incompressible, like an LZ4-compressed IPC batch
    workdir = tempfile.mkdtemp(prefix="wal-bench-", dir=directory)
    try:
        wal = await WriteAheadLog.open(workdir, fsync=fsync)
        await wal.replay()
        next_entry = 0

        async def appender() -> None:
            nonlocal next_entry
            while next_entry < appends:
                index = next_entry
                next_entry += 1
                await wal.append(1, 0, 1, index * batch, batch, payload)
                await asyncio.sleep(0)

        started = time.perf_counter()
        await asyncio.gather(*(appender() for _ in range(concurrency)))
        appended = time.perf_counter() - started
        await wal.close()
        durable = time.perf_counter() - started
        total_bytes = wal.bytes_written
        return {
            "fsync": fsync,
            "concurrency": concurrency,
            "records": appends * batch,
            "appends": wal.appends,
            "seconds": round(appended, 4),
            "records_per_s": round(appends * batch / appended),
            "durable_records_per_s": round(appends * batch / durable),
            "mb_per_s": round(total_bytes / appended / 1e6, 1),
            "syncs": wal.syncs,
            "files": wal.rotations + 1,
        }
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)
