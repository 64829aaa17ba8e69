"""The WAL's rotations on the produce path (storage/wal/log.py): a fully covered active file is
rotated and deleted at release without the fdatasync a size rotation does (every entry in it
is in a committed segment, and the sync held every append behind the write lock), while a
size rotation still syncs, appends waiting for a sync of covered bytes are let go, and replay
sees exactly the entries no segment holds."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streamhouse.storage.wal.log import WriteAheadLog

KEY = (5, 0)


async def _append(wal: WriteAheadLog, base: int, n: int = 10, size: int = 200) -> int:
    await wal.append(KEY[0], KEY[1], 1, base, n, bytes([base % 251]) * size)
    return base + n


def test_a_covered_rotation_skips_the_sync_a_size_rotation_does(tmp_path: Path) -> None:
    async def main() -> None:
        wal = await WriteAheadLog.open(tmp_path, fsync="never", file_bytes=1_000)
        await wal.replay()
        end = 0
        for _ in range(3):
            end = await _append(wal, end)
        syncs = wal.syncs
        assert await wal.release({KEY: end}) == 1  # the covered active file: rotated and deleted
        assert (wal.rotations, wal.syncs) == (1, syncs)  # … without a sync
        kept_from = end
        for _ in range(6):  # past file_bytes: size rotations, each synced
            end = await _append(wal, end)
        assert wal.rotations > 1 and wal.syncs == syncs + wal.rotations - 1
        await wal.close()
        again = await WriteAheadLog.open(tmp_path, fsync="never", file_bytes=1_000)
        replayed = await again.replay()
        assert [e.base_offset for e in replayed.entries] == list(range(kept_from, end, 10))
        assert replayed.skipped == 0
        await again.close()

    asyncio.run(main())


def test_appends_waiting_for_a_sync_of_covered_bytes_are_let_go(tmp_path: Path) -> None:
    async def main() -> None:
        # fsync=always with an interval ticker off: an append waits for its own sync round.
        wal = await WriteAheadLog.open(tmp_path, fsync="always")
        await wal.replay()
        end = await _append(wal, 0)
        pending = asyncio.create_task(_append(wal, end))
        await asyncio.sleep(0)
        assert await wal.release({KEY: end + 10}) == 1
        assert await asyncio.wait_for(pending, 10) == end + 10
        await wal.close()

    asyncio.run(main())
