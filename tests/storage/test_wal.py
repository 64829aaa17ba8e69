"""WriteAheadLog on a real directory: replay, torn tails, fsync modes, group commit, release, crashes."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streamhouse.storage.errors import StorageUnavailableError
from streamhouse.storage.wal.format import WalEntry, scan
from streamhouse.storage.wal.log import FsyncPolicy, WriteAheadLog
from tests import wal_crash_child

REPO = Path(__file__).resolve().parents[2]


def make_entries(n: int, *, partitions: int = 1, size: int = 100, seed: int = 0) -> list[WalEntry]:
    rng = random.Random(seed)
    nexts = [0] * partitions
    out = []
    for i in range(n):
        p = i % partitions
        count = rng.randint(1, 9)
        out.append(WalEntry(5, p, 1, nexts[p], count, rng.randbytes(size)))
        nexts[p] += count
    return out


async def open_replayed(
    directory: Path, fsync: FsyncPolicy = "interval", interval_ms: int = 100, file_bytes: int = 1 << 26
) -> tuple[WriteAheadLog, list[WalEntry]]:
    wal = await WriteAheadLog.open(directory, fsync=fsync, interval_ms=interval_ms, file_bytes=file_bytes)
    return wal, list((await wal.replay()).entries)


async def append_all(wal: WriteAheadLog, items: list[WalEntry]) -> None:
    for e in items:
        await wal.append(e.topic_id, e.partition, e.epoch, e.base_offset, e.record_count, e.payload)


def wal_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("wal-*.log"))


async def test_append_close_replay_round_trip(tmp_path: Path) -> None:
    items = [*make_entries(30, partitions=3), WalEntry(9, 0, 2, 0, 0, b"")]
    wal, replayed = await open_replayed(tmp_path / "wal", fsync="never")
    assert replayed == []
    await append_all(wal, items)
    assert (wal.appends, wal.bytes_written) == (31, sum(e.encoded_size for e in items))
    await wal.close()
    wal = await WriteAheadLog.open(tmp_path / "wal")
    result = await wal.replay()
    assert list(result.entries) == items
    assert (result.skipped, result.torn_bytes, result.files) == (0, 0, 1)
    assert result.end_offsets[(5, 1)] == max(e.end_offset for e in items if e.partition == 1)
    await wal.close()
    assert [p.name for p in wal_files(tmp_path / "wal")] == [f"wal-{0:020d}.log"]


async def test_torn_tail_at_every_byte_is_truncated_and_appendable(tmp_path: Path) -> None:
    items = make_entries(5, size=60)
    wal, _ = await open_replayed(tmp_path / "src", fsync="never")
    await append_all(wal, items)
    await wal.close()
    full = wal_files(tmp_path / "src")[0].read_bytes()
    last_start = len(full) - items[-1].encoded_size
    directory = tmp_path / "torn"
    directory.mkdir()
    path = directory / f"wal-{0:020d}.log"
    extra = WalEntry(5, 0, 2, 10_000, 1, b"after the tear")
    for cut in range(last_start, len(full)):
        path.write_bytes(full[:cut])
        wal = await WriteAheadLog.open(directory, fsync="never")
        result = await wal.replay()
        assert list(result.entries) == items[:-1], cut
        assert (result.torn_bytes, result.skipped) == (cut - last_start, 0)
        assert path.stat().st_size == last_start
        await append_all(wal, [extra])
        await wal.close()
        wal, replayed = await open_replayed(directory)
        assert replayed == [*items[:-1], extra]
        await wal.close()


async def test_corrupt_entry_is_skipped_reported_and_later_appends_survive(tmp_path: Path) -> None:
    items = make_entries(6, size=200)
    wal, _ = await open_replayed(tmp_path, fsync="never")
    await append_all(wal, items)
    await wal.close()
    path = wal_files(tmp_path)[0]
    data = bytearray(path.read_bytes())
    header_at = items[0].encoded_size + items[1].encoded_size
    data[header_at + 100] ^= 0x40  # payload of entry 2
    data[header_at + items[2].encoded_size + 5] ^= 0x01  # length field of entry 3
    path.write_bytes(bytes(data))

    wal = await WriteAheadLog.open(tmp_path)
    result = await wal.replay()
    assert list(result.entries) == [items[0], items[1], *items[4:]]
    assert result.skipped == wal.skipped == 2 and result.torn_bytes == 0
    assert [e.position for e in result.errors] == [header_at, header_at + items[2].encoded_size]
    assert all(e.source == str(path) for e in result.errors)
    assert path.stat().st_size == len(data)  # damage is skipped, never rewritten
    extra = make_entries(1, seed=7)[0]
    await append_all(wal, [extra])
    await wal.close()
    wal, replayed = await open_replayed(tmp_path)
    assert replayed == [items[0], items[1], *items[4:], extra]
    await wal.close()


async def test_only_the_last_file_is_truncated(tmp_path: Path) -> None:
    items = make_entries(8, size=300)
    wal, _ = await open_replayed(tmp_path, fsync="never", file_bytes=1000)
    await append_all(wal, items)
    await wal.close()
    first, *_ = files = wal_files(tmp_path)
    assert len(files) == 4
    first.write_bytes(first.read_bytes()[:-10])
    wal = await WriteAheadLog.open(tmp_path)
    result = await wal.replay()
    assert list(result.entries) == [items[0], *items[2:]]
    assert result.torn_bytes == 0 and result.skipped == 1
    assert result.errors[0].source == str(first)
    assert first.stat().st_size == items[0].encoded_size * 2 - 10
    await wal.close()


@pytest.mark.parametrize("fsync", ["always", "interval", "never"])
async def test_every_fsync_mode_replays_the_same_entries(tmp_path: Path, fsync: FsyncPolicy) -> None:
    items = make_entries(40, partitions=2, size=2000)
    wal, _ = await open_replayed(tmp_path, fsync=fsync, interval_ms=5, file_bytes=20_000)
    await append_all(wal, items[:20])
    await asyncio.sleep(0.03)
    await append_all(wal, items[20:])
    if fsync == "always":
        assert wal.syncs >= 20
    elif fsync == "interval":
        assert wal.syncs > wal.rotations
    else:
        assert wal.syncs == wal.rotations
    await wal.close()
    wal, replayed = await open_replayed(tmp_path)
    assert replayed == items
    await wal.close()


async def test_group_commit_shares_syncs(tmp_path: Path) -> None:
    wal, _ = await open_replayed(tmp_path, fsync="always")
    per_writer = 25

    async def writer(partition: int) -> None:
        for i in range(per_writer):
            syncs_before = wal.syncs
            await wal.append(1, partition, 1, i, 1, os.urandom(500))
            assert wal.syncs > syncs_before  # acknowledged only after a sync that began later

    await asyncio.gather(*(writer(p) for p in range(8)))
    assert wal.appends == 8 * per_writer
    assert 0 < wal.syncs < wal.appends
    await wal.close()
    wal, replayed = await open_replayed(tmp_path)
    assert sorted((e.partition, e.base_offset) for e in replayed) == [
        (p, i) for p in range(8) for i in range(per_writer)
    ]
    await wal.close()


async def test_interval_syncs_in_the_background(tmp_path: Path) -> None:
    wal, _ = await open_replayed(tmp_path, fsync="interval", interval_ms=10)
    await wal.append(1, 0, 1, 0, 1, b"x")
    assert wal.syncs == 0
    deadline = time.monotonic() + 5
    while wal.syncs == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert wal.syncs == 1
    await wal.close()


async def test_release_deletes_covered_files_and_keeps_the_rest(tmp_path: Path) -> None:
    items = make_entries(30, partitions=2, size=300)
    wal, _ = await open_replayed(tmp_path, fsync="never", file_bytes=1100)
    await append_all(wal, items)
    before = wal_files(tmp_path)
    assert len(before) == 10 and wal.rotations == 9
    covered = {(5, 0): items[16].end_offset, (5, 1): items[11].end_offset}
    assert await wal.release(covered) == 4  # files holding entries 0..11; entry 12 is not covered
    assert wal_files(tmp_path) == before[4:] and wal.files_deleted == 4
    await append_all(wal, [make_entries(1, seed=3)[0]])
    await wal.close()
    wal, replayed = await open_replayed(tmp_path)
    assert replayed[:-1] == items[12:]
    await wal.close()


async def test_release_rotates_a_fully_covered_active_file(tmp_path: Path) -> None:
    items = make_entries(5)
    wal, _ = await open_replayed(tmp_path, fsync="never")
    await append_all(wal, items)
    assert await wal.release({(5, 0): items[-1].end_offset - 1}) == 0
    assert await wal.release({(6, 0): 10**9}) == 0  # other partitions cover nothing here
    assert await wal.release({(5, 0): items[-1].end_offset}) == 1
    assert [p.name for p in wal_files(tmp_path)] == [f"wal-{1:020d}.log"]
    assert await wal.release({(5, 0): items[-1].end_offset}) == 0  # empty active file stays
    later = WalEntry(5, 0, 1, items[-1].end_offset, 3, b"later")
    await append_all(wal, [later])
    await wal.close()
    wal, replayed = await open_replayed(tmp_path)
    assert replayed == [later]
    await wal.close()


async def test_release_accumulates_per_partition_calls(tmp_path: Path) -> None:
    items = make_entries(12, partitions=2, size=300)
    wal, _ = await open_replayed(tmp_path, fsync="never", file_bytes=1100)
    await append_all(wal, items)
    ends = {p: max(e.end_offset for e in items if e.partition == p) for p in (0, 1)}
    assert await wal.release({(5, 0): ends[0]}) == 0  # every file also holds partition 1
    assert await wal.release({(5, 1): ends[1]}) == 4  # partition 0 is still remembered
    assert await wal.release({(5, 0): 0}) == 0  # a stale, lower offset cannot un-cover anything
    assert [p.name for p in wal_files(tmp_path)] == [f"wal-{4:020d}.log"]
    await wal.close()


async def test_misuse_is_reported(tmp_path: Path) -> None:
    wal = await WriteAheadLog.open(tmp_path)
    with pytest.raises(RuntimeError, match="replay"):
        await wal.append(1, 0, 1, 0, 1, b"")
    with pytest.raises(StorageUnavailableError, match="in use"):
        await WriteAheadLog.open(tmp_path)
    await wal.replay()
    with pytest.raises(RuntimeError, match="once"):
        await wal.replay()
    await wal.close()
    await wal.close()
    with pytest.raises(RuntimeError, match="closed"):
        await wal.append(1, 0, 1, 0, 1, b"")
    with pytest.raises(ValueError):
        await WriteAheadLog.open(tmp_path, fsync="sometimes")  # type: ignore[arg-type]
    async with await WriteAheadLog.open(tmp_path) as reopened:  # the lock was released
        assert (await reopened.replay()).entries == ()


def _run_child(directory: Path, delay: float, acked: list[tuple[int, int]]) -> tuple[int, int]:
    """Start a child, SIGKILL it `delay` seconds after it is ready.

    Returns the offset it resumed from and the torn bytes its replay cut off.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.wal_crash_child", str(directory)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready = threading.Event()
    start: list[tuple[int, int]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.endswith("\n"):
                break  # cut off by the kill: never acknowledged to us
            word, *rest = line.split()
            if word == "ready":
                start.append((int(rest[0]), int(rest[1])))
                ready.set()
            else:
                acked.append((int(word), int(rest[0])))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert ready.wait(30), "child never became ready"
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join()
    assert proc.returncode == -signal.SIGKILL
    return start[0]


def _lose_unsynced_tail(directory: Path, acked: list[tuple[int, int]], rng: random.Random) -> None:
    """Cut the last file at a random byte after its last acknowledged entry, as a power loss may.

    SIGKILL tears a write only rarely (Linux stops a large write at a page boundary when a
    fatal signal is pending), so this is what makes most children meet torn tails. Entries
    ending at or below the highest acknowledged end were covered by that acknowledgement's
    sync, so they stay; a tail the kill already tore is never acknowledged.
    """
    last = wal_files(directory)[-1]
    data = last.read_bytes()
    result = scan(data, str(last))
    assert result.errors == ()
    acked_end = max((base + count for base, count in acked), default=0)
    keep = position = 0
    for entry in result.entries:
        position += entry.encoded_size
        if entry.end_offset <= acked_end:
            keep = position
    cut = rng.randint(keep, len(data))
    last.write_bytes(data[:cut])


@pytest.mark.slow
async def test_sigkill_never_loses_or_duplicates_acknowledged_entries(tmp_path: Path) -> None:
    rng = random.Random()
    acked: list[tuple[int, int]] = []
    starts = []
    torn = 0
    for cycle in range(20):
        start, cut = await asyncio.to_thread(_run_child, tmp_path, rng.uniform(0.05, 0.3), acked)
        starts.append(start)
        torn += cut
        if cycle % 2:
            _lose_unsynced_tail(tmp_path, acked, rng)
    print(f"acknowledged {len(acked)} entries; replays cut {torn} torn bytes")
    assert len(acked) > 100, "children acknowledged too little to test anything"

    wal = await WriteAheadLog.open(tmp_path)
    result = await wal.replay()
    await wal.close()
    assert result.errors == ()
    key = (wal_crash_child.TOPIC_ID, wal_crash_child.PARTITION)
    entries = [e for e in result.entries if (e.topic_id, e.partition) == key]
    assert len(entries) == len(result.entries)
    expected_base = 0
    for e in entries:
        assert e.base_offset == expected_base, "offsets must be contiguous, with no duplicates"
        assert e.payload == wal_crash_child.payload_for(e.base_offset, e.record_count)
        expected_base = e.end_offset
    present = {(e.base_offset, e.record_count) for e in entries}
    missing = [a for a in acked if a not in present]
    assert missing == [], f"acknowledged but lost: {missing[:10]}"
    assert len(set(acked)) == len(acked)
    # Each child resumed exactly where the durable log ended.
    assert starts[0] == 0 and starts == sorted(starts)


async def test_wide_memoryview_payload_round_trips(tmp_path: Path) -> None:
    wal, _ = await open_replayed(tmp_path, fsync="never")
    await wal.append(1, 0, 1, 0, 4, memoryview(bytearray(range(16))).cast("I"))
    await wal.close()
    wal, replayed = await open_replayed(tmp_path)
    assert [e.payload for e in replayed] == [bytes(range(16))]
    await wal.close()
