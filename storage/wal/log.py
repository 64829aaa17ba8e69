"""The write-ahead log (docs/DESIGN.md §3): asyncio over a directory of append-only files.

Files are `wal-<20-digit seq>.log`, framed by `wal_format`. Writes are plain os.writev calls
on an O_APPEND descriptor from the event loop (a page-cache copy, cheaper than a thread hop);
every fdatasync/fsync runs in the bounded pool. Files are never rewritten: replay may only cut
an interrupted entry off the last file, and release deletes whole files.
"""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from streamhouse.storage.errors import CorruptDataError, StorageUnavailableError
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.tasks import wait_event
from streamhouse.storage.wal.files import Key, WalFile, create_file, file_name, lock_and_list, truncate
from streamhouse.storage.wal.format import HEADER_SIZE, Buffer, WalEntry, byte_view, encode_header, scan

FsyncPolicy = Literal["always", "interval", "never"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReplayResult:
    entries: tuple[WalEntry, ...]
    # One error per skipped damaged region, naming the file and byte position.
    errors: tuple[CorruptDataError, ...]
    torn_bytes: int
    files: int
    # (topic_id, partition) -> max(base_offset + record_count) over the replayed entries.
    end_offsets: Mapping[Key, int]

    @property
    def skipped(self) -> int:
        return len(self.errors)


async def _finish_even_if_cancelled(aw: Awaitable[T]) -> T:
    """Await `aw`; if the caller is cancelled, still wait for it before re-raising.

    A pool thread may be syncing a descriptor; releasing the locks early would let rotation or
    close() reuse that descriptor number under it.
    """
    task = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise


class WriteAheadLog:
    """Use `await WriteAheadLog.open(...)`, then `await wal.replay()` once before appending."""

    def __init__(
        self,
        directory: Path,
        lock_fd: int,
        seqs: list[int],
        fsync: FsyncPolicy,
        interval_ms: int,
        file_bytes: int,
    ) -> None:
        self.directory = directory
        self.fsync: FsyncPolicy = fsync
        self._interval = interval_ms / 1000
        self._file_bytes = file_bytes
        self._lock_fd: int | None = lock_fd
        self._seqs = seqs
        self._files: list[WalFile] = []
        self._active: WalFile | None = None
        self._fd: int | None = None
        self._write_lock = asyncio.Lock()
        self._sync_lock = asyncio.Lock()
        self._release_lock = asyncio.Lock()
        self._covered: dict[Key, int] = {}
        # Logical byte counters since open: an appender waits until _synced reaches its _written.
        self._written = 0
        self._synced = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._flusher: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._failed: BaseException | None = None
        self._replayed = False
        self._closed = False
        # Counters for metrics.
        self.appends = 0
        self.bytes_written = 0
        self.syncs = 0
        self.rotations = 0
        self.files_deleted = 0
        self.skipped = 0
        self.torn_bytes = 0

    @classmethod
    async def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        fsync: FsyncPolicy = "interval",
        interval_ms: int = 100,
        file_bytes: int = 64 * 1024 * 1024,
    ) -> WriteAheadLog:
        if fsync not in ("always", "interval", "never"):
            raise ValueError(f"fsync must be 'always', 'interval' or 'never', got {fsync!r}")
        if interval_ms <= 0 or file_bytes <= 0:
            raise ValueError("interval_ms and file_bytes must be positive")
        path = Path(directory)
        lock_fd, seqs = await run_blocking(lock_and_list, path)
        return cls(path, lock_fd, seqs, fsync, interval_ms, file_bytes)

    @property
    def disk_bytes(self) -> int:
        """Bytes held in WAL files: the quantity a backpressure bound applies to."""
        return sum(f.size for f in self._files)

    async def replay(self) -> ReplayResult:
        """Read every entry in order; cut a torn tail off the last file; skip and report damage."""
        if self._replayed:
            raise RuntimeError("replay() runs once, before the first append")
        self._replayed = True
        entries: list[WalEntry] = []
        errors: list[CorruptDataError] = []
        ends: dict[Key, int] = {}
        for i, seq in enumerate(self._seqs):
            path = self.directory / file_name(seq)
            data = await run_blocking(path.read_bytes)
            result = await run_blocking(scan, data, str(path))
            size = len(data)
            errors.extend(result.errors)
            if result.torn_bytes and i == len(self._seqs) - 1:
                await run_blocking(truncate, path, result.valid_end)
                self.torn_bytes += result.torn_bytes
                size = result.valid_end
            elif result.torn_bytes:
                # Entries are only ever appended to the last file, so this is damage, not a crash.
                errors.append(
                    CorruptDataError(
                        f"{result.torn_bytes} bytes of an incomplete entry in a WAL file other than the last",
                        source=str(path),
                        position=result.valid_end,
                    )
                )
            wal_file = WalFile(seq, path, size)
            for entry in result.entries:
                wal_file.note(entry.topic_id, entry.partition, entry.end_offset)
            for key, end in wal_file.ends.items():
                ends[key] = max(end, ends.get(key, -1))
            entries.extend(result.entries)
            self._files.append(wal_file)
        if self._files:
            self._active = self._files[-1]
            self._fd = await run_blocking(os.open, self._active.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        else:
            self._active = WalFile(0, self.directory / file_name(0), 0)
            self._fd = await run_blocking(create_file, self._active.path)
            self._files.append(self._active)
        self.skipped += len(errors)
        if self.fsync == "interval":
            self._ticker = asyncio.create_task(self._tick())
        return ReplayResult(tuple(entries), tuple(errors), self.torn_bytes, len(self._seqs), ends)

    async def append(
        self, topic_id: int, partition: int, epoch: int, base_offset: int, record_count: int, payload: Buffer
    ) -> None:
        """Write one entry; return once it is durable per the fsync policy."""
        payload = byte_view(payload)
        header = encode_header(topic_id, partition, epoch, base_offset, record_count, payload)
        size = HEADER_SIZE + len(payload)
        async with self._write_lock:
            self._check_writable()
            assert self._active is not None
            if self._active.size > 0 and self._active.size + size > self._file_bytes:
                await self._rotate()
            self._write(header, payload, size)
            self._active.note(topic_id, partition, base_offset + record_count)
            target = self._written
        if self.fsync == "always":
            await self._durable(target)

    async def release(self, covered: Mapping[Key, int]) -> int:
        """Delete every file whose entries all end at or below the covered offsets; return how many.

        Covered offsets (durable end offsets, which only grow) accumulate across calls, so each
        partition may release its own key alone even though partitions share files.
        """
        async with self._release_lock:
            for key, end in covered.items():
                self._covered[key] = max(end, self._covered.get(key, -1))
            covered = self._covered
            async with self._write_lock:
                self._check_writable()
                assert self._active is not None
                if self._active.size > 0 and self._active.covered_by(covered):
                    await self._rotate(covered=True)
            doomed = [f for f in self._files if f is not self._active and f.covered_by(covered)]
            for wal_file in doomed:
                # No directory fsync: a deleted file that reappears after a crash only replays
                # entries a segment already holds, which the caller filters by offset.
                await run_blocking(wal_file.path.unlink, missing_ok=True)
                self._files.remove(wal_file)
                self.files_deleted += 1
            return len(doomed)

    async def entries_of(self, topic_id: int, partition: int) -> list[WalEntry]:
        """Every intact entry of one partition in the files held now, in write order: what a
        writer re-reads after one of its leaderships was fenced with unflushed records. Reads
        only; a torn or damaged region is skipped here (replay reports it)."""
        key = (topic_id, partition)
        out: list[WalEntry] = []
        for wal_file in list(self._files):
            if key not in wal_file.ends:
                continue
            try:
                data = await run_blocking(wal_file.path.read_bytes)
            except FileNotFoundError:
                continue  # released meanwhile: everything in it was committed
            result = await run_blocking(scan, data, str(wal_file.path))
            out.extend(e for e in result.entries if e.topic_id == topic_id and e.partition == partition)
        return out

    async def sync(self) -> None:
        """Make everything appended so far durable, whatever the policy."""
        self._check_writable()
        await self._durable(self._written)

    async def close(self) -> None:
        """Sync what was written and close; idempotent."""
        if self._closed:
            return
        async with self._write_lock:
            self._closed = True
            self._stopping.set()
            if self._ticker is not None:
                await asyncio.wait({self._ticker})
            try:
                if self._fd is not None and self._failed is None and self._written > self._synced:
                    await self._sync()
            finally:
                async with self._sync_lock:
                    if self._fd is not None:
                        os.close(self._fd)
                        self._fd = None
                    if self._lock_fd is not None:
                        os.close(self._lock_fd)
                        self._lock_fd = None
                self._fail_waiters(self._unusable())

    async def __aenter__(self) -> WriteAheadLog:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- internals -----------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if not self._replayed and not self._closed:
            raise RuntimeError("call replay() before appending to the WAL")
        if self._closed or self._failed is not None:
            raise self._unusable()

    def _unusable(self) -> Exception:
        if self._failed is not None:
            error = StorageUnavailableError(f"WAL {self.directory} failed ({self._failed}); reopen and replay it")
            error.__cause__ = self._failed
            return error
        if self._closed:
            return RuntimeError(f"WAL {self.directory} is closed")
        return StorageUnavailableError(f"WAL {self.directory} stopped syncing")

    def _write(self, header: bytes, payload: Buffer, size: int) -> None:
        assert self._fd is not None and self._active is not None
        try:
            written = os.writev(self._fd, [header, payload])
            while written < size:  # a regular file writes short only when the disk fills up
                written += os.write(self._fd, (header + bytes(payload))[written:])
        except OSError as exc:
            # A half entry mid-file would be reported as damage on every replay: cut it off.
            try:
                os.ftruncate(self._fd, self._active.size)
            except OSError as cut:
                self._failed = cut
            # Typed (a full disk is a store that is unavailable, e.g. ENOSPC or EFBIG), so every
            # face answers it as such instead of an unexpected OSError; nothing of it was kept.
            reason = exc.strerror or repr(exc)
            raise StorageUnavailableError(
                f"WAL {self.directory}: write failed ({reason}); the entry was not kept"
            ) from exc
        self._active.size += size
        self._written += size
        self.appends += 1
        self.bytes_written += size

    async def _durable(self, target: int) -> None:
        """Group commit: wait for a sync that began after `target` bytes were written."""
        if self._synced >= target:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        try:
            while self._waiters and self._fd is not None and self._failed is None:
                await self._sync()
        except Exception as exc:
            if self._failed is None:
                self._failed = exc
        finally:
            self._flusher = None
            self._fail_waiters(self._unusable())

    async def _tick(self) -> None:
        while self._failed is None:
            if await wait_event(self._stopping, self._interval):
                return
            try:
                await self._sync()
            except Exception as exc:  # appends report it from now on
                self._failed = self._failed or exc

    async def _sync(self) -> None:
        async with self._sync_lock:
            target = self._written
            if target > self._synced and self._fd is not None:  # nothing new: nothing to sync
                try:
                    await _finish_even_if_cancelled(run_blocking(os.fdatasync, self._fd))
                except OSError as exc:
                    # After a failed fdatasync the page cache state is unknown: stop accepting writes.
                    self._failed = exc
                    raise
                self.syncs += 1
                self._synced = target
            self._resolve_waiters()

    async def _rotate(self, *, covered: bool = False) -> None:
        """Start a new file; the caller holds the write lock. `covered`: every entry of the
        active file is in a committed segment (release deletes it right after)."""
        async with self._sync_lock:
            await _finish_even_if_cancelled(self._rotate_locked(covered))

    async def _rotate_locked(self, covered: bool) -> None:
        assert self._fd is not None and self._active is not None
        target = self._written
        # Synced under every policy (once per file, so cheap): no later file can survive a crash
        # that an earlier file's tail did not, and `_synced` stays true for closed files, which
        # `_sync` can no longer reach. Not a covered file: nothing in it is needed any more
        # (each entry is in a committed segment, so appends waiting for its sync may go) and
        # it is deleted next. Its sync (several ms for MBs of page cache) held every append
        # behind the write lock, on every roll that caught up with the producers. (After a
        # power loss before the unlink reaches the disk, it may come back with a torn tail:
        # replay reports that and skips it, losing nothing a segment does not hold.)
        if not covered:
            try:
                await run_blocking(os.fdatasync, self._fd)
            except OSError as exc:
                self._failed = exc
                raise
            self.syncs += 1
        self._synced = target
        new = WalFile(self._active.seq + 1, self.directory / file_name(self._active.seq + 1), 0)
        new_fd = await run_blocking(create_file, new.path)
        os.close(self._fd)
        self._fd = new_fd
        self._active = new
        self._files.append(new)
        self.rotations += 1
        self._resolve_waiters()

    def _resolve_waiters(self) -> None:
        while self._waiters and self._waiters[0][0] <= self._synced:
            _, future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)

    def _fail_waiters(self, exc: BaseException) -> None:
        while self._waiters:
            _, future = self._waiters.popleft()
            if not future.done():
                future.set_exception(exc)
