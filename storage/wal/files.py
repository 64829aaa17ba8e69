"""The WAL's files on disk (docs/DESIGN.md §3): their names (`wal-<20-digit seq>.log`), the
directory lock that keeps a second process out, creating a file durably (its directory entry
synced), cutting a torn tail off, and what each file holds per partition so release can
delete whole files without re-reading them. Blocking calls: run them in the bounded pool."""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streamhouse.storage.errors import StorageUnavailableError
from streamhouse.storage.fsutil import fsync_dir

__all__ = ["Key", "WalFile", "create_file", "file_name", "lock_and_list", "truncate"]

Key = tuple[int, int]  # (topic_id, partition)

FILE_RE = re.compile(r"wal-(\d{20})\.log")
LOCK_NAME = "wal.lock"


@dataclass(slots=True)
class WalFile:
    seq: int
    path: Path
    size: int
    # (topic_id, partition) -> highest end offset in this file, so release needs no re-read.
    ends: dict[Key, int] = field(default_factory=dict)

    def note(self, topic_id: int, partition: int, end: int) -> None:
        if self.ends.get((topic_id, partition), -1) < end:
            self.ends[(topic_id, partition)] = end

    def covered_by(self, covered: Mapping[Key, int]) -> bool:
        return all(covered.get(key, -1) >= end for key, end in self.ends.items())


def file_name(seq: int) -> str:
    return f"wal-{seq:020d}.log"


def lock_and_list(directory: Path) -> tuple[int, list[int]]:
    if not directory.exists():
        directory.mkdir(parents=True)
        fsync_dir(directory.parent)
    lock_fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise StorageUnavailableError(f"WAL directory {directory} is in use by another process") from None
    seqs = sorted(int(m.group(1)) for name in os.listdir(directory) if (m := FILE_RE.fullmatch(name)))
    return lock_fd, seqs


def create_file(path: Path) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        # fdatasync of the file does not persist its directory entry; without this an
        # acknowledged entry could vanish with its whole file after a power loss.
        fsync_dir(path.parent)
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    return fd


def truncate(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
